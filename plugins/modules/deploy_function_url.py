#!/usr/bin/python
"""Put a Lambda function URL in front of an alias, or take it away (deploy's own module).

amazon.aws has no module for function URLs. With state=present the alias gets a URL
(payload format 2.0, the HTTP API event the handler answers) with this auth type and CORS;
with auth_type NONE the alias's resource policy gets the two statements a public URL needs
since October 2025 (lambda:InvokeFunctionUrl for FunctionUrlAuthType NONE, and
lambda:InvokeFunction only when invoked through the URL); with AWS_IAM those statements are
removed, so callers need both actions in their own IAM policy. With state=absent the URL
and the statements go. Only statements this module wrote (their ids) are ever touched.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_function_url
short_description: A function URL in front of a Lambda alias, with CORS and its permissions
version_added: 1.0.0
description:
  - With I(state=present), the alias I(qualifier) gets a function URL (C(BUFFERED), answered
    with the HTTP API payload format 2.0 the handler knows) with this I(auth_type) and CORS, or
    the URL it has is updated to them.
  - With I(auth_type=NONE), the alias's resource policy gets the two statements a public URL
    needs (C(lambda:InvokeFunctionUrl) for C(FunctionUrlAuthType) C(NONE), and
    C(lambda:InvokeFunction) only when invoked through the URL). With C(AWS_IAM) those
    statements are removed, so callers need both actions in their own IAM policy.
  - With I(state=absent), the URL and the statements go.
  - Only the statements this module wrote (by their ids, C(r-lambda-function-url-public) and
    C(r-lambda-function-url-invoke)) are ever touched. C(amazon.aws) has no module for function
    URLs.
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - No check mode. The connection (profile, endpoint_url, region, keys) is amazon.aws's,
    module_defaults C(group/r_lambda.release.aws) sets it once for every AWS module.
options:
  name:
    description: The function's name or ARN.
    type: str
    required: true
  qualifier:
    description: The alias the URL serves.
    type: str
    required: true
  state:
    description: Whether the alias has a URL (C(present)) or none (C(absent)).
    type: str
    default: present
    choices: [present, absent]
  auth_type:
    description: Who may call the URL - C(AWS_IAM), callers who sign requests, or C(NONE), anyone.
    type: str
    default: AWS_IAM
    choices: [AWS_IAM, NONE]
  cors_origins:
    description:
      - The origins whose pages may call the URL from a browser (CORS, C(POST) with a JSON body).
      - An empty list gives the URL no CORS configuration.
    type: list
    elements: str
    default: []
  cors_max_age:
    description: The seconds a browser may keep a preflight answer.
    type: int
    default: 300
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Put a signed (AWS_IAM) function URL in front of the live alias
  r_lambda.release.deploy_function_url:
    name: admission
    qualifier: live
    cors_origins: [https://admissions.example.org]
  register: url
  delegate_to: localhost

- name: Take the URL and its public statements away
  r_lambda.release.deploy_function_url:
    name: admission
    qualifier: live
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
function_url:
  description: The alias's function URL (empty with I(state=absent)).
  returned: always
  type: str
  sample: https://abcdefghij.lambda-url.us-east-1.on.aws/
auth_type:
  description: The URL's auth type.
  returned: when state is present
  type: str
  sample: AWS_IAM
cors:
  description: The URL's CORS configuration (empty when it has none).
  returned: when state is present
  type: dict
  sample:
    AllowOrigins: [https://admissions.example.org]
    AllowMethods: [POST]
    AllowHeaders: [content-type]
    MaxAge: 300
statements_added:
  description: The ids of the resource-policy statements added.
  returned: always
  type: list
  elements: str
  sample: [r-lambda-function-url-public, r-lambda-function-url-invoke]
statements_removed:
  description: The ids of the resource-policy statements removed.
  returned: always
  type: list
  elements: str
  sample: []
url_removed:
  description: The URL that was removed.
  returned: when state is absent and the alias had a URL
  type: str
  sample: https://abcdefghij.lambda-url.us-east-1.on.aws/
"""

import json

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.r_lambda.release.plugins.module_utils.lambda_client import (
    BotoCoreError,
    ClientError,
    lambda_client,
)

# The resource-policy statements of a public (NONE) URL, by the ids this module gives them.
PUBLIC_STATEMENTS = {
    "r-lambda-function-url-public": {
        "Action": "lambda:InvokeFunctionUrl",
        "FunctionUrlAuthType": "NONE",
    },
    "r-lambda-function-url-invoke": {
        "Action": "lambda:InvokeFunction",
        "InvokedViaFunctionUrl": True,
    },
}


def cors_of(origins: list[str], max_age: int) -> dict:
    """The URL's CORS: POST with a JSON body from exactly these origins, or none at all."""
    if not origins:
        return {}
    return {
        "AllowOrigins": sorted(origins),
        "AllowMethods": ["POST"],
        "AllowHeaders": ["content-type"],
        "MaxAge": max_age,
    }


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in (
        "ResourceNotFoundException",
        "404",
    )


def _current_url(client, name: str, qualifier: str) -> dict | None:
    try:
        return client.get_function_url_config(FunctionName=name, Qualifier=qualifier)
    except ClientError as error:
        if _missing(error):
            return None
        raise


def _statement_ids(client, name: str, qualifier: str) -> set[str]:
    try:
        policy = client.get_policy(FunctionName=name, Qualifier=qualifier)["Policy"]
    except ClientError as error:
        if _missing(error):
            return set()
        raise
    return {item.get("Sid", "") for item in json.loads(policy).get("Statement", [])}


def _remove_statements(client, name: str, qualifier: str, present: set[str]) -> list[str]:
    removed = []
    for sid in PUBLIC_STATEMENTS:
        if sid not in present:
            continue
        try:
            client.remove_permission(FunctionName=name, StatementId=sid, Qualifier=qualifier)
        except ClientError as error:
            if not _missing(error):
                raise
        removed.append(sid)
    return removed


def apply(client, params: dict) -> dict:
    name, qualifier = params["name"], params["qualifier"]
    current = _current_url(client, name, qualifier)
    statements = _statement_ids(client, name, qualifier)
    result: dict = {"changed": False, "statements_added": [], "statements_removed": []}
    if params["state"] == "absent":
        result["statements_removed"] = _remove_statements(client, name, qualifier, statements)
        if current is not None:
            client.delete_function_url_config(FunctionName=name, Qualifier=qualifier)
            result["url_removed"] = current["FunctionUrl"]
        result["changed"] = bool(result["statements_removed"] or current is not None)
        result["function_url"] = ""
        return result

    cors = cors_of(params["cors_origins"], params["cors_max_age"])
    wanted = {"AuthType": params["auth_type"], "Cors": cors}
    if current is None:
        current = client.create_function_url_config(
            FunctionName=name, Qualifier=qualifier, InvokeMode="BUFFERED", **wanted
        )
        result["changed"] = True
    elif (current.get("AuthType"), current.get("Cors") or {}) != (
        wanted["AuthType"],
        wanted["Cors"],
    ):
        current = client.update_function_url_config(
            FunctionName=name, Qualifier=qualifier, **wanted
        )
        result["changed"] = True
    if params["auth_type"] == "NONE":
        for sid, statement in PUBLIC_STATEMENTS.items():
            if sid in statements:
                continue
            client.add_permission(
                FunctionName=name,
                Qualifier=qualifier,
                StatementId=sid,
                Principal="*",
                **statement,
            )
            result["statements_added"].append(sid)
    else:
        result["statements_removed"] = _remove_statements(client, name, qualifier, statements)
    result["changed"] |= bool(result["statements_added"] or result["statements_removed"])
    result.update(
        function_url=current["FunctionUrl"], auth_type=wanted["AuthType"], cors=wanted["Cors"]
    )
    return result


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "qualifier": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "auth_type": {"type": "str", "default": "AWS_IAM", "choices": ["AWS_IAM", "NONE"]},
            "cors_origins": {"type": "list", "elements": "str", "default": []},
            "cors_max_age": {"type": "int", "default": 300},
        },
        supports_check_mode=False,
    )
    client = lambda_client(module, "deploy_function_url")
    try:
        module.exit_json(**apply(client, module.params))
    except (BotoCoreError, ClientError) as error:
        module.fail_json(
            msg=f"the function URL of {module.params['name']}:{module.params['qualifier']}: {error}"
        )


if __name__ == "__main__":
    main()
