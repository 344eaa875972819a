"""The IAM policies' conditions, evaluated (iam_support.decide): each call the operator's
policy must refuse is refused (a public function URL but through its documented statement,
EC2 and SNS outside the project's own, a launch outside the inventory's network), and the
CI role (the AMI watch) holds release rights only."""

from __future__ import annotations

import pytest
import yaml
from iam_evaluation import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Request,
    decide,
)
from iam_support import (
    CI_POLICY,
    MOTO_ONLY,
    REPO,
    actions_of,
    aws_calls,
    load_policy,
    policy_actions,
    policy_statement,
    reachable_sources,
)

# --- The conditions, evaluated ---

ALIAS = "arn:aws:lambda:us-east-1:111122223333:function:r-lambda-admission:live"
FUNCTION = "arn:aws:lambda:us-east-1:111122223333:function:r-lambda-admission"


def _operator(request: Request) -> str:
    return decide(request, [load_policy()])


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
    policy = load_policy()
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
    statement = policy_statement("LaunchIntoTheOperatorsOwnVpcsOnly")
    assert statement["Resource"] == [
        f"arn:aws:ec2:*:${{aws:PrincipalAccount}}:subnet/{subnet}",
        "arn:aws:ec2:*:${aws:PrincipalAccount}:network-interface/*",
    ]
    assert statement["Condition"] == {
        "ArnLike": {"ec2:Vpc": f"arn:aws:ec2:*:${{aws:PrincipalAccount}}:vpc/{vpc}"}
    }
    assert policy_statement("CreateSecurityGroupsInTheOperatorsOwnVpcs")["Resource"] == (
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
    ci = load_policy(CI_POLICY)
    assert policy_actions(ci) == needed
    assert not {a for a in needed if a.startswith(("lambda:", "iam:"))}
    # Each of its statements is the operator's, word for word (one place to review).
    operator = {s["Sid"]: s for s in load_policy()["Statement"]}
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
    assert decide(request_, [load_policy(CI_POLICY)]) == "not allowed"
    assert _operator(request_) == "allowed"  # the operator can: the request is well formed
