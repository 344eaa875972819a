"""Tests for src/local_function/ (role local_function's front): the HTTP API (v2) event and
answer mapping, the one-invocation-at-a-time dispatch, and blue/green deploys.

The front runs in this process with its real endpoint and Runtime APIs; each environment
is the fake runtime client of test_lambda_invoke.py run as a local process instead of a
podman container (``LocalFront``), serving a small handler from a real zip.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from invoke_support import FAKE_RIC

from local_function.common import FrontError
from local_function.endpoint import MAX_PAYLOAD, EndpointServer
from local_function.environments import Dispatcher, Generation, Spec, file_sha256
from local_function.events import http_api_event, proxy_answer
from local_function.front import Front

REPO = Path(__file__).resolve().parents[2]

HANDLER = """
import json, os, time

def lambda_handler(event, context):
    query = event.get("queryStringParameters") or {}
    if "fail" in query:
        raise ValueError("boom at /secret/path")
    started = time.time()
    time.sleep(float(query.get("sleep", 0)))
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"pid": os.getpid(), "start": started, "end": time.time(),
                                "path": event["rawPath"],
                                "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"]})}
"""


# ----------------------------------------------------------------- the event mapping


def test_a_request_becomes_an_http_api_v2_event() -> None:
    event = http_api_event(
        "post", "/predict/x?b=2&a=1&a=3", [("Content-Type", "application/json"),
                                           ("X-Thing", "one"), ("x-thing", "two"),
                                           ("Cookie", "c1=v1; c2=v2")],
        b'{"gre": 800}', "127.0.0.1", "rid-1", "127.0.0.1:9000", now=1700000000.5)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/predict/x"
    assert event["rawQueryString"] == "b=2&a=1&a=3"
    assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
    assert event["headers"] == {"content-type": "application/json", "x-thing": "one,two"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["body"] == '{"gre": 800}'
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {"method": "POST", "path": "/predict/x", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": ""}
    assert context["requestId"] == "rid-1"
    assert context["stage"] == "$default"
    assert context["timeEpoch"] == 1700000000500
    assert context["time"] == "14/Nov/2023:22:13:20 +0000"


def test_a_binary_body_is_base64_and_no_body_no_key() -> None:
    binary = http_api_event("POST", "/", [("Content-Type", "application/octet-stream")],
                               b"\x00\xff", "127.0.0.1", "r", "d")
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\xff"
    empty = http_api_event("GET", "/", [], b"", "127.0.0.1", "r", "d")
    assert "body" not in empty and "queryStringParameters" not in empty
    assert empty["isBase64Encoded"] is False


def test_a_proxy_answer_becomes_the_http_answer() -> None:
    posted = json.dumps({"statusCode": 400, "headers": {"Content-Type": "application/json"},
                         "cookies": ["a=b"], "body": '{"error": "BadRequest"}'}).encode()
    answer = proxy_answer("response", posted, "rid")
    assert answer.status == 400
    assert answer.headers == [("Content-Type", "application/json"), ("Set-Cookie", "a=b")]
    assert answer.body == b'{"error": "BadRequest"}'
    encoded = json.dumps({"statusCode": 200, "body": base64.b64encode(b"\x01").decode(),
                          "isBase64Encoded": True}).encode()
    assert proxy_answer("response", encoded, "rid").body == b"\x01"


def test_an_answer_without_status_code_is_a_200_json_body() -> None:
    answer = proxy_answer("response", b'{"probability": 0.5}', "rid")
    assert (answer.status, answer.body) == (200, b'{"probability": 0.5}')
    assert answer.headers == [("Content-Type", "application/json")]


@pytest.mark.parametrize("kind, posted, message", [
    ("error", b'{"errorType": "ValueError", "errorMessage": "at /secret", "stackTrace": ["x"]}',
     "the function failed"),
    ("response", b'{"statusCode": "200"}', "the function answered statusCode '200'"),
    ("response", b"not json", "the function's answer is not JSON"),
])  # fmt: skip
def test_a_function_error_or_bad_answer_is_a_short_502(kind: str, posted: bytes,
                                                       message: str) -> None:
    answer = proxy_answer(kind, posted, "rid")
    body = json.loads(answer.body)
    assert answer.status == 502
    assert body["message"] == message
    assert "secret" not in answer.body.decode() and "stackTrace" not in body


# ----------------------------------------------------------------------- the dispatch


class FakeApi:
    first_next = 1.0


class FakeEnv:
    def __init__(self, name: str) -> None:
        self.name, self.api, self.busy, self.dead = name, FakeApi(), False, False

    def usable(self) -> bool:
        return not self.busy and not self.dead and self.api.first_next is not None


def generation(number: int, *names: str) -> Any:
    return Generation(number, None, Path("/nonexistent"), [FakeEnv(n) for n in names])


def test_an_environment_takes_one_invocation_at_a_time() -> None:
    dispatcher = Dispatcher()
    dispatcher.activate(generation(1, "a"))
    env = dispatcher.acquire(1)
    assert env.name == "a" and env.busy
    assert dispatcher.acquire(0.05) is None  # busy: the next one waits, then gives up
    dispatcher.release(env)
    assert dispatcher.acquire(0.05) is env


def test_waiting_requests_are_served_in_arrival_order() -> None:
    dispatcher = Dispatcher()
    dispatcher.activate(generation(1, "a"))
    first = dispatcher.acquire(1)
    order: list[int] = []

    def wait(index: int) -> None:
        env = dispatcher.acquire(5)
        order.append(index)
        dispatcher.release(env)

    threads = []
    for index in range(5):
        threads.append(threading.Thread(target=wait, args=(index,)))
        threads[-1].start()
        time.sleep(0.02)  # arrive in this order
    dispatcher.release(first)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_swap_sends_waiting_requests_to_the_new_generation() -> None:
    dispatcher = Dispatcher()
    old, new = generation(1, "old"), generation(2, "new")
    dispatcher.activate(old)
    held = dispatcher.acquire(1)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(dispatcher.acquire(5)))
    waiter.start()
    time.sleep(0.05)
    assert dispatcher.activate(new) is old
    waiter.join(5)
    assert got[0].name == "new"
    assert not dispatcher.wait_idle(old, 0.05)  # "old" still holds its invocation
    dispatcher.release(held)
    assert dispatcher.wait_idle(old, 1)


def test_a_dead_or_initialising_environment_is_not_handed_out() -> None:
    dispatcher = Dispatcher()
    gen = generation(1, "dead", "init", "ok")
    gen.environments[0].dead = True
    gen.environments[1].api = type("Api", (), {"first_next": None})()
    dispatcher.activate(gen)
    assert dispatcher.acquire(1).name == "ok"


# -------------------------------------------------- the front with fake runtime clients


class LocalFront(Front):
    """Each environment is the fake runtime client, a local process, not a container."""

    fake_dir: Path

    def container_command(self, name: str, generation: Any, runtime: Path,
                          env: dict[str, str], api_dir: Path) -> tuple[list[str], dict[str, str]]:
        """The fake client behind relay.py (a free port), as in the container."""
        env = {**env, "PATH": os.environ["PATH"],
               "PYTHONPATH": f"{generation.task_dir}:{self.fake_dir}"}
        return [sys.executable, str(api_dir / "relay.py"), str(api_dir / "api.sock"), "0", "--",
                sys.executable, "-m", "fake_ric", generation.spec.handler], env

    def remove_container(self, name: str) -> None:
        """No container: stopping the client is enough."""


@contextlib.contextmanager
def running_front(tmp_path: Path) -> Iterator[tuple[Any, int]]:
    """A LocalFront and its endpoint on a free port, stopped at the end."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "fake_ric.py").write_text(FAKE_RIC)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "empty-0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("empty/__init__.py", "")
    state = tmp_path / "state"
    state.mkdir()
    front = LocalFront(state, 0, "r-lambda-fn-test")
    front.fake_dir = fake
    server = EndpointServer(0, front)
    front.endpoint_server = server  # for tests that wait on its connections
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield front, server.server_address[1]
    finally:
        server.shutdown()
        front.stop()
        server.server_close()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[tuple[Any, int]]:
    with running_front(tmp_path) as running:
        yield running


def spec(tmp_path: Path, version: str, environments: int = 1, source: str = HANDLER) -> Any:
    package = tmp_path / f"{version}.zip"
    with zipfile.ZipFile(package, "w") as archive:
        archive.writestr("handler.py", source)
    return Spec(package=str(package), sha256=file_sha256(package), version=version,
                   environments=environments, image="unused", python="python3.13",
                   memory="128m", timeout=10, init_timeout=20,
                   handler="handler.lambda_handler", function_name="t",
                   wheels=str(tmp_path / "wheels"))


def request(port: int, target: str = "/", body: bytes = b"{}") -> tuple[int, dict, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", target, body, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    data = answer.read()
    conn.close()
    return answer.status, dict(answer.getheaders()), json.loads(data)


def test_nothing_deployed_answers_503(front: tuple[Any, int]) -> None:
    assert request(front[1])[0] == 503


def test_one_environment_serves_concurrent_requests_one_at_a_time(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    result = served.deploy(spec(tmp_path, "v1"))
    assert result["changed"] and result["environments"] == 1
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(request(port, "/p?sleep=0.2")))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [status for status, _, _ in answers] == [200, 200, 200]
    spans = sorted((body["start"], body["end"]) for _, _, body in answers)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))
    assert {body["path"] for _, _, body in answers} == {"/p"}
    assert {headers["X-Function-Version"] for _, headers, _ in answers} == {"v1"}


def test_the_same_package_and_settings_again_change_nothing(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, _ = front
    first = spec(tmp_path, "v1")
    served.deploy(first)
    assert served.deploy(first)["changed"] is False


def test_a_function_error_answers_502_without_its_message(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1"))
    status, _, body = request(port, "/?fail=1")
    assert status == 502
    assert body["error_type"] == "ValueError" and "secret" not in json.dumps(body)
    assert request(port)[0] == 200  # the environment lives on


def _status_of_raw_post(port: int, head: bytes, body_parts: Iterator[bytes]) -> int:
    """POST by hand; the server may answer and close before the body is sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def test_a_body_over_lambdas_6_mb_is_refused_413_sized_or_chunked(
        front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1"))
    size, mib = MAX_PAYLOAD + 1, 1 << 20
    sized = f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    assert _status_of_raw_post(port, sized, iter([b"x" * size])) == 413
    chunked = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = (b"%x\r\n%s\r\n" % (mib, b"x" * mib) for _ in range(size // mib + 1))
    assert _status_of_raw_post(port, chunked, chunks) == 413
    assert request(port)[0] == 200


def test_a_redeploy_under_load_drops_no_request(front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1", environments=2))
    old_clients = [env.client for env in served.dispatcher.active.environments]
    stop = threading.Event()
    seen: Counter[tuple[int, str]] = Counter()

    def load() -> None:
        while not stop.is_set():
            try:
                status, headers, _ = request(port, "/?sleep=0.01")
            except (OSError, ValueError) as error:  # dropped, reset or garbled: a failure
                seen[(0, type(error).__name__)] += 1
                continue
            seen[(status, headers.get("X-Function-Version"))] += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    result = served.deploy(spec(tmp_path, "v2", environments=2))
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert result["version"] == "v2" and result["generation"] == 2
    assert {status for status, _ in seen} == {200}
    assert seen[(200, "v1")] > 0 and seen[(200, "v2")] > 0
    assert request(port)[1]["X-Function-Version"] == "v2"
    assert not any(client.alive() for client in old_clients)


def test_a_failed_deploy_keeps_the_served_release(front: tuple[Any, int], tmp_path: Path) -> None:
    served, port = front
    served.deploy(spec(tmp_path, "v1"))
    with pytest.raises(FrontError, match="init error"):
        served.deploy(spec(tmp_path, "broken", source="import no_such_module\n"))
    status, headers, _ = request(port)
    assert (status, headers["X-Function-Version"]) == (200, "v1")
    assert "broken" in served.state()["last_error"]
