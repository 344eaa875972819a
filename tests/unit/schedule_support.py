"""What the AMI watch's scheduling tests share: the scripts, the checkout's owner and a
subprocess runner (tests/unit/test_ami_watch_schedule.py, test_ami_watch_guards.py)."""

from __future__ import annotations

import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install-ami-watch"
WATCH = REPO / "scripts" / "ami-watch"
WORKFLOW = REPO / ".github" / "workflows" / "ami-watch.yml"
UNIT = "r-lambda-ami-watch"
WATCH_OPTIONS = ["-i", "inventory/aws", "-e", "ec2_host_operator_cidr=203.0.113.7/32"]
CHECKOUT_OWNER = pwd.getpwuid(REPO.stat().st_uid).pw_name
SKIPPED = "skipped: another AMI watch holds"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (package systemd): cannot verify the units",
)
needs_flock = pytest.mark.skipif(
    shutil.which("flock") is None, reason="flock is not installed (package util-linux)"
)


def run(
    argv: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def install(kind: str, dest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/install-ami-watch KIND --dest DEST ARGS...: writes into DEST only."""
    return run([INSTALL, kind, "--dest", dest, *args])
