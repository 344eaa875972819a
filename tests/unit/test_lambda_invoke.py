"""Tests for src/lambda_invoke/ (the Runtime API stand-in) against its real Runtime API server:
a run with mixed cases and what the client sees (failures, matching, the server itself and
the shipped events: test_lambda_invoke_failures.py; shared parts: invoke_support.py).

The tool runs as a subprocess (``python3 lambda_invoke ...``, the way the role runs it)
with a small fake runtime client in place of awslambdaric (``--client-module fake_ric``):
it asks for the next event, imports the handler module, and posts the handler's answer or
error, over one HTTP/1.1 connection, as awslambdaric does. Where handier, functions are
imported from the package. LAMBDA_INVOKE_PYTHON picks the interpreter that runs the tool
(default: this one), e.g. a python3.9 to check the oldest Python it supports.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke_support import (
    MIXED,
    Lambda,
    Run,
    invoke,
    make_lambda,
    response,
    run_invoke,
)


@pytest.fixture
def fake_lambda(tmp_path: Path) -> Lambda:
    return make_lambda(tmp_path / "lambda")

# ------------------------------------------------------------- a run with mixed cases



@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return run_invoke(make_lambda(tmp_path_factory.mktemp("mixed")), MIXED)


def test_the_stand_in_packed_into_one_file_runs_as_the_installed_package_does(
    mixed_run: Run, tmp_path: Path
) -> None:
    # mixed_run ran it as package_test and deploy ship it: one zip application (module
    # r_lambda.release.zipapp); here the package installed in the virtualenv runs it.
    installed = run_invoke(make_lambda(tmp_path / "lambda"), MIXED,
                           tool=(sys.executable, "-m", "lambda_invoke"))
    assert (installed.rc, installed.stdout.splitlines()[-1:]) == (
        1, mixed_run.stdout.splitlines()[-1:])
    def outcome(run: Run) -> list[tuple[str, bool, str]]:
        # The case, whether it passed, and where the client posted (response or error).
        cases = run.report["cases"]
        return [(c["name"], c["passed"], c["posted_to"].rsplit("/", 1)[-1]) for c in cases]

    assert outcome(mixed_run) == outcome(installed)


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
