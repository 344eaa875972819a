"""Real releases on the sandbox platform: the AWS path (ec2_host, S3) against a moto
server on 127.0.0.1, every instance backed by a container reached over real SSH.

The bucket as its administrator sets it up; one release that must pass (conftest.py's
first_release, which the other files' tests read too); the production inventory's refusals.
Last of the whole session (tests/conftest.py orders it), every AWS call the moto server
recorded from the playbooks must be in the IAM policy. Interrupted and failed releases are
in test_release_sandbox_failures.py, the deploys in test_deploy_sandbox.py.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from iam_recording import (
    from_the_playbooks,
    recorded_action,
    signed_by,
)
from iam_support import (
    BUCKET_ADMIN_POLICY,
    MOTO_ONLY,
    actions_of,
    aws_calls,
    policy_actions,
)
from release_runs import RELEASE_FILES, Run
from sandbox_support import (
    AL2023_PARAMETER,
    BUCKET,
    BUCKET_ADMIN_KEY,
    NOTHING_LEFT,
    PROFILE,
    PROJECT,
    Sandbox,
    aws_profile,
    read_json,
    recorded_requests,
    run_instances,
    s3_snapshot,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("release_bucket")]
# An endpoint the sandbox must never reach.
AWS_EC2 = "https://ec2.us-east-1.amazonaws.com"


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


def test_the_sandbox_refuses_an_aws_endpoint_that_is_not_local(sandbox: Sandbox) -> None:
    """A sandbox profile whose endpoint_url is AWS's: the release stops before any call."""
    aws = sandbox.workdir / "refuse-real-aws" / "aws"
    aws_profile.write_profile(aws, PROFILE, AWS_EC2, sandbox.region, writer="tests/sandbox")
    env = dict(sandbox.env, R_LAMBDA_SANDBOX_AWS_DIR=str(aws))
    run = sandbox.release(name="refuse-real-aws", env=env)
    assert run.returncode != 0
    said = " ".join(run.output.split())  # the message as one line, however it was wrapped
    assert f"through the AWS profile {PROFILE} ({aws}/config)" in said
    assert f"'{AWS_EC2}' (from endpoint_url of profile {PROFILE} in {aws}/config)" in said
    assert "must be a loopback URL" in said
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
