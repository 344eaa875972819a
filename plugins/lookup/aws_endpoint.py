"""Where the AWS clients of a play would send their calls: the endpoint botocore resolves.

A play reaches AWS (or moto, or the local S3) through the standard chain: its
``environment:`` (the inventory's ``release_aws_environment``) laid over the controller's
own, then the profile it names. The sandbox's safety checks ask this lookup, not one
variable, whether that chain ends on the loopback address: ``AWS_ENDPOINT_URL`` (or a
service's ``AWS_ENDPOINT_URL_<SERVICE>``) when set wins, as in botocore, else the profile's
``endpoint_url`` (or its services section), else AWS itself.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: aws_endpoint
short_description: The AWS endpoint a play's clients would reach, and whether it is local
description:
  - Resolves, as botocore does for its clients, the endpoint URL of each of O(services)
    under an environment (the play's C(environment:) laid over the controller's), its
    config file (C(AWS_CONFIG_FILE)), credentials file (C(AWS_SHARED_CREDENTIALS_FILE)) and
    profile (C(AWS_PROFILE)).
  - An C(AWS_ENDPOINT_URL_<SERVICE>) or C(AWS_ENDPOINT_URL) variable wins over the profile's
    C(endpoint_url), as in botocore; C(AWS_IGNORE_CONFIGURED_ENDPOINT_URLS) (or the profile's
    C(ignore_configured_endpoint_urls)) leaves AWS itself.
  - Never fails on a missing file or profile; the answer then says why it is not local.
options:
  environment:
    description:
      - The play's environment (the inventory's C(release_aws_environment)), laid over the
        controller's own; an empty value is an unset variable, as for botocore.
    type: dict
    default: {}
  services:
    description: The services whose endpoints are resolved (botocore's client names).
    type: list
    elements: str
    default: [ec2, s3, ssm, lambda, iam, sts]
"""

EXAMPLES = r"""
- name: Refuse anything but a moto server on the loopback address
  ansible.builtin.assert:
    that: __endpoint.loopback
    fail_msg: "Not local: {{ __endpoint.problems | join('; ') }}"
  vars:
    __endpoint: >-
      {{ lookup('r_lambda.release.aws_endpoint',
                environment=release_aws_environment | default({})) }}
"""

RETURN = r"""
_raw:
  description: One dictionary describing the resolved endpoints.
  type: list
  elements: dict
  contains:
    profile:
      description: The profile in effect (C(AWS_PROFILE)), empty for the default one.
      type: str
    config_file:
      description: The config file botocore reads (C(AWS_CONFIG_FILE), else ~/.aws/config).
      type: str
    endpoint_url:
      description: The endpoint of the first service, empty when it is AWS itself.
      type: str
    source:
      description: Where that endpoint comes from (a variable, or the profile in its file).
      type: str
    endpoints:
      description: Each service's endpoint URL (empty string for AWS itself).
      type: dict
    loopback:
      description: Whether every service's endpoint is an http(s) URL on the loopback address.
      type: bool
    problems:
      description:
        - One sentence per endpoint that is not local, naming the services that would reach
          it, its URL and where it comes from.
      type: list
      elements: str
    refusal:
      description:
        - The sandbox's refusal when an endpoint is not local, naming the profile, its file,
          each problem and what is expected; the one message of every loopback check.
      type: str
"""

import ipaddress
import os
from urllib.parse import urlsplit

from ansible.plugins.lookup import LookupBase

try:
    import botocore.session
    from botocore.configprovider import ConfiguredEndpointProvider
    from botocore.exceptions import BotoCoreError

    HAS_BOTOCORE = True
except ImportError:  # the answer then says so: nothing is local without botocore
    HAS_BOTOCORE = False

TRUE = ("true", "1", "yes")


def is_loopback_url(url: str | None) -> bool:
    """An http(s) URL whose host is localhost or a loopback address (127.0.0.0/8, ::1),
    with no path beyond "/"."""
    if not url:
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port is not None and not 0 < parts.port < 65536:  # not a number: ValueError
            return False
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.path not in ("", "/"):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def merged_environment(environment: dict | None, base: dict | None = None) -> dict[str, str]:
    """The environment a play's module runs with: the controller's, then the play's."""
    env = dict(os.environ if base is None else base)
    for name, value in (environment or {}).items():
        env[str(name)] = "" if value is None else str(value)
    return env


def _session(env: dict[str, str]):
    session = botocore.session.Session()
    # Instance variables win over the controller's own environment, which is not the play's.
    session.set_config_variable("config_file", env.get("AWS_CONFIG_FILE") or "~/.aws/config")
    session.set_config_variable(
        "credentials_file", env.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    )
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE")
    if profile:
        session.set_config_variable("profile", profile)
    return session


def _source(env: dict[str, str], service: str, profile: str, config_file: str) -> str:
    variable = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    if env.get(variable):
        return variable
    if env.get("AWS_ENDPOINT_URL"):
        return "AWS_ENDPOINT_URL"
    return f"endpoint_url of profile {profile or 'default'} in {config_file}"


def resolve(environment: dict | None, services: list[str], base: dict | None = None) -> dict:
    """The endpoints botocore's clients of these services would use under this environment."""
    env = merged_environment(environment, base)
    profile = env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE") or ""
    config_file = os.path.expanduser(env.get("AWS_CONFIG_FILE") or "~/.aws/config")
    answer: dict = {
        "profile": profile,
        "config_file": config_file,
        "endpoint_url": "",
        "source": "",
        "endpoints": {},
        "loopback": False,
        "problems": [],
    }
    if not HAS_BOTOCORE:
        answer["problems"] = ["botocore is not installed on the controller"]
        return with_refusal(answer)
    try:
        session = _session(env)
        full_config = session.full_config
        scoped = session.get_scoped_config()
    except BotoCoreError as error:
        answer["problems"] = [f"profile {profile or 'default'} ({config_file}): {error}"]
        return with_refusal(answer)
    ignore = (
        env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() in TRUE
        or str(scoped.get("ignore_configured_endpoint_urls", "")).lower() in TRUE
    )
    not_local: dict[tuple[str, str], list[str]] = {}
    for service in services:
        url = None
        if not ignore:
            url = ConfiguredEndpointProvider(
                full_config=full_config, scoped_config=scoped, client_name=service, environ=env
            ).provide()
        source = _source(env, service, profile, config_file) if url else "nothing: AWS itself"
        answer["endpoints"][service] = url or ""
        if not answer["source"]:
            answer["endpoint_url"], answer["source"] = url or "", source
        if not is_loopback_url(url):
            not_local.setdefault((url or "", source), []).append(service)
    # One sentence per endpoint, naming the services that would reach it.
    answer["problems"] = [
        f"{', '.join(names)}: '{url}' (from {source})" for (url, source), names in not_local.items()
    ]
    answer["loopback"] = bool(services) and not not_local
    return with_refusal(answer)


def with_refusal(answer: dict) -> dict:
    """The answer with the sentence a loopback check fails with (RETURN: refusal)."""
    answer["refusal"] = (
        "The sandbox platform reaches a moto server on the loopback address through the AWS "
        f"profile {answer['profile'] or 'default'} ({answer['config_file']}): its effective "
        "endpoint_url (AWS_ENDPOINT_URL when set, else the profile's) must be a loopback URL "
        "such as http://127.0.0.1:5000 (scripts/sandbox-moto.sh start writes that profile, see "
        f"docs/aws.md), got {'; '.join(answer['problems'])}."
    )
    return answer


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        return [resolve(self.get_option("environment"), self.get_option("services"))]
