"""The function's HTTP endpoint on 127.0.0.1: each request becomes an event handed to the
front, each answer an HTTP response naming the version that gave it.

Under abuse: a malformed Content-Length or chunked body answers 400 and a body over
Lambda's 6 MB 413, before more than that is read; a client silent for the front's
read_timeout (between requests, or in the middle of one) is closed, and at most
max_connections are open at once: past that a new connection closes the longest idle one,
or is answered 503 when every one is busy (package_test's BoundedHTTPServer)."""

from __future__ import annotations

import uuid

from .common import li
from .events import Answer, _json_answer, http_api_event
from .front import Front

MAX_PAYLOAD = li.MAX_BODY  # Lambda's synchronous invocation limit


class EndpointHandler(li.RuntimeApiHandler):
    """The function's HTTP endpoint (reads bodies as the Runtime API does)."""

    server: EndpointServer
    max_body = MAX_PAYLOAD  # sized or chunked: refused before more is read

    def _serve(self) -> None:
        request_id = str(uuid.uuid4())
        try:
            body = self._read_body()
        except li.BadRequest as exc:
            self.close_connection = True
            message = "Request Entity Too Large" if exc.status == 413 else str(exc)
            self._answer(_json_answer(exc.status, {"message": message}), None, request_id)
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
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.body)
        except OSError:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve


class EndpointServer(li.BoundedHTTPServer):
    """The endpoint's connections, bounded by the front's read_timeout and max_connections
    (read for each new connection: a change applies to the connections after it)."""

    request_queue_size = 128
    evict_idle = True  # an idle keep-alive connection makes room for a new client

    def __init__(self, port: int, front: Front) -> None:
        self.front = front
        super().__init__(("127.0.0.1", port), EndpointHandler)

    @property  # type: ignore[override]
    def read_timeout(self) -> float:
        return self.front.read_timeout

    @property  # type: ignore[override]
    def max_connections(self) -> int:
        return self.front.max_connections
