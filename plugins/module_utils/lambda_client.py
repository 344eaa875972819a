"""The Lambda client of the collection's own modules (deploy_function_layers,
deploy_function_url): from the AnsibleAWSModule (amazon.aws's connection options: profile,
endpoint_url, region, keys, validate_certs, retries), with the module named in the user
agent so that the IAM tests can tell its calls apart."""

from __future__ import annotations

try:
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:  # AnsibleAWSModule reports a missing boto3/botocore
    Config = None
    BotoCoreError = ClientError = Exception


def lambda_client(module, name: str):
    """A Lambda client for ``module`` (an AnsibleAWSModule), its calls named ``name``."""
    return module.client("lambda", config=Config(user_agent_extra=f"r-lambda-{name}/1"))


__all__ = ["BotoCoreError", "ClientError", "lambda_client"]
