"""Fixtures of the sandbox platform's tests: one moto server per session, shared by
every test (moto keeps everything in memory), started and stopped here."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for --import-mode=importlib

from release_runs import LOG_DIR, cache_root
from sandbox_support import Sandbox, remove_containers, start_moto, stop_moto


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """A moto server on a free 127.0.0.1 port; whatever a failing test left in podman is
    removed at the end (the tests assert that nothing was left before that). Its folder is
    not pytest's tmp_path: other pytest sessions on the machine rotate those away."""
    workdir = Path(tempfile.mkdtemp(prefix="r-lambda-sandbox-", dir="/var/tmp"))
    proc, box = start_moto(workdir)
    try:
        yield box
    finally:
        stop_moto(proc)
        if box.timings:
            LOG_DIR.mkdir(parents=True, exist_ok=True)
            LOG_DIR.joinpath("sandbox-timings.json").write_text(json.dumps(box.timings, indent=1))
        for run_id in box.runs:
            remove_containers(run_id)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def r_build_ready() -> None:
    """With R_LAMBDA_WAIT_FOR_R_BUILD=<seconds> (make test, which runs the local suite
    alongside): wait for the R and Python builds the local suite makes to reach the
    controller's cache, rather than compile the same trees at the same time on a 2-core
    machine. Without cached builds by then, the sandbox's release builds them itself."""
    seconds = int(os.environ.get("R_LAMBDA_WAIT_FOR_R_BUILD") or 0)
    cache = cache_root()
    # R's build, then the target Python's (role target_python): both compiled once.
    builds = (cache / "r-source", "R-*.tar.gz"), (cache / "python-source", "Python-*.tar.gz")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(any(d.glob(p)) for d, p in builds):
        time.sleep(5)
