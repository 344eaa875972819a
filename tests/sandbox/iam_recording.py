"""The calls a moto server recorded, mapped to the IAM action each one needed, and who
made them (the playbooks' modules, by user agent; a key, by signature)."""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlparse

# --- Calls recorded by the moto server, mapped to the IAM action each one needs ---

S3_BUCKET_SUBRESOURCES = {
    ("GET", "versioning"): "s3:GetBucketVersioning",
    ("PUT", "versioning"): "s3:PutBucketVersioning",
    ("GET", "encryption"): "s3:GetEncryptionConfiguration",
    ("PUT", "encryption"): "s3:PutEncryptionConfiguration",
    ("GET", "publicAccessBlock"): "s3:GetBucketPublicAccessBlock",
    ("PUT", "publicAccessBlock"): "s3:PutBucketPublicAccessBlock",
    ("GET", "policy"): "s3:GetBucketPolicy",
    ("PUT", "policy"): "s3:PutBucketPolicy",
    ("GET", "tagging"): "s3:GetBucketTagging",
    ("GET", "requestPayment"): "s3:GetBucketRequestPayment",
    ("GET", "ownershipControls"): "s3:GetBucketOwnershipControls",
    ("GET", "acl"): "s3:GetBucketAcl",
    ("GET", "accelerate"): "s3:GetAccelerateConfiguration",
    ("GET", "object-lock"): "s3:GetBucketObjectLockConfiguration",
    ("GET", "inventory"): "s3:GetInventoryConfiguration",
    ("GET", "location"): "s3:GetBucketLocation",
    ("GET", "versions"): "s3:ListBucketVersions",
}
S3_OBJECT_METHODS = {
    "GET": "s3:GetObject",
    "HEAD": "s3:GetObject",
    "PUT": "s3:PutObject",
    # CreateMultipartUpload, CompleteMultipartUpload
    "POST": "s3:PutObject",
    "DELETE": "s3:DeleteObject",
}


def recorded_action(request: dict) -> str | None:
    """The IAM action a recorded request needed; None for requests needing no permission."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    url = urlparse(request["url"])
    query = parse_qs(url.query, keep_blank_values=True)
    target = headers.get("x-amz-target", "")
    if target:  # JSON protocol: SSM
        service, operation = target.split(".", 1)
        return f"{service.removeprefix('Amazon').lower()}:{operation}"
    scope = headers.get("authorization", "") + " ".join(query.get("X-Amz-Credential", []))
    service = re.search(r"/[a-z0-9-]+/([a-z0-9]+)/aws4_request", scope)
    if service and service.group(1) in ("ec2", "sts", "sns"):
        body = request.get("body") or ""
        if request.get("body_encoded"):
            body = base64.b64decode(body).decode()
        action = parse_qs(body).get("Action", [""])[0]
        return None if service.group(1) == "sts" else f"{service.group(1)}:{action}"
    if service and service.group(1) == "lambda":
        return _lambda_action(request["method"], url.path)
    # S3, path style: /<bucket>[/<key>]
    parts = url.path.lstrip("/").split("/", 1)
    method = request["method"]
    if not parts[0]:
        return "s3:ListAllMyBuckets"
    if len(parts) == 2 and parts[1]:
        if method == "PUT" and "tagging" in query:
            return "s3:PutObjectTagging"
        if "tagging" in query:
            return "s3:GetObjectTagging"
        if method == "DELETE" and "uploadId" in query:
            return "s3:AbortMultipartUpload"
        return S3_OBJECT_METHODS[method]
    for (verb, sub), action in S3_BUCKET_SUBRESOURCES.items():
        if verb == method and sub in query:
            return action
    return {
        "HEAD": "s3:ListBucket",
        "GET": "s3:ListBucket",
        "PUT": "s3:CreateBucket",
        "DELETE": "s3:DeleteBucket",
    }[method]


# Lambda's REST API: (method, path pattern) -> action, first match wins.
LAMBDA_ROUTES = [
    ("POST", r"/2015-03-31/functions/?", "lambda:CreateFunction"),
    ("GET", r"/2015-03-31/functions/[^/]+/configuration", "lambda:GetFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/[^/]+/configuration", "lambda:UpdateFunctionConfiguration"),
    ("PUT", r"/2015-03-31/functions/[^/]+/code", "lambda:UpdateFunctionCode"),
    ("POST", r"/2015-03-31/functions/[^/]+/versions", "lambda:PublishVersion"),
    ("GET", r"/2015-03-31/functions/[^/]+/versions", "lambda:ListVersionsByFunction"),
    ("GET", r"/2015-03-31/functions/[^/]+/aliases", "lambda:ListAliases"),
    ("POST", r"/2015-03-31/functions/[^/]+/aliases", "lambda:CreateAlias"),
    ("GET", r"/2015-03-31/functions/[^/]+/aliases/[^/]+", "lambda:GetAlias"),
    ("PUT", r"/2015-03-31/functions/[^/]+/aliases/[^/]+", "lambda:UpdateAlias"),
    ("POST", r"/2015-03-31/functions/[^/]+/invocations", "lambda:InvokeFunction"),
    ("GET", r"/2015-03-31/functions/[^/]+", "lambda:GetFunction"),
    ("GET", r"/2017-03-31/tags/.+", "lambda:ListTags"),
    ("POST", r"/2017-03-31/tags/.+", "lambda:TagResource"),
    ("DELETE", r"/2017-03-31/tags/.+", "lambda:UntagResource"),
    ("GET", r"/2018-10-31/layers/[^/]+/versions", "lambda:ListLayerVersions"),
    ("POST", r"/2018-10-31/layers/[^/]+/versions", "lambda:PublishLayerVersion"),
    ("GET", r"/2018-10-31/layers/[^/]+/versions/[0-9]+", "lambda:GetLayerVersion"),
    ("GET", r"/2021-10-31/functions/[^/]+/url", "lambda:GetFunctionUrlConfig"),
    ("POST", r"/2021-10-31/functions/[^/]+/url", "lambda:CreateFunctionUrlConfig"),
    ("PUT", r"/2021-10-31/functions/[^/]+/url", "lambda:UpdateFunctionUrlConfig"),
    ("DELETE", r"/2021-10-31/functions/[^/]+/url", "lambda:DeleteFunctionUrlConfig"),
    ("GET", r"/2015-03-31/functions/[^/]+/policy", "lambda:GetPolicy"),
    ("POST", r"/2015-03-31/functions/[^/]+/policy", "lambda:AddPermission"),
    ("DELETE", r"/2015-03-31/functions/[^/]+/policy/[^/]+", "lambda:RemovePermission"),
]


def _lambda_action(method: str, path: str) -> str:
    for verb, pattern, action in LAMBDA_ROUTES:
        if verb == method and re.fullmatch(pattern, path):
            return action
    raise KeyError(f"no IAM action known for the Lambda call {method} {path}; add it here")


def from_the_playbooks(request: dict) -> bool:
    """Requests the amazon.aws modules or artifact_store's own module made (their user
    agents), or the test host's download through a link the controller signed; not the
    tests' own boto3 calls."""
    agent = request["headers"].get("User-Agent", "")
    return (
        "amazon.aws/" in agent
        or "r-lambda-artifact_store_s3/" in agent
        or "r-lambda-deploy_function_layers/" in agent
        or "r-lambda-deploy_function_url/" in agent
        or agent.startswith("ansible-httpget")
    )


def signed_by(request: dict, access_key: str) -> bool:
    """Whether a recorded request was signed with this access key (SigV4 header or query)."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    query = parse_qs(urlparse(request["url"]).query)
    scope = headers.get("authorization", "") + " ".join(query.get("X-Amz-Credential", []))
    return f"Credential={access_key}/" in scope or scope.startswith(f"{access_key}/")
