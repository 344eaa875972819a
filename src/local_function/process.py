"""The front as a process: its state (state.json), whether it runs, `serve` (the front
itself), `start` (serve run detached, once ready) and `stop` (the front, its containers,
the state folder)."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .common import ID_LABEL, FrontError, log
from .control import ControlServer, control
from .endpoint import EndpointServer
from .front import Front, check_limits

STOP_WAIT_SECONDS = 20.0
# A front's command line names this package: its zip application (.../local_function.pyz,
# or local_function-<digest>.pyz as the role names it) or the module (-m local_function);
# or, as it was run before, the package folder (.../local_function, or its __main__.py) or
# the single script local_function.py, whose front may still run.
FRONT_SCRIPT = re.compile(
    rb"(?:.*/)?local_function(?:-[0-9a-f]+\.pyz|\.pyz|/|/__main__\.py|\.py)?"
)


def front_command() -> list[str]:
    """How `start` runs the front (serve): this package as it runs now, from its zip
    application (python3 <file>.pyz) or installed (python3 -m local_function)."""
    root = Path(__file__).resolve().parents[1]
    if root.is_file():  # .../local_function-<digest>.pyz/local_function/process.py
        return [sys.executable, str(root)]
    return [sys.executable, "-m", __name__.rpartition(".")[0]]


def read_state(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def front_alive(state: dict[str, Any]) -> bool:
    """The state's pid is a running front of this package (not a reused pid)."""
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(FRONT_SCRIPT.fullmatch(part) for part in cmdline) and b"serve" in cmdline


def who_listens(port: int) -> str:
    done = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True,
                          text=True, check=False)
    found = re.findall(r'users:\(\("([^"]+)",pid=(\d+)', done.stdout)
    return ", ".join(f"{name} (pid {pid})" for name, pid in found) or "unknown"


def cmd_serve(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    ready = os.fdopen(args.ready_fd, "w") if args.ready_fd is not None else None

    def say(text: str) -> None:
        if ready is not None:
            ready.write(text)
            ready.close()

    try:
        front = Front(state_dir, args.port, args.id or f"r-lambda-fn-{args.port}",
                      args.read_timeout, args.max_connections)
    except FrontError as exc:
        say(str(exc))
        return 1
    try:
        endpoint = EndpointServer(args.port, front)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            say(f"127.0.0.1:{args.port} is taken by another process: {who_listens(args.port)};"
                " stop it or choose another port (local_function_port)")
        else:
            say(f"cannot serve on 127.0.0.1:{args.port}: {exc}")
        return 1
    control_server = ControlServer(state_dir / "control.sock", front)
    stop = control_server.stop_requested
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    threads = [threading.Thread(target=server.serve_forever, args=(0.2,), daemon=True)
               for server in (endpoint, control_server)]
    for thread in threads:
        thread.start()
    front.write_state()
    log(f"serving http://127.0.0.1:{args.port}/ (pid {os.getpid()})")
    say("ready")
    while not stop.wait(1.0):
        pass
    log("stopping")
    endpoint.shutdown()
    front.stop()
    control_server.shutdown()
    endpoint.server_close()
    control_server.server_close()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "control.sock").unlink()
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "state.json").unlink()
    log("stopped")
    return 0


def cmd_start(args: argparse.Namespace) -> dict[str, Any]:
    check_limits(args.read_timeout, args.max_connections)
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    if front_alive(state):
        if state.get("port") == args.port:
            limits = {"read_timeout": args.read_timeout, "max_connections": args.max_connections}
            if all(state.get(key) == value for key, value in limits.items()):
                return {**state, "changed": False}
            # Other limits: the running front takes them for its next connections.
            try:
                return control(state_dir, "POST", "/limits", limits, timeout=10)
            except FrontError as exc:
                raise FrontError(f"{exc}: the front that runs predates these settings; run "
                                 "the role with local_function_state=absent, then present"
                                 ) from None
        # Another port: the front there stops (with its environments) before this one starts.
        cmd_stop(argparse.Namespace(state_dir=args.state_dir, id=None, keep_dir=True))
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)
    read_end, write_end = os.pipe()
    command = [*front_command(), "serve", "--state-dir",
               str(state_dir), "--port", str(args.port), "--ready-fd", str(write_end),
               "--read-timeout", f"{args.read_timeout:g}",
               "--max-connections", str(args.max_connections)]
    if args.id:
        command += ["--id", args.id]
    with open(state_dir / "front.log", "a") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                pass_fds=(write_end,), start_new_session=True,
                                cwd=str(state_dir))
    os.close(write_end)
    message = b""
    end = time.monotonic() + 30
    while time.monotonic() < end:
        readable, _writable, _failed = select.select([read_end], [], [], 0.2)
        if readable:
            chunk = os.read(read_end, 4096)
            if not chunk:
                break
            message += chunk
    os.close(read_end)
    if message != b"ready":
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        text = message.decode() or f"the front did not start; see {state_dir}/front.log"
        raise FrontError(text)
    return {**read_state(state_dir), "changed": True}


def _leftover_containers(id_: str) -> list[str]:
    done = subprocess.run(["podman", "ps", "-aq", "--filter", f"label={ID_LABEL}={id_}"],
                          capture_output=True, text=True, check=False)
    return done.stdout.split()


def cmd_stop(args: argparse.Namespace) -> dict[str, Any]:
    state_dir = Path(args.state_dir)
    state = read_state(state_dir)
    changed = False
    if front_alive(state):
        changed = True
        with contextlib.suppress(FrontError):
            control(state_dir, "POST", "/stop", timeout=10)
        end = time.monotonic() + STOP_WAIT_SECONDS
        while front_alive(state) and time.monotonic() < end:
            time.sleep(0.1)
        if front_alive(state):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state["pid"], signal.SIGKILL)
    for id_ in {args.id, state.get("id")} - {None}:
        leftovers = _leftover_containers(id_)
        if leftovers:
            changed = True
            subprocess.run(["podman", "rm", "-f", "-t", "0", *leftovers], capture_output=True,
                           check=False)
    if state_dir.exists() and not getattr(args, "keep_dir", False):
        changed = True
        shutil.rmtree(state_dir)
    return {"changed": changed, "running": False}
