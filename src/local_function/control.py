"""The control API on a unix socket (<state dir>/control.sock, mode 0600): the server in
the front (POST /deploy, GET /status, POST /stop) and the client the commands use."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from .common import FrontError
from .environments import Spec
from .front import Front

CONTROL_TIMEOUT = 900.0


class ControlHandler(BaseHTTPRequestHandler):
    """POST /deploy (a Spec as JSON), POST /limits (the endpoint's read_timeout and
    max_connections), GET /status, POST /stop."""

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
        if self.path == "/limits":
            try:
                limits = json.loads(body)
                changed = self.server.front.set_limits(float(limits["read_timeout"]),
                                                       int(limits["max_connections"]))
                self.server.front.write_state()
                self._send(200, {**self.server.front.state(), "changed": changed})
            except (FrontError, KeyError, TypeError, ValueError) as exc:
                self._send(409, {"error": str(exc)})
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
