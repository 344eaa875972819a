"""The Lambda client of the collection's own modules (deploy_function_layers,
deploy_function_url): boto3 from the controller's Python, region from the module's
parameters, and the module named in the user agent so that the IAM tests can tell its
calls apart."""

from __future__ import annotations

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # reported by lambda_client()
    boto3 = None
    BotoCoreError = ClientError = Exception


def lambda_client(module, name: str):
    """A boto3 Lambda client for ``module`` (an AnsibleModule with a ``region`` parameter);
    fails the module, naming it, when boto3 is missing."""
    if boto3 is None:
        module.fail_json(msg=f"{name} needs boto3 on the controller")
    return boto3.client(
        "lambda",
        config=Config(user_agent_extra=f"r-lambda-{name}/1"),
        region_name=module.params["region"],
    )


__all__ = ["BotoCoreError", "ClientError", "lambda_client"]
