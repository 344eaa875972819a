"""Lambda's Runtime API (2018-06-01) on 127.0.0.1: one invocation handed out at a time.

RuntimeApi is what the server shares with the driver (the queued and in-flight
invocations, the init error); RuntimeApiHandler answers the client's HTTP/1.1 requests
(``GET /invocation/next``, ``POST .../response``, ``.../error``, ``/init/error``);
RuntimeApiServer serves it on a thread.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .cases import _error_summary

API = "/2018-06-01/runtime"
NEXT_PATH = f"{API}/invocation/next"
INIT_ERROR_PATH = f"{API}/init/error"
RESULT_PATH = re.compile(rf"{re.escape(API)}/invocation/([^/?]+)/(response|error)")
POLL_SECONDS = 0.05


class BodyTooLarge(ValueError):
    """A request body over the handler's max_body."""


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
