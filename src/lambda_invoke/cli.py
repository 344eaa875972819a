"""The command line: the arguments, and main(), which serves the Runtime API, runs the client
and the cases, writes the outputs and returns the exit status (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .cases import Case, ignoring, load_cases
from .client import Client, interpreter_version, lambda_environment, run_as
from .driver import drive
from .errors import UsageError
from .reports import write_outputs
from .runtime_api import RuntimeApi, RuntimeApiServer

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CLIENT = 0, 1, 2, 3
ACCOUNT_ID = "123456789012"


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Invoke a handler through awslambdaric against a local Runtime API."
    )
    parser.add_argument("--python", required=True, help="interpreter that runs the client")
    parser.add_argument("--task-root", default="/var/task", help="the unpacked function")
    parser.add_argument("--runtime-dir", default="/var/runtime", help="awslambdaric's wheels")
    parser.add_argument("--opt-dir", default="/opt", help="where layers are unpacked")
    parser.add_argument("--events", required=True, help="JSON list of cases")
    parser.add_argument("--junit", required=True, help="JUnit XML file to write")
    parser.add_argument("--report", required=True, help="JSON report to write")
    parser.add_argument("--user", help="run the client as this user (needs root and setpriv)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each answer"
    )
    parser.add_argument(
        "--ignore-key",
        action="append",
        default=[],
        metavar="KEY",
        help="leave this key out of the expected answers, at any depth (repeatable)",
    )
    parser.add_argument("--handler", default="handler.lambda_handler", help="module.function")
    parser.add_argument("--client-module", default="awslambdaric", help="run as -m MODULE")
    parser.add_argument("--function-name", default="lambda-invoke-test")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra variable for the client (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    for name in ("task_root", "runtime_dir", "opt_dir"):
        setattr(args, name, os.path.abspath(getattr(args, name)))
    if not os.path.isdir(args.task_root):
        parser.error(f"--task-root {args.task_root} is not a directory")
    args.env = dict(args.env)
    return args


def _prepare(args: argparse.Namespace) -> tuple[list[Case], str, list[str]]:
    cases = ignoring(load_cases(args.events), args.ignore_key)
    version = interpreter_version(args.python)
    prefix = run_as(args.user) if args.user else []
    return cases, version, [*prefix, args.python, "-m", args.client_module, args.handler]


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the client


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cases, version, command = _prepare(args)
    except UsageError as exc:
        print(f"lambda_invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    arn = f"arn:aws:lambda:{args.region}:{ACCOUNT_ID}:function:{args.function_name}"
    api = RuntimeApi(arn, args.timeout)
    server = RuntimeApiServer(api)
    client = Client(command, lambda_environment(args, version, server.address), args.task_root)
    server.start()
    try:
        result = drive(cases, api, client, args.timeout)
    except UsageError as exc:
        print(f"lambda_invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        client.stop()
        server.stop()
    result.python = version
    result.client_log = list(client.log)
    write_outputs(result, args.junit, args.report)
    for case in result.cases:
        if not case.passed:
            print(f"FAILED {case.name}: {case.message}", file=sys.stderr)
    if result.error is not None:
        print(f"lambda_invoke: {result.error}", file=sys.stderr)
    print(f"{result.passed} passed, {result.failed} failed")
    if result.error is not None:
        return EXIT_CLIENT
    return EXIT_OK if result.failed == 0 else EXIT_FAILED
