#!/usr/bin/env python3
"""A released package served as a local function, the way Lambda behind API Gateway serves it.

One long-lived front process on the controller (standard library only) serves:

* an HTTP endpoint on 127.0.0.1:<port> that turns each request into an API Gateway HTTP
  API (payload format 2.0) event, hands it to a free execution environment, and turns the
  function's proxy answer (statusCode, headers, body) back into the HTTP response, with
  ``X-Function-Version`` naming the release that answered. A function error answers 502,
  an invocation that times out 504, a request no environment took within the timeout 429;
  each with a short JSON body, never a stack trace;
* one Lambda Runtime API (2018-06-01) per execution environment, on 127.0.0.1 (the Runtime
  API of roles/package_test/files/lambda_invoke.py, shared, not copied);
* a control API on a unix socket (``<state dir>/control.sock``, mode 0600) that the role's
  ``deploy``, ``status`` and ``stop`` commands talk to.

Each execution environment is a podman container of the Lambda stand-in image: the package
unpacked read-only at /var/task, awslambdaric at /var/runtime, a read-only root with a
tmpfs /tmp, ``--memory`` and ``--memory-swap`` at the function's memory size, run as
nobody, host networking (it reaches its Runtime API on 127.0.0.1), running
``<python> -m awslambdaric handler.lambda_handler`` with Lambda's environment variables.
An environment takes one invocation at a time; requests wait for a free one in arrival
order. An environment whose client dies or times out is replaced.

A deploy (blue/green, inside the front): the new release's environments start and finish
their init (the runtime client's first ``GET /invocation/next``) while the old ones serve;
then new requests go to the new ones, the old ones finish what they hold, and are stopped.
A deploy that fails (init error, client exits, init timeout) stops its own environments
and leaves the serving release as it was. No request is dropped either way.

Commands (each prints one JSON object on stdout; errors go to stderr, exit 1):

    local_function.py start  --state-dir D --port P    start the front unless it runs
    local_function.py deploy --state-dir D --package ZIP --version V [--environments N ...]
    local_function.py status --state-dir D
    local_function.py stop   --state-dir D [--id ID]   stop the front and its containers,
                                                        remove the state folder
    local_function.py serve  --state-dir D --port P    the front itself (start runs it)

The state folder holds ``state.json`` (pid, port, url, version, sha256, environments,
containers), ``control.sock``, ``front.log`` (the front's and the functions' output),
``tasks/<sha256 prefix>/`` (unpacked packages) and ``runtime/`` (awslambdaric).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import hashlib
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

# The Runtime API, the runtime client process and Lambda's environment variables come from
# package_test's stand-in: next to this file when copied, else in the source tree.
_HERE = Path(__file__).resolve().parent
for _candidate in (_HERE, _HERE.parents[1] / "package_test" / "files"):
    if (_candidate / "lambda_invoke" / "__init__.py").is_file():
        sys.path.insert(0, str(_candidate))
        break
import lambda_invoke as li  # noqa: E402

ID_LABEL = "r-lambda.local_function"
VERSION_LABEL = "r-lambda.version"
MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation limit
CONTROL_TIMEOUT = 900.0
READY_POLL = 0.05
STOP_WAIT_SECONDS = 20.0
CONTAINER_PATH = "/usr/local/bin:/usr/bin:/bin"
NOBODY = "65534:65534"
TASK_ROOT, RUNTIME_DIR = "/var/task", "/var/runtime"
TEXT_TYPES = re.compile(r"^(text/|application/(json|.*\+json|xml|.*\+xml|x-www-form-urlencoded))")


class FrontError(Exception):
    """A message for the operator: what failed and what to do."""


# -------------------------------------------------------------------- the event mapping


def http_api_event(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str,
    domain: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event of one request, route $default.

    Header names are lower-cased and repeated headers joined with commas; cookies move to
    ``cookies``; repeated query parameters are joined with commas; a body that is not
    UTF-8 text of a text type is base64-encoded (``isBase64Encoded``); no body, no key.
    """
    now = time.time() if now is None else now
    parts = urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    path = parts.path or "/"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.query,
        "headers": joined,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": li.ACCOUNT_ID,
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": domain.split(".")[0],
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if body:
        text = _as_text(body, joined.get("content-type", ""))
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def _as_text(body: bytes, content_type: str) -> str | None:
    if content_type and not TEXT_TYPES.match(content_type.lower()):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_answer(status: int, payload: dict[str, Any]) -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Answer(status, [("Content-Type", "application/json")], body)


def proxy_answer(kind: str, posted: bytes, request_id: str) -> Answer:
    """The HTTP answer API Gateway (payload 2.0) makes of what the function posted.

    An error posted to ``/error`` answers 502 naming only its errorType. A JSON object with
    ``statusCode`` is a proxy answer (headers, multiValueHeaders, cookies, body,
    isBase64Encoded); any other JSON is the body of a 200 application/json answer.
    """
    try:
        result = json.loads(posted)
    except ValueError:
        result = None
        if kind == "response":
            return _json_answer(502, {"message": "the function's answer is not JSON",
                                      "request_id": request_id})
    if kind == "error":
        error_type = result.get("errorType") if isinstance(result, dict) else None
        return _json_answer(502, {"message": "the function failed", "error_type": error_type,
                                  "request_id": request_id})
    if not (isinstance(result, dict) and "statusCode" in result):
        return Answer(200, [("Content-Type", "application/json")], posted)
    status = result.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return _json_answer(502, {"message": f"the function answered statusCode {status!r}",
                                  "request_id": request_id})
    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(str(name), str(value)) for value in values]
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    headers += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or []]
    body = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded") is True:
        try:
            data = base64.b64decode(str(body), validate=True)
        except ValueError:
            return _json_answer(502, {"message": "the function's body is not base64",
                                      "request_id": request_id})
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
    return Answer(status, headers, data)


# -------------------------------------------------------------------- environments


@dataclass(frozen=True)
class Spec:
    """What a deploy asks for; equal specs mean nothing to change."""

    package: str
    sha256: str
    version: str
    environments: int
    image: str
    python: str
    memory: str
    timeout: float
    init_timeout: float
    handler: str
    function_name: str
    wheels: str
    # The function's own environment variables (e.g. MODEL_SHA256); Lambda's win over them.
    variables: dict = field(default_factory=dict)


def memory_mb(memory: str) -> int:
    match = re.fullmatch(r"(\d+)([mMgG]?)", memory.strip())
    if not match:
        raise FrontError(f"memory {memory!r}: expected a size such as 128m")
    number = int(match.group(1))
    return number * 1024 if match.group(2).lower() == "g" else number


class Environment:
    """One execution environment: a container running the runtime client against its own
    Runtime API. ``busy`` and ``dead`` are guarded by the dispatcher's lock."""

    def __init__(self, name: str, api: Any, server: Any, client: Any) -> None:
        self.name, self.api, self.server, self.client = name, api, server, client
        self.busy = False
        self.dead = False
        self.invocations = 0

    def usable(self) -> bool:
        return not self.busy and not self.dead and self.api.first_next is not None

    def alive(self) -> bool:
        return self.client.alive()


@dataclass
class Generation:
    number: int
    spec: Spec
    task_dir: Path
    environments: list[Any] = field(default_factory=list)


class Dispatcher:
    """Hands each request to a free environment of the serving generation, one invocation
    at a time per environment; the others wait, first come first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.active: Generation | None = None

    def acquire(self, timeout: float) -> Any | None:
        """A free environment, marked busy; None when none came free within ``timeout``."""
        ticket = object()
        end = time.monotonic() + timeout
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if self._queue[0] is ticket and self.active is not None:
                        for env in self.active.environments:
                            if env.usable():
                                env.busy = True
                                return env
                    remaining = end - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, env: Any, dead: bool = False) -> None:
        with self._cond:
            env.busy = False
            env.dead = env.dead or dead
            self._cond.notify_all()

    def replace(self, generation: Generation, old: Any, new: Any) -> bool:
        """Put ``new`` in place of ``old`` while ``generation`` still serves; False (and no
        change) once another generation took over: the caller stops ``new``."""
        with self._cond:
            if self.active is not generation:
                return False
            generation.environments[generation.environments.index(old)] = new
            self._cond.notify_all()
            return True

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def activate(self, generation: Generation | None) -> Generation | None:
        """Send new requests to ``generation``; the one it replaces is returned."""
        with self._cond:
            old, self.active = self.active, generation
            self._cond.notify_all()
            return old

    def wait_idle(self, generation: Generation, timeout: float) -> bool:
        """Wait until no environment of ``generation`` holds an invocation."""
        end = time.monotonic() + timeout
        with self._cond:
            while any(env.busy for env in generation.environments):
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


def unpack(zip_path: Path, dest: Path) -> None:
    """Unzip as Lambda does (each file keeps its entry's mode), into a folder renamed
    into place when complete."""
    part = dest.with_name(f"{dest.name}.part-{os.getpid()}")
    shutil.rmtree(part, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            path = archive.extract(info, part)
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(path, mode)
    for root, dirs, _ in os.walk(part):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    part.chmod(0o755)
    try:
        part.rename(dest)
    except OSError:
        shutil.rmtree(part, ignore_errors=True)
        if not dest.is_dir():
            raise


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Front:
    """The deployments of one state folder: generations of environments behind the endpoint."""

    def __init__(self, state_dir: Path, port: int, id_: str) -> None:
        self.state_dir, self.port, self.id = state_dir, port, id_
        self.dispatcher = Dispatcher()
        self._deploy_lock = threading.Lock()
        self._generations = 0
        self._stopping = False
        self.started_at = time.time()
        self.requests = 0
        self.last_error: str | None = None

    # ---- state

    def state(self) -> dict[str, Any]:
        generation = self.dispatcher.active
        state: dict[str, Any] = {
            "id": self.id,
            "pid": os.getpid(),
            "port": self.port,
            "url": f"http://127.0.0.1:{self.port}/",
            "control": str(self.state_dir / "control.sock"),
            "started_at": self.started_at,
            "requests": self.requests,
            "last_error": self.last_error,
        }
        if generation is not None:
            spec = asdict(generation.spec)
            state.update(spec)
            state["generation"] = generation.number
            state["containers"] = [env.name for env in generation.environments]
        return state

    def write_state(self) -> None:
        path = self.state_dir / "state.json"
        part = path.with_suffix(".json.part")
        part.write_text(json.dumps(self.state(), indent=2, sort_keys=True) + "\n")
        part.replace(path)

    # ---- environments

    def _runtime_dir(self, wheels: Path) -> Path:
        found = sorted(wheels.glob("*.whl"))
        if not found:
            raise FrontError(f"no awslambdaric wheels in {wheels}")
        key = hashlib.sha256("\n".join(p.name for p in found).encode()).hexdigest()[:12]
        runtime = self.state_dir / "runtime" / key
        if not runtime.is_dir():
            runtime.parent.mkdir(parents=True, exist_ok=True)
            part = runtime.with_name(f"{key}.part-{os.getpid()}")
            shutil.rmtree(part, ignore_errors=True)
            part.mkdir()
            for wheel in found:
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(part)
            for root, dirs, files in os.walk(part):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o755)
                for name in files:
                    os.chmod(os.path.join(root, name), 0o644)
            part.chmod(0o755)
            part.rename(runtime)
        return runtime

    def _task_dir(self, spec: Spec) -> Path:
        task = self.state_dir / "tasks" / spec.sha256[:16]
        if not task.is_dir():
            task.parent.mkdir(parents=True, exist_ok=True)
            unpack(Path(spec.package), task)
        return task

    def container_command(self, name: str, generation: Generation, runtime: Path,
                          env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command that runs one environment's runtime client, and its own environment
        (podman's: the client's variables go in with -e)."""
        spec = generation.spec
        command = [
            "podman", "run", "--rm", "--init", "--pull", "never", "--name", name,
            "--label", f"{ID_LABEL}={self.id}", "--label", f"{VERSION_LABEL}={spec.version}",
            "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777,size=512m",
            f"--memory={spec.memory}", f"--memory-swap={spec.memory}", "--network", "host",
            "--user", NOBODY, "--workdir", TASK_ROOT, "--stop-timeout", "1",
            "-v", f"{generation.task_dir}:{TASK_ROOT}:ro", "-v", f"{runtime}:{RUNTIME_DIR}:ro",
            *[arg for key, value in sorted(env.items()) for arg in ("-e", f"{key}={value}")],
            spec.image, spec.python, "-m", "awslambdaric", spec.handler,
        ]
        return command, dict(os.environ)

    def remove_container(self, name: str) -> None:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)

    def _environment(self, generation: Generation, index: int, runtime: Path) -> Environment:
        spec = generation.spec
        name = f"{self.id}-g{generation.number}-{index}-{uuid.uuid4().hex[:6]}"
        arn = f"arn:aws:lambda:us-east-1:{li.ACCOUNT_ID}:function:{spec.function_name}"
        api = li.RuntimeApi(arn, spec.timeout)
        server = li.RuntimeApiServer(api)
        minor = re.search(r"(\d+\.\d+)", spec.python)
        settings = argparse.Namespace(
            task_root=TASK_ROOT, runtime_dir=RUNTIME_DIR, opt_dir="/opt", region="us-east-1",
            function_name=spec.function_name, handler=spec.handler,
            env={**spec.variables,
                 "PATH": CONTAINER_PATH,
                 "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb(spec.memory)),
                 "AWS_LAMBDA_FUNCTION_VERSION": spec.version},
        )
        env = li.lambda_environment(settings, minor.group(1) if minor else "3", server.address)
        command, client_env = self.container_command(name, generation, runtime, env)
        client = li.Client(command, client_env, str(self.state_dir))
        server.start()
        try:
            client.start()
        except li.UsageError as exc:
            server.stop()
            raise FrontError(str(exc)) from exc
        return Environment(name, api, server, client)

    def _stop_environment(self, env: Environment) -> None:
        self.remove_container(env.name)
        env.client.stop()
        env.server.stop()

    def _wait_ready(self, environments: list[Environment], timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            waiting = [env for env in environments if env.api.first_next is None]
            if not waiting:
                return
            for env in waiting:
                if env.api.init_error is not None:
                    raise FrontError(f"{env.name}: {env.api.init_error.describe()}")
                if not env.alive():
                    env.client.finish_reading()
                    raise FrontError(
                        f"{env.name}: the runtime client "
                        f"{li._exit_description(env.client.returncode())} during init; "
                        f"its last stderr lines:\n{env.client.last_stderr()}")
            if time.monotonic() > end:
                raise FrontError(f"{waiting[0].name}: init did not finish within {timeout:g} s")
            time.sleep(READY_POLL)

    def _start_generation(self, spec: Spec) -> Generation:
        runtime = self._runtime_dir(Path(spec.wheels))
        self._generations += 1
        generation = Generation(self._generations, spec, self._task_dir(spec))
        try:
            for index in range(spec.environments):
                generation.environments.append(self._environment(generation, index, runtime))
            self._wait_ready(generation.environments, spec.init_timeout)
        except BaseException:
            for env in generation.environments:
                self._stop_environment(env)
            raise
        return generation

    def _retire(self, generation: Generation) -> None:
        """Let the old generation finish what it holds, then stop it."""
        self.dispatcher.wait_idle(generation, generation.spec.timeout + 5)
        for env in generation.environments:
            self._stop_environment(env)
        active = self.dispatcher.active
        if active is None or active.task_dir != generation.task_dir:
            shutil.rmtree(generation.task_dir, ignore_errors=True)

    def deploy(self, spec: Spec) -> dict[str, Any]:
        with self._deploy_lock:
            if self._stopping:
                raise FrontError("the front is stopping")
            active = self.dispatcher.active
            # The same bytes and settings, wherever the zip lies now: nothing to change.
            if active is not None and replace(active.spec, package=spec.package) == spec:
                return {**self.state(), "changed": False}
            try:
                generation = self._start_generation(spec)
            except FrontError as exc:
                self.last_error = f"deploy of {spec.version} failed: {exc}"
                self.write_state()
                raise
            old = self.dispatcher.activate(generation)
            self.last_error = None
            self.write_state()
            log(f"serving {spec.version} ({spec.sha256[:12]}) from {spec.environments} "
                f"environment(s), generation {generation.number}")
            if old is not None:
                self._retire(old)
                log(f"stopped generation {old.number} ({old.spec.version})")
            return {**self.state(), "changed": True}

    def _replace_later(self, generation: Generation, env: Environment) -> None:
        def replace() -> None:
            self._stop_environment(env)
            if self._stopping or self.dispatcher.active is not generation:
                return
            try:
                runtime = self._runtime_dir(Path(generation.spec.wheels))
                new = self._environment(generation, generation.environments.index(env), runtime)
                self._wait_ready([new], generation.spec.init_timeout)
            except (FrontError, ValueError) as exc:
                self.last_error = f"replacing {env.name} failed: {exc}"
                log(self.last_error)
                return
            if not self.dispatcher.replace(generation, env, new):
                self._stop_environment(new)  # a deploy retired its generation meanwhile
                return
            self.write_state()

        threading.Thread(target=replace, daemon=True).start()

    # ---- requests

    def invoke(self, event: dict[str, Any], request_id: str) -> tuple[Answer, str | None]:
        """The answer to one event, and the version that gave it (None: no environment)."""
        generation = self.dispatcher.active
        if generation is None:
            return _json_answer(503, {"message": "no function is deployed"}), None
        self.requests += 1
        env = self.dispatcher.acquire(generation.spec.timeout)
        if env is None:
            return _json_answer(429, {"message": "Too Many Requests: every environment "
                                                 "stayed busy", "request_id": request_id}), None
        generation = next(g for g in (self.dispatcher.active, generation)
                          if g is not None and env in g.environments)
        version = generation.spec.version
        invocation = env.api.submit(event)
        state = env.api.wait_for(invocation, generation.spec.timeout, env.alive)
        env.invocations += 1
        if state == li.ANSWERED:
            self.dispatcher.release(env)
            return proxy_answer(invocation.kind or "error", invocation.body, request_id), version
        self.dispatcher.release(env, dead=True)
        self._replace_later(generation, env)
        if state == li.TIMED_OUT:
            return _json_answer(504, {"message": "the function timed out after "
                                                 f"{generation.spec.timeout:g} s",
                                      "request_id": request_id}), version
        return _json_answer(502, {"message": "the function's environment ended",
                                  "request_id": request_id}), version

    def stop(self) -> None:
        with self._deploy_lock:
            self._stopping = True
            old = self.dispatcher.activate(None)
        if old is not None:
            self.dispatcher.wait_idle(old, 5)
            for env in old.environments:
                self._stop_environment(env)


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} local_function: {message}\n")
    sys.stderr.flush()


# ------------------------------------------------------------------ the HTTP servers


class EndpointHandler(li.RuntimeApiHandler):
    """The function's HTTP endpoint (reads bodies as the Runtime API does)."""

    server: EndpointServer
    max_body = MAX_PAYLOAD  # a chunked body too: refused while read

    def _serve(self) -> None:
        request_id = str(uuid.uuid4())
        length = self.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > MAX_PAYLOAD:
            self.close_connection = True
            self._answer(_json_answer(413, {"message": "Request Entity Too Large"}), None,
                         request_id)
            return
        try:
            body = self._read_body()
        except li.BodyTooLarge:
            self.close_connection = True
            self._answer(_json_answer(413, {"message": "Request Entity Too Large"}), None,
                         request_id)
            return
        except ValueError as exc:
            self.close_connection = True
            self._answer(_json_answer(400, {"message": str(exc)}), None, request_id)
            return
        event = http_api_event(self.command, self.path, list(self.headers.items()), body,
                               self.client_address[0], request_id,
                               f"127.0.0.1:{self.server.front.port}")
        answer, version = self.server.front.invoke(event, request_id)
        self._answer(answer, version, request_id)

    def _answer(self, answer: Answer, version: str | None, request_id: str) -> None:
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if version is not None:
                self.send_header("X-Function-Version", version)
            self.send_header("Apigw-Requestid", request_id)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, front: Front) -> None:
        self.front = front
        super().__init__(("127.0.0.1", port), EndpointHandler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ControlHandler(BaseHTTPRequestHandler):
    """POST /deploy (a Spec as JSON), GET /status, POST /stop."""

    server: ControlServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Deploys are logged by the front."""

    def address_string(self) -> str:
        return "control"

    def do_GET(self) -> None:
        if self.path == "/status":
            self._send(200, self.server.front.state())
        else:
            self._send(404, {"error": f"no {self.path}"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/stop":
            self._send(202, {"stopping": True})
            self.server.stop_requested.set()
            return
        if self.path != "/deploy":
            self._send(404, {"error": f"no {self.path}"})
            return
        try:
            spec = Spec(**json.loads(body))
            self._send(200, self.server.front.deploy(spec))
        except (FrontError, TypeError, ValueError, OSError) as exc:
            self._send(409, {"error": str(exc)})

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, front: Front) -> None:
        self.front = front
        self.stop_requested = threading.Event()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_umask = os.umask(0o177)
        try:
            super().__init__(str(path), ControlHandler)
        finally:
            os.umask(old_umask)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def control(state_dir: Path, method: str, path: str, payload: Any = None,
            timeout: float = CONTROL_TIMEOUT) -> dict[str, Any]:
    conn = UnixConnection(state_dir / "control.sock", timeout)
    try:
        body = None if payload is None else json.dumps(payload)
        conn.request(method, path, body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = json.loads(answer.read() or b"{}")
    except OSError as exc:
        raise FrontError(f"the front of {state_dir} does not answer: {exc}") from exc
    finally:
        conn.close()
    if answer.status >= 400:
        raise FrontError(data.get("error") or f"control {path} answered {answer.status}")
    return data


# ------------------------------------------------------------------------- commands


def read_state(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def front_alive(state: dict[str, Any]) -> bool:
    """The state's pid is a running front of this script (not a reused pid)."""
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"local_function.py") for part in cmdline) and b"serve" in cmdline


def who_listens(port: int) -> str:
    done = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                          text=True, check=False)
    found = re.findall(r'users:\(\("([^"]+)",pid=(\d+)', done.stdout)
    return ", ".join(f"{name} (pid {pid})" for name, pid in found) or "unknown"


def cmd_serve(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    ready = os.fdopen(args.ready_fd, "w") if args.ready_fd is not None else None

    def say(text: str) -> None:
        if ready is not None:
            ready.write(text)
            ready.close()

    front = Front(state_dir, args.port, args.id or f"r-lambda-fn-{args.port}")
    try:
        endpoint = EndpointServer(args.port, front)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            say(f"127.0.0.1:{args.port} is taken by another process: {who_listens(args.port)};"
                " stop it or choose another port (local_function_port)")
        else:
            say(f"cannot serve on 127.0.0.1:{args.port}: {exc}")
        return 1
    control_server = ControlServer(state_dir / "control.sock", front)
    stop = control_server.stop_requested
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threads = [threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
               for server in (endpoint, control_server)]
    for thread in threads:
        thread.start()
    front.write_state()
    log(f"serving http://127.0.0.1:{args.port}/ (pid {os.getpid()})")
    say("ready")
    while not stop.wait(1.0):
        pass
    log("stopping")
    endpoint.shutdown()
    front.stop()
    control_server.shutdown()
    endpoint.server_close()
    control_server.server_close()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "control.sock").unlink()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "state.json").unlink()
    log("stopped")
    return 0


def cmd_start(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    if front_alive(state):
        if state.get("port") == args.port:
            return {**state, "changed": False}
        # Another port: the front there stops (with its environments) before this one starts.
        cmd_stop(argparse.Namespace(state_dir=args.state_dir, id=None, keep_dir=True))
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)
    read_end, write_end = os.pipe()
    command = [sys.executable, str(Path(__file__).resolve()), "serve", "--state-dir",
               str(state_dir), "--port", str(args.port), "--ready-fd", str(write_end)]
    if args.id:
        command += ["--id", args.id]
    with open(state_dir / "front.log", "a") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                pass_fds=(write_end,), start_new_session=True,
                                cwd=str(state_dir))
    os.close(write_end)
    message = b""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        readable, _, _ = select.select([read_end], [], [], 0.2)
        if readable:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            message += chunk
    os.close(read_end)
    if message != b"ready":
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        text = message.decode() or f"the front did not start; see {state_dir}/front.log"
        raise FrontError(text)
    return {**read_state(state_dir), "changed": True}


def _variables(text: str) -> dict[str, str]:
    """--env-json: the function's environment variables (names as Lambda allows them)."""
    try:
        variables = json.loads(text)
    except ValueError as exc:
        raise FrontError(f"--env-json is not JSON: {exc}") from None
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", k) for k in variables
    ):
        raise FrontError("--env-json must be an object of variable names (letters, digits, _)")
    return {k: str(v) for k, v in variables.items()}


def cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    package = Path(args.package).resolve()
    if not package.is_file():
        raise FrontError(f"the package {package} is missing")
    if not zipfile.is_zipfile(package):
        raise FrontError(f"the package {package} is not a zip")
    if not front_alive(read_state(state_dir)):
        raise FrontError(f"no front runs for {state_dir}: run start first")
    wheels = Path(args.wheels).resolve()
    spec = Spec(package=str(package), sha256=file_sha256(package), version=args.version,
                environments=args.environments, image=args.image, python=args.python,
                memory=args.memory, timeout=args.timeout, init_timeout=args.init_timeout,
                handler=args.handler, function_name=args.function_name, wheels=str(wheels),
                variables=_variables(args.env_json))
    memory_mb(spec.memory)
    done = subprocess.run(["podman", "image", "exists", spec.image], capture_output=True,
                          check=False)
    if done.returncode != 0:
        raise FrontError(
            f"the image {spec.image} is missing. The project builds it with debootstrap: "
            "`ansible-playbook molecule/base-image.yml` (role local_hosts, "
            "local_hosts_state=image), or any release on the local platform")
    return control(state_dir, "POST", "/deploy", asdict(spec))


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    if not front_alive(state):
        return {"running": False}
    return {**control(state_dir, "GET", "/status", timeout=10), "running": True}


def _leftover_containers(id_: str) -> list[str]:
    done = subprocess.run(["podman", "ps", "-aq", "--filter", f"label={ID_LABEL}={id_}"],
                          capture_output=True, text=True, check=False)
    return done.stdout.split()


def cmd_stop(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    changed = False
    if front_alive(state):
        changed = True
        with contextlib.suppress(FrontError):
            control(state_dir, "POST", "/stop", timeout=10)
        end = time.monotonic() + STOP_WAIT_SECONDS
        while front_alive(state) and time.monotonic() < end:
            time.sleep(0.1)
        if front_alive(state):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGKILL)
    for id_ in {args.id, state.get("id")} - {None}:
        leftovers = _leftover_containers(id_)
        if leftovers:
            changed = True
            subprocess.run(["podman", "rm", "-f", "-t", "0", *leftovers], capture_output=True,
                           check=False)
    if state_dir.exists() and not getattr(args, "keep_dir", False):
        changed = True
        shutil.rmtree(state_dir)
    return {"changed": changed, "running": False}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "start", "deploy", "status", "stop"):
        sub = commands.add_parser(name)
        sub.add_argument("--state-dir", required=True)
        if name in ("serve", "start", "stop"):
            sub.add_argument("--id", help="containers' label value (default r-lambda-fn-PORT)")
        if name in ("serve", "start"):
            sub.add_argument("--port", type=int, required=True)
        if name == "serve":
            sub.add_argument("--ready-fd", type=int)
        if name == "deploy":
            sub.add_argument("--package", required=True)
            sub.add_argument("--version", required=True)
            sub.add_argument("--environments", type=int, default=2)
            sub.add_argument("--image", default="localhost/r-lambda-base:trixie")
            sub.add_argument("--python", default="python3.13")
            sub.add_argument("--memory", default="128m")
            sub.add_argument("--timeout", type=float, default=30.0)
            sub.add_argument("--init-timeout", type=float, default=120.0)
            sub.add_argument("--handler", default="handler.lambda_handler")
            sub.add_argument("--function-name", default="admission")
            sub.add_argument("--wheels", required=True, help="folder of awslambdaric's wheels")
            sub.add_argument("--env-json", default="{}", help="function variables, a JSON object")
    args = parser.parse_args(argv)
    if getattr(args, "environments", 1) < 1:
        parser.error("--environments must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    run = {"start": cmd_start, "deploy": cmd_deploy, "status": cmd_status, "stop": cmd_stop}
    try:
        result = run[args.command](args)
    except FrontError as exc:
        print(f"local_function: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
