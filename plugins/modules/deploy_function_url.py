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

import json

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.r_lambda.release.plugins.module_utils.lambda_client import (
    BotoCoreError,
    ClientError,
    lambda_client,
)

DOCUMENTATION = r"""
module: deploy_function_url
short_description: A function URL in front of a Lambda alias, with CORS and its permissions
description: See the module's docstring; used by the deploy role only.
options:
  name: {type: str, required: true, description: The function.}
  qualifier: {type: str, required: true, description: The alias the URL serves.}
  state: {type: str, default: present, choices: [present, absent], description: URL or none.}
  auth_type: {type: str, default: AWS_IAM, choices: [AWS_IAM, NONE], description: Who calls.}
  cors_origins: {type: list, elements: str, default: [], description: CORS origins (none, no CORS).}
  cors_max_age: {type: int, default: 300, description: Seconds a preflight answer is kept.}
  region: {type: str, default: us-east-1, description: Region.}
"""

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
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "qualifier": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "auth_type": {"type": "str", "default": "AWS_IAM", "choices": ["AWS_IAM", "NONE"]},
            "cors_origins": {"type": "list", "elements": "str", "default": []},
            "cors_max_age": {"type": "int", "default": 300},
            "region": {"type": "str", "default": "us-east-1"},
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
