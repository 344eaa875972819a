#!/usr/bin/env python3
"""Invoke a deployed-as-on-Lambda handler the way Lambda does, and check its answers.

The script serves Lambda's Runtime API (2018-06-01) on 127.0.0.1 and starts Lambda's own
runtime interface client against it, as the managed Python runtimes do::

    <python> -m awslambdaric handler.lambda_handler     (cwd: the task root)

optionally as an unprivileged user (``setpriv``, from util-linux), with an environment
like Lambda's: nothing is inherited but PATH (no R_HOME, no PYTHON* variables).
Each case of the events file is handed out on ``GET /invocation/next``; what the client
posts back (``/response`` or ``/error``) is checked against the case's expectation.

Events file: a JSON list of ``{"name": ..., "event": ..., "expect": ...}`` where expect is
    {"kind": "response", "status_code": 200, "body_json_subset": {...}, "abs_tol": 1e-4}
    {"kind": "response", "json_subset": {...}, "abs_tol": 1e-4}
    {"kind": "error", "error_type": "BadRequest", "no_stack_trace": true}
``status_code`` and ``body_json_subset`` read an API Gateway proxy answer (its body is a
JSON string); ``json_subset`` reads the answer itself; numbers match within ``abs_tol``
(default 0: exactly); a subset's objects may hold more keys, its lists match item by item.

Outputs: a JUnit XML file (one testcase per case; system-out holds the path the client
posted to and the body it posted), a JSON report (python version, init time, first
invocation time, peak RSS of the client, the cases: each with its event and what the client
posted, the record a deploy's smoke test compares with) and a last stdout line
``N passed, M failed``.

Exit status: 0 every case passed; 1 a case failed; 2 bad arguments or events file;
3 the runtime client failed: it reported an init error, exited early, or did not answer
within --timeout (the cases not run are reported as failed).

Standard library only; runs on Python 3.9 to 3.14 (awslambdaric itself needs 3.10+).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API = "/2018-06-01/runtime"
NEXT_PATH = f"{API}/invocation/next"
INIT_ERROR_PATH = f"{API}/init/error"
RESULT_PATH = re.compile(rf"{re.escape(API)}/invocation/([^/?]+)/(response|error)")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CLIENT = 0, 1, 2, 3
STOP_GRACE_SECONDS = 2.0
POLL_SECONDS = 0.05
STDERR_TAIL_LINES = 20
CLIENT_LOG_LINES = 2000
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Lambda's own library path, with the runtime dir, task root and layer dir substituted.
SYSTEM_LIBRARY_DIRS = ("/var/lang/lib", "/lib64", "/usr/lib64")
ACCOUNT_ID = "123456789012"
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

RESPONSE_CHECKS = ("status_code", "body_json_subset", "json_subset")
EXPECT_KEYS = {
    "response": {"kind", "abs_tol", *RESPONSE_CHECKS},
    "error": {"kind", "error_type", "no_stack_trace"},
}


class BodyTooLarge(ValueError):
    """A request body over the handler's max_body."""


class UsageError(Exception):
    """Bad arguments, events file or host: nothing was started (exit 2)."""


# ------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    event: Any
    expect: dict[str, Any]


def _check_expect(name: str, expect: Any) -> dict[str, Any]:
    if not isinstance(expect, dict) or expect.get("kind") not in EXPECT_KEYS:
        raise UsageError(f"case {name!r}: expect must be an object with kind response or error")
    kind = expect["kind"]
    unknown = sorted(set(expect) - EXPECT_KEYS[kind])
    if unknown:
        raise UsageError(f"case {name!r}: unknown key(s) for kind {kind}: {', '.join(unknown)}")
    if kind == "error" and not isinstance(expect.get("error_type"), str):
        raise UsageError(f"case {name!r}: an error expectation needs error_type (a string)")
    if kind == "response" and not any(check in expect for check in RESPONSE_CHECKS):
        raise UsageError(f"case {name!r}: a response expectation needs one of {RESPONSE_CHECKS}")
    status = expect.get("status_code")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise UsageError(f"case {name!r}: status_code must be an integer")
    tol = expect.get("abs_tol", 0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise UsageError(f"case {name!r}: abs_tol must be a number >= 0")
    return expect


def parse_cases(data: Any) -> list[Case]:
    """The cases of an events file's JSON, checked; UsageError names the bad case."""
    if not isinstance(data, list) or not data:
        raise UsageError("the events file must hold a non-empty JSON list of cases")
    cases: list[Case] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise UsageError(f"case #{index}: each case needs a name (a non-empty string)")
        name = item["name"]
        if any(case.name == name for case in cases):
            raise UsageError(f"case {name!r}: the name is used twice")
        unknown = sorted(set(item) - {"name", "event", "expect"})
        if unknown or "event" not in item:
            raise UsageError(f"case {name!r}: a case has exactly name, event and expect")
        cases.append(Case(name, item["event"], _check_expect(name, item.get("expect"))))
    return cases


def without_keys(expected: Any, keys: frozenset[str]) -> Any:
    """``expected`` with every object key in ``keys`` dropped, at any depth."""
    if isinstance(expected, dict):
        return {k: without_keys(v, keys) for k, v in expected.items() if k not in keys}
    if isinstance(expected, list):
        return [without_keys(item, keys) for item in expected]
    return expected


def ignoring(cases: list[Case], keys: Sequence[str]) -> list[Case]:
    """The cases with ``keys`` left out of what their answers are compared with (e.g. the
    probabilities one model gives, when another model is served)."""
    if not keys:
        return cases
    drop = frozenset(keys)
    return [
        Case(
            case.name,
            case.event,
            {
                **case.expect,
                **{
                    check: without_keys(case.expect[check], drop)
                    for check in ("json_subset", "body_json_subset")
                    if check in case.expect
                },
            },
        )
        for case in cases
    ]


def load_cases(path: str) -> list[Case]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read the events file: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"the events file {path} is not JSON: {exc}") from exc
    return parse_cases(data)


# --------------------------------------------------------------------- expectations


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def subset_mismatches(expected: Any, actual: Any, where: str, tol: float) -> list[str]:
    """How ``actual`` fails to contain ``expected`` (numbers within ``tol``); [] if it does."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {_show(actual)}"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += subset_mismatches(value, actual[key], f"{where}.{key}", tol)
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected a list of {len(expected)}, got {_show(actual)}"]
        problems = []
        for index, (want, got) in enumerate(zip(expected, actual)):
            problems += subset_mismatches(want, got, f"{where}[{index}]", tol)
        return problems
    if _is_number(expected):
        if _is_number(actual) and math.isclose(actual, expected, rel_tol=0.0, abs_tol=tol):
            return []
        within = f" (abs_tol {tol:g})" if tol else ""
        return [f"{where}: expected {_show(expected)}{within}, got {_show(actual)}"]
    if type(actual) is type(expected) and actual == expected:
        return []
    return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]


def _error_summary(posted: Any) -> str:
    if isinstance(posted, dict):
        return f"{posted.get('errorType')}: {posted.get('errorMessage')}"
    return _show(posted)


def _response_problems(expect: dict[str, Any], posted: Any) -> list[str]:
    tol = float(expect.get("abs_tol", 0))
    problems: list[str] = []
    if "status_code" in expect:
        status = posted.get("statusCode") if isinstance(posted, dict) else None
        if not _is_number(status) or status != expect["status_code"]:
            problems.append(f"statusCode: expected {expect['status_code']}, got {_show(status)}")
    if "json_subset" in expect:
        problems += subset_mismatches(expect["json_subset"], posted, "$", tol)
    if "body_json_subset" in expect:
        body = posted.get("body") if isinstance(posted, dict) else None
        try:
            parsed = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            body = None
        if not isinstance(body, str):
            problems.append(f"body: expected a string of JSON, got {_show(posted)}")
        else:
            problems += subset_mismatches(expect["body_json_subset"], parsed, "body", tol)
    return problems


def judge(expect: dict[str, Any], kind: str, body: bytes) -> str | None:
    """Why a posted ``kind`` ("response"/"error") and ``body`` fail ``expect``; None if not."""
    try:
        posted = json.loads(body)
    except ValueError:
        return f"the client posted a {kind} that is not JSON: {body[:200]!r}"
    if kind != expect["kind"]:
        if kind == "error":
            return f"expected a response, the client posted an error: {_error_summary(posted)}"
        want = expect["error_type"]
        return f"expected error {want}, the client posted a response: {_show(posted)}"
    if kind == "error":
        got = posted.get("errorType") if isinstance(posted, dict) else None
        if got != expect["error_type"]:
            return f"expected error {expect['error_type']}, got {_error_summary(posted)}"
        if expect.get("no_stack_trace") and posted.get("stackTrace"):
            frames = posted["stackTrace"]
            return f"expected no stack frames, the caller is shown {len(frames)}: {_show(frames)}"
        return None
    problems = _response_problems(expect, posted)
    return "; ".join(problems) if problems else None


# ---------------------------------------------------------------------- Runtime API


@dataclass
class Invocation:
    """One event handed to the client, and what it posted back."""

    request_id: str
    payload: bytes
    handed_out: float | None = None
    answered: float | None = None
    kind: str | None = None
    posted_to: str | None = None
    body: bytes = b""

    @property
    def seconds(self) -> float | None:
        if self.handed_out is None or self.answered is None:
            return None
        return self.answered - self.handed_out


@dataclass(frozen=True)
class InitError:
    error_type: str
    body: bytes

    def describe(self) -> str:
        try:
            posted = json.loads(self.body)
        except ValueError:
            posted = None
        if isinstance(posted, dict):
            summary = _error_summary(posted)
        else:
            summary = self.body.decode("utf-8", "replace") or "(no body)"
        if self.error_type and not summary.startswith(f"{self.error_type}:"):
            summary += f" (Lambda-Runtime-Function-Error-Type: {self.error_type})"
        return f"the runtime client reported an init error: {summary}"


ANSWERED, INIT_FAILED, EXITED, TIMED_OUT = "answered", "init error", "exited", "timed out"


class RuntimeApi:
    """What the Runtime API server shares with the driver: one invocation at a time."""

    def __init__(self, function_arn: str, deadline_seconds: float) -> None:
        self.function_arn = function_arn
        self.deadline_seconds = deadline_seconds
        self.first_next: float | None = None
        self.init_error: InitError | None = None
        self._cond = threading.Condition()
        self._queued: deque[Invocation] = deque()
        self._in_flight: dict[str, Invocation] = {}
        self._closed = False

    def submit(self, event: Any) -> Invocation:
        invocation = Invocation(str(uuid.uuid4()), json.dumps(event).encode("utf-8"))
        with self._cond:
            self._queued.append(invocation)
            self._cond.notify_all()
        return invocation

    def next_invocation(self) -> Invocation | None:
        """Block until an invocation is queued (None once closed), and hand it out."""
        with self._cond:
            if self.first_next is None:
                self.first_next = time.monotonic()
            while not self._queued and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            invocation = self._queued.popleft()
            invocation.handed_out = time.monotonic()
            self._in_flight[invocation.request_id] = invocation
            return invocation

    def post_result(self, request_id: str, kind: str, path: str, body: bytes) -> bool:
        """Record a response or error; False for an id not in flight (Lambda answers 400)."""
        with self._cond:
            invocation = self._in_flight.pop(request_id, None)
            if invocation is None:
                return False
            invocation.answered = time.monotonic()
            invocation.kind, invocation.posted_to, invocation.body = kind, path, body
            self._cond.notify_all()
            return True

    def post_init_error(self, error_type: str, body: bytes) -> None:
        with self._cond:
            if self.init_error is None:
                self.init_error = InitError(error_type, body)
            self._cond.notify_all()

    def wait_for(self, invocation: Invocation, timeout: float, alive: Callable[[], bool]) -> str:
        """ANSWERED, INIT_FAILED, EXITED (the client died) or TIMED_OUT."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                if invocation.answered is not None:
                    return ANSWERED
                if self.init_error is not None:
                    return INIT_FAILED
                if not alive():
                    return EXITED
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return TIMED_OUT
                self._cond.wait(min(remaining, POLL_SECONDS))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next_headers(self, invocation: Invocation) -> dict[str, str]:
        deadline_ms = int((time.time() + self.deadline_seconds) * 1000)
        trace = uuid.uuid4().hex
        return {
            # awslambdaric parses the event as JSON only for exactly "application/json".
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
            "Lambda-Runtime-Trace-Id": (
                f"Root=1-{int(time.time()):08x}-{trace[:24]};Parent={trace[16:]};Sampled=0"
            ),
        }


def _json_bytes(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


ACCEPTED = _json_bytes({"status": "OK"})


class RuntimeApiHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with Content-Length on every answer, so clients keep the connection."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave at once
    server: RuntimeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the client's posts are in the report."""

    def do_GET(self) -> None:
        if self.path != NEXT_PATH:
            self._send(404, _json_bytes({"errorType": "NotFound", "errorMessage": self.path}))
            return
        invocation = self.server.api.next_invocation()
        if invocation is None:
            self.close_connection = True
            self._send(410, _json_bytes({"errorType": "Gone", "errorMessage": "API stopped"}))
            return
        self._send(200, invocation.payload, self.server.api.next_headers(invocation))

    def do_POST(self) -> None:
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._send(400, _json_bytes({"errorType": "BadRequest", "errorMessage": str(exc)}))
            return
        if self.path == INIT_ERROR_PATH:
            error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
            self.server.api.post_init_error(error_type, body)
            self._send(202, ACCEPTED)
            return
        match = RESULT_PATH.fullmatch(self.path)
        if match is None:
            self._send(404, _json_bytes({"errorType": "NotFound", "errorMessage": self.path}))
        elif self.server.api.post_result(match.group(1), match.group(2), self.path, body):
            self._send(202, ACCEPTED)
        else:
            invalid = {"errorType": "InvalidRequestID", "errorMessage": "Invalid request ID"}
            self._send(400, _json_bytes(invalid))

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            if not length.strip().isdigit():
                raise ValueError(f"bad Content-Length {length!r}")
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        return b""

    # Largest body a chunked request may send (None: no limit); a larger one is refused
    # while it is read, never held whole.
    max_body: int | None = None

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(65537).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                raise ValueError(f"bad chunk size {size_line!r}") from exc
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if self.max_body is not None and total > self.max_body:
                raise BodyTooLarge(f"the body is larger than {self.max_body} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(65537)

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            headers = headers or {"Content-Type": "application/json"}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client is gone (stopped, or crashed)


class RuntimeApiServer(ThreadingHTTPServer):
    daemon_threads = True  # a GET /next still waiting never holds up the exit

    def __init__(self, api: RuntimeApi) -> None:
        super().__init__(("127.0.0.1", 0), RuntimeApiHandler)
        self.api = api
        self._thread = threading.Thread(target=self.serve_forever, args=(POLL_SECONDS,))
        self._thread.daemon = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-request (stopped, or crashed) is not the server's error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.api.close()
        self.shutdown()
        self.server_close()
        self._thread.join(5)


# ---------------------------------------------------------------------- the client


def interpreter_version(python: str) -> str:
    """The full version of ``python`` (e.g. 3.13.5), run isolated from this environment."""
    command = [python, "-I", "-c", "import platform; print(platform.python_version())"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", DEFAULT_PATH)},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run the interpreter {python}: {exc}") from exc
    version = done.stdout.strip()
    if done.returncode != 0 or not re.fullmatch(r"3\.\d+\.\d+\S*", version):
        raise UsageError(f"{python} is not a working Python 3: {done.stderr.strip()[-300:]}")
    return version


def lambda_environment(args: argparse.Namespace, version: str, api: str) -> dict[str, str]:
    """The client's whole environment: Lambda's python runtime variables, PATH, --env."""
    minor = ".".join(version.split(".")[:2])
    task, runtime, opt = args.task_root, args.runtime_dir, args.opt_dir
    region, name = args.region, args.function_name
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": ":".join(
            [*SYSTEM_LIBRARY_DIRS, runtime, f"{runtime}/lib", task, f"{task}/lib", f"{opt}/lib"]
        ),
        "PYTHONPATH": ":".join(
            [task, f"{opt}/python/lib/python{minor}/site-packages", f"{opt}/python", runtime]
        ),
        "LAMBDA_TASK_ROOT": task,
        "LAMBDA_RUNTIME_DIR": runtime,
        "AWS_LAMBDA_RUNTIME_API": api,
        "_HANDLER": args.handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{minor}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime())
        + uuid.uuid4().hex,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    env.update(args.env)
    return env


def run_as(user: str) -> list[str]:
    """The setpriv prefix that runs a command as ``user`` (a name or a uid)."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError as exc:
        raise UsageError(f"--user {user}: no such user on this host") from exc
    if os.geteuid() != 0:
        raise UsageError(f"--user {user} needs root: run this script as root")
    setpriv = shutil.which("setpriv", path=os.environ.get("PATH", DEFAULT_PATH))
    if setpriv is None:
        raise UsageError(
            "--user needs setpriv, which is missing: install util-linux "
            "(Debian: util-linux; Amazon Linux: util-linux or util-linux-core)"
        )
    return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


class Client:
    """The runtime client process: its output is kept (and echoed to stderr)."""

    def __init__(self, command: Sequence[str], env: dict[str, str], cwd: str) -> None:
        self.command, self.env, self.cwd = list(command), env, cwd
        self.started = 0.0
        self.log: deque[str] = deque(maxlen=CLIENT_LOG_LINES)
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: stop() reaches all of it
            )
        except OSError as exc:
            raise UsageError(f"cannot start the runtime client {self.command}: {exc}") from exc
        for stream, label in ((self._proc.stdout, "out"), (self._proc.stderr, "err")):
            reader = threading.Thread(target=self._read, args=(stream, label), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, stream: Any, label: str) -> None:
        for raw in iter(stream.readline, b""):
            # awslambdaric joins the lines of an error report with \r (one log record).
            line = raw.decode("utf-8", "replace").rstrip("\n").replace("\r", "\n    ")
            with self._lock:
                self.log.append(f"[{label}] {line}")
                if label == "err":
                    self.stderr_tail.append(line)
            sys.stderr.write(f"client {label}| {line}\n")
        stream.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def peak_rss_mb(self) -> float | None:
        """VmHWM of the (still running) client: setpriv execs, so the pid is the client's."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024.0, 1)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def _signal(self, signum: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self._proc.pid, signum)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_SECONDS; the output is read to its end."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._signal(signal.SIGKILL)  # anything it left behind in its group
        self.finish_reading()

    def finish_reading(self) -> None:
        for reader in self._readers:
            reader.join(2)

    def last_stderr(self) -> str:
        with self._lock:
            lines = list(self.stderr_tail)
        return "\n".join(f"    {line}" for line in lines) if lines else "    (nothing)"


# ------------------------------------------------------------------------- the run


@dataclass
class CaseResult:
    name: str
    passed: bool
    posted_to: str | None = None
    body: str | None = None
    seconds: float | None = None
    message: str | None = None
    error: bool = False  # the client failed (JUnit <error>), not the expectation
    # The event handed out, and what the client posted ("response"/"error"): with body, the
    # record a deploy's smoke test compares the deployed function's answers with.
    event: Any = None
    kind: str | None = None


@dataclass
class RunResult:
    python: str
    cases: list[CaseResult] = field(default_factory=list)
    init_s: float | None = None
    first_invoke_s: float | None = None
    peak_rss_mb: float | None = None
    error: str | None = None
    client_log: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(case.passed for case in self.cases)

    @property
    def failed(self) -> int:
        return len(self.cases) - self.passed


def _exit_description(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _client_failure(state: str, case: Case, client: Client, api: RuntimeApi, timeout: float) -> str:
    if state == INIT_FAILED and api.init_error is not None:
        return api.init_error.describe()
    if state == EXITED:
        client.finish_reading()
        return (
            f"the runtime client {_exit_description(client.returncode())} before answering "
            f"case {case.name!r}; its last stderr lines:\n{client.last_stderr()}"
        )
    waiting = "" if api.first_next is not None else " (it never asked for an event: init)"
    return f"the runtime client did not answer case {case.name!r} within {timeout:g} s{waiting}"


def _case_result(case: Case, invocation: Invocation) -> CaseResult:
    message = judge(case.expect, invocation.kind or "", invocation.body)
    return CaseResult(
        name=case.name,
        passed=message is None,
        posted_to=invocation.posted_to,
        body=invocation.body.decode("utf-8", "replace"),
        seconds=None if invocation.seconds is None else round(invocation.seconds, 6),
        message=message,
        event=case.event,
        kind=invocation.kind,
    )


def drive(cases: Sequence[Case], api: RuntimeApi, client: Client, timeout: float) -> RunResult:
    """Hand the cases out one by one; stop at the first client failure."""
    result = RunResult(python="")
    client.start()
    for case in cases:
        if result.error is not None:
            result.cases.append(
                CaseResult(case.name, False, message=f"not run: {result.error}", error=True)
            )
            continue
        invocation = api.submit(case.event)
        state = api.wait_for(invocation, timeout, client.alive)
        if state == ANSWERED:
            result.cases.append(_case_result(case, invocation))
        else:
            result.error = _client_failure(state, case, client, api, timeout)
            result.cases.append(CaseResult(case.name, False, message=result.error, error=True))
    if api.first_next is not None:
        result.init_s = round(api.first_next - client.started, 6)
    if result.cases and result.cases[0].seconds is not None:
        result.first_invoke_s = result.cases[0].seconds
    result.peak_rss_mb = client.peak_rss_mb()
    return result


# ----------------------------------------------------------------------- the outputs


def _xml_text(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(result: RunResult) -> ET.ElementTree:
    """<testsuites> holding one <testsuite>, as pytest writes its JUnit files."""
    errors = sum(case.error for case in result.cases)
    total = sum(case.seconds or 0.0 for case in result.cases)
    suites = ET.Element("testsuites", {"name": "lambda-runtime"})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": "lambda-runtime",
            "tests": str(len(result.cases)),
            "failures": str(result.failed - errors),
            "errors": str(errors),
            "skipped": "0",
            "time": f"{total:.6f}",
            "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name in ("python", "init_s", "first_invoke_s", "peak_rss_mb"):
        value = getattr(result, name)
        text = "" if value is None else str(value)
        ET.SubElement(properties, "property", {"name": name, "value": text})
    for case in result.cases:
        element = ET.SubElement(
            suite,
            "testcase",
            {"classname": "lambda_invoke", "name": case.name, "time": f"{case.seconds or 0:.6f}"},
        )
        if not case.passed:
            tag = "error" if case.error else "failure"
            message = _xml_text(case.message or "")
            ET.SubElement(element, tag, {"message": message.splitlines()[0] if message else ""})
            element[-1].text = message
        if case.posted_to is not None:
            out = ET.SubElement(element, "system-out")
            out.text = _xml_text(f"POST {case.posted_to}\n{case.body}")
    if result.client_log:
        ET.SubElement(suite, "system-err").text = _xml_text("\n".join(result.client_log))
    return ET.ElementTree(suites)


def report_json(result: RunResult) -> dict[str, Any]:
    return {
        "python": result.python,
        "init_s": result.init_s,
        "first_invoke_s": result.first_invoke_s,
        "peak_rss_mb": result.peak_rss_mb,
        "cases": [
            {
                "name": case.name,
                "passed": case.passed,
                "event": case.event,
                "kind": case.kind,
                "posted_to": case.posted_to,
                "body": case.body,
                "seconds": case.seconds,
                "message": case.message,
            }
            for case in result.cases
        ],
        "passed": result.passed,
        "failed": result.failed,
        "error": result.error,
    }


def write_outputs(result: RunResult, junit: str, report: str) -> None:
    for path in (junit, report):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    junit_xml(result).write(junit, encoding="utf-8", xml_declaration=True)
    with open(report, "w", encoding="utf-8") as handle:
        json.dump(report_json(result), handle, indent=2)
        handle.write("\n")


# --------------------------------------------------------------------------- the CLI


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Invoke a handler through awslambdaric against a local Runtime API."
    )
    parser.add_argument("--python", required=True, help="interpreter that runs the client")
    parser.add_argument("--task-root", default="/var/task", help="the unpacked function")
    parser.add_argument("--runtime-dir", default="/var/runtime", help="awslambdaric's wheels")
    parser.add_argument("--opt-dir", default="/opt", help="where layers are unpacked")
    parser.add_argument("--events", required=True, help="JSON list of cases")
    parser.add_argument("--junit", required=True, help="JUnit XML file to write")
    parser.add_argument("--report", required=True, help="JSON report to write")
    parser.add_argument("--user", help="run the client as this user (needs root and setpriv)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each answer"
    )
    parser.add_argument(
        "--ignore-key",
        action="append",
        default=[],
        metavar="KEY",
        help="leave this key out of the expected answers, at any depth (repeatable)",
    )
    parser.add_argument("--handler", default="handler.lambda_handler", help="module.function")
    parser.add_argument("--client-module", default="awslambdaric", help="run as -m MODULE")
    parser.add_argument("--function-name", default="lambda-invoke-test")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra variable for the client (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    for name in ("task_root", "runtime_dir", "opt_dir"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    if not os.path.isdir(args.task_root):
        parser.error(f"--task-root {args.task_root} is not a directory")
    args.env = dict(args.env)
    return args


def _prepare(args: argparse.Namespace) -> tuple[list[Case], str, list[str]]:
    cases = ignoring(load_cases(args.events), args.ignore_key)
    version = interpreter_version(args.python)
    prefix = run_as(args.user) if args.user else []
    return cases, version, [*prefix, args.python, "-m", args.client_module, args.handler]


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the client


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cases, version, command = _prepare(args)
    except UsageError as exc:
        print(f"lambda_invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    arn = f"arn:aws:lambda:{args.region}:{ACCOUNT_ID}:function:{args.function_name}"
    api = RuntimeApi(arn, args.timeout)
    server = RuntimeApiServer(api)
    client = Client(command, lambda_environment(args, version, server.address), args.task_root)
    server.start()
    try:
        result = drive(cases, api, client, args.timeout)
    except UsageError as exc:
        print(f"lambda_invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.stop()
        server.stop()
    result.python = version
    result.client_log = list(client.log)
    write_outputs(result, args.junit, args.report)
    for case in result.cases:
        if not case.passed:
            print(f"FAILED {case.name}: {case.message}", file=sys.stderr)
    if result.error is not None:
        print(f"lambda_invoke: {result.error}", file=sys.stderr)
    print(f"{result.passed} passed, {result.failed} failed")
    if result.error is not None:
        return EXIT_CLIENT
    return EXIT_OK if result.failed == 0 else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
