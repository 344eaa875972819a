#!/usr/bin/python
"""Give an existing Lambda function exactly these layers (deploy's own module).

amazon.aws.lambda attaches the layers it is given but never detaches any (an empty list is
ignored), so a zip release deployed after a layered one would keep the old layer. This
sets the function's layers ($LATEST) to exactly the list, before the lambda module updates
the code and publishes the version; a function that does not exist yet is left alone (the
lambda module creates it with its layers).
"""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.r_lambda.release.plugins.module_utils.lambda_client import (
    BotoCoreError,
    ClientError,
    lambda_client,
)

DOCUMENTATION = r"""
module: deploy_function_layers
short_description: Set exactly the layers of an existing Lambda function
description: See the module's docstring; used by the deploy role only.
options:
  name: {type: str, required: true, description: The function.}
  layers: {type: list, elements: str, default: [], description: Layer version ARNs.}
  region: {type: str, default: us-east-1, description: Region.}
"""


def set_layers(client, name: str, layers: list[str]) -> dict:
    try:
        config = client.get_function_configuration(FunctionName=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return {"changed": False, "exists": False, "layers": []}
        raise
    current = [layer["Arn"] for layer in config.get("Layers", [])]
    if current == layers:
        return {"changed": False, "exists": True, "layers": current}
    client.get_waiter("function_updated").wait(FunctionName=name)
    client.update_function_configuration(FunctionName=name, Layers=layers)
    client.get_waiter("function_updated").wait(FunctionName=name)
    return {"changed": True, "exists": True, "layers": layers, "was": current}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "layers": {"type": "list", "elements": "str", "default": []},
            "region": {"type": "str", "default": "us-east-1"},
        },
        supports_check_mode=False,
    )
    client = lambda_client(module, "deploy_function_layers")
    try:
        module.exit_json(**set_layers(client, module.params["name"], module.params["layers"]))
    except (BotoCoreError, ClientError) as error:
        module.fail_json(msg=f"setting the layers of {module.params['name']} failed: {error}")


if __name__ == "__main__":
    main()
