"""Releases and other commands the slow suites (tests/integration, tests/sandbox) run from
the repository root as ops would, and what a release publishes and leaves behind.

`Started` is a command in progress whose output a test can follow line by line, to signal
it at a chosen moment (SIGINT, SIGTERM, SIGKILL, SIGSTOP); `Run` is a finished one.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
LOG_DIR = REPO / "dist" / "test-logs"
# The controller's state folder of a release not told otherwise (release_state_dir).
DEFAULT_STATE_DIR = REPO / ".state"
# How a release says its run id: "(run r1764540000-1a2b3c4d)".
RUN_ID = re.compile(r"\(run (r[0-9]+-[0-9a-f]+)\)")
# The objects a release publishes under releases/<version>/.
RELEASE_FILES = (
    "admission.zip",
    "admission.rds",
    "sbom.cdx.json",
    "manifest.json",
    "package-test.xml",
    "lambda-runtime.xml",
    "lambda-runtime.json",
)


def ansible_env(base: Mapping[str, str] = os.environ) -> dict[str, str]:
    """base with the repository's ansible.cfg, no colours and the virtualenv first on PATH."""
    return dict(
        base,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{VENV_BIN}:{base['PATH']}",
    )


def run_id_in(output: str, log: Path) -> str:
    """The run id a release said in its output."""
    match = RUN_ID.search(output)
    assert match, f"the release did not say its run id, see {log}"
    return match.group(1)


@dataclass
class Run:
    """One finished command: its exit status, its output (also in log), how long it took,
    and the controller's state folder the release it ran used."""

    returncode: int
    output: str
    log: Path
    seconds: float
    state_dir: Path = DEFAULT_STATE_DIR

    def check(self) -> Run:
        assert self.returncode == 0, (
            f"{self.log.stem} failed, see {self.log}:\n{self.output[-4000:]}"
        )
        return self

    @property
    def run_id(self) -> str:
        return run_id_in(self.output, self.log)


@dataclass
class Started:
    """A command in progress, its output collected as it comes. In a process group of its
    own (own_process_group), a signal sent to the group reaches it as a terminal's would
    and nothing else; otherwise it shares the tests' group, so that a Ctrl-C on them stops
    it too."""

    proc: subprocess.Popen
    log: Path
    started: float
    state_dir: Path
    own_process_group: bool
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        argv: list[str],
        *,
        env: Mapping[str, str],
        log: Path,
        state_dir: Path = DEFAULT_STATE_DIR,
        own_process_group: bool = False,
    ) -> Started:
        """Start argv from the repository root; finish() writes its output to log."""
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=dict(env, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=own_process_group,
        )
        started = cls(proc, log, time.monotonic(), state_dir, own_process_group)
        started._reader = threading.Thread(target=started._read, daemon=True)
        started._reader.start()
        return started

    @property
    def output(self) -> str:
        return "".join(list(self.lines))

    @property
    def run_id(self) -> str:
        return run_id_in(self.output, self.log)

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
        if group:
            assert self.own_process_group, "the command shares the tests' process group"
            os.killpg(self.proc.pid, signum)
        else:
            os.kill(self.proc.pid, signum)

    def finish(self, timeout: float | None = 1800) -> Run:
        """Wait for the command (timeout None: however long it takes) and keep its output."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self.log.write_text(self.output)
        seconds = round(time.monotonic() - self.started, 1)
        return Run(self.proc.returncode, self.output, self.log, seconds, self.state_dir)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)


def containers(run_id: str | None = None) -> list[str]:
    """Names of the containers labelled with a run id (any run id when None)."""
    label = "r-lambda.run_id" + (f"={run_id}" if run_id else "")
    out = subprocess.run(
        ["podman", "ps", "--all", "--filter", f"label={label}", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()
