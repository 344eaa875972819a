"""The operator's IAM policy (iam/operator-policy.json) against the AWS calls the playbooks
and roles make: every action they need is allowed, nothing by wildcard. The same for the
bucket administrator's (iam/bucket-admin-policy.json) and the bucket's one-time set-up.

Then the conditions, evaluated (iam_support.decide): each call the policies must refuse is
refused, and each write the artifact store really sends, with its headers, is allowed."""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest
import yaml
from iam_support import (
    ACCOUNT,
    BUCKET_ADMIN_POLICY,
    CI_POLICY,
    MOTO_ONLY,
    OTHER_ACCOUNT,
    POLICY,
    REPO,
    Request,
    actions_of,
    aws_calls,
    bucket_policy,
    decide,
    policy_actions,
    reachable_sources,
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


def _statement(sid: str) -> dict:
    [found] = [s for s in json.loads(POLICY.read_text())["Statement"] if s["Sid"] == sid]
    return found


def test_instances_launch_only_with_imdsv2_encrypted_volumes_and_the_roles_types() -> None:
    """RunInstances is conditioned on what ec2_host launches: IMDSv2 required, the instance
    types of ec2_host_instance_types (a change there must change the policy), encrypted
    volumes."""
    types = yaml.safe_load((REPO / "roles/ec2_host/defaults/main.yml").read_text())[
        "ec2_host_instance_types"
    ]
    instance = _statement("LaunchOnlyProjectTaggedInstancesWithImdsV2OfTheAllowedTypes")
    assert instance["Resource"] == "arn:aws:ec2:*:*:instance/*"
    condition = instance["Condition"]["StringEquals"]
    assert condition["ec2:MetadataHttpTokens"] == "required"
    assert sorted(condition["ec2:InstanceType"]) == sorted(set(types.values()))
    volume = _statement("LaunchOnlyProjectTaggedEncryptedVolumes")
    assert volume["Resource"] == "arn:aws:ec2:*:*:volume/*"
    assert volume["Condition"]["Bool"] == {"ec2:Encrypted": "true"}
    launch = (REPO / "roles/ec2_host/tasks/instance.yml").read_text()
    assert "http_tokens: required" in launch and "encrypted: true" in launch


def test_the_bucket_statements_hold_only_in_the_operators_own_account() -> None:
    for sid in ("UseTheReleaseBucket", "PublishAndRollBackReleases"):
        condition = _statement(sid)["Condition"]["StringEquals"]
        assert condition == {"aws:ResourceAccount": "${aws:PrincipalAccount}"}, sid


def test_the_deploy_may_change_only_its_function_and_layer_and_pass_only_its_role() -> None:
    """The Lambda statements name the deploy role's function and layer (a change there must
    change the policy), and iam:PassRole covers one role, only towards Lambda."""
    defaults = yaml.safe_load((REPO / "roles/deploy/defaults/main.yml").read_text())
    function, layer = defaults["deploy_function_name"], defaults["deploy_layer_name"]
    assert _statement("DeployTheFunction")["Resource"] == [
        f"arn:aws:lambda:*:*:function:{function}",
        f"arn:aws:lambda:*:*:function:{function}:*",
    ]
    assert _statement("PublishTheLayer")["Resource"] == f"arn:aws:lambda:*:*:layer:{layer}"
    assert _statement("AttachTheLayer")["Resource"] == f"arn:aws:lambda:*:*:layer:{layer}:*"
    passing = [
        s for s in json.loads(POLICY.read_text())["Statement"] if "iam:PassRole" in s["Action"]
    ]
    assert passing == [_statement("PassOnlyTheExecutionRoleToLambda")]
    assert passing[0]["Resource"] == f"arn:aws:iam::*:role/{function}"
    assert passing[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}
    }
    # The function URL and its public statements: on the alias only, never the function.
    for sid in FUNCTION_URL_STATEMENTS:
        assert _statement(sid)["Resource"] == (
            f"arn:aws:lambda:*:*:function:{function}:{defaults['deploy_alias']}"
        ), sid
    lambda_actions = {a for a in policy_actions() if a.startswith("lambda:")}
    assert lambda_actions == set().union(
        *(actions_of(c) for c in aws_calls() if c.module.startswith(("lambda", "deploy_")))
    ) - {"iam:PassRole"}


# --- The conditions, evaluated ---

ALIAS = "arn:aws:lambda:us-east-1:111122223333:function:r-lambda-admission:live"
FUNCTION = "arn:aws:lambda:us-east-1:111122223333:function:r-lambda-admission"


def _policy(path=POLICY) -> dict:
    return json.loads(path.read_text())


def _operator(request: Request) -> str:
    return decide(request, [_policy()])


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        # A signed (AWS_IAM) URL on the alias: the default.
        (
            Request.of(
                "lambda:CreateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "AWS_IAM"}
            ),
            "allowed",
        ),
        (
            Request.of(
                "lambda:UpdateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "AWS_IAM"}
            ),
            "allowed",
        ),
        # A public URL, as deploy_function_url_auth_type=NONE asks, and its two statements:
        # lambda:InvokeFunctionUrl for everyone with FunctionUrlAuthType NONE, and
        # lambda:InvokeFunction for everyone (AddPermission carries no key for its
        # InvokedViaFunctionUrl condition: IAM sees Principal "*" and nothing else).
        (
            Request.of(
                "lambda:CreateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "NONE"}
            ),
            "allowed",
        ),
        (
            Request.of(
                "lambda:AddPermission",
                ALIAS,
                {"lambda:Principal": "*", "lambda:FunctionUrlAuthType": "NONE"},
            ),
            "allowed",
        ),
        (Request.of("lambda:AddPermission", ALIAS, {"lambda:Principal": "*"}), "allowed"),
        # Refused: any grant to a named account or service, a public grant on an AWS_IAM
        # URL, a URL or a grant on the function itself (every version) rather than the alias.
        (
            Request.of("lambda:AddPermission", ALIAS, {"lambda:Principal": OTHER_ACCOUNT}),
            "not allowed",
        ),
        (
            Request.of("lambda:AddPermission", ALIAS, {"lambda:Principal": "s3.amazonaws.com"}),
            "not allowed",
        ),
        (
            Request.of(
                "lambda:AddPermission",
                ALIAS,
                {"lambda:Principal": "*", "lambda:FunctionUrlAuthType": "AWS_IAM"},
            ),
            "not allowed",
        ),
        (Request.of("lambda:AddPermission", FUNCTION, {"lambda:Principal": "*"}), "not allowed"),
        (
            Request.of(
                "lambda:CreateFunctionUrlConfig", FUNCTION, {"lambda:FunctionUrlAuthType": "NONE"}
            ),
            "not allowed",
        ),
        (
            Request.of(
                "lambda:CreateFunctionUrlConfig",
                FUNCTION,
                {"lambda:FunctionUrlAuthType": "AWS_IAM"},
            ),
            "not allowed",
        ),
        # Taking the URL and its statements away never makes anything public.
        (Request.of("lambda:RemovePermission", ALIAS, {"lambda:Principal": "*"}), "allowed"),
        (
            Request.of(
                "lambda:DeleteFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "NONE"}
            ),
            "allowed",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.action}:{dict(v.context)}",
)
def test_the_function_url_is_public_only_through_its_documented_statement(
    request_, expected
) -> None:
    assert _operator(request_) == expected


def test_without_the_documented_statement_no_url_can_be_public() -> None:
    """The one statement that opens the URL (deploy_function_url_auth_type=NONE) is the only
    way: an administrator who removes it leaves the operator signed URLs only."""
    policy = _policy()
    policy["Statement"] = [
        s
        for s in policy["Statement"]
        if s["Sid"] != "OpenTheAliasFunctionUrlToEveryoneOnlyAsAuthTypeNone"
    ]
    for request in (
        Request.of("lambda:CreateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "NONE"}),
        Request.of("lambda:UpdateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "NONE"}),
        Request.of(
            "lambda:AddPermission",
            ALIAS,
            {"lambda:Principal": "*", "lambda:FunctionUrlAuthType": "NONE"},
        ),
        Request.of("lambda:AddPermission", ALIAS, {"lambda:Principal": "*"}),
    ):
        assert decide(request, [policy]) == "not allowed", request
    signed = Request.of(
        "lambda:CreateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "AWS_IAM"}
    )
    assert decide(signed, [policy]) == "allowed"


def _region_arn(kind: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:ec2:us-east-1:{account}:{kind}"


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (
            Request.of(
                "ec2:RunInstances",
                _region_arn("subnet/subnet-1"),
                {"ec2:Vpc": _region_arn("vpc/vpc-1")},
            ),
            "allowed",
        ),
        (
            Request.of(
                "ec2:RunInstances",
                _region_arn("network-interface/*"),
                {"ec2:Vpc": _region_arn("vpc/vpc-1")},
            ),
            "allowed",
        ),
        # A subnet shared from another account, or in another account's VPC: refused.
        (
            Request.of(
                "ec2:RunInstances",
                _region_arn("subnet/subnet-9", OTHER_ACCOUNT),
                {"ec2:Vpc": _region_arn("vpc/vpc-9", OTHER_ACCOUNT)},
            ),
            "not allowed",
        ),
        (
            Request.of(
                "ec2:RunInstances",
                _region_arn("subnet/subnet-1"),
                {"ec2:Vpc": _region_arn("vpc/vpc-9", OTHER_ACCOUNT)},
            ),
            "not allowed",
        ),
        (Request.of("ec2:RunInstances", _region_arn("subnet/subnet-1")), "not allowed"),
        (
            Request.of("ec2:CreateSecurityGroup", _region_arn("vpc/vpc-9", OTHER_ACCOUNT)),
            "not allowed",
        ),
        (Request.of("ec2:CreateSecurityGroup", _region_arn("vpc/vpc-1")), "allowed"),
        # No instance attribute can be changed: type, user data, groups, shutdown behaviour.
        (
            Request.of(
                "ec2:ModifyInstanceAttribute",
                _region_arn("instance/i-1"),
                {"ec2:ResourceTag/project": "r-lambda"},
            ),
            "not allowed",
        ),
        (
            Request.of(
                "ec2:TerminateInstances",
                _region_arn("instance/i-1"),
                {"ec2:ResourceTag/project": "r-lambda"},
            ),
            "allowed",
        ),
        (Request.of("ec2:TerminateInstances", _region_arn("instance/i-2")), "not allowed"),
        # Key pairs: only the project's, tagged, are deleted (a key pair named r-lambda-* by
        # someone else is left alone).
        (
            Request.of(
                "ec2:DeleteKeyPair",
                _region_arn("key-pair/r-lambda-run1"),
                {"ec2:ResourceTag/project": "r-lambda"},
            ),
            "allowed",
        ),
        (Request.of("ec2:DeleteKeyPair", _region_arn("key-pair/r-lambda-run1")), "not allowed"),
        (
            Request.of(
                "ec2:DeleteKeyPair",
                _region_arn("key-pair/r-lambda-run1"),
                {"ec2:ResourceTag/project": "other"},
            ),
            "not allowed",
        ),
        (
            Request.of(
                "ec2:DeleteKeyPair",
                _region_arn("key-pair/ops-admin"),
                {"ec2:ResourceTag/project": "r-lambda"},
            ),
            "not allowed",
        ),
        # Notifications: the project's topics in the operator's own account only.
        (
            Request.of("sns:Publish", f"arn:aws:sns:us-east-1:{ACCOUNT}:r-lambda-releases"),
            "allowed",
        ),
        (
            Request.of("sns:Publish", f"arn:aws:sns:us-east-1:{OTHER_ACCOUNT}:r-lambda-releases"),
            "not allowed",
        ),
        (
            Request.of("sns:Publish", f"arn:aws:sns:us-east-1:{ACCOUNT}:billing-alerts"),
            "not allowed",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.action}:{v.resource}:{dict(v.context)}",
)
def test_ec2_and_sns_calls_outside_the_projects_own_are_refused(request_, expected) -> None:
    assert _operator(request_) == expected


def test_the_launch_network_follows_the_aws_inventorys_settings() -> None:
    """RunInstances takes subnets and interfaces of the operator's own account, in its own
    VPCs. When inventory/aws names a VPC or subnet (ec2_host_vpc_id, ec2_host_subnet_id),
    the policy must name the same: a change there must change the policy."""
    settings = yaml.safe_load((REPO / "inventory/aws/group_vars/all/platform.yml").read_text())
    vpc = settings.get("ec2_host_vpc_id") or "*"
    subnet = settings.get("ec2_host_subnet_id") or "*"
    statement = _statement("LaunchIntoTheOperatorsOwnVpcsOnly")
    assert statement["Resource"] == [
        f"arn:aws:ec2:*:${{aws:PrincipalAccount}}:subnet/{subnet}",
        "arn:aws:ec2:*:${aws:PrincipalAccount}:network-interface/*",
    ]
    assert statement["Condition"] == {
        "ArnLike": {"ec2:Vpc": f"arn:aws:ec2:*:${{aws:PrincipalAccount}}:vpc/{vpc}"}
    }
    assert _statement("CreateSecurityGroupsInTheOperatorsOwnVpcs")["Resource"] == (
        f"arn:aws:ec2:*:${{aws:PrincipalAccount}}:vpc/{vpc}"
    )


def test_modify_instance_attribute_is_a_moto_only_call() -> None:
    """No task needs it on AWS (iam_support.MOTO_ONLY says why moto makes it called)."""
    assert {"ec2:ModifyInstanceAttribute"} == MOTO_ONLY
    needed = set().union(*(actions_of(call) for call in aws_calls()))
    assert "ec2:ModifyInstanceAttribute" not in needed | policy_actions()


# --- The CI role (the AMI watch): release rights only ---


def test_the_ci_policy_holds_exactly_what_the_ami_watch_and_its_release_call() -> None:
    reached = reachable_sources(["ami_watch.yml"])
    assert "playbooks/release.yml" in reached and "roles/ami_watch/tasks/notify-sns.yml" in reached
    assert not any(where.startswith(("roles/deploy/", "playbooks/deploy.yml")) for where in reached)
    needed = set().union(*(actions_of(c) for c in aws_calls() if c.where in reached))
    ci = _policy(CI_POLICY)
    assert policy_actions(ci) == needed
    assert not {a for a in needed if a.startswith(("lambda:", "iam:"))}
    # Each of its statements is the operator's, word for word (one place to review).
    operator = {s["Sid"]: s for s in _policy()["Statement"]}
    for statement in ci["Statement"]:
        assert statement == operator[statement["Sid"]], statement["Sid"]


@pytest.mark.parametrize(
    "request_",
    [
        Request.of("lambda:UpdateFunctionCode", FUNCTION),
        Request.of("lambda:UpdateAlias", f"{FUNCTION}:live"),
        Request.of(
            "lambda:PublishLayerVersion",
            "arn:aws:lambda:us-east-1:111122223333:layer:r-lambda-admission-r",
        ),
        Request.of("lambda:AddPermission", ALIAS, {"lambda:Principal": "*"}),
        Request.of("lambda:CreateFunctionUrlConfig", ALIAS, {"lambda:FunctionUrlAuthType": "NONE"}),
        Request.of(
            "iam:PassRole",
            "arn:aws:iam::111122223333:role/r-lambda-admission",
            {"iam:PassedToService": "lambda.amazonaws.com"},
        ),
    ],
    ids=lambda r: r.action,
)
def test_the_ci_role_cannot_deploy(request_) -> None:
    assert decide(request_, [_policy(CI_POLICY)]) == "not allowed"
    assert _operator(request_) == "allowed"  # the operator can: the request is well formed


# --- The bucket policy: published objects are write-once for everyone ---

BUCKET = "r-lambda-releases"


def _put(key: str, **headers: str) -> Request:
    context = {"aws:ResourceAccount": ACCOUNT, "aws:SecureTransport": True}
    if "if_none_match" in headers:
        context["s3:if-none-match"] = headers["if_none_match"]
    if "if_match" in headers:
        context["s3:if-match"] = headers["if_match"]
    return Request.of("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{key}", context)


def _s3(request: Request, **settings: object) -> str:
    return decide(request, [_policy()], [bucket_policy(**settings)])


def test_the_bucket_policy_is_write_once_and_tls_only_by_default() -> None:
    sids = [s["Sid"] for s in bucket_policy()["Statement"]]
    assert sids == [
        "DenyRequestsWithoutTls",
        "DenyPutsWithoutAPrecondition",
        "DenyOverwritesOfImmutableObjects",
    ]
    for statement in bucket_policy()["Statement"]:
        assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    for platform in ("local", "sandbox"):  # SeaweedFS unknown, moto cannot evaluate it
        settings = yaml.safe_load(
            (REPO / f"inventory/{platform}/group_vars/all/platform.yml").read_text()
        )
        assert settings["artifact_store_conditional_writes_only"] is False, platform
    aws = yaml.safe_load((REPO / "inventory/aws/group_vars/all/platform.yml").read_text())
    assert "artifact_store_conditional_writes_only" not in aws
    assert (
        bucket_policy(artifact_store_tls_only=False, artifact_store_conditional_writes_only=False)[
            "Statement"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        # Immutable objects: created once (If-None-Match: *), never replaced.
        (_put("releases/v1/admission.zip", if_none_match="*"), "allowed"),
        (_put("releases/v1/admission.zip"), "denied"),
        (_put("releases/v1/admission.zip", if_match='"abc"'), "denied"),
        (_put("releases/v1/admission.rds", if_match='"abc"'), "denied"),
        (_put("layers/0123abcd/layer.zip", if_match='"abc"'), "denied"),
        (_put("layers/0123abcd/layer.zip"), "denied"),
        # The lock and latest.json: replaced only over the ETag read (or created).
        (_put("releases/.lock.json", if_match='"abc"'), "allowed"),
        (_put("releases/.lock.json", if_none_match="*"), "allowed"),
        (_put("releases/.lock.json"), "denied"),
        (_put("releases/latest.json", if_match='"abc"'), "allowed"),
        (_put("releases/latest.json"), "denied"),
        # What a release rewrites: candidate -> verified manifests, deploys.jsonl, results.
        (_put("releases/v1/manifest.json", if_match='"abc"'), "allowed"),
        (_put("releases/v1/manifest.json"), "denied"),
        (_put("layers/0123abcd/manifest.json", if_match='"abc"'), "allowed"),
        (_put("releases/v1/deploys.jsonl", if_match='"abc"'), "allowed"),
        (_put("releases/v1/deploys.jsonl"), "denied"),
        (_put("releases/v1/package-test.xml", if_match='"abc"'), "allowed"),
        # Not a rewritable name anywhere else: no other "latest.json" or "manifest.json".
        (_put("releases/v1/latest.json", if_match='"abc"'), "denied"),
        (_put("other/v1/manifest.json", if_match='"abc"'), "denied"),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.resource.split(':::')[1]}:{dict(v.context)}",
)
def test_the_bucket_refuses_unconditional_puts_and_overwrites_of_immutable_objects(
    request_, expected
) -> None:
    assert _s3(request_) == expected


def test_without_the_setting_only_the_client_keeps_objects_immutable() -> None:
    """The setting's point: with it off, the policies allow an overwrite."""
    overwrite = _put("releases/v1/admission.zip")
    assert _s3(overwrite, artifact_store_conditional_writes_only=False) == "allowed"
    assert _s3(overwrite) == "denied"


def test_the_rewritable_names_are_those_the_roles_rewrite() -> None:
    """vars/main.yml's list: the manifest, the append log's default name and promote's
    result files (release_promote); nothing a release publishes with publish."""
    names = yaml.safe_load((REPO / "roles/artifact_store/vars/main.yml").read_text())[
        "__artifact_store_rewritable_names"
    ]
    defaults = yaml.safe_load((REPO / "roles/artifact_store/defaults/main.yml").read_text())
    promote = yaml.safe_load((REPO / "roles/release_promote/tasks/main.yml").read_text())
    results = {
        name
        for task in promote
        for name in task.get("vars", {}).get("artifact_store_result_files", {})
    }
    assert results == {"package-test.xml", "lambda-runtime.xml", "lambda-runtime.json"}
    assert set(names) == {"manifest.json", defaults["artifact_store_append_name"]} | results


@pytest.fixture(scope="module")
def store_writes() -> list[dict]:
    """Every put artifact_store_s3 sends, with its precondition headers, through two runs
    of one version and a deploy record: lock, immutable files, candidate manifest, results,
    verified manifest, latest.json, a layer, unlock; then a second run that tests the same
    version again, moves latest.json and releases; then two deploy lines."""
    import importlib.util

    import boto3
    from moto import mock_aws

    spec = importlib.util.spec_from_file_location(
        "artifact_store_s3", REPO / "plugins/modules/artifact_store_s3.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with mock_aws():
        client = boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        writes: list[dict] = []

        def record(request, **_) -> None:
            if request.method == "PUT":
                writes.append(
                    {
                        # Virtual-hosted style: the path is the key.
                        "key": urlparse(request.url).path.lstrip("/"),
                        "headers": {k.lower(): v for k, v in request.headers.items()},
                    }
                )

        client.meta.events.register("before-send.s3.PutObject", record)
        store = module.Store(client, BUCKET)
        for run, created_at, results in (("run-a", "1", b"<a/>"), ("run-b", "2", b"<b/>")):
            assert store.lock(run, "v1", 60, {})["acquired"]
            store.put(run, "releases/v1/admission.zip", b"zip")
            store.put(run, "layers/0123abcd/layer.zip", b"layer")
            if run == "run-a":  # publish writes no candidate over a verified manifest
                store.put(run, "releases/v1/manifest.json", b"candidate")
                store.put(run, "layers/0123abcd/manifest.json", b"candidate")
            store.put(run, "releases/v1/package-test.xml", results, create_only=False)
            store.put(run, "layers/0123abcd/manifest.json", b"verified", create_only=False)
            store.put(run, "releases/v1/manifest.json", b"verified", create_only=False)
            store.move_latest(run, {"version": "v1", "created_at": created_at})
            store.release(run, rollback=False)
        store.append("releases/v1/deploys.jsonl", {"deploy": 1})
        store.append("releases/v1/deploys.jsonl", {"deploy": 2})
    return writes


def test_every_write_of_the_store_is_allowed_with_the_headers_it_sends(store_writes) -> None:
    assert len(store_writes) > 10
    for write in store_writes:
        headers = write["headers"]
        preconditions = {
            name: headers[header]
            for name, header in (("if_none_match", "if-none-match"), ("if_match", "if-match"))
            if header in headers
        }
        assert preconditions, write  # never unconditional
        assert _s3(_put(write["key"], **preconditions)) == "allowed", write


def test_the_store_rewrites_only_the_objects_the_bucket_policy_names(store_writes) -> None:
    """The writes with If-Match are exactly the lock, latest.json, the manifests, the test
    results and deploys.jsonl: the exceptions the policy states, and each is used."""
    rewritten = {w["key"] for w in store_writes if "if-match" in w["headers"]}
    assert rewritten == {
        "releases/.lock.json",
        "releases/latest.json",
        "releases/v1/manifest.json",
        "layers/0123abcd/manifest.json",
        "releases/v1/package-test.xml",
        "releases/v1/deploys.jsonl",
    }
    created_once = {w["key"] for w in store_writes} - rewritten
    assert {"releases/v1/admission.zip", "layers/0123abcd/layer.zip"} <= created_once
