"""Real releases on the sandbox platform: the AWS path (ec2_host, S3) against a moto
server on 127.0.0.1, every instance backed by a container reached over real SSH.

One release must pass; a failure injected at each stage must leave no instance, key pair,
security group, container or key file of its run, and change nothing in S3. The failing
releases run all at the same time: cheaper, and proof that concurrent runs keep apart.
Last, every AWS call the moto server recorded from the playbooks must be in the IAM policy.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import signal
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from iam_support import (
    BUCKET_ADMIN_POLICY,
    MOTO_ONLY,
    actions_of,
    aws_calls,
    from_the_playbooks,
    policy_actions,
    recorded_action,
    signed_by,
)
from release_runs import RELEASE_FILES, REPO, Run
from sandbox_support import (
    AL2023_PARAMETER,
    BUCKET_ADMIN_KEY,
    LOCK_KEY,
    NOTHING_LEFT,
    PROJECT,
    Sandbox,
    read_json,
    recorded_requests,
    s3_snapshot,
)

pytestmark = pytest.mark.slow

BUCKET = "r-lambda-releases"
MISSING_BUCKET = "r-lambda-no-such-bucket"
# Stages that fail before any host is launched, and before the run's security group exists.
BEFORE_HOSTS = ("bucket-name", "no-bucket", "ami-lookup")


def changed(output: str, task: str) -> bool:
    """Whether the named task reported a change (it created something)."""
    return (
        re.search(
            rf"TASK \[[^\]]*{re.escape(task)}[^\]]*\][^\n]*\n[^\n]*\n(changed|included)", output
        )
        is not None
    )


def run_instances(sandbox: Sandbox, run_id: str) -> list[dict]:
    reservations = sandbox.client("ec2").describe_instances(
        Filters=[{"Name": "tag:run_id", "Values": [run_id]}]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


@pytest.fixture(scope="module", autouse=True)
def release_bucket(sandbox: Sandbox) -> str:
    """The bucket, set up once by its administrator: releases never create it."""
    sandbox.timings["bucket"] = sandbox.set_up_bucket(BUCKET).seconds
    return BUCKET


def test_the_bucket_is_set_up_by_its_administrator_private_versioned_encrypted(
    sandbox: Sandbox, release_bucket: str
) -> None:
    s3 = sandbox.client("s3")
    block = s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True
    )
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    [rule] = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # Run again, it changes nothing.
    again = sandbox.set_up_bucket(BUCKET)
    assert re.search(r"localhost\s*: ok=\d+\s+changed=0", again.output), again.log


def test_a_tls_only_bucket_refuses_plain_http(sandbox: Sandbox) -> None:
    """The set-up's default on AWS (inventory/sandbox turns it off: moto speaks plain HTTP
    and enforces bucket policies, so it shows the policy at work)."""
    bucket = "r-lambda-tls-only"
    sandbox.set_up_bucket(bucket, "-e", "artifact_store_tls_only=true")
    s3 = sandbox.client("s3")
    [deny] = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
    with pytest.raises(s3.exceptions.ClientError, match=r"Forbidden|AccessDenied"):
        s3.put_object(Bucket=bucket, Key="releases/x/admission.zip", Body=b"zip")


@pytest.fixture(scope="module")
def first_release(sandbox: Sandbox) -> Run:
    run = sandbox.release(name="release")
    sandbox.timings["release"] = run.seconds
    return run.check()


def test_release_publishes_a_package_verified_on_a_clean_host(
    sandbox: Sandbox, first_release: Run
) -> None:
    latest = read_json(sandbox, BUCKET, "releases/latest.json")
    manifest = read_json(sandbox, BUCKET, f"releases/{latest['version']}/manifest.json")
    assert manifest["status"] == "verified"
    assert manifest["platform"] == "sandbox"
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert set(manifest["phase_seconds"]) == {"plan", "build", "publish", "test", "promote"}
    sandbox.timings["release_phase_seconds"] = manifest["phase_seconds"]
    body = sandbox.client("s3").get_object(Bucket=BUCKET, Key=manifest["zip"]["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == manifest["zip"]["sha256"]
    assert sorted(s3_snapshot(sandbox, BUCKET)) == sorted(
        [f"releases/{latest['version']}/{name}" for name in RELEASE_FILES]
        + ["releases/latest.json"]
    )


def test_release_is_built_for_python_3_13_and_proven_under_its_runtime_client(
    sandbox: Sandbox, first_release: Run
) -> None:
    """The sandbox targets Lambda's python3.13 runtime as every platform does: glibc at most
    2.34 (bullseye builds), the trixie test host's Python 3.13 ran awslambdaric under 128 MB."""
    latest = read_json(sandbox, BUCKET, "releases/latest.json")
    manifest = read_json(sandbox, BUCKET, f"releases/{latest['version']}/manifest.json")
    assert manifest["target_runtime"]["name"] == "python3.13"
    assert manifest["python_version"] == "3.13"
    needed = tuple(int(x) for x in manifest["glibc"]["needed_max"].split("."))
    assert needed <= (2, 34)
    runtime = manifest["tests"]["runtime_client"]
    assert runtime["python"].startswith("3.13.")
    assert (runtime["passed"], runtime["failed"]) == (5, 0)
    assert 0 < float(runtime["peak_rss_mb"]) <= 128


def test_manifest_records_the_ami_and_the_image_behind_it(
    sandbox: Sandbox, first_release: Run
) -> None:
    ami = sandbox.client("ssm").get_parameter(Name=AL2023_PARAMETER)["Parameter"]["Value"]
    latest = read_json(sandbox, BUCKET, "releases/latest.json")
    manifest = read_json(sandbox, BUCKET, f"releases/{latest['version']}/manifest.json")
    assert manifest["build_image"].startswith(f"{ami} (al2023-ami-")
    assert "sandbox image localhost/r-lambda-sandbox:bullseye-" in manifest["build_image"]
    assert latest["build_image"] == manifest["build_image"]


def test_instances_were_launched_as_on_aws_and_terminated(
    sandbox: Sandbox, first_release: Run
) -> None:
    instances = run_instances(sandbox, first_release.run_id)
    by_purpose = {
        next(t["Value"] for t in i["Tags"] if t["Key"] == "purpose"): i for i in instances
    }
    assert set(by_purpose) == {"build", "test"} and len(instances) == 2
    assert by_purpose["build"]["InstanceType"] == "t2.medium"
    assert by_purpose["test"]["InstanceType"] == "t2.micro"
    for instance in instances:
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["project"] == PROJECT and tags["run_id"] == first_release.run_id
        assert tags["Name"] == f"{PROJECT}-{first_release.run_id}-{tags['purpose']}"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tags["created_at"])
        assert instance["MetadataOptions"]["HttpTokens"] == "required"
        assert instance["KeyName"] == f"{PROJECT}-{first_release.run_id}"
        assert instance["State"]["Name"] == "terminated"
    # The hosts were managed over SSH under the names ec2_host gave them.
    assert f"ok: [{PROJECT}-{first_release.run_id}-build]" in first_release.output
    assert f"ok: [{PROJECT}-{first_release.run_id}-test]" in first_release.output


def test_release_leaves_nothing_behind(sandbox: Sandbox, first_release: Run) -> None:
    assert sandbox.leftovers(first_release) == NOTHING_LEFT


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


@pytest.fixture(scope="module")
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


def test_a_spline_model_ships_with_the_r_package_it_needs_and_is_predicted_exactly(
    sandbox: Sandbox, spline_release: tuple[Run, Path]
) -> None:
    """The build host finds that predicting the spline model loads splines and adds it to the
    package's R library; the clean host (no R) predicts it bitwise as the package's R
    predict() does, on the predict path."""
    run, model = spline_release
    run.check()
    assert sandbox.leftovers(run) == NOTHING_LEFT
    manifest = read_json(sandbox, BUCKET, "releases/sbx-spline/manifest.json")
    assert manifest["status"] == "verified"
    assert manifest["model"]["r_packages_added"] == ["splines"]
    assert "splines" in manifest["r_packages"]
    assert manifest["model"]["plan"]["method"] == "predict"
    assert manifest["model"]["source"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert (
        manifest["tests"]["runtime_client"]["passed"],
        manifest["tests"]["runtime_client"]["failed"],
    ) == (5, 0)
    # Base R's packages, splines among them, are in the layer the function zip runs over.
    assert manifest["layout"] == "layer"
    layer = sandbox.client("s3").get_object(Bucket=BUCKET, Key=manifest["layer"]["key"])
    body = layer["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert "R/library/splines/NAMESPACE" in archive.namelist()


# --- Deploy (playbooks/deploy.yml) against moto's Lambda API --------------------------

FUNCTION = "r-lambda-admission"
EXECUTION_ROLE = "r-lambda-admission"
# The page allowed to call the function URL from a browser (the 2017 series' front end).
PAGE_ORIGIN = "https://admissions.example.org"


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
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


def test_a_first_deploy_creates_the_function_publishes_a_version_and_points_the_alias(
    sandbox: Sandbox, deploys: dict
) -> None:
    run, first = deploys["first"], deploys["first_version"]
    run.check()
    manifest = read_json(sandbox, BUCKET, f"releases/{first}/manifest.json")
    config = sandbox.client("lambda").get_function(FunctionName=FUNCTION, Qualifier="1")[
        "Configuration"
    ]
    sha = base64.b64encode(bytes.fromhex(manifest["zip"]["sha256"])).decode()
    assert config["CodeSha256"] == sha  # the verified bytes, as moto computed them
    assert config["Runtime"] == manifest["target_runtime"]["name"] == "python3.13"
    assert config["Handler"] == "handler.lambda_handler"
    assert (config["MemorySize"], config["Architectures"]) == (128, ["x86_64"])
    assert config["Environment"]["Variables"]["MODEL_SHA256"] == manifest["model"]["sha256"]
    assert deploys["alias_after_first"] == "1"
    # The smoke events ran in the stand-in against those bytes before the alias existed.
    assert "Move the alias to the verified version" in run.output
    assert "smoke-standin | Invoke the deployed bytes" in run.output
    [record] = deploys_of(sandbox, first)[:1]
    assert (record["function_version"], record["alias"], record["previous_version"]) == (
        "1",
        "live",
        "",
    )
    assert record["code_sha256"] == manifest["zip"]["sha256"]
    # The release's immutable keys are untouched: the record lives next to them.
    assert read_json(sandbox, BUCKET, f"releases/{first}/manifest.json") == manifest


def test_an_update_publishes_a_new_version_and_moves_the_alias(
    sandbox: Sandbox, deploys: dict
) -> None:
    deploys["update"].check()
    assert deploys["latest_at_update"] == "sbx-spline"  # latest.json's, as no version was given
    assert deploys["alias_after_update"] == "2"
    [line] = deploys_of(sandbox, "sbx-spline")
    assert (line["function_version"], line["previous_version"]) == ("2", "1")


def test_a_function_url_is_optional_public_only_when_asked_and_cors_only_for_its_origins(
    sandbox: Sandbox, deploys: dict
) -> None:
    deploys["update"].check()
    assert deploys["url_after_first"] is None  # off by default
    url = deploys["url_after_update"]
    assert url is not None and url["url"].startswith("https://")
    assert url["auth_type"] == "NONE"
    assert url["cors"] == {
        "AllowOrigins": [PAGE_ORIGIN],
        "AllowMethods": ["POST"],
        "AllowHeaders": ["content-type"],
        "MaxAge": 300,
    }
    public = url["statements"]["r-lambda-function-url-public"]
    invoke = url["statements"]["r-lambda-function-url-invoke"]
    assert (public["Action"], public["Principal"], public["FunctionUrlAuthType"]) == (
        "lambda:InvokeFunctionUrl",
        "*",
        "NONE",
    )
    assert (invoke["Action"], invoke["InvokedViaFunctionUrl"]) == ("lambda:InvokeFunction", True)
    assert public["Resource"].endswith(f":function:{FUNCTION}:live")
    # moto keeps one URL per function whatever the qualifier: the calls must name the alias.
    calls = [
        r
        for r in recorded_requests(sandbox)
        if "r-lambda-deploy_function_url/" in r["headers"].get("User-Agent", "")
    ]
    made = {(r["method"], urlparse(r["url"]).path) for r in calls}
    assert ("POST", f"/2021-10-31/functions/{FUNCTION}/url") in made
    assert ("DELETE", f"/2021-10-31/functions/{FUNCTION}/url") in made  # the rollback's
    assert all(parse_qs(urlparse(r["url"]).query)["Qualifier"] == ["live"] for r in calls)
    record = deploys["deploy_json_after_update"]
    assert (record["endpoint"], record["endpoint_auth_type"]) == (url["url"], "NONE")
    assert [line["endpoint"] for line in deploys_of(sandbox, "sbx-spline")] == [url["url"]]
    assert f"at {url['url']} (public: anyone may call it)" in deploys["update"].output
    # A failed smoke test changes nothing in front of the alias; a deploy without the
    # setting takes the URL and its public statements away.
    assert deploys["url_after_smoke_fails"] == url
    assert deploys["url_after_rollback"] is None


def test_a_failed_smoke_test_leaves_the_alias_where_it_was_and_names_the_event(
    sandbox: Sandbox, deploys: dict
) -> None:
    run = deploys["smoke_fails"]
    assert run.returncode != 0, run.log
    assert "The smoke test of r-lambda-admission version 3" in run.output
    assert "event 'direct call answers P(admit) for gre 800, gpa 4, rank 1'" in run.output
    assert "The alias live stays on version 2" in run.output
    assert deploys["alias_after_smoke_fails"] == "2"
    assert run_standins(run) == []


def run_standins(run: Run) -> list[str]:
    """Stand-in containers left by a deploy (none: they run with --rm)."""
    found = subprocess.run(
        [
            "podman",
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            "label=r-lambda.deploy_run_id",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [n for n in found.stdout.split() if n]


def test_a_layered_release_publishes_its_layer_version_and_the_function_uses_it(
    sandbox: Sandbox, deploys: dict
) -> None:
    """The update deploys the spline release, which is layered."""
    deploys["update"].check()
    manifest = read_json(sandbox, BUCKET, "releases/sbx-spline/manifest.json")
    assert manifest["layout"] == "layer"
    client = sandbox.client("lambda")
    [layer] = client.list_layer_versions(LayerName="r-lambda-admission-r")["LayerVersions"]
    assert layer["Description"] == f"r-lambda layer sha256:{manifest['layer']['sha256']}"
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    live = deploys["alias_after_update"]
    assert live == "2"
    config = client.get_function(FunctionName=FUNCTION, Qualifier=live)["Configuration"]
    assert [item["Arn"] for item in config["Layers"]] == [layer["LayerVersionArn"]]
    digest = base64.b64encode(bytes.fromhex(manifest["function"]["sha256"])).decode()
    assert config["CodeSha256"] == digest  # function.zip, the layer apart
    [line] = deploys_of(sandbox, "sbx-spline")
    assert line["layer_version_arn"] == layer["LayerVersionArn"]


def test_deploying_an_older_version_is_the_rollback(sandbox: Sandbox, deploys: dict) -> None:
    deploys["rollback"].check()
    first = deploys["first_version"]
    manifest = read_json(sandbox, BUCKET, f"releases/{first}/manifest.json")
    live = deploys["alias_after_rollback"]
    assert live == "4"  # a new version of the first release's bytes (3 failed its smoke test)
    config = sandbox.client("lambda").get_function(FunctionName=FUNCTION, Qualifier=live)[
        "Configuration"
    ]
    assert (
        config["CodeSha256"] == base64.b64encode(bytes.fromhex(manifest["zip"]["sha256"])).decode()
    )
    assert deploys_of(sandbox, first)[-1]["previous_version"] == "2"
    assert config.get("Layers", []) == []  # the layered release's layer is detached


def test_a_release_that_is_not_verified_is_refused(sandbox: Sandbox, deploys: dict) -> None:
    run = deploys["unverified"]
    assert run.returncode != 0
    assert "Release sbx-candidate is not verified (status 'candidate')" in run.output
    assert deploys["alias_after_unverified"] == deploys["alias_after_rollback"]
    versions = sandbox.client("lambda").list_versions_by_function(FunctionName=FUNCTION)
    assert len(versions["Versions"]) == 5  # $LATEST and 1-4: nothing published for it


def test_the_sandbox_refuses_an_aws_endpoint_that_is_not_local(sandbox: Sandbox) -> None:
    env = {k: v for k, v in sandbox.env.items() if k != "AWS_ENDPOINT_URL"}
    run = sandbox.release(name="refuse-real-aws", env=env)
    assert run.returncode != 0
    assert "needs AWS_ENDPOINT_URL pointing at a moto server on the loopback" in run.output
    assert sandbox.leftovers(run) == NOTHING_LEFT


@pytest.mark.parametrize(
    ("cidr", "why"),
    [("", "(it is required)"), ("0.0.0.0/1", '("0.0.0.0/1" admits 2147483648 addresses')],
    ids=["none", "too broad"],
)
def test_the_aws_platform_will_not_launch_without_a_narrow_operator_cidr(
    sandbox: Sandbox, first_release: Run, cidr: str, why: str
) -> None:
    """The production inventory and task files (ami-aws, present-ec2, absent-aws) against
    moto: with no ec2_host_operator_cidr, or one broader than /24, nothing is launched, and
    the message names the setting and why."""
    before = s3_snapshot(sandbox, BUCKET)
    run = sandbox.release(
        "-e",
        "release_force=true",
        "-e",
        "release_version=sbx-aws-no-cidr",
        *(["-e", f"ec2_host_operator_cidr={cidr}"] if cidr else []),
        name=f"aws-operator-cidr-{'none' if not cidr else 'broad'}",
        inventory="inventory/aws",
    )
    assert run.returncode != 0
    assert "ec2_host_operator_cidr is required" in run.output
    assert why in run.output
    assert "absent-aws | Terminate the run's instances" in run.output
    assert sandbox.leftovers(run) == NOTHING_LEFT
    assert run_instances(sandbox, run.run_id) == []
    assert s3_snapshot(sandbox, BUCKET) == before


def test_every_aws_call_the_playbooks_made_is_in_the_iam_policy(
    sandbox: Sandbox, first_release: Run, failed_releases: dict, deploys: dict
) -> None:
    """What moto saw from the amazon.aws modules, artifact_store's own module (the lock and
    the conditional writes) and the test host's signed download in this session: the
    release, every failure path, the interrupted runs, the reaper, the collision test."""
    playbooks = [r for r in recorded_requests(sandbox) if from_the_playbooks(r)]
    admin = [r for r in playbooks if signed_by(r, BUCKET_ADMIN_KEY)]
    requests = [r for r in playbooks if not signed_by(r, BUCKET_ADMIN_KEY)]
    # The bucket's set-up (playbooks/bucket.yml, run by the session's fixture as the bucket's
    # administrator): allowed by the administrator's policy, predicted by the static map.
    set_up = {recorded_action(r) for r in admin}
    assert {"s3:CreateBucket", "s3:PutBucketPolicy", "s3:PutBucketPublicAccessBlock"} <= set_up
    admin_policy = json.loads(BUCKET_ADMIN_POLICY.read_text())
    assert set_up - policy_actions(admin_policy) == set()
    assert set_up - set().union(*(actions_of(c) for c in aws_calls("bucket-admin"))) == set()
    own = [
        r for r in requests if "r-lambda-artifact_store_s3/" in r["headers"].get("User-Agent", "")
    ]
    assert {r["method"] for r in own} >= {"GET", "PUT", "DELETE"}  # lock, writes, rollbacks
    made = {recorded_action(r) for r in requests}
    made.discard(None)
    # moto's quirk makes ec2_instance call it; the policy refuses it (iam_support.MOTO_ONLY).
    assert "ec2:ModifyInstanceAttribute" not in policy_actions()
    made -= MOTO_ONLY
    assert {
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "s3:PutObject",
        "ssm:GetParameter",
        # The deploys (the smoke test's Invoke runs in the stand-in here: only on AWS).
        "lambda:CreateFunction",
        "lambda:UpdateFunctionConfiguration",
        "lambda:UpdateFunctionCode",
        "lambda:ListAliases",
        "lambda:CreateAlias",
        "lambda:UpdateAlias",
        "lambda:PublishLayerVersion",
        "lambda:ListLayerVersions",
        "lambda:GetLayerVersion",
    } <= made
    assert made - policy_actions() == set()
    # The static map of test_iam_policy.py predicted every one of them.
    assert made - set().union(*(actions_of(call) for call in aws_calls())) == set()
