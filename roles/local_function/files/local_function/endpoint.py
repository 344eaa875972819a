"""The function's HTTP endpoint on 127.0.0.1: each request becomes an event handed to the
front, each answer an HTTP response naming the version that gave it."""

from __future__ import annotations

import sys
import uuid
from http.server import ThreadingHTTPServer
from typing import Any

from .common import li
from .events import Answer, _json_answer, http_api_event
from .front import Front

MAX_PAYLOAD = 6 * 1024 * 1024  # Lambda's synchronous invocation limit


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
