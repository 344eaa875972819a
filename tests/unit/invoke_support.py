"""What the lambda_invoke tests share: the tool as the role runs it (its zip application), a
fake runtime client and handler in a Lambda-like folder, and runs of the tool
(tests/unit/test_lambda_invoke*.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zipapps import packed, zipapp  # noqa: F401 (the tests import zipapp from here)

# The tool's modules, from the package installed in the virtualenv (src/lambda_invoke).
import lambda_invoke as invoke  # noqa: F401 (the tests import it from here)

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "roles" / "package_test" / "files"
# As package_test and deploy ship it: src/lambda_invoke packed into one file, run as
# `python3 lambda_invoke.pyz` (module r_lambda.release.zipapp).
SCRIPT = packed("lambda_invoke.cli:main", "lambda_invoke")
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


def run_invoke(
    layout: Lambda,
    cases: list[dict[str, Any]],
    *extra: str,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    tool: Sequence[str] = (SCRIPT_PYTHON, str(SCRIPT)),
) -> Run:
    out = layout.task_root.parent / "out"
    events = layout.task_root.parent / "events.json"
    events.write_text(json.dumps(cases))
    command = [
        *tool, "--python", python,
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


# A run with mixed cases: every kind of answer and failure the tool must tell apart.
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
