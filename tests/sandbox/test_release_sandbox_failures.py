"""Sandbox releases that are interrupted or fail: a failure injected at each stage, and
SIGINT, SIGTERM or SIGKILL at real stages, must leave no instance, key pair, security
group, container or key file of its run, and change nothing in S3. They run all at the same
time: cheaper, and proof that concurrent runs keep apart.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor

import pytest
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

MISSING_BUCKET = "r-lambda-no-such-bucket"
# Stages that fail before any host is launched, and before the run's security group exists.
BEFORE_HOSTS = ("bucket-name", "no-bucket", "ami-lookup")


# ------------------------------------------------------------- runs that are interrupted

# name: (the line after which the signal is sent, the signal, sent to the whole process
# group as a terminal's Ctrl-C or a killed session would, or to ansible-playbook alone as
# kill, systemd or a scheduler's timeout would).
INTERRUPTIONS = {
    "sigint-build": ("TASK [r_runtime : ", signal.SIGINT, True),
    # After its uploads (the task that follows them), so that there is something to roll back.
    "sigterm-publish": (
        "publish | Note what this run uploaded and the sha256 the controller computed",
        signal.SIGTERM,
        False,
    ),
    "sigkill-build": ("TASK [r_runtime : ", signal.SIGKILL, True),
}


def _interrupt(sandbox: Sandbox, name: str) -> Run:
    marker, signum, group = INTERRUPTIONS[name]
    pending = sandbox.start_release(
        "-e",
        "release_force=true",
        "-e",
        f"release_version=sbx-{name}",
        name=name,
        own_process_group=True,
    )
    release = pending.command
    try:
        assert release.wait_for(marker, 1500), (
            f"{name}: never reached {marker!r}, see {release.log}"
        )
        release.signal(signum, group=group)
        return pending.wait(timeout=900)
    finally:
        if release.proc.poll() is None:
            release.signal(signal.SIGKILL)


@pytest.fixture(scope="module")
def interrupted_releases(sandbox: Sandbox, first_release: Run) -> dict:
    """A release stopped by each signal at once, after the first release published the
    latest.json they must leave alone; after the SIGKILL, the next release (nothing changed:
    it publishes nothing) finds the dead run."""
    before = s3_snapshot(sandbox, BUCKET)
    with ThreadPoolExecutor(len(INTERRUPTIONS)) as pool:
        futures = {name: pool.submit(_interrupt, sandbox, name) for name in INTERRUPTIONS}
        killed = futures["sigkill-build"].result()
        killed_leftovers = sandbox.leftovers(killed)
        # Same state folder: the next release of this controller and platform.
        after_kill = sandbox.start(
            "playbooks/release.yml", *sandbox.isolation("sigkill-build"), name="after-sigkill"
        ).wait()
        runs = {name: future.result() for name, future in futures.items()}
    return {
        "runs": runs,
        "before": before,
        "killed_leftovers": killed_leftovers,
        "after_kill": after_kill,
    }


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


FAILING_CHECK = (
    "import unittest\n\n\nclass Injected(unittest.TestCase):\n"
    "    def test_fails(self):\n        self.fail('injected failure')\n"
)

# stage: (extra vars, the play's message, a message naming the cause). A failing package
# gate is the build's failure like r-install's (the same teardown); the gates themselves are
# molecule/lambda_package's cases, a compile cheaper than a release.
FAILURES = {
    "ami-lookup": (
        [
            "-e",
            "ec2_host_ami_ssm_parameter=/r-lambda/no-such-parameter",
            "-e",
            "ec2_host_ami_name_pattern=no-such-image-*",
        ],
        "Planning failed",
        "No AMI for image family al2023",
    ),
    "launch": (
        ["-e", '{"ec2_host_instance_types": {"build": "t2.no-such-type", "test": "t2.micro"}}'],
        "Planning failed",
        "t2.no-such-type",
    ),
    "ssh-wait": (
        ["-e", "sandbox_hosts_start=false", "-e", "ec2_host_ssh_timeout=5"],
        "Planning failed",
        "did not answer within 5 s",
    ),
    "r-install": (
        ["-e", '{"r_runtime_extra_packages": ["r-lambda-no-such-package"]}'],
        "The build failed",
        "r-lambda-no-such-package",
    ),
    "bucket-name": (
        ["-e", "release_bucket=Refused_Bucket"],
        "Planning failed",
        "must be an S3 bucket name: 3-63 lower-case letters",
    ),
    "no-bucket": (  # releases never create the bucket on AWS: playbooks/bucket.yml does, once
        ["-e", f"release_bucket={MISSING_BUCKET}"],
        "Planning failed",
        f"The release bucket s3://{MISSING_BUCKET} does not exist",
    ),
    "clean-host-test": (
        [],  # plus a failing packaged check, see failed_releases
        "The clean-host test failed",
        "injected failure",
    ),
}


@pytest.fixture(scope="module")
def failed_releases(sandbox: Sandbox, first_release: Run) -> dict[str, tuple[Run, dict[str, str]]]:
    """One release per stage with a failure injected there, all at the same time (they
    share the moto server and the machine, as concurrent releases would), after the first
    release published a latest.json they must leave alone."""
    check = sandbox.workdir / "test_zz_injected.py"
    check.write_text(FAILING_CHECK)
    injected = {"clean-host-test": ["-e", f'{{"lambda_package_extra_files": ["{check}"]}}']}
    before = s3_snapshot(sandbox, BUCKET)
    pending = {
        stage: sandbox.start_release(
            "-e",
            "release_force=true",
            "-e",
            f"release_version=sbx-fail-{stage}",
            *extra,
            *injected.get(stage, []),
            name=f"fail-{stage}",
        )
        for stage, (extra, _, _) in FAILURES.items()
    }
    runs = {stage: job.wait() for stage, job in pending.items()}
    for stage, run in runs.items():
        sandbox.timings[f"fail-{stage}"] = run.seconds
    return {stage: (run, before) for stage, run in runs.items()}


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
