"""Each environment's Runtime API on a unix socket, in a folder that only that
environment's container mounts (read-only, with relay.py, which carries the runtime
client's TCP connections to it): no other container, and no process on the machine but
the front's user and root, can reach it."""

from __future__ import annotations

import contextlib
import os
import pkgutil
import shutil
import socket
import threading
from pathlib import Path
from typing import Any

from .common import li

RELAY = "relay.py"
# Read once, when the front starts, through the package's loader: the package may run from
# a zip application, whose relay.py is no file a container could mount (pkgutil reads it
# there on every Python 3.9+; zipimport leaves __package__ unset on 3.9).
RELAY_SOURCE = pkgutil.get_data(__name__.rpartition(".")[0], RELAY)
SOCKET_NAME = "api.sock"


class UnixRuntimeApiHandler(li.RuntimeApiHandler):
    disable_nagle_algorithm = False  # not TCP

    def address_string(self) -> str:
        return "runtime-api"


class UnixRuntimeApiServer(li.BoundedHTTPServer):
    """The Runtime API of one environment at ``<folder>/api.sock`` (mode 0666: the container
    runs as nobody; the folders above it keep other users out), served on a thread."""

    address_family = socket.AF_UNIX
    max_connections = li.runtime_api.RUNTIME_API_MAX_CONNECTIONS

    def __init__(self, api: Any, folder: Path) -> None:
        self.api, self.folder = api, folder
        self.read_timeout = api.deadline_seconds + li.runtime_api.RUNTIME_API_IDLE_GRACE
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.parent.chmod(0o700)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o755)
        folder.chmod(0o755)
        (folder / RELAY).write_bytes(RELAY_SOURCE)
        (folder / RELAY).chmod(0o644)
        super().__init__(str(folder / SOCKET_NAME), UnixRuntimeApiHandler)
        (folder / SOCKET_NAME).chmod(0o666)
        poll = li.runtime_api.POLL_SECONDS
        self._thread = threading.Thread(target=self.serve_forever, args=(poll,), daemon=True)

    def server_bind(self) -> None:
        """Bound through the folder's descriptor: a socket path has at most 107 bytes,
        whatever the length of the state folder's."""
        folder = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self.socket.bind(f"/proc/self/fd/{folder}/{SOCKET_NAME}")
        finally:
            os.close(folder)
        self.server_address = str(self.folder / SOCKET_NAME)

    @property
    def address(self) -> str:
        return str(self.folder / SOCKET_NAME)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.api.close()
        self.shutdown()
        self.server_close()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.folder)
