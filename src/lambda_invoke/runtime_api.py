"""Lambda's Runtime API (2018-06-01) on 127.0.0.1: one invocation handed out at a time.

RuntimeApi is what the server shares with the driver (the queued and in-flight
invocations, the init error); RuntimeApiHandler answers the client's HTTP/1.1 requests
(``GET /invocation/next``, ``POST .../response``, ``.../error``, ``/init/error``);
RuntimeApiServer serves it on a thread. BoundedHTTPServer and BoundedHandler, which
they build on (role local_function's endpoint too), refuse a malformed or oversized body
with a 4xx before buffering past the limit, time out a silent client and cap connections.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
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
# Lambda's synchronous payload limit: an event, and a function's response.
MAX_BODY = 6 * 1024 * 1024
# The Runtime API's client is silent on its connection while the handler runs: it may
# stay silent this long past the function's timeout before the connection is closed.
RUNTIME_API_IDLE_GRACE = 30.0
RUNTIME_API_MAX_CONNECTIONS = 8
CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,8}")  # hexadecimal digits only: no sign, no 0x, no _
LINE_LIMIT = 4096  # a chunk-size line (with its extensions), a trailer line
TRAILER_LINES = 32
# After refusing a body, what the client still sends is read and dropped for at most this
# long (a "lingering close"): closed at once, its unread bytes would reset the connection
# and could lose the answer on the way.
LINGER_SECONDS = 2.0


class BadRequest(ValueError):
    """A request whose body cannot be read as HTTP/1.1 says: answered 400, then closed."""

    status = 400


class BodyTooLarge(BadRequest):
    """A request body over the handler's max_body (refused before it is read past it)."""

    status = 413


class RequestTimeout(BadRequest):
    """A client that went silent in the middle of its body for longer than the timeout."""

    status = 408


def content_length(values: list[str]) -> int | None:
    """The one Content-Length of a request (None: no header), ASCII digits only."""
    distinct = {value.strip() for value in values}
    if not distinct:
        return None
    if len(distinct) > 1:
        raise BadRequest("conflicting Content-Length headers")
    value = distinct.pop()
    if not (value.isascii() and value.isdigit()) or len(value) > 15:
        raise BadRequest(f"bad Content-Length {value[:40]!r}: expected decimal digits")
    return int(value)


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
TOO_LARGE = _json_bytes({
    "errorType": "Function.ResponseSizeTooLarge",
    "errorMessage": f"Response payload size exceeded maximum allowed payload size ({MAX_BODY} "
                    "bytes).",
})


class BoundedHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 whose bodies are read within limits: at most ``max_body`` bytes (413
    before reading past it), a malformed Content-Length or chunked body a 400, a client
    silent for ``server.read_timeout`` seconds (waiting for a request, or in the middle of
    one) closed, a body cut short by that a 408."""

    protocol_version = "HTTP/1.1"
    # A request line that names no version is answered with a status line all the same
    # (HTTP/0.9 answers have none: a client could not tell a refusal from a body).
    default_request_version = "HTTP/1.1"
    server: BoundedHTTPServer
    # Largest body a request may send (None: no limit); a larger one is refused unread.
    max_body: int | None = MAX_BODY

    linger = False  # set when a body is refused: see finish()

    def setup(self) -> None:
        self.timeout = self.server.read_timeout  # StreamRequestHandler applies it
        super().setup()

    def finish(self) -> None:
        """After a refused body, drop what the client still sends (LINGER_SECONDS at most,
        never kept), so that it reads the answer before the connection closes."""
        super().finish()
        if not self.linger:
            return
        end = time.monotonic() + LINGER_SECONDS
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            while (left := end - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(65536):
                    break

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, headers too long...) close the
        connection too, lingering."""
        self.linger = self.close_connection = True
        super().send_error(code, message, explain)

    def parse_request(self) -> bool:
        """A client silent in the middle of its headers is answered 408, and closed."""
        try:
            return super().parse_request()
        except socket.timeout:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.send_error(408, "Request Timeout",
                                f"no header line came for {self.server.read_timeout:g} s")
            return False

    def handle_one_request(self) -> None:
        """Wait for the next request as an idle connection (the server may close it to
        make room for a new one), then serve it."""
        self.server.connection_idle(self.connection, True)
        try:
            self.rfile.peek(1)  # b"" at the end of the stream: handled below
        except (socket.timeout, OSError):
            self.close_connection = True  # silent for read_timeout, or closed
            return
        finally:
            self.server.connection_idle(self.connection, False)
        super().handle_one_request()

    def _read_body(self) -> bytes:
        """The request's body; BadRequest (400), BodyTooLarge (413) or RequestTimeout (408)
        for one that is malformed, too large or stalled, after reading no more than
        max_body bytes of it."""
        length = content_length(self.headers.get_all("Content-Length") or [])
        codings = [coding.strip().lower()
                   for value in self.headers.get_all("Transfer-Encoding") or []
                   for coding in value.split(",")]
        self.linger = True  # until the body is read whole
        try:
            if codings:
                if length is not None:
                    raise BadRequest("both Content-Length and Transfer-Encoding")
                if codings != ["chunked"]:
                    raise BadRequest(f"Transfer-Encoding {', '.join(codings)[:60]!r}: "
                                     "only chunked is accepted")
                return self._read_chunked()
            if not length:
                self.linger = False
                return b""
            self._check_size(length)
            body = self.rfile.read(length)
            if len(body) < length:
                raise BadRequest(f"the body ended after {len(body)} of its {length} bytes")
            self.linger = False
            return body
        except socket.timeout:
            raise RequestTimeout(f"no byte of the body came for {self.server.read_timeout:g} s"
                                 ) from None

    def _check_size(self, size: int) -> None:
        if self.max_body is not None and size > self.max_body:
            raise BodyTooLarge(f"the body is larger than {self.max_body} bytes")

    def _line(self, what: str) -> bytes:
        line = self.rfile.readline(LINE_LIMIT + 1)
        if not line.endswith(b"\n"):
            if len(line) > LINE_LIMIT:
                raise BadRequest(f"the {what} line is longer than {LINE_LIMIT} bytes")
            raise BadRequest(f"the body ended before its {what}")
        return line

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_text = self._line("chunk size").split(b";", 1)[0].strip(b" \t\r\n")
            if not CHUNK_SIZE.fullmatch(size_text):
                raise BadRequest(f"bad chunk size {size_text[:20]!r}: expected 1 to 8 "
                                 "hexadecimal digits")
            size = int(size_text, 16)
            if size == 0:
                break
            total += size
            self._check_size(total)
            data = self.rfile.read(size)
            if len(data) < size:
                raise BadRequest(f"the body ended inside a chunk of {size} bytes")
            chunks.append(data)
            if self._line("chunk end") not in (b"\r\n", b"\n"):
                raise BadRequest(f"a chunk is longer than its size ({size} bytes)")
        for _line in range(TRAILER_LINES):
            if self._line("trailer") in (b"\r\n", b"\n"):
                self.linger = False
                return b"".join(chunks)
        raise BadRequest(f"more than {TRAILER_LINES} trailer lines")


class RuntimeApiHandler(BoundedHandler):
    """HTTP/1.1 with Content-Length on every answer, so clients keep the connection."""

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
        except BadRequest as exc:
            self.close_connection = True
            match = RESULT_PATH.fullmatch(self.path)
            if isinstance(exc, BodyTooLarge) and match and match.group(2) == "response":
                # As Lambda does: the invocation fails, the function's answer is dropped.
                self.server.api.post_result(match.group(1), "error", self.path, TOO_LARGE)
            error_type = {413: "RequestEntityTooLarge", 408: "RequestTimeout"}.get(
                exc.status, "BadRequest")
            self._send(exc.status, _json_bytes({"errorType": error_type,
                                                "errorMessage": str(exc)}))
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

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            headers = headers or {"Content-Type": "application/json"}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True  # the client is gone (stopped, or crashed)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them: a connection past the
    cap closes the longest idle one (waiting for its next request) when ``evict_idle``,
    else is answered 503 and closed."""

    daemon_threads = True
    read_timeout: float | None = None
    max_connections = 64
    evict_idle = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections_lock = threading.Lock()
        self._connections: dict[Any, float | None] = {}  # socket -> idle since (None: busy)
        self.refused = 0
        self.evicted = 0
        super().__init__(*args, **kwargs)

    def connection_idle(self, connection: Any, idle: bool) -> None:
        with self._connections_lock:
            if connection in self._connections:
                self._connections[connection] = time.monotonic() if idle else None

    def open_connections(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def idle_connections(self) -> int:
        """Connections waiting for their next request (the ones a full server may close)."""
        with self._connections_lock:
            return sum(since is not None for since in self._connections.values())

    def process_request(self, request: Any, client_address: Any) -> None:
        victim = None
        with self._connections_lock:
            full = len(self._connections) >= self.max_connections
            if full:
                idle = [(since, id(sock), sock) for sock, since in self._connections.items()
                        if since is not None]
                if self.evict_idle and idle:
                    victim = min(idle)[2]
                    del self._connections[victim]  # its thread ends at once: not counted
                    self.evicted += 1
                else:
                    self.refused += 1
            if not full or victim is not None:
                self._connections[request] = None
        if full and victim is None:
            self._refuse(request)
            return
        if victim is not None:
            with contextlib.suppress(OSError):
                victim.shutdown(socket.SHUT_RDWR)  # its wait for a request ends: closed
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def _refuse(self, request: Any) -> None:
        body = _json_bytes({"message": "Service Unavailable: too many connections"})
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(head.encode("ascii") + body)
        self.shutdown_request(request)

    def _forget(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.pop(request, None)

    def shutdown_request(self, request: Any) -> None:
        self._forget(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone or silent mid-request is not the server's error."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, socket.timeout)):
            super().handle_error(request, client_address)


class RuntimeApiServer(BoundedHTTPServer):
    """The Runtime API on 127.0.0.1, on a thread. Its client's connection may be silent
    while the handler runs: it is closed past the function's timeout and a grace."""

    max_connections = RUNTIME_API_MAX_CONNECTIONS

    def __init__(self, api: RuntimeApi) -> None:
        self.read_timeout = api.deadline_seconds + RUNTIME_API_IDLE_GRACE
        super().__init__(("127.0.0.1", 0), RuntimeApiHandler)
        self.api = api
        self._thread = threading.Thread(target=self.serve_forever, args=(POLL_SECONDS,))
        self._thread.daemon = True

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
