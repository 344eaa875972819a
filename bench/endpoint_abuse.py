"""The local endpoint under abuse: well-formed requests over many keep-alive connections
while idle sockets and malformed or stalled requests are open.

`abuse()` measures one such run against a front listening on 127.0.0.1 (the bench's
`endpoint_abuse` figures: 10,000 requests over 64 connections, 500 idle sockets; the
unit test tests/unit/test_endpoint_abuse.py runs it scaled down against a front in its own
process): requests per second, p50 and p99 latency and errors of the well-formed ones,
the answer to each malformed one (each should be a 4xx), how long the idle sockets stayed
open (each should be closed by the front within its read timeout) and the front's
resident memory during the run. Standard library only.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIB = 1 << 20
# How long past the read timeout the idle sockets are watched: under the load, the front
# accepts some of 500 seconds late, and each one's timeout starts when it is accepted.
IDLE_SLACK_S = 10.0


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


def endpoint_figures(latencies: list[float], wall_s: float, errors: int) -> dict:
    """Requests per second, p50 and p99 latency (ms) and errors of one series."""
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "rps": round(len(latencies) / wall_s, 1) if wall_s > 0 else None,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3) if latencies else None,
        "wall_s": round(wall_s, 3),
    }


@dataclass(frozen=True)
class Bad:
    """A malformed or stalled request: its head, then ``stream_mib`` MiB more sent while the
    answer is awaited, or nothing more (``stall``: the front must time it out)."""

    name: str
    head: bytes
    expect: int = 400
    stream_mib: int = 0
    stall: bool = False


def _post(headers: str, body: bytes = b"") -> bytes:
    return f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode("latin-1") + body


CHUNKED = "Transfer-Encoding: chunked\r\n"
MALFORMED = (
    Bad("content_length_superscript_two", _post("Content-Length: \xb2\r\n", b"{}")),
    Bad("content_length_negative", _post("Content-Length: -1\r\n", b"{}")),
    Bad("content_length_underscore", _post("Content-Length: 1_0\r\n", b"{}")),
    Bad("content_length_twice", _post("Content-Length: 2\r\nContent-Length: 3\r\n", b"{}")),
    Bad("content_length_and_chunked", _post(f"Content-Length: 2\r\n{CHUNKED}", b"2\r\n{}\r\n")),
    Bad("transfer_encoding_gzip", _post("Transfer-Encoding: gzip\r\n", b"{}")),
    Bad("chunk_size_negative_then_20_mib", _post(CHUNKED, b"-1\r\n"), stream_mib=20),
    Bad("chunk_size_plus", _post(CHUNKED, b"+2\r\n{}\r\n0\r\n\r\n")),
    Bad("chunk_size_0x", _post(CHUNKED, b"0x2\r\n{}\r\n0\r\n\r\n")),
    Bad("chunk_longer_than_its_size", _post(CHUNKED, b"1\r\n{}\r\n0\r\n\r\n")),
    Bad("chunk_size_line_too_long", _post(CHUNKED, b"1" * 5000 + b"\r\n")),
    Bad("body_over_6_mb_sized", _post(f"Content-Length: {7 * MIB}\r\n"), 413, stream_mib=7),
    Bad("body_over_6_mb_chunked", _post(CHUNKED, b"%x\r\n" % (7 * MIB)), 413, stream_mib=7),
    Bad("bad_request_line", b"GARBAGE\r\n\r\n"),
    Bad("header_line_too_long", _post("X-Long: " + "a" * 70000 + "\r\n"), 431),
    Bad("stalled_body", _post("Content-Length: 100\r\n", b'{"gre": '), 408, stall=True),
    Bad("stalled_headers", b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n", 408, stall=True),
)


def _stream(sock: socket.socket, mib: int) -> None:
    block = b"x" * MIB
    try:
        for _mib in range(mib):
            sock.sendall(block)
    except OSError:
        pass  # refused while sending: what is wanted


def send_bad(port: int, bad: Bad, timeout: float) -> dict[str, Any]:
    """The front's answer to ``bad``: its status (None: closed without one) and when."""
    started = time.monotonic()
    status: int | None = None
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sender = None
        try:
            sock.sendall(bad.head)
            if bad.stream_mib:
                sender = threading.Thread(target=_stream, args=(sock, bad.stream_mib))
                sender.start()
            line = sock.makefile("rb").readline()
            status = int(line.split()[1]) if line.startswith(b"HTTP/1.") else None
        except (OSError, ValueError, IndexError):
            status = None
        if sender is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sender.join()
    return {"status": status, "expected": bad.expect,
            "seconds": round(time.monotonic() - started, 3)}


def open_idle(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that never send a byte."""
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _socket in range(count)]


def watch_idle(sockets: list[socket.socket], opened: float, deadline: float) -> list[float | None]:
    """Seconds after ``opened`` at which the front closed each socket (None: still open at
    ``deadline``, a monotonic time)."""
    import selectors  # here: only this needs it

    closed: list[float | None] = [None] * len(sockets)
    with selectors.DefaultSelector() as selector:
        for index, sock in enumerate(sockets):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        left = len(sockets)
        while left and time.monotonic() < deadline:
            for key, _events in selector.select(max(0.0, deadline - time.monotonic())):
                try:
                    data = key.fileobj.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # closed (an answer would be data: a 503 over the cap)
                    closed[key.data] = round(time.monotonic() - opened, 3)
                    selector.unregister(key.fileobj)
                    left -= 1
    for sock in sockets:
        sock.close()
    return closed


def send_load(port: int, bodies: list[bytes], concurrency: int,
              check: Callable[[int, bytes], bool]) -> tuple[list[float], list[str], float]:
    """POST each body once over ``concurrency`` keep-alive connections: the latencies of
    the answers ``check`` accepts, the problems with the others, and the wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    pending = iter(range(len(bodies)))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                conn.request("POST", "/", bodies[index], {"Content-Type": "application/json"})
                answer = conn.getresponse()
                data = answer.read()
                problem = None if check(answer.status, data) else f"{answer.status}: {data[:200]!r}"
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                problem = repr(exc)
            with lock:
                if problem is None:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors.append(problem)
        conn.close()

    threads = [threading.Thread(target=worker) for _thread in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def abuse(port: int, *, bodies: list[bytes], concurrency: int, idle: int, read_timeout: float,
          check: Callable[[int, bytes], bool], pid: int) -> dict[str, Any]:
    """One run: ``idle`` idle sockets and each MALFORMED request open while ``bodies`` are
    sent over ``concurrency`` connections; the front (process ``pid``) closes idle and
    stalled clients after ``read_timeout`` seconds."""
    memory = [rss_mb(pid)]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            memory.append(rss_mb(pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    opened = time.monotonic()
    sockets = open_idle(port, idle)
    answers: dict[str, dict[str, Any]] = {}
    bad_threads = [
        threading.Thread(target=lambda bad=bad: answers.__setitem__(
            bad.name, send_bad(port, bad, read_timeout + 10)))
        for bad in MALFORMED
    ]
    for thread in bad_threads:
        thread.start()
    # Watched while the load runs: the front should close them read_timeout after they
    # opened, however long the load takes.
    closed: list[float | None] = []
    watcher = threading.Thread(target=lambda: closed.extend(
        watch_idle(sockets, opened, opened + read_timeout + IDLE_SLACK_S)))
    watcher.start()
    latencies, errors, wall_s = send_load(port, bodies, concurrency, check)
    watcher.join()
    for thread in bad_threads:
        thread.join()
    running.clear()
    sampler.join()
    figures = endpoint_figures(latencies, wall_s, len(errors))
    if errors:
        figures["first_errors"] = errors[:3]
    seen = [value for value in memory if value is not None]
    still_open = sum(1 for seconds in closed if seconds is None)
    figures.update({
        "concurrency": concurrency,
        "read_timeout_s": read_timeout,
        "idle_sockets": idle,
        "idle_still_open": still_open,
        "idle_closed_max_s": max((s for s in closed if s is not None), default=None),
        "malformed": answers,
        "malformed_not_as_expected": sorted(
            name for name, got in answers.items() if got["status"] != got["expected"]),
        "front_rss_mb_start": memory[0],
        "front_rss_mb_max": max(seen) if seen else None,
    })
    return figures
