"""The operator's IAM policy (iam/operator-policy.json) against the AWS calls the playbooks
and roles make: every action they need is allowed, nothing by wildcard. The same for the
bucket administrator's (iam/bucket-admin-policy.json) and the bucket's one-time set-up.

The conditions, evaluated (iam_support.decide), are in test_iam_conditions.py, the bucket
policy's in test_iam_bucket_policy.py."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from iam_support import (
    BUCKET_ADMIN_POLICY,
    CI_POLICY,
    POLICY,
    REPO,
    actions_of,
    aws_calls,
    policy_actions,
    policy_statement,
)

POLICIES = {"operator": POLICY, "bucket-admin": BUCKET_ADMIN_POLICY, "ci-release": CI_POLICY}
FUNCTION_URL_STATEMENTS = (
    "ReadOrTakeAwayTheAliasFunctionUrl",
    "ServeTheAliasThroughASignedFunctionUrl",
    "OpenTheAliasFunctionUrlToEveryoneOnlyAsAuthTypeNone",
)
# What could make the bucket or its objects public, or loosen its set-up.
BUCKET_SET_UP_ACTIONS = {
    "s3:CreateBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutObjectAcl",
}


@pytest.mark.parametrize("path", POLICIES.values(), ids=POLICIES.keys())
def test_the_policy_is_valid_json_with_statements(path) -> None:
    policy = json.loads(path.read_text())
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"]
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])


@pytest.mark.parametrize("path", POLICIES.values(), ids=POLICIES.keys())
def test_the_policy_has_no_wildcard_action(path) -> None:
    for statement in json.loads(path.read_text())["Statement"]:
        listed = statement["Action"]
        for action in [listed] if isinstance(listed, str) else listed:
            assert "*" not in action, statement["Sid"]
        assert "NotAction" not in statement


def test_the_policy_scopes_what_it_can() -> None:
    """Only reads that AWS cannot scope get Resource "*"; every write is scoped."""
    unscopable = {"ec2:Describe", "s3:ListAllMyBuckets"}
    for statement in json.loads(POLICY.read_text())["Statement"]:
        listed = statement["Action"]
        actions = [listed] if isinstance(listed, str) else listed
        if statement["Resource"] == "*":
            assert all(a.startswith(tuple(unscopable)) for a in actions), statement["Sid"]


def test_the_playbooks_call_aws_at_all() -> None:
    """Guard: the enumeration finds the modules the release and the reaper use, the
    project's own among them by their fully qualified names (r_lambda.release.*)."""
    modules = {call.module for call in aws_calls()}
    assert {
        "artifact_store_s3",
        "deploy_function_layers",
        "deploy_function_url",
        "ec2_instance",
        "ec2_key",
        "ec2_security_group",
        "s3_object",
        "s3_bucket_info",
        "ssm_parameter_lookup",
    } <= modules
    assert {call.module for call in aws_calls("bucket-admin")} == {"s3_bucket"}


@pytest.mark.parametrize("call", aws_calls(), ids=lambda c: f"{c.where}:{c.module}")
def test_every_aws_call_of_the_playbooks_is_allowed(call) -> None:
    missing = actions_of(call) - policy_actions()
    assert not missing, f"{call.where}: {call.module} needs {sorted(missing)}"


def test_the_policy_allows_nothing_the_playbooks_do_not_call() -> None:
    needed = set().union(*(actions_of(call) for call in aws_calls()))
    assert policy_actions() - needed == set()


@pytest.mark.parametrize("call", aws_calls("bucket-admin"), ids=lambda c: f"{c.where}:{c.module}")
def test_the_bucket_set_up_is_allowed_by_the_bucket_admin_policy(call) -> None:
    admin = policy_actions(json.loads(BUCKET_ADMIN_POLICY.read_text()))
    missing = actions_of(call) - admin
    assert not missing, f"{call.where}: {call.module} needs {sorted(missing)}"
    # Public access block and the TLS-only policy are both set.
    assert {"s3:PutBucketPublicAccessBlock", "s3:PutBucketPolicy"} <= actions_of(call)


def test_the_bucket_admin_policy_allows_only_the_set_up_on_the_one_bucket() -> None:
    policy = json.loads(BUCKET_ADMIN_POLICY.read_text())
    needed = set().union(*(actions_of(call) for call in aws_calls("bucket-admin")))
    assert policy_actions(policy) == needed
    for statement in policy["Statement"]:
        assert statement["Resource"] == "arn:aws:s3:::r-lambda-releases", statement["Sid"]
        assert statement["Condition"]["StringEquals"] == {
            "aws:ResourceAccount": "${aws:PrincipalAccount}"
        }


def test_a_release_cannot_set_up_or_open_the_bucket() -> None:
    """The operator's policy holds none of the set-up's writes, and no inventory but the
    local one (no IAM there) lets a release set its bucket up."""
    assert policy_actions() & BUCKET_SET_UP_ACTIONS == set()
    defaults = yaml.safe_load((REPO / "roles/artifact_store/defaults/main.yml").read_text())
    assert defaults["artifact_store_create_bucket"] is False
    for platform in ("aws", "sandbox"):
        settings = yaml.safe_load(
            (REPO / f"inventory/{platform}/group_vars/all/platform.yml").read_text()
        )
        assert not settings.get("artifact_store_create_bucket", False), platform


def test_every_key_prefix_the_roles_write_is_in_the_publish_statement() -> None:
    """artifact_store writes under its default prefix (releases) and whatever prefix a
    caller passes (the release's shared layers): each must be writable."""
    default = yaml.safe_load((REPO / "roles/artifact_store/defaults/main.yml").read_text())
    prefixes = {default["artifact_store_prefix"]}
    for path in [*REPO.glob("roles/*/tasks/*.yml"), *REPO.glob("playbooks/*.yml")]:
        prefixes |= set(re.findall(r"artifact_store_prefix: *([A-Za-z0-9._-]+)", path.read_text()))
    statement = next(
        s
        for s in json.loads(POLICY.read_text())["Statement"]
        if s["Sid"] == "PublishAndRollBackReleases"
    )
    assert "s3:PutObject" in statement["Action"] and "s3:DeleteObject" in statement["Action"]
    assert prefixes >= {"releases", "layers"}
    for prefix in prefixes:
        assert f"arn:aws:s3:::r-lambda-releases/{prefix}/*" in statement["Resource"], prefix


def test_instances_launch_only_with_imdsv2_encrypted_volumes_and_the_roles_types() -> None:
    """RunInstances is conditioned on what ec2_host launches: IMDSv2 required, the instance
    types of ec2_host_instance_types (a change there must change the policy), encrypted
    volumes."""
    types = yaml.safe_load((REPO / "roles/ec2_host/defaults/main.yml").read_text())[
        "ec2_host_instance_types"
    ]
    instance = policy_statement("LaunchOnlyProjectTaggedInstancesWithImdsV2OfTheAllowedTypes")
    assert instance["Resource"] == "arn:aws:ec2:*:*:instance/*"
    condition = instance["Condition"]["StringEquals"]
    assert condition["ec2:MetadataHttpTokens"] == "required"
    assert sorted(condition["ec2:InstanceType"]) == sorted(set(types.values()))
    volume = policy_statement("LaunchOnlyProjectTaggedEncryptedVolumes")
    assert volume["Resource"] == "arn:aws:ec2:*:*:volume/*"
    assert volume["Condition"]["Bool"] == {"ec2:Encrypted": "true"}
    launch = (REPO / "roles/ec2_host/tasks/instance.yml").read_text()
    assert "http_tokens: required" in launch and "encrypted: true" in launch


def test_the_bucket_statements_hold_only_in_the_operators_own_account() -> None:
    for sid in ("UseTheReleaseBucket", "PublishAndRollBackReleases"):
        condition = policy_statement(sid)["Condition"]["StringEquals"]
        assert condition == {"aws:ResourceAccount": "${aws:PrincipalAccount}"}, sid


def test_the_deploy_may_change_only_its_function_and_layer_and_pass_only_its_role() -> None:
    """The Lambda statements name the deploy role's function and layer (a change there must
    change the policy), and iam:PassRole covers one role, only towards Lambda."""
    defaults = yaml.safe_load((REPO / "roles/deploy/defaults/main.yml").read_text())
    function, layer = defaults["deploy_function_name"], defaults["deploy_layer_name"]
    assert policy_statement("DeployTheFunction")["Resource"] == [
        f"arn:aws:lambda:*:*:function:{function}",
        f"arn:aws:lambda:*:*:function:{function}:*",
    ]
    assert policy_statement("PublishTheLayer")["Resource"] == f"arn:aws:lambda:*:*:layer:{layer}"
    assert policy_statement("AttachTheLayer")["Resource"] == f"arn:aws:lambda:*:*:layer:{layer}:*"
    passing = [
        s for s in json.loads(POLICY.read_text())["Statement"] if "iam:PassRole" in s["Action"]
    ]
    assert passing == [policy_statement("PassOnlyTheExecutionRoleToLambda")]
    assert passing[0]["Resource"] == f"arn:aws:iam::*:role/{function}"
    assert passing[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }
    # The function URL and its public statements: on the alias only, never the function.
    for sid in FUNCTION_URL_STATEMENTS:
        assert policy_statement(sid)["Resource"] == (
            f"arn:aws:lambda:*:*:function:{function}:{defaults['deploy_alias']}"
        ), sid
    lambda_actions = {a for a in policy_actions() if a.startswith("lambda:")}
    assert lambda_actions == set().union(
        *(actions_of(c) for c in aws_calls() if c.module.startswith(("lambda", "deploy_")))
    ) - {"iam:PassRole"}
