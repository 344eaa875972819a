"""The commands: deploy and status (through the control API), and the command line that
runs each of them (start, stop and serve are in process)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import __doc__ as PACKAGE_DOC
from .common import FrontError
from .control import control
from .environments import Spec, file_sha256, memory_mb
from .front import MAX_CONNECTIONS, READ_TIMEOUT
from .process import cmd_serve, cmd_start, cmd_stop, front_alive, read_state


def _variables(text: str) -> dict[str, str]:
    """--env-json: the function's environment variables (names as Lambda allows them)."""
    try:
        variables = json.loads(text)
    except ValueError as exc:
        raise FrontError(f"--env-json is not JSON: {exc}") from None
    if not isinstance(variables, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", k) for k in variables
    ):
        raise FrontError("--env-json must be an object of variable names (letters, digits, _)")
    return {k: str(v) for k, v in variables.items()}


def cmd_deploy(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    package = Path(args.package).resolve()
    if not package.is_file():
        raise FrontError(f"the package {package} is missing")
    if not zipfile.is_zipfile(package):
        raise FrontError(f"the package {package} is not a zip")
    if not front_alive(read_state(state_dir)):
        raise FrontError(f"no front runs for {state_dir}: run start first")
    wheels = Path(args.wheels).resolve()
    spec = Spec(package=str(package), sha256=file_sha256(package), version=args.version,
                environments=args.environments, image=args.image, python=args.python,
                memory=args.memory, timeout=args.timeout, init_timeout=args.init_timeout,
                handler=args.handler, function_name=args.function_name, wheels=str(wheels),
                variables=_variables(args.env_json))
    memory_mb(spec.memory)
    done = subprocess.run(["podman", "image", "exists", spec.image], capture_output=True,
                          check=False)
    if done.returncode != 0:
        raise FrontError(
            f"the image {spec.image} is missing. The project builds it with debootstrap: "
            "`ansible-playbook molecule/base-image.yml` (role local_hosts, "
            "local_hosts_state=image), or any release on the local platform")
    return control(state_dir, "POST", "/deploy", asdict(spec))


def cmd_status(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    if not front_alive(state):
        return {"running": False}
    return {**control(state_dir, "GET", "/status", timeout=10), "running": True}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="local_function",
                                     description=PACKAGE_DOC.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "start", "deploy", "status", "stop"):
        sub = commands.add_parser(name)
        sub.add_argument("--state-dir", required=True)
        if name in ("serve", "start", "stop"):
            sub.add_argument("--id", help="containers' label value (default r-lambda-fn-PORT)")
        if name in ("serve", "start"):
            sub.add_argument("--port", type=int, required=True)
            sub.add_argument("--read-timeout", type=float, default=READ_TIMEOUT,
                             help="seconds a client may stay silent (local_function_read_timeout)")
            sub.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                             help="open connections at most (local_function_max_connections)")
        if name == "serve":
            sub.add_argument("--ready-fd", type=int)
        if name == "deploy":
            sub.add_argument("--package", required=True)
            sub.add_argument("--version", required=True)
            sub.add_argument("--environments", type=int, default=2)
            sub.add_argument("--image", default="localhost/r-lambda-base:trixie")
            sub.add_argument("--python", default="python3.13")
            sub.add_argument("--memory", default="128m")
            sub.add_argument("--timeout", type=float, default=30.0)
            sub.add_argument("--init-timeout", type=float, default=120.0)
            sub.add_argument("--handler", default="handler.lambda_handler")
            sub.add_argument("--function-name", default="admission")
            sub.add_argument("--wheels", required=True, help="folder of awslambdaric's wheels")
            sub.add_argument("--env-json", default="{}", help="function variables, a JSON object")
    args = parser.parse_args(argv)
    if getattr(args, "environments", 1) < 1:
        parser.error("--environments must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    run = {"start": cmd_start, "deploy": cmd_deploy, "status": cmd_status, "stop": cmd_stop}
    try:
        result = run[args.command](args)
    except FrontError as exc:
        print(f"local_function: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, sort_keys=True))
    return 0
