"""Sandbox releases that are interrupted or fail: a failure injected at each stage, and
SIGINT, SIGTERM or SIGKILL at real stages, must leave no instance, key pair, security
group, container or key file of its run, and change nothing in S3. They run all at the same
time: cheaper, and proof that concurrent runs keep apart.
"""

from __future__ import annotations

import signal

import pytest
from release_fixtures import BEFORE_HOSTS, FAILURES, INTERRUPTIONS, MISSING_BUCKET
from release_runs import Run
from sandbox_support import (
    BUCKET,
    LOCK_KEY,
    NOTHING_LEFT,
    Sandbox,
    changed,
    read_json,
    run_instances,
    s3_snapshot,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("release_bucket")]


@pytest.mark.parametrize("name", ["sigint-build", "sigterm-publish"])
def test_an_interrupted_release_tears_itself_down_and_publishes_nothing(
    sandbox: Sandbox, interrupted_releases: dict, name: str
) -> None:
    run = interrupted_releases["runs"][name]
    signame = INTERRUPTIONS[name][1].name

    assert run.returncode == 128 + INTERRUPTIONS[name][1], f"see {run.log}"
    assert f"Release run {run.run_id} stopped by {signame}" in run.output
    assert f"Release run {run.run_id} torn down after {signame}" in run.output
    assert sandbox.leftovers(run) == NOTHING_LEFT
    assert not (run.state_dir / "runs" / run.run_id).exists()
    assert s3_snapshot(sandbox, BUCKET) == interrupted_releases["before"]
    lock = read_json(sandbox, BUCKET, LOCK_KEY)
    assert lock["state"] == "released"
    if name == "sigterm-publish":  # it held the lock and had begun to upload
        assert "Rolled back: removed ['releases/sbx-sigterm-publish/" in run.output
        assert sorted(i["State"]["Name"] for i in run_instances(sandbox, run.run_id)) == [
            "terminated",
            "terminated",
        ]


def test_the_next_release_reaps_what_a_killed_release_left(
    sandbox: Sandbox, interrupted_releases: dict
) -> None:
    killed = interrupted_releases["runs"]["sigkill-build"]
    after = interrupted_releases["after_kill"].check()

    assert killed.returncode == -signal.SIGKILL
    # SIGKILL left its hosts (instances, key pair, security group, containers) and state.
    left = interrupted_releases["killed_leftovers"]
    assert len(left["instances"]) == 2 and left["key_pairs"] and left["security_groups"]
    assert left["containers"] and left["state"]
    assert (
        f"Run {killed.run_id} (version sbx-sigkill-build, started" in after.output
        and "ended without its teardown" in after.output
    )
    assert sandbox.leftovers(killed) == NOTHING_LEFT
    assert not (killed.state_dir / "runs" / killed.run_id).exists()
    assert "Nothing changed since release" in after.output  # it published nothing
    assert s3_snapshot(sandbox, BUCKET) == interrupted_releases["before"]


@pytest.mark.parametrize("stage", list(FAILURES))
def test_a_failed_stage_leaves_nothing_behind_and_publishes_nothing(
    sandbox: Sandbox, failed_releases: dict[str, tuple[Run, dict[str, str]]], stage: str
) -> None:
    run, before = failed_releases[stage]
    _, phase, cause = FAILURES[stage]

    assert run.returncode != 0, f"the release passed, see {run.log}"
    assert phase in run.output and cause in run.output, f"see {run.log}"
    assert sandbox.leftovers(run) == NOTHING_LEFT
    assert s3_snapshot(sandbox, BUCKET) == before
    assert s3_snapshot(sandbox, "Refused_Bucket") == {}
    assert MISSING_BUCKET not in {b["Name"] for b in sandbox.client("s3").list_buckets()["Buckets"]}
    instances = run_instances(sandbox, run.run_id)
    if stage in (*BEFORE_HOSTS, "launch"):
        assert instances == []
    else:  # both hosts were launched, and then terminated by the teardown
        assert sorted(i["State"]["Name"] for i in instances) == ["terminated", "terminated"]
    if stage not in BEFORE_HOSTS:  # the run's key pair and security group existed, and are gone
        assert changed(run.output, "security_group | Admit SSH from the operator's CIDR only")
