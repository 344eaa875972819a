"""What AWS API actions the playbooks call, read from the playbooks and roles themselves.

Every amazon.aws module a task calls, with the options it is called with, maps to the IAM
actions that module performs (read from the amazon.aws 10 sources: see the notes below);
the ssm_parameter lookup maps to ssm:GetParameter. A module missing from this table fails
the tests, so a new AWS call cannot slip past the policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "iam" / "operator-policy.json"
# The bucket's one-time set-up (playbooks/bucket.yml) runs under a policy of its own.
BUCKET_ADMIN_POLICY = REPO / "iam" / "bucket-admin-policy.json"
CI_POLICY = REPO / "iam" / "ci-release-policy.json"
# What the operator runs: the playbooks and every role they can reach...
SOURCES = ["playbooks", "roles"]
# ...but for the tasks files only the bucket's administrator runs (the local platform's
# release runs them too: it has no IAM).
BUCKET_ADMIN_SOURCES = {"roles/artifact_store/tasks/bucket.yml"}
# Collections whose modules call AWS (community.aws: the AMI watch's SNS notifier).
AWS_COLLECTIONS = ("amazon.aws.", "community.aws.")
TASK_BLOCK_KEYS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")

# Bucket reads s3_bucket makes whatever options it gets (a denied read of an option it was
# not given is only a warning, but it is a call the playbooks make).
S3_BUCKET_READS = {
    "s3:ListBucket",  # HeadBucket
    "s3:GetBucketVersioning",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketPublicAccessBlock",
    "s3:GetBucketPolicy",
    "s3:GetBucketTagging",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketAcl",
    "s3:GetAccelerateConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetInventoryConfiguration",  # ListBucketInventoryConfigurations
}
# s3_object checks the bucket first in every mode: HeadBucket, GetBucketOwnershipControls.
S3_OBJECT_BASE = {"s3:ListBucket", "s3:GetBucketOwnershipControls"}
S3_OBJECT_MODES = {
    # HeadObject, then PutObject with the default canned ACL (x-amz-acl: private, which
    # needs PutObjectAcl), in parts for a large file (multipart upload: PutObject, and
    # AbortMultipartUpload when it fails); overwrite=different compares ETags, reads tags.
    "put": {
        "s3:GetObject",
        "s3:PutObject",
        "s3:PutObjectAcl",
        "s3:GetObjectTagging",
        "s3:AbortMultipartUpload",
    },  # artifact_store writes with its own module now; kept for any s3_object put
    "get": {"s3:GetObject"},
    "getstr": {"s3:GetObject"},
    "list": {"s3:ListBucket"},
    "delobj": {"s3:DeleteObject"},
    # HeadObject and the object's tags; the link is signed locally and used for a GetObject.
    "geturl": {"s3:GetObject", "s3:GetObjectTagging"},
}


@dataclass(frozen=True)
class Call:
    """One AWS-calling task (or lookup) of the playbooks and roles."""

    module: str
    args: tuple[tuple[str, str], ...]
    where: str

    def arg(self, name: str, default: object = None) -> object:
        return dict(self.args).get(name, default)


def _module_actions(call: Call) -> set[str]:
    name, state = call.module, call.arg("state", "present")
    if name == "ssm_parameter_lookup":
        return {"ssm:GetParameter"}
    if name == "ec2_ami_info":
        return {"ec2:DescribeImages"}
    if name == "ec2_vpc_subnet_info":
        return {"ec2:DescribeSubnets"}
    if name == "ec2_instance_info":
        return {"ec2:DescribeInstances"}
    if name == "ec2_key_info":
        return {"ec2:DescribeKeyPairs"}
    if name == "ec2_security_group_info":
        return {"ec2:DescribeSecurityGroups"}
    if name == "ec2_key":
        if state == "absent":
            return {"ec2:DescribeKeyPairs", "ec2:DeleteKeyPair"}
        # Created with TagSpecifications (CreateTags at creation); an existing key's tags are
        # read (DescribeTags) and would be set again only if they differed.
        return {"ec2:DescribeKeyPairs", "ec2:CreateKeyPair", "ec2:CreateTags", "ec2:DescribeTags"}
    if name == "ec2_security_group":
        # sts:GetCallerIdentity too, which needs no permission.
        if state == "absent":
            return {"ec2:DescribeSecurityGroups", "ec2:DeleteSecurityGroup"}
        return {
            "ec2:DescribeSecurityGroups",
            "ec2:CreateSecurityGroup",
            "ec2:CreateTags",
            "ec2:DescribeTags",
            "ec2:AuthorizeSecurityGroupIngress",
            # purge_rules (default): a rule no longer wanted is revoked.
            "ec2:RevokeSecurityGroupIngress",
        }
    if name == "ec2_instance":
        if state in ("absent", "terminated"):
            return {"ec2:DescribeInstances", "ec2:TerminateInstances"}
        # RunInstances with TagSpecifications; the subnet's VPC and the group ids are looked
        # up; the new instance is awaited (DescribeInstances, DescribeInstanceStatus) and its
        # attributes compared with the options (DescribeInstanceAttribute: type, groups);
        # an existing instance's tags are read. They match what it was launched with, so
        # no ModifyInstanceAttribute (see MOTO_ONLY).
        actions = {
            "ec2:DescribeInstances",
            "ec2:DescribeSubnets",
            "ec2:DescribeSecurityGroups",
            "ec2:RunInstances",
            "ec2:CreateTags",
            "ec2:DescribeInstanceStatus",
            "ec2:DescribeInstanceAttribute",
            "ec2:DescribeTags",
        }
        if call.arg("iam_instance_profile"):
            actions |= {"iam:PassRole", "iam:GetInstanceProfile"}
        return actions
    if name == "lambda_layer_info" and call.arg("version_number") is not None:
        return {"lambda:GetLayerVersion"}  # one version (its content's CodeSha256)
    if name == "s3_bucket_info":
        return {"s3:ListAllMyBuckets"}
    if name == "s3_bucket":
        if state == "absent":
            return {"s3:ListBucket", "s3:DeleteObject", "s3:DeleteBucket"}
        actions = S3_BUCKET_READS | {"s3:CreateBucket"}
        if call.arg("versioning") is not None:
            actions.add("s3:PutBucketVersioning")
        if call.arg("encryption") is not None:
            actions.add("s3:PutEncryptionConfiguration")
        if call.arg("public_access") is not None:
            actions.add("s3:PutBucketPublicAccessBlock")
        if call.arg("policy") is not None:
            actions.add("s3:PutBucketPolicy")
        return actions
    if name == "s3_object":
        return S3_OBJECT_BASE | S3_OBJECT_MODES[str(call.arg("mode"))]
    if name == "s3_object_info":
        return {"s3:ListBucket", "s3:GetObject"}  # HeadBucket, HeadObject, GetObject
    if name in LAMBDA_MODULES:
        actions = set(LAMBDA_MODULES[name])
        if name == "lambda":
            if call.arg("role"):
                actions.add("iam:PassRole")
            if call.arg("layers"):
                actions.add("lambda:GetLayerVersion")  # Lambda reads a layer it attaches
            if call.arg("tags") is not None:
                actions |= {"lambda:ListTags", "lambda:TagResource", "lambda:UntagResource"}
        return actions
    if name == "sns":
        # Publish to the topic given by ARN (a bare topic name would be looked up first).
        return {"sns:Publish"}
    raise KeyError(f"{call.where}: no IAM actions known for the AWS module {name}; add it here")


# Calls only moto makes the modules send, and why AWS does not: the policy refuses them.
MOTO_ONLY = {
    # moto reports no security groups for an instance launched with them in its network
    # interface, so ec2_instance sets them again; AWS reports them, and the module compares
    # type and groups equal. The policy has no ModifyInstanceAttribute, which could change
    # an instance's type or user data.
    "ec2:ModifyInstanceAttribute",
}

# The deploy's Lambda modules (amazon.aws 10 sources). lambda: GetFunction to find it, then
# CreateFunction (Publish) or UpdateFunctionConfiguration + UpdateFunctionCode (Publish),
# the function_active/function_updated waiters (GetFunctionConfiguration), GetFunction for
# the published version; publishing a version needs PublishVersion. lambda_execute waits the
# same way, then Invoke. lambda_info's aliases query reads the configuration, then ListAliases.
LAMBDA_MODULES = {
    "lambda": {
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:CreateFunction",
        "lambda:UpdateFunctionConfiguration",
        "lambda:UpdateFunctionCode",
        "lambda:PublishVersion",
    },
    "lambda_alias": {"lambda:GetAlias", "lambda:CreateAlias", "lambda:UpdateAlias"},
    "lambda_execute": {"lambda:GetFunctionConfiguration", "lambda:InvokeFunction"},
    "lambda_info": {"lambda:GetFunctionConfiguration", "lambda:ListAliases"},
    "lambda_layer": {"lambda:PublishLayerVersion"},
    "lambda_layer_info": {"lambda:ListLayerVersions"},
}

# artifact_store's module (plugins/modules/artifact_store_s3.py): every
# write is a PutObject (conditional: If-None-Match / If-Match, one request, no multipart),
# every read a GetObject or HeadObject; the lock is read and rewritten around each write.
# A rollback (release with rollback, or a lock taken over from an expired run) lists the
# releases' manifests and deletes; gc too.
ARTIFACT_STORE_S3 = {
    "lock": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"},
    "release": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"},
    "put": {"s3:GetObject", "s3:PutObject"},
    "put_files": {"s3:GetObject", "s3:PutObject"},  # each put, then each read back
    "get": {"s3:GetObject"},
    "move_latest": {"s3:GetObject", "s3:PutObject"},
    "gc": {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject"},
    "append": {"s3:GetObject", "s3:PutObject"},
    "check": {"s3:GetObject"},
    # the buckets listed (is the release bucket there?), then latest.json and the
    # manifests read, and check's reads
    "read": {"s3:ListAllMyBuckets", "s3:GetObject"},
}


# deploy's module (plugins/modules/deploy_function_layers.py): reads the
# configuration, waits (GetFunctionConfiguration) and sets the layers; attaching one makes
# Lambda check the caller may read it.
DEPLOY_FUNCTION_LAYERS = {
    "lambda:GetFunctionConfiguration",
    "lambda:UpdateFunctionConfiguration",
    "lambda:GetLayerVersion",
}
# deploy's deploy_function_url: reads the alias's URL and resource policy, then creates,
# updates or deletes the URL and adds or removes its two public statements.
DEPLOY_FUNCTION_URL = {
    "lambda:GetFunctionUrlConfig",
    "lambda:CreateFunctionUrlConfig",
    "lambda:UpdateFunctionUrlConfig",
    "lambda:DeleteFunctionUrlConfig",
    "lambda:GetPolicy",
    "lambda:AddPermission",
    "lambda:RemovePermission",
}
# The project's own modules (the collection's plugins/modules/), which the roles call by
# their fully qualified names (r_lambda.release.artifact_store_s3). A call is known by the
# short name; a bare short name is recognised too, so that no call escapes the check.
OWN_COLLECTION = "r_lambda.release"
OWN_MODULES = ("artifact_store_s3", "deploy_function_layers", "deploy_function_url")


def own_module(key: str) -> str | None:
    """The short name of one of the project's own modules called as key, else None."""
    short = key.removeprefix(f"{OWN_COLLECTION}.")
    return short if short in OWN_MODULES else None


def actions_of(call: Call) -> set[str]:
    if call.module == "deploy_function_layers":
        return DEPLOY_FUNCTION_LAYERS
    if call.module == "deploy_function_url":
        return DEPLOY_FUNCTION_URL
    if call.module == "artifact_store_s3":
        return ARTIFACT_STORE_S3[str(call.arg("action"))]
    return _module_actions(call)


def _tasks(node: object) -> Iterator[dict]:
    if isinstance(node, list):
        for item in node:
            yield from _tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in TASK_BLOCK_KEYS:
            if key in node:
                yield from _tasks(node[key])


def aws_calls(who: str = "operator") -> list[Call]:
    """Every AWS module task (amazon.aws, community.aws, the project's own), and every
    ssm_parameter lookup, of the playbooks and roles that the operator runs (who="operator")
    or that the bucket's administrator runs (who="bucket-admin")."""
    calls = []
    for top in SOURCES:
        for path in sorted((REPO / top).rglob("*.yml")):
            if path.parent.name not in ("tasks", "handlers", "playbooks"):
                continue
            text = path.read_text()
            where = str(path.relative_to(REPO))
            if (where in BUCKET_ADMIN_SOURCES) != (who == "bucket-admin"):
                continue
            if "amazon.aws.ssm_parameter" in text:
                calls.append(Call("ssm_parameter_lookup", (), where))
            for task in _tasks(yaml.safe_load(text) or []):
                for key, value in task.items():
                    own = own_module(key)
                    if not (own or key.startswith(AWS_COLLECTIONS)) or key == "amazon.aws.aws":
                        continue
                    args = value if isinstance(value, dict) else {}
                    calls.append(
                        Call(
                            own or key.split(".", 2)[2],
                            tuple(
                                sorted(
                                    (k, v if isinstance(v, str) else json.dumps(v, default=str))
                                    for k, v in args.items()
                                )
                            ),
                            where,
                        )
                    )
    return calls


def policy_actions(policy: dict | None = None) -> set[str]:
    policy = policy or json.loads(POLICY.read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow":
            continue
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


# --- Which tasks files a playbook can reach (the CI role runs the AMI watch only) ---

INCLUDE_ROLE_KEYS = (
    "ansible.builtin.include_role",
    "ansible.builtin.import_role",
    "include_role",
    "import_role",
)
INCLUDE_TASKS_KEYS = (
    "ansible.builtin.include_tasks",
    "ansible.builtin.import_tasks",
    "include_tasks",
    "import_tasks",
)


def _role_name(entry: object) -> str:
    return entry if isinstance(entry, str) else entry.get("role") or entry.get("name")


def reachable_sources(playbooks: list[str]) -> set[str]:
    """Tasks and handlers files (paths relative to the checkout) that these playbooks can
    run: their plays, the roles they list or include (every tasks file of a reached role: a
    templated include_tasks may pick any), those roles' dependencies, and the playbooks they
    run (import_playbook, or ansible-playbook on a playbook of playbooks/ by name)."""
    files: set[str] = set()
    roles_seen: set[str] = set()
    queue = [REPO / "playbooks" / name for name in playbooks]

    def reach_role(name: str) -> None:
        if name in roles_seen or not (REPO / "roles" / name).is_dir():
            return
        roles_seen.add(name)
        meta = REPO / "roles" / name / "meta" / "main.yml"
        for dependency in (yaml.safe_load(meta.read_text()) or {}).get("dependencies") or []:
            reach_role(_role_name(dependency))
        for sub in ("tasks", "handlers"):
            for path in sorted((REPO / "roles" / name / sub).glob("*.yml")):
                queue.append(path)

    while queue:
        path = queue.pop()
        where = str(path.relative_to(REPO))
        if where in files or not path.exists():
            continue
        files.add(where)
        text = path.read_text()
        for other in re.findall(r"playbook_dir ~ '/([a-z_]+\.yml)'", text):
            queue.append(REPO / "playbooks" / other)
        for node in _tasks(yaml.safe_load(text) or []):
            if "import_playbook" in node or "ansible.builtin.import_playbook" in node:
                target = node.get("import_playbook") or node["ansible.builtin.import_playbook"]
                queue.append(path.parent / target)
            for entry in node.get("roles") or []:
                reach_role(_role_name(entry))
            for key in INCLUDE_ROLE_KEYS:
                if key in node:
                    reach_role(node[key]["name"])
    return files


def load_policy(path: Path = POLICY) -> dict:
    """A policy of iam/ as JSON (default: the operator's)."""
    return json.loads(path.read_text())


def policy_statement(sid: str, path: Path = POLICY) -> dict:
    """The one statement of that policy with this Sid."""
    [found] = [s for s in load_policy(path)["Statement"] if s["Sid"] == sid]
    return found
