"""The local endpoint and the Runtime API stand-in under abuse: malformed and oversized
bodies, silent clients, too many connections; and what a function's container may reach.

The front runs in this process with its real endpoint and Runtime APIs (unix sockets,
reached through relay.py) and the fake runtime clients of test_local_function.py; the
abuse run is bench/endpoint_abuse.py's, scaled down (the bench runs it at 10,000 requests
over 64 connections with 500 idle sockets).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from module_loading import load
from test_local_function import request, running_front, spec

from local_function import cli
from local_function.common import FrontError, li
from local_function.environments import Generation
from local_function.front import Front

REPO = Path(__file__).resolve().parents[2]

endpoint_abuse = load("endpoint_abuse", REPO / "bench" / "endpoint_abuse.py")
READ_TIMEOUT = 1.5
NEXT = "/2018-06-01/runtime/invocation/next"


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[Any, int]]:
    with running_front(tmp_path) as running:
        yield running


def _served(port: int) -> bool:
    return request(port)[0] == 200


# ---------------------------------------------------------------- the endpoint, abused


def test_under_abuse_every_good_request_is_answered_and_every_bad_one_refused(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1", environments=2))
    served.set_limits(READ_TIMEOUT, 512)

    def answered(status: int, data: bytes) -> bool:
        return status == 200 and json.loads(data)["path"] == "/"

    figures = endpoint_abuse.abuse(port, bodies=[b"{}"] * 500, concurrency=16, idle=50,
                                   read_timeout=READ_TIMEOUT, check=answered, pid=os.getpid())
    assert (figures["requests"], figures["errors"]) == (500, 0), figures.get("first_errors")
    assert figures["malformed_not_as_expected"] == [], figures["malformed"]
    assert all(400 <= got["status"] < 500 for got in figures["malformed"].values())
    assert figures["idle_still_open"] == 0
    assert figures["idle_closed_max_s"] <= READ_TIMEOUT + 2.0  # 50 idle: accepted at once
    # 20 MiB after a chunk size of -1, 7 MiB after a 7 MiB Content-Length: none kept.
    assert figures["front_rss_mb_max"] - figures["front_rss_mb_start"] < 15
    refused = figures["malformed"]["chunk_size_negative_then_20_mib"]
    assert refused["seconds"] < 1.0  # answered at once, not after the client stopped
    assert _served(port)


@pytest.mark.parametrize("head, status", [
    (b"Content-Length: \xb2\r\n\r\n{}", 400),
    (b"Content-Length: 2, 3\r\n\r\n{}", 400),
    (b"Transfer-Encoding: chunked\r\n\r\n-1\r\n", 400),
    (b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n" + b"X: y\r\n" * 40 + b"\r\n", 400),
    (b"Transfer-Encoding: chunked\r\n\r\n6ACFC1\r\n", 413),
])  # fmt: skip
def test_a_malformed_body_is_a_json_4xx_naming_the_problem(
        front: tuple[Any, int], tmp_path: Path, head: bytes, status: int) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + head)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        body = json.loads(answer.read())
    assert answer.status == status
    assert answer.getheader("Connection") == "close"
    assert body["message"] and "Traceback" not in body["message"]
    assert _served(port)


def test_a_silent_client_is_closed_after_the_read_timeout_while_others_are_served(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1"))
    served.set_limits(READ_TIMEOUT, 64)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled = socket.create_connection(("127.0.0.1", port), timeout=10)
    stalled.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
    started = time.monotonic()
    assert _served(port)
    assert idle.recv(100) == b""  # closed, without an answer: it asked nothing
    assert READ_TIMEOUT - 0.2 < time.monotonic() - started < READ_TIMEOUT + 1
    assert stalled.makefile("rb").readline().split()[1] == b"408"
    idle.close()
    stalled.close()


def test_past_the_cap_the_longest_idle_connection_closes_or_a_new_one_gets_503(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1"))
    served.set_limits(30, 4)
    server = served.endpoint_server

    def settle(open_: int, idle_: int) -> None:
        """Wait until the server counts these connections, however loaded the machine."""
        deadline = time.monotonic() + 20
        while (server.open_connections(), server.idle_connections()) != (open_, idle_):
            assert time.monotonic() < deadline, (
                f"open {server.open_connections()}, idle {server.idle_connections()}: "
                f"expected {open_}, {idle_}")
            time.sleep(0.02)

    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    settle(4, 4)  # each is accepted and waits for a request
    assert _served(port)  # a fifth connection: the longest idle one made room
    readable, _, _ = select.select(idle, [], [], 10)
    assert len(readable) == 1 and readable[0].recv(100) == b""
    settle(3, 3)
    stalled = []
    for held in range(1, 5):  # the free place, then the three idle ones left
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        stalled.append(sock)
        settle(4, 4 - held)
    # Every connection holds a request: the next one is answered 503 as it is accepted
    # (read before sending, as the server closes it at once).
    with socket.create_connection(("127.0.0.1", port), timeout=10) as refused:
        assert refused.recv(100).startswith(b"HTTP/1.1 503 ")
    for sock in idle + stalled:
        sock.close()
    settle(0, 0)
    assert _served(port)


def test_a_limit_out_of_range_is_refused_naming_its_setting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(FrontError, match="local_function_read_timeout"):
        Front(tmp_path, 0, "x", read_timeout=0)
    with pytest.raises(FrontError, match="local_function_max_connections"):
        Front(tmp_path, 0, "x", max_connections=0)
    argv = ["start", "--state-dir", str(tmp_path / "s"), "--port", "9", "--read-timeout", "-1"]
    assert cli.main(argv) == 1
    assert "local_function_read_timeout (--read-timeout) must be" in capsys.readouterr().err


# ------------------------------------------------ what a function's container reaches


def test_a_function_container_has_no_network_capability_or_new_privilege(
        tmp_path: Path) -> None:
    made = Front(tmp_path, 9000, "r-lambda-fn-9000")
    generation = Generation(1, spec(tmp_path, "v1"), tmp_path / "task")
    command, _ = made.container_command("n", generation, tmp_path / "rt", {"A": "b"},
                                        tmp_path / "api")
    pairs = list(zip(command, command[1:]))
    assert ("--network", "none") in pairs
    assert ("--cap-drop", "ALL") in pairs
    assert ("--security-opt", "no-new-privileges") in pairs
    assert ("-v", f"{tmp_path / 'api'}:/var/rapid:ro") in pairs
    assert command[command.index("python3.13"):] == [
        "python3.13", "/var/rapid/relay.py", "/var/rapid/api.sock", "9001", "--",
        "python3.13", "-m", "awslambdaric", "handler.lambda_handler"]


def test_each_runtime_api_is_a_socket_in_a_folder_of_its_own(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, _ = front
    served.deploy(spec(tmp_path, "v1", environments=2))
    folders = [Path(env.server.address).parent for env in served.dispatcher.active.environments]
    assert len(set(folders)) == 2
    assert stat.S_IMODE(folders[0].parent.stat().st_mode) == 0o700  # other users stay out
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["api.sock", "relay.py"]
        assert stat.S_ISSOCK((folder / "api.sock").stat().st_mode)
    assert all(isinstance(env.server.server_address, str)  # no TCP port anywhere
               for env in served.dispatcher.active.environments)
    served.stop()
    assert not any(folder.exists() for folder in folders)


# ------------------------------------------------------------ the Runtime API, abused


@pytest.fixture
def runtime_api() -> Iterator[Any]:
    api = li.RuntimeApi("arn:aws:lambda:us-east-1:123456789012:function:f", 3)
    server = li.RuntimeApiServer(api)
    server.start()
    yield server
    server.stop()


def _raw(address: str, data: bytes) -> tuple[int, dict[str, Any]]:
    host, port = address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read())


@pytest.mark.parametrize("head", [
    b"Content-Length: \xb2\r\n\r\n{}",
    b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked\r\n\r\n-1\r\n",
])  # fmt: skip
def test_the_runtime_api_answers_a_malformed_post_400(runtime_api: Any, head: bytes) -> None:
    path = "/2018-06-01/runtime/invocation/x/response"
    status, body = _raw(runtime_api.address, f"POST {path} HTTP/1.1\r\n".encode() + head)
    assert (status, body["errorType"]) == (400, "BadRequest")


def test_a_response_over_6_mb_fails_the_invocation_as_lambda_does(runtime_api: Any) -> None:
    invocation = runtime_api.api.submit({})
    conn = http.client.HTTPConnection(runtime_api.address, timeout=10)
    conn.request("GET", NEXT)
    conn.getresponse().read()
    path = f"/2018-06-01/runtime/invocation/{invocation.request_id}/response"
    head = f"POST {path} HTTP/1.1\r\nContent-Length: {li.MAX_BODY + 1}\r\n\r\n".encode()
    status, body = _raw(runtime_api.address, head)
    assert (status, body["errorType"]) == (413, "RequestEntityTooLarge")
    assert invocation.kind == "error"
    assert json.loads(invocation.body)["errorType"] == "Function.ResponseSizeTooLarge"
    conn.close()


def test_the_runtime_api_caps_its_connections_and_outwaits_the_function(
        runtime_api: Any) -> None:
    assert runtime_api.read_timeout == 3 + li.runtime_api.RUNTIME_API_IDLE_GRACE
    host, port = runtime_api.address.split(":")
    held = [socket.create_connection((host, int(port)), timeout=10)
            for _ in range(runtime_api.max_connections)]
    time.sleep(0.3)
    with socket.create_connection((host, int(port)), timeout=10) as extra:
        assert extra.makefile("rb").readline().split()[1] == b"503"
    for sock in held:
        sock.close()
