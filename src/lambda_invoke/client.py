"""The runtime client process: the interpreter it runs on, Lambda's environment for it, the
user it runs as (``setpriv``), and the process itself (started, watched, stopped)."""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Sequence
from typing import Any

from .errors import UsageError

STOP_GRACE_SECONDS = 2.0
STDERR_TAIL_LINES = 20
CLIENT_LOG_LINES = 2000
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# Lambda's own library path, with the runtime dir, task root and layer dir substituted.
SYSTEM_LIBRARY_DIRS = ("/var/lang/lib", "/lib64", "/usr/lib64")


def interpreter_version(python: str) -> str:
    """The full version of ``python`` (e.g. 3.13.5), run isolated from this environment."""
    command = [python, "-I", "-c", "import platform; print(platform.python_version())"]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            env={"PATH": os.environ.get("PATH", DEFAULT_PATH)},
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run the interpreter {python}: {exc}") from exc
    version = done.stdout.strip()
    if done.returncode != 0 or not re.fullmatch(r"3\.\d+\.\d+\S*", version):
        raise UsageError(f"{python} is not a working Python 3: {done.stderr.strip()[-300:]}")
    return version


def lambda_environment(args: argparse.Namespace, version: str, api: str) -> dict[str, str]:
    """The client's whole environment: Lambda's python runtime variables, PATH, --env."""
    minor = ".".join(version.split(".")[:2])
    task, runtime, opt = args.task_root, args.runtime_dir, args.opt_dir
    region, name = args.region, args.function_name
    env = {
        "PATH": os.environ.get("PATH", DEFAULT_PATH),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": ":".join(
            [*SYSTEM_LIBRARY_DIRS, runtime, f"{runtime}/lib", task, f"{task}/lib", f"{opt}/lib"]
        ),
        "PYTHONPATH": ":".join(
            [task, f"{opt}/python/lib/python{minor}/site-packages", f"{opt}/python", runtime]
        ),
        "LAMBDA_TASK_ROOT": task,
        "LAMBDA_RUNTIME_DIR": runtime,
        "AWS_LAMBDA_RUNTIME_API": api,
        "_HANDLER": args.handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{minor}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime())
        + uuid.uuid4().hex,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }
    env.update(args.env)
    return env


def run_as(user: str) -> list[str]:
    """The setpriv prefix that runs a command as ``user`` (a name or a uid)."""
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError as exc:
        raise UsageError(f"--user {user}: no such user on this host") from exc
    if os.geteuid() != 0:
        raise UsageError(f"--user {user} needs root: run this script as root")
    setpriv = shutil.which("setpriv", path=os.environ.get("PATH", DEFAULT_PATH))
    if setpriv is None:
        raise UsageError(
            "--user needs setpriv, which is missing: install util-linux "
            "(Debian: util-linux; Amazon Linux: util-linux or util-linux-core)"
        )
    return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


class Client:
    """The runtime client process: its output is kept (and echoed to stderr)."""

    def __init__(self, command: Sequence[str], env: dict[str, str], cwd: str) -> None:
        self.command, self.env, self.cwd = list(command), env, cwd
        self.started = 0.0
        self.log: deque[str] = deque(maxlen=CLIENT_LOG_LINES)
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._proc: subprocess.Popen[bytes] | None = None
        self._readers: list[threading.Thread] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: stop() reaches all of it
            )
        except OSError as exc:
            raise UsageError(f"cannot start the runtime client {self.command}: {exc}") from exc
        for stream, label in ((self._proc.stdout, "out"), (self._proc.stderr, "err")):
            reader = threading.Thread(target=self._read, args=(stream, label), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _read(self, stream: Any, label: str) -> None:
        for raw in iter(stream.readline, b""):
            # awslambdaric joins the lines of an error report with \r (one log record).
            line = raw.decode("utf-8", "replace").rstrip("\n").replace("\r", "\n    ")
            with self._lock:
                self.log.append(f"[{label}] {line}")
                if label == "err":
                    self.stderr_tail.append(line)
            sys.stderr.write(f"client {label}| {line}\n")
        stream.close()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def peak_rss_mb(self) -> float | None:
        """VmHWM of the (still running) client: setpriv execs, so the pid is the client's."""
        try:
            with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return round(int(line.split()[1]) / 1024.0, 1)
        except (OSError, ValueError, IndexError):
            pass
        return None

    def _signal(self, signum: int) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
            os.killpg(self._proc.pid, signum)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_GRACE_SECONDS; the output is read to its end."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._signal(signal.SIGKILL)  # anything it left behind in its group
        self.finish_reading()

    def finish_reading(self) -> None:
        for reader in self._readers:
            reader.join(2)

    def last_stderr(self) -> str:
        with self._lock:
            lines = list(self.stderr_tail)
        return "\n".join(f"    {line}" for line in lines) if lines else "    (nothing)"
