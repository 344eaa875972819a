"""Lambda's Runtime API inside a function's container, which has no network.

The front serves each environment's Runtime API on a unix socket mounted (read-only) into
that environment's container only, with this file; the container runs
``python relay.py SOCKET PORT -- COMMAND...``: it listens on 127.0.0.1:PORT of the
container's own loopback (Lambda's is 127.0.0.1:9001; 0 picks a free port), sets
AWS_LAMBDA_RUNTIME_API to it, forks a relay that carries each TCP connection to SOCKET,
and becomes COMMAND (the runtime client). The relay ends with the container (or, run out
of one, with the runtime client's process group).

Standard library only; runs on the image's Python (3.9 or newer).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

BUFFER = 65536


def _pump(source: socket.socket, sink: socket.socket, done: list[int],
          lock: threading.Lock) -> None:
    try:
        while True:
            data = source.recv(BUFFER)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
    with lock:
        done[0] += 1
        last = done[0] == 2
    if last:
        source.close()
        sink.close()


def connect(sock: socket.socket, path: str) -> None:
    """Connect to the unix socket ``path``, through its folder's descriptor when the path
    is too long for a socket address."""
    if len(os.fsencode(path)) < 100:
        sock.connect(path)
        return
    folder = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{folder}/{os.path.basename(path)}")
    finally:
        os.close(folder)


def serve(listener: socket.socket, path: str) -> None:
    """Carry each connection of ``listener`` to the unix socket ``path``, both ways."""
    while True:
        client, _address = listener.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connect(upstream, path)
        except OSError as exc:
            sys.stderr.write(f"relay: the Runtime API at {path} does not answer: {exc}\n")
            client.close()
            upstream.close()
            continue
        done, lock = [0], threading.Lock()
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pump, args=(source, sink, done, lock), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[3] != "--":
        sys.stderr.write("usage: relay.py SOCKET PORT -- COMMAND...\n")
        return 2
    path, port, command = argv[1], int(argv[2]), argv[4:]
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    os.environ["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{listener.getsockname()[1]}"
    if os.fork() == 0:
        try:
            serve(listener, path)
        finally:
            os._exit(0)
    listener.close()
    os.execvp(command[0], command)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
