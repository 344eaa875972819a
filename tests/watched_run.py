"""A command in progress whose output a test follows line by line, to signal it at a
chosen moment (tests/integration and tests/sandbox: SIGINT, SIGTERM, SIGKILL, SIGSTOP)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Finished:
    returncode: int
    output: str
    log: Path

    def check(self) -> Finished:
        assert self.returncode == 0, f"the command failed, see {self.log}:\n{self.output[-4000:]}"
        return self


@dataclass
class Watched:
    """A command in a process group of its own (so that a signal reaches it as a
    terminal's would), its output collected as it comes."""

    proc: subprocess.Popen
    log: Path
    started: float
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, argv: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Watched:
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        watched = cls(proc, log, time.monotonic())
        watched._reader = threading.Thread(target=watched._read, daemon=True)
        watched._reader.start()
        return watched

    @property
    def output(self) -> str:
        return "".join(list(self.lines))

    def saw(self, text: str) -> bool:
        return text in self.output

    def wait_for(self, text: str, timeout: float) -> bool:
        """True once the output holds text; False when the command ended or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.saw(text):
                return True
            if self.proc.poll() is not None:
                self._reader.join(timeout=10)
                return self.saw(text)
            time.sleep(0.05)
        return False

    def signal(self, signum: int, *, group: bool = True) -> None:
        """Send signum to the whole process group (a terminal's Ctrl-C, a killed session),
        or to the command's own process only (kill, systemd, timeout)."""
        (os.killpg if group else os.kill)(self.proc.pid, signum)

    def finish(self, timeout: float = 1800) -> Finished:
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self.log.write_text(self.output)
        return Finished(self.proc.returncode, self.output, self.log)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)
