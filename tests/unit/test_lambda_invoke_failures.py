"""lambda_invoke (src/lambda_invoke/): a client that fails, answers
compared with their expectations, the Runtime API server itself, and the shipped events
file against the real handler (shared parts: invoke_support.py)."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke_support import (
    EVENTS,
    HANDLER_DIR,
    LAMBDA_PACKAGE_DEFAULTS,
    MIXED,
    NEXT,
    Lambda,
    error,
    invoke,
    make_lambda,
    response,
    run_invoke,
)


@pytest.fixture
def fake_lambda(tmp_path: Path) -> Lambda:
    return make_lambda(tmp_path / "lambda")

# ------------------------------------------------------------------- client failures


def test_client_that_crashes_at_init_fails_with_its_stderr(fake_lambda: Lambda) -> None:
    fake_lambda.write_handler(
        "import sys\nsys.stderr.write('libR.so: cannot open shared object file\\n')\nsys.exit(7)\n"
    )
    run = run_invoke(fake_lambda, MIXED[:2])
    assert run.rc == 3
    assert "the runtime client exited with status 7 before answering case 'direct echo'" in (
        run.stderr
    )
    assert "    libR.so: cannot open shared object file" in run.stderr
    assert run.stdout.splitlines()[-1] == "0 passed, 2 failed"
    first, second = run.report["cases"]
    assert first["message"].startswith("the runtime client exited with status 7")
    assert second["message"].startswith("not run: the runtime client exited with status 7")
    assert run.report["init_s"] is None and run.report["error"] == first["message"]
    assert [len(case.findall("error")) for case in run.junit.iter("testcase")] == [1, 1]


def test_client_killed_by_a_signal_names_the_signal(fake_lambda: Lambda) -> None:
    """What a crash in R (a segfault while the handler runs) looks like."""
    fake_lambda.write_handler(
        "import os, signal\n\n"
        "def lambda_handler(event, context):\n"
        "    os.kill(os.getpid(), signal.SIGSEGV)\n"
    )
    run = run_invoke(fake_lambda, MIXED[:1])
    assert run.rc == 3
    assert "the runtime client was killed by SIGSEGV before answering case 'direct echo'" in (
        run.stderr
    )
    assert run.report["init_s"] is not None  # it did ask for the event


def test_init_error_post_fails_the_run(fake_lambda: Lambda) -> None:
    fake_lambda.write_handler("import rpy2_is_not_here\n")
    run = run_invoke(fake_lambda, MIXED[:1])
    assert run.rc == 3
    assert (
        "the runtime client reported an init error: ModuleNotFoundError: No module named "
        "'rpy2_is_not_here' (Lambda-Runtime-Function-Error-Type: Runtime.ImportModuleError)"
    ) in run.stderr
    assert run.report["failed"] == 1


def test_no_answer_within_timeout_stops_the_client(fake_lambda: Lambda) -> None:
    run = run_invoke(
        fake_lambda, [response("slow", {"sleep": 60}, json_subset={})], "--timeout", "1"
    )
    assert run.rc == 3
    assert "the runtime client did not answer case 'slow' within 1 s" in run.stderr
    assert run.seconds < 15  # SIGTERM ended the sleeping client; it was not waited for


def test_bad_events_file_exits_2_before_starting_anything(fake_lambda: Lambda) -> None:
    run = run_invoke(fake_lambda, [error("no type", {}, ""), {"name": "x", "event": {}}])
    assert run.rc == 2
    assert "case 'x': expect must be an object with kind response or error" in run.stderr
    assert run.report == {}


@pytest.mark.parametrize(
    ("cases", "message"),
    [
        ([], "non-empty JSON list"),
        ([{"name": "a", "event": {}, "expect": {"kind": "error"}}], "needs error_type"),
        ([{"name": "a", "event": {}, "expect": {"kind": "response"}}], "needs one of"),
        (
            [{"name": "a", "event": {}, "expect": {"kind": "response", "json": {}}}],
            "unknown key",
        ),
        ([response("a", {}, json_subset={}), response("a", {}, json_subset={})], "used twice"),
        ([response("a", {}, json_subset={}, abs_tol=-1)], "abs_tol must be a number >= 0"),
        ([response("a", {}, status_code="200")], "status_code must be an integer"),
        ([{"name": "a", "expect": {"kind": "error", "error_type": "E"}}], "exactly name, event"),
    ],
)
def test_events_file_is_checked(cases: list[Any], message: str) -> None:
    with pytest.raises(invoke.UsageError, match=message):
        invoke.parse_cases(cases)


# ------------------------------------------------------------------ subset matching


@pytest.mark.parametrize(
    ("expected", "actual", "tol", "problems"),
    [
        ({"a": 1}, {"a": 1, "b": 2}, 0, []),
        ({"p": 0.7384}, {"p": 0.73844}, 0.00005, []),
        ({"p": 0.7384}, {"p": 0.7385}, 5e-5, ["$.p: expected 0.7384 (abs_tol 5e-05), got 0.7385"]),
        ({"r": True}, {"r": 1}, 0, ["$.r: expected true, got 1"]),
        ({"n": 1}, {"n": True}, 0.5, ["$.n: expected 1 (abs_tol 0.5), got true"]),
        ({"s": "1"}, {"s": 1}, 0, ['$.s: expected "1", got 1']),
        ({"a": {"b": None}}, {"a": {}}, 0, ["$.a.b: missing"]),
        ([{"x": 1}], [{"x": 1}, {}], 0, ['$: expected a list of 1, got [{"x": 1}, {}]']),
        ([1, {"x": 2}], [1, {"x": 3}], 0, ["$[1].x: expected 2, got 3"]),
    ],
)  # fmt: skip
def test_subset_mismatches(expected: Any, actual: Any, tol: float, problems: list[str]) -> None:
    assert invoke.subset_mismatches(expected, actual, "$", tol) == problems


def test_body_json_subset_needs_a_json_string_body() -> None:
    expect = {"kind": "response", "body_json_subset": {"a": 1}}
    assert invoke.judge(expect, "response", b'{"body": "{\\"a\\": 1}"}') is None
    assert invoke.judge(expect, "response", b'{"body": {"a": 1}}') == (
        'body: expected a string of JSON, got {"body": {"a": 1}}'
    )
    assert invoke.judge(expect, "error", b'{"errorType": "E", "errorMessage": "m"}') == (
        "expected a response, the client posted an error: E: m"
    )


def test_ignored_keys_leave_the_answers_of_another_model_out_of_the_comparison() -> None:
    [case] = invoke.parse_cases(
        [
            {
                "name": "batch",
                "event": {},
                "expect": {
                    "kind": "response",
                    "status_code": 200,
                    "body_json_subset": {"results": [{"result": True, "probability": 0.7}]},
                },
            }
        ]
    )
    body = json.dumps({"results": [{"result": False, "probability": 0.2}]})
    other_model = json.dumps({"statusCode": 200, "body": body}).encode()
    assert invoke.judge(case.expect, "response", other_model) is not None
    [ignoring] = invoke.ignoring([case], ["probability", "result"])
    assert ignoring.expect["body_json_subset"] == {"results": [{}]}
    assert invoke.judge(ignoring.expect, "response", other_model) is None
    # A wrong status or shape still fails.
    assert invoke.judge(ignoring.expect, "response", b'{"statusCode": 400, "body": "{}"}')
    assert invoke.ignoring([case], []) == [case]


# -------------------------------------------------------------- the HTTP server itself


@pytest.fixture
def server() -> Iterator[Any]:
    api = invoke.RuntimeApi("arn:aws:lambda:us-east-1:123456789012:function:f", 30)
    running = invoke.RuntimeApiServer(api)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def test_server_speaks_http11_keep_alive_with_lambdas_headers(server: Any) -> None:
    invocation = server.api.submit({"gre": 800})
    conn = http.client.HTTPConnection(server.address, timeout=10)
    conn.request("GET", NEXT)
    got = conn.getresponse()
    body = got.read()
    sock = conn.sock
    assert (got.status, got.version, body) == (200, 11, b'{"gre": 800}')
    assert got.getheader("Content-Length") == str(len(body))
    assert got.getheader("Content-Type") == "application/json"  # exactly: awslambdaric checks
    assert got.getheader("Lambda-Runtime-Aws-Request-Id") == invocation.request_id
    assert int(got.getheader("Lambda-Runtime-Deadline-Ms")) > time.time() * 1000 + 25_000
    assert got.getheader("Lambda-Runtime-Invoked-Function-Arn").endswith(":function:f")
    assert re.fullmatch(
        r"Root=1-[0-9a-f]{8}-[0-9a-f]{24};Parent=[0-9a-f]{16};Sampled=0",
        got.getheader("Lambda-Runtime-Trace-Id"),
    )
    path = f"/2018-06-01/runtime/invocation/{invocation.request_id}/response"
    conn.request("POST", path, b'{"ok": true}', {"Content-Type": "application/json"})
    posted = conn.getresponse()
    assert (posted.status, posted.read()) == (202, b'{"status":"OK"}')
    assert conn.sock is sock  # the same connection: not closed by the server
    assert (invocation.kind, invocation.posted_to, invocation.body) == (
        "response",
        path,
        b'{"ok": true}',
    )
    conn.request("POST", path, b"{}")  # answered already: Lambda's 400
    again = conn.getresponse()
    assert again.status == 400 and b"InvalidRequestID" in again.read()
    conn.close()


def test_server_reads_a_chunked_error_and_an_init_error(server: Any) -> None:
    invocation = server.api.submit({})
    conn = http.client.HTTPConnection(server.address, timeout=10)
    conn.request("GET", NEXT)
    conn.getresponse().read()
    chunks = iter([b'{"errorType": ', b'"BadRequest"}'])
    path = f"/2018-06-01/runtime/invocation/{invocation.request_id}/error"
    conn.request("POST", path, chunks, encode_chunked=True)
    posted = conn.getresponse()
    assert (posted.status, posted.read()) == (202, b'{"status":"OK"}')
    assert invocation.body == b'{"errorType": "BadRequest"}' and invocation.kind == "error"
    header = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
    conn.request("POST", "/2018-06-01/runtime/init/error", b'{"errorMessage": "m"}', header)
    assert conn.getresponse().status == 202
    assert server.api.init_error.error_type == "Runtime.ImportModuleError"
    conn.close()


# ---------------------------------------------------------- the shipped events file


def test_shipped_events_cover_the_five_shapes() -> None:
    cases = invoke.load_cases(str(EVENTS))
    shapes = []
    for case in cases:
        event = case.event
        if "httpMethod" in event:
            shapes.append(("v1", case.expect.get("status_code")))
        elif event.get("version") == "2.0":
            shapes.append(("v2", case.expect.get("status_code")))
        else:
            shapes.append(("direct", case.expect["kind"]))
    assert shapes == [
        ("direct", "response"),
        ("v2", 200),
        ("v1", 200),
        ("v2", 400),
        ("direct", "error"),
    ]


def _python_with_rpy2() -> bool:
    check = [sys.executable, "-c", "import rpy2.rinterface"]
    return shutil.which("Rscript") is not None and subprocess.run(check).returncode == 0


@pytest.mark.skipif(not _python_with_rpy2(), reason="needs R (Rscript) and rpy2")
def test_shipped_events_pass_against_the_real_handler(fake_lambda: Lambda) -> None:
    """The handler and model of this repository, through the fake client."""
    model = fake_lambda.task_root / "admission.rds"
    train = [
        "Rscript",
        str(HANDLER_DIR / "model" / "train.R"),
        str(HANDLER_DIR / "model" / "binary.csv"),
        str(model),
    ]
    subprocess.run(train, check=True, capture_output=True, timeout=120)
    defaults = yaml.safe_load(LAMBDA_PACKAGE_DEFAULTS.read_text())
    for name in defaults["lambda_package_handler_files"]:  # as a package holds them
        shutil.copy(HANDLER_DIR / name, fake_lambda.task_root / name)
    run = run_invoke(fake_lambda, json.loads(EVENTS.read_text()))
    assert run.rc == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "5 passed, 0 failed"
    error_case = run.report["cases"][-1]
    assert json.loads(error_case["body"])["errorType"] == "BadRequest"


def test_judge_refuses_an_error_that_shows_stack_frames_when_told_to() -> None:
    expect = {"kind": "error", "error_type": "BadRequest", "no_stack_trace": True}
    clean = {"errorType": "BadRequest", "errorMessage": "{}", "stackTrace": []}
    framed = {**clean, "stackTrace": ['  File "/var/task/handler.py", line 9, in h\n']}
    assert invoke.judge(expect, "error", json.dumps(clean).encode()) is None
    assert "expected no stack frames, the caller is shown 1" in invoke.judge(
        expect, "error", json.dumps(framed).encode()
    )
    assert (
        invoke.judge({**expect, "no_stack_trace": False}, "error", json.dumps(framed).encode())
        is None
    )
