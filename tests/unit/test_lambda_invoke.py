"""Tests for roles/package_test/files/lambda_invoke/ against its real Runtime API server.

The tool runs as a subprocess (``python3 lambda_invoke ...``, the way the role runs it)
with a small fake runtime client in place of awslambdaric (``--client-module fake_ric``):
it asks for the next event, imports the handler module, and posts the handler's answer or
error, over one HTTP/1.1 connection, as awslambdaric does. Where handier, functions are
imported from the package. LAMBDA_INVOKE_PYTHON picks the interpreter that runs the tool
(default: this one), e.g. a python3.9 to check the oldest Python it supports.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from module_loading import load

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "package_test" / "files"
SCRIPT = FILES / "lambda_invoke"  # a package folder, run as `python3 lambda_invoke`
EVENTS = FILES / "lambda_events.json"
HANDLER_DIR = REPO / "handler"
LAMBDA_PACKAGE_DEFAULTS = REPO / "roles" / "lambda_package" / "defaults" / "main.yml"
SCRIPT_PYTHON = os.environ.get("LAMBDA_INVOKE_PYTHON", sys.executable)
NEXT = "/2018-06-01/runtime/invocation/next"

FAKE_RIC = '''
"""Acts like awslambdaric: one keep-alive connection, init/error, next, response/error."""
import http.client, importlib, json, os, sys, time


class Context:
    def __init__(self, request_id, deadline_ms, arn):
        self.aws_request_id = request_id
        self.deadline_ms = int(deadline_ms)
        self.invoked_function_arn = arn


def error_json(exc, request_id=""):
    return json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                       "requestId": request_id, "stackTrace": []})


def post(conn, path, body, headers=None):
    conn.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
    answer = conn.getresponse()
    answer.read()
    if answer.status != 202:
        sys.exit(f"fake_ric: POST {path} answered {answer.status}")


def main():
    conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
    module, name = sys.argv[1].rsplit(".", 1)
    try:
        handler = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        error_type = {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"}
        post(conn, "/2018-06-01/runtime/init/error", error_json(exc), error_type)
        sys.exit(1)
    ports = set()
    while True:
        conn.request("GET", "/2018-06-01/runtime/invocation/next")
        ports.add(conn.sock.getsockname()[1])
        got = conn.getresponse()
        event = json.loads(got.read())
        request_id = got.getheader("Lambda-Runtime-Aws-Request-Id")
        context = Context(request_id, got.getheader("Lambda-Runtime-Deadline-Ms"),
                          got.getheader("Lambda-Runtime-Invoked-Function-Arn"))
        context.connections = len(ports)
        base = "/2018-06-01/runtime/invocation/" + request_id
        try:
            post(conn, base + "/response", json.dumps(handler(event, context)))
        except Exception as exc:
            post(conn, base + "/error", error_json(exc, request_id))


main()
'''

FAKE_HANDLER = """
import json, os, time


def lambda_handler(event, context):
    if "fail" in event:
        raise ValueError(event["fail"])
    if "sleep" in event:
        time.sleep(event["sleep"])
    if "environ" in event:
        return {"environ": dict(os.environ), "cwd": os.getcwd(), "uid": os.getuid()}
    if "status" in event:
        return {"statusCode": event["status"], "body": json.dumps(event["payload"])}
    return {"echo": event, "request_id": context.aws_request_id,
            "arn": context.invoked_function_arn, "connections": context.connections,
            "deadline_in_future": context.deadline_ms > time.time() * 1000}
"""


def load_script() -> ModuleType:
    # Imported by its folder, as local_function's front imports it: one package object
    # whichever test module imports it first (a second copy would miss its submodules).
    sys.path.insert(0, str(SCRIPT.parent))
    return importlib.import_module("lambda_invoke")


invoke = load_script()
zipapp = load("zipapp_module", REPO / "plugins" / "modules" / "zipapp.py")


@dataclass
class Lambda:
    """A task root with a handler module, and a runtime dir with the fake client."""

    task_root: Path
    runtime_dir: Path
    opt_dir: Path

    def write_handler(self, source: str, name: str = "handler.py") -> None:
        (self.task_root / name).write_text(source)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    junit: ET.Element
    seconds: float

    def case(self, name: str) -> dict[str, Any]:
        return next(case for case in self.report["cases"] if case["name"] == name)


def make_lambda(base: Path) -> Lambda:
    layout = Lambda(base / "task", base / "runtime", base / "opt")
    for folder in (layout.task_root, layout.runtime_dir, layout.opt_dir):
        folder.mkdir(parents=True)
    (layout.runtime_dir / "fake_ric.py").write_text(FAKE_RIC)
    layout.write_handler(FAKE_HANDLER)
    return layout


@pytest.fixture
def fake_lambda(tmp_path: Path) -> Lambda:
    return make_lambda(tmp_path / "lambda")


def run_invoke(
    layout: Lambda,
    cases: list[dict[str, Any]],
    *extra: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    script: Path = SCRIPT,
) -> Run:
    out = layout.task_root.parent / "out"
    events = layout.task_root.parent / "events.json"
    events.write_text(json.dumps(cases))
    command = [
        SCRIPT_PYTHON, str(script), "--python", python,
        "--task-root", str(layout.task_root), "--runtime-dir", str(layout.runtime_dir),
        "--opt-dir", str(layout.opt_dir), "--events", str(events),
        "--junit", str(out / "lambda-runtime.xml"), "--report", str(out / "lambda-runtime.json"),
        "--client-module", "fake_ric", "--timeout", "20", *extra,
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    seconds = time.monotonic() - started
    report_file, junit_file = out / "lambda-runtime.json", out / "lambda-runtime.xml"
    report = json.loads(report_file.read_text()) if report_file.exists() else {}
    junit = ET.parse(junit_file).getroot() if junit_file.exists() else ET.Element("none")
    return Run(done.returncode, done.stdout, done.stderr, report, junit, seconds)


def response(name: str, event: Any, **expect: Any) -> dict[str, Any]:
    return {"name": name, "event": event, "expect": {"kind": "response", **expect}}


def error(name: str, event: Any, error_type: str) -> dict[str, Any]:
    return {"name": name, "event": event, "expect": {"kind": "error", "error_type": error_type}}


# ------------------------------------------------------------- a run with mixed cases

MIXED = [
    response(
        "direct echo",
        {"x": 0.7384123, "ok": True},
        json_subset={"echo": {"x": 0.7384, "ok": True}, "deadline_in_future": True},
        abs_tol=0.00005,
    ),
    response(
        "proxy answer",
        {"status": 200, "payload": {"probability": 0.3743, "admit": False}},
        status_code=200,
        body_json_subset={"probability": 0.3743},
    ),
    error("handler raises", {"fail": "gre is required"}, "ValueError"),
    response("wrong answer", {"status": 400, "payload": {}}, status_code=200),
    response("kept the connection", {"y": 1}, json_subset={"connections": 1}),
]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_invoke(make_lambda(tmp_path_factory.mktemp("mixed")), MIXED)


def test_the_stand_in_packed_into_one_file_runs_as_the_folder_does(
    mixed_run: Run, tmp_path: Path
) -> None:
    # As package_test and deploy ship it: one zip application (module r_lambda.release.zipapp).
    pyz = tmp_path / "lambda_invoke.pyz"
    pyz.write_bytes(zipapp.pack(SCRIPT, "lambda_invoke.cli:main"))
    packed = run_invoke(make_lambda(tmp_path / "lambda"), MIXED, script=pyz)
    assert (packed.rc, packed.stdout.splitlines()[-1:]) == (1, mixed_run.stdout.splitlines()[-1:])
    def outcome(run: Run) -> list[tuple[str, bool, str]]:
        # The case, whether it passed, and where the client posted (response or error).
        cases = run.report["cases"]
        return [(c["name"], c["passed"], c["posted_to"].rsplit("/", 1)[-1]) for c in cases]

    assert outcome(packed) == outcome(mixed_run)


def test_mixed_run_exits_1_and_last_line_counts_cases(mixed_run: Run) -> None:
    assert mixed_run.rc == 1, mixed_run.stderr
    assert mixed_run.stdout.splitlines()[-1] == "4 passed, 1 failed"
    assert (mixed_run.report["passed"], mixed_run.report["failed"]) == (4, 1)
    assert mixed_run.report["error"] is None
    assert "Exception occurred" not in mixed_run.stderr  # the stopped client's reset is quiet


def test_responses_are_matched_with_tolerance_and_status(mixed_run: Run) -> None:
    echo = mixed_run.case("direct echo")
    assert echo["passed"] is True and echo["message"] is None
    assert re.fullmatch(r"/2018-06-01/runtime/invocation/[0-9a-f-]{36}/response", echo["posted_to"])
    posted = json.loads(echo["body"])
    assert posted["echo"] == {"x": 0.7384123, "ok": True}
    assert echo["posted_to"].split("/")[-2] == posted["request_id"]
    assert posted["arn"] == "arn:aws:lambda:us-east-1:123456789012:function:lambda-invoke-test"
    assert mixed_run.case("proxy answer")["passed"] is True


def test_one_keep_alive_connection_serves_every_invocation(mixed_run: Run) -> None:
    assert mixed_run.case("kept the connection")["passed"] is True


def test_an_error_posted_to_error_is_recorded(mixed_run: Run) -> None:
    case = mixed_run.case("handler raises")
    assert case["passed"] is True
    assert case["posted_to"].endswith("/error")
    body = json.loads(case["body"])
    assert (body["errorType"], body["errorMessage"]) == ("ValueError", "gre is required")


def test_a_wrong_answer_fails_with_what_differs(mixed_run: Run) -> None:
    case = mixed_run.case("wrong answer")
    assert case["passed"] is False
    assert case["message"] == "statusCode: expected 200, got 400"
    assert "FAILED wrong answer: statusCode: expected 200, got 400" in mixed_run.stderr


def test_report_has_timings_peak_rss_and_python(mixed_run: Run) -> None:
    report = mixed_run.report
    version = subprocess.run(
        [sys.executable, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert report["python"] == version
    assert 0 < report["init_s"] < mixed_run.seconds
    assert report["first_invoke_s"] == report["cases"][0]["seconds"]
    assert all(0 <= case["seconds"] < 5 for case in report["cases"])
    assert 1 < report["peak_rss_mb"] < 500  # a Python process: some MB
    assert [case["name"] for case in report["cases"]] == [case["name"] for case in MIXED]


def test_junit_has_one_testcase_per_event_with_the_posted_body(mixed_run: Run) -> None:
    assert mixed_run.junit.tag == "testsuites"
    (suite,) = mixed_run.junit.findall("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "1", "0")
    testcases = suite.findall("testcase")
    assert [case.get("name") for case in testcases] == [case["name"] for case in MIXED]
    for element, case in zip(testcases, mixed_run.report["cases"]):
        assert element.findtext("system-out") == f"POST {case['posted_to']}\n{case['body']}"
        failure = element.find("failure")
        assert (failure is None) == case["passed"]
    failure = testcases[3].find("failure")
    assert failure is not None and failure.get("message") == "statusCode: expected 200, got 400"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["python"] == mixed_run.report["python"]


# --------------------------------------------------------------------- what it sees


def test_client_sees_only_lambdas_environment(fake_lambda: Lambda) -> None:
    parent = {
        **os.environ,
        "R_HOME": "/usr/lib/R",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/root",
        "SECRET_TOKEN": "x",
    }
    run = run_invoke(
        fake_lambda,
        [response("environment", {"environ": True}, json_subset={"uid": os.getuid()})],
        "--env", "MODEL_PATH=/var/task/admission.rds", "--function-name", "r-admission",
        env=parent,
    )  # fmt: skip
    assert run.rc == 0, run.stderr
    seen = json.loads(run.case("environment")["body"])
    environ = seen.pop("environ")
    environ.pop("LC_CTYPE", None)  # Python's own C-locale coercion (PEP 538), if any
    task, runtime, opt = fake_lambda.task_root, fake_lambda.runtime_dir, fake_lambda.opt_dir
    minor = "{}.{}".format(*sys.version_info[:2])
    api = environ.pop("AWS_LAMBDA_RUNTIME_API")
    assert re.fullmatch(r"127\.0\.0\.1:\d+", api)
    stream = environ.pop("AWS_LAMBDA_LOG_STREAM_NAME")
    assert re.fullmatch(r"\d{4}/\d\d/\d\d/\[\$LATEST\][0-9a-f]{32}", stream)
    assert environ == {
        "PATH": os.environ["PATH"],
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": (
            f"/var/lang/lib:/lib64:/usr/lib64:{runtime}:{runtime}/lib:{task}:{task}/lib:{opt}/lib"
        ),
        "PYTHONPATH": f"{task}:{opt}/python/lib/python{minor}/site-packages:{opt}/python:{runtime}",
        "LAMBDA_TASK_ROOT": str(task),
        "LAMBDA_RUNTIME_DIR": str(runtime),
        "_HANDLER": "handler.lambda_handler",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{minor}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": "r-admission",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/r-admission",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MODEL_PATH": "/var/task/admission.rds",
    }
    assert seen["cwd"] == str(task)


def test_default_library_path_is_lambdas(fake_lambda: Lambda) -> None:
    args = invoke.parse_args(
        ["--python", "python3", "--task-root", str(fake_lambda.task_root), "--events", "e",
         "--junit", "j", "--report", "r", "--runtime-dir", "/var/runtime", "--opt-dir", "/opt"]
    )  # fmt: skip
    args.task_root = "/var/task"
    env = invoke.lambda_environment(args, "3.13.5", "127.0.0.1:9001")
    assert env["LD_LIBRARY_PATH"] == (
        "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:"
        "/opt/lib"
    )
    assert env["PYTHONPATH"] == (
        "/var/task:/opt/python/lib/python3.13/site-packages:/opt/python:/var/runtime"
    )
    assert "R_HOME" not in env and "PYTHONDONTWRITEBYTECODE" not in env and "HOME" not in env


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture
def world_readable_lambda() -> Iterator[Lambda]:
    """A layout another user can read (pytest's tmp_path is private to its user)."""
    base = Path(tempfile.mkdtemp(prefix="lambda-invoke-"))
    try:
        base.chmod(0o755)
        yield make_lambda(base)
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root, setpriv and a python3 that user nobody can run",
)
def test_user_runs_the_client_unprivileged(world_readable_lambda: Lambda) -> None:
    nobody = pwd.getpwnam("nobody")
    run = run_invoke(
        world_readable_lambda,
        [response("as nobody", {"environ": True}, json_subset={"uid": nobody.pw_uid})],
        "--user", "nobody",
        python=SYSTEM_PYTHON,
    )  # fmt: skip
    assert run.rc == 0, run.stderr
    assert run.report["peak_rss_mb"] > 1  # read from the client itself, not setpriv


def test_user_without_setpriv_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invoke.client.os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(invoke.UsageError, match=r"needs setpriv.*install util-linux"):
        invoke.run_as("nobody")


def test_user_that_does_not_exist_is_a_clear_error() -> None:
    with pytest.raises(invoke.UsageError, match="no-such-user-here: no such user"):
        invoke.run_as("no-such-user-here")


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
