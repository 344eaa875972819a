"""Releases on the local platform and their hosts: a runtime the platform cannot stand in
for stops before building and leaves no host; the reaper removes only what is old enough.
"""

from __future__ import annotations

import subprocess

import pytest
from release_runs import containers
from release_support import (
    assert_no_hosts_left,
    keys,
    run_playbook,
    s3_client,
)

pytestmark = pytest.mark.slow


def test_a_runtime_without_a_local_stand_in_stops_before_building(bucket: str) -> None:
    """python3.12 is selectable, but only the aws platform's test host has its Python: on
    the local platform the run says so before anything is built, publishes nothing and
    removes its hosts."""
    client = s3_client()
    before = keys(client, bucket)
    run = run_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}",
        "-e", "release_target_runtime=python3.12", "-e", "release_force=true",
        name="release-python3.12-local",
    )  # fmt: skip
    assert run.returncode != 0
    assert "has no python3.12, so it cannot stand in for Lambda's python3.12 runtime" in run.output
    assert "tested on the aws platform" in run.output
    assert "TASK [r_runtime" not in run.output
    assert keys(client, bucket) == before
    assert_no_hosts_left(run)


def test_podman_is_usable_here() -> None:
    """Guard: the slow tests need podman with the project's settings."""
    out = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "runc"


def _plant_container(name: str) -> None:
    image = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/r-lambda-base"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    subprocess.run(
        [
            "podman",
            "run",
            "-d",
            "--init",
            "--name",
            name,
            "--label",
            f"r-lambda.run_id={name}",
            image,
            "sleep",
            "infinity",
        ],
        capture_output=True,
        check=True,
    )


def test_reaper_removes_only_hosts_older_than_the_limit(first_release: dict) -> None:
    """Plants a labelled container as an interrupted run would leave it.

    With the default 6 h limit the fresh container is spared; the dry run at 0 h names it
    without removing it; applied at 0 h to its run id only (so that no other run on this
    machine is touched) it is removed.
    """
    name = "r-lambda-it-reap-planted"
    _plant_container(name)
    try:
        spared = run_playbook("playbooks/reap.yml", "-e", "reap_apply=true", name="reap-spares")
        assert spared.check() and name in containers()

        dry = run_playbook("playbooks/reap.yml", "-e", "reap_older_than_hours=0", name="reap-dry")
        assert name in dry.check().output and "Dry run" in dry.output
        assert name in containers()

        applied = run_playbook(
            "playbooks/reap.yml",
            "-e",
            "reap_apply=true",
            "-e",
            "reap_older_than_hours=0",
            "-e",
            f"reap_run_id={name}",
            name="reap-applied",
        )
        applied.check()
        assert name not in containers()
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)


# ------------------------------------------------------ a model of the operator's own
