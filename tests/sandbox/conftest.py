"""Fixtures of the sandbox platform's tests: one moto server per session, shared by
every test (moto keeps everything in memory), started and stopped here."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared release runs, session fixtures that every file's tests may read.
from release_fixtures import deploys as deploys
from release_fixtures import execution_role as execution_role
from release_fixtures import failed_releases as failed_releases
from release_fixtures import interrupted_releases as interrupted_releases
from release_fixtures import spline_release as spline_release
from release_runs import LOG_DIR, Run
from sandbox_support import BUCKET, Sandbox, remove_containers, start_moto, stop_moto


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
def release_bucket(sandbox: Sandbox) -> str:
    """The bucket, set up once by its administrator: releases never create it."""
    sandbox.timings["bucket"] = sandbox.set_up_bucket(BUCKET).seconds
    return BUCKET


@pytest.fixture(scope="session")
def first_release(sandbox: Sandbox, release_bucket: str) -> Run:
    """The sandbox's release as ops run it, read by the tests of several files."""
    run = sandbox.release(name="release")
    sandbox.timings["release"] = run.seconds
    return run.check()
