#!/usr/bin/python
"""Give an existing Lambda function exactly these layers (deploy's own module).

amazon.aws.lambda attaches the layers it is given but never detaches any (an empty list is
ignored), so a zip release deployed after a layered one would keep the old layer. This
sets the function's layers ($LATEST) to exactly the list, before the lambda module updates
the code and publishes the version; a function that does not exist yet is left alone (the
lambda module creates it with its layers).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_function_layers
short_description: Set exactly the layers of an existing Lambda function
version_added: 1.0.0
description:
  - Gives the function's C($LATEST) configuration exactly the layers of I(layers), in that order,
    detaching any other (an empty list detaches them all).
  - C(amazon.aws.lambda) attaches the layers it is given but never detaches any, so a zip
    release deployed after a layered one would keep the old layer; the C(deploy) role runs
    this before C(amazon.aws.lambda) updates the code and publishes the version.
  - A function that does not exist yet is left alone (C(amazon.aws.lambda) creates it with its
    layers). It waits for the function to be updated before and after the change.
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
  layers:
    description: The layer version ARNs the function must have, in order.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Give the function exactly this release's layer
  r_lambda.release.deploy_function_layers:
    name: admission
    layers:
      - arn:aws:lambda:us-east-1:123456789012:layer:r-runtime:7
    region: us-east-1
  delegate_to: localhost

- name: Detach every layer (a zip release carries R itself)
  r_lambda.release.deploy_function_layers:
    name: admission
    layers: []
  delegate_to: localhost
"""

RETURN = r"""
exists:
  description: Whether the function exists (nothing is done when it does not).
  returned: always
  type: bool
  sample: true
layers:
  description: The function's layer ARNs after the task (empty when it does not exist).
  returned: always
  type: list
  elements: str
  sample: [arn:aws:lambda:us-east-1:123456789012:layer:r-runtime:7]
was:
  description: The layer ARNs the function had before they were changed.
  returned: changed
  type: list
  elements: str
  sample: [arn:aws:lambda:us-east-1:123456789012:layer:r-runtime:6]
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.r_lambda.release.plugins.module_utils.lambda_client import (
    BotoCoreError,
    ClientError,
    lambda_client,
)


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
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "layers": {"type": "list", "elements": "str", "default": []},
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
