"""The sandbox's shared release runs, as session fixtures (conftest.py makes them visible to
every file): the interrupted and failed releases, the spline release and the deploys. The
test of every AWS call the playbooks made reads them all, so they live here, not in the
files of the tests that check them.
"""

from __future__ import annotations

import json
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from release_runs import REPO, Run
from sandbox_support import BUCKET, Sandbox, read_json, s3_snapshot

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


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
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


@pytest.fixture(scope="session")
def spline_release(sandbox: Sandbox, first_release: Run) -> tuple[Run, Path]:
    """A release of an operator's model with splines::ns() (tests/handler/fit_models.R)."""
    subprocess.run(
        [
            "Rscript",
            str(REPO / "tests/handler/fit_models.R"),
            str(REPO / "handler/model/binary.csv"),
            str(sandbox.workdir),
            "spline",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    model = sandbox.workdir / "spline.rds"
    # Layered (function.zip over a shared layer): the deploys put this release live, and so
    # prove the layered deploy without a release of their own.
    run = sandbox.release(
        "-e",
        f"lambda_package_model_rds={model}",
        "-e",
        "lambda_package_layer=true",
        "-e",
        "release_version=sbx-spline",
        name="release-spline-model",
    )
    sandbox.timings["release-spline-model"] = run.seconds
    return run, model


# --- Deploy (playbooks/deploy.yml) against moto's Lambda API --------------------------

FUNCTION = "r-lambda-admission"
EXECUTION_ROLE = "r-lambda-admission"
# The page allowed to call the function URL from a browser (the 2017 series' front end).
PAGE_ORIGIN = "https://admissions.example.org"


@pytest.fixture(scope="session")
def execution_role(sandbox: Sandbox) -> str:
    """The function's execution role, made as an account's administrator would (the project
    never creates IAM roles); moto refuses a function whose role does not exist."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    role = sandbox.client("iam").create_role(
        RoleName=EXECUTION_ROLE, AssumeRolePolicyDocument=json.dumps(trust)
    )
    return role["Role"]["Arn"]


def deploy(sandbox: Sandbox, role: str, *extra: str, name: str) -> Run:
    run = sandbox.playbook(
        "playbooks/deploy.yml",
        "-e",
        f"deploy_role_arn={role}",
        "-e",
        f"deploy_dist_dir={sandbox.workdir / 'deploy-dist'}",
        "-e",
        f"deploy_state_dir={sandbox.workdir / 'deploy-state'}",
        *extra,
        name=f"deploy-{name}",
    )
    sandbox.timings[f"deploy-{name}"] = run.seconds
    return run


def alias_version(sandbox: Sandbox) -> str | None:
    try:
        return sandbox.client("lambda").get_alias(FunctionName=FUNCTION, Name="live")[
            "FunctionVersion"
        ]
    except sandbox.client("lambda").exceptions.ResourceNotFoundException:
        return None


def function_url(sandbox: Sandbox) -> dict | None:
    """The alias's function URL configuration and resource-policy statements, or None."""
    client = sandbox.client("lambda")
    try:
        config = client.get_function_url_config(FunctionName=FUNCTION, Qualifier="live")
    except client.exceptions.ResourceNotFoundException:
        return None
    try:
        policy = json.loads(client.get_policy(FunctionName=FUNCTION, Qualifier="live")["Policy"])
    except client.exceptions.ResourceNotFoundException:
        policy = {"Statement": []}
    return {
        "url": config["FunctionUrl"],
        "auth_type": config["AuthType"],
        "cors": config.get("Cors"),
        "statements": {item["Sid"]: item for item in policy["Statement"]},
    }


def deploys_of(sandbox: Sandbox, version: str) -> list[dict]:
    body = sandbox.client("s3").get_object(Bucket=BUCKET, Key=f"releases/{version}/deploys.jsonl")
    return [json.loads(line) for line in body["Body"].read().decode().splitlines()]


@pytest.fixture(scope="session")
def deploys(
    sandbox: Sandbox, first_release: Run, spline_release: tuple[Run, Path], execution_role: str
) -> dict[str, object]:
    """In order: the first release's version (first deploy), latest.json's (the spline
    release, layered: an update that publishes the layer version first), a deploy whose
    smoke test fails, the rollback to the first version (the layer detached), and a
    release that is not verified."""
    spline_release[0].check()
    first = json.loads((sandbox.workdir / "release" / "dist" / "release.json").read_text())[
        "version"
    ]
    seen: dict[str, object] = {"first_version": first}
    seen["first"] = deploy(sandbox, execution_role, "-e", f"deploy_version={first}", name="first")
    seen["alias_after_first"] = alias_version(sandbox)
    seen["latest_at_update"] = read_json(sandbox, BUCKET, "releases/latest.json")["version"]
    seen["url_after_first"] = function_url(sandbox)
    # The update also puts a public function URL in front of the alias, CORS for one origin.
    seen["update"] = deploy(
        sandbox,
        execution_role,
        "-e",
        json.dumps(
            {
                "deploy_function_url": True,
                "deploy_function_url_auth_type": "NONE",
                "deploy_function_url_cors_origins": [PAGE_ORIGIN],
            }
        ),
        name="update",
    )
    seen["alias_after_update"] = alias_version(sandbox)
    seen["url_after_update"] = function_url(sandbox)
    seen["deploy_json_after_update"] = json.loads(
        (sandbox.workdir / "deploy-dist" / "deploy.json").read_text()
    )
    seen["smoke_fails"] = deploy(
        sandbox,
        execution_role,
        "-e",
        f"deploy_version={first}",
        "-e",
        '{"deploy_environment": {"MODEL_PATH": "/var/task/no-such-model.rds"}}',
        name="smoke-fails",
    )
    seen["alias_after_smoke_fails"] = alias_version(sandbox)
    seen["url_after_smoke_fails"] = function_url(sandbox)
    seen["rollback"] = deploy(
        sandbox, execution_role, "-e", f"deploy_version={first}", name="rollback"
    )
    seen["alias_after_rollback"] = alias_version(sandbox)
    seen["url_after_rollback"] = function_url(sandbox)  # deploy_function_url false: removed
    # A release that was published but never verified: its manifest says candidate.
    candidate = read_json(sandbox, BUCKET, f"releases/{first}/manifest.json")
    candidate.update(status="candidate", version="sbx-candidate")
    sandbox.client("s3").put_object(
        Bucket=BUCKET, Key="releases/sbx-candidate/manifest.json", Body=json.dumps(candidate)
    )
    seen["unverified"] = deploy(
        sandbox, execution_role, "-e", "deploy_version=sbx-candidate", name="unverified"
    )
    seen["alias_after_unverified"] = alias_version(sandbox)
    return seen
