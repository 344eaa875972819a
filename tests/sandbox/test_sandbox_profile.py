"""The sandbox platform is an AWS profile (no moto server needed here): the pair that
scripts/aws_profile.py writes is the profile botocore reads, rewriting it keeps every other
section, and the sandbox's loopback check (lookup r_lambda.release.aws_endpoint) resolves
the endpoint as botocore does and refuses, naming the profile and the URL, anything else."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import boto3
import botocore.session
import pytest
from ansible_collections.r_lambda.release.plugins.lookup import aws_endpoint
from release_runs import REPO, VENV_BIN, ansible_env
from sandbox_support import PROFILE, aws_profile

MOTO = "http://127.0.0.1:5391"
AWS_EC2 = "https://ec2.us-east-1.amazonaws.com"
# The services the check resolves by default, as its message lists them.
SERVICES = "ec2, s3, ssm, lambda, iam, sts"
OTHERS = """# the user's own
[default]
region = eu-west-1

[profile other]
endpoint_url = https://example.com
"""


def profile_env(folder: Path) -> dict[str, str]:
    """The sandbox inventory's environment for a pair in folder, over an empty base."""
    return {
        "AWS_CONFIG_FILE": str(folder / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(folder / "credentials"),
        "AWS_PROFILE": PROFILE,
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
    }


def test_the_written_pair_is_the_profile_botocore_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, credentials = aws_profile.write_profile(tmp_path / "aws", PROFILE, MOTO, "us-east-1")
    for path in (config, credentials):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "aws").stat().st_mode) == 0o700
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in profile_env(tmp_path / "aws").items():
        monkeypatch.setenv(name, value)
    session = botocore.session.Session()
    assert session.get_scoped_config()["endpoint_url"] == MOTO
    assert session.get_config_variable("region") == "us-east-1"
    keys = session.get_credentials()
    assert (keys.access_key, keys.secret_key) == ("sandbox", "sandbox")
    assert keys.method == "shared-credentials-file"
    # What the playbooks' clients (amazon.aws's, the collection's) get from it.
    # (A session of its own: boto3's default one keeps the files another test made it read.)
    clients = boto3.session.Session()
    for service in ("ec2", "s3", "ssm", "lambda"):
        assert clients.client(service).meta.endpoint_url == MOTO


def test_rewriting_the_profile_keeps_every_other_section(tmp_path: Path) -> None:
    folder = tmp_path / "aws"
    folder.mkdir()
    (folder / "config").write_text(OTHERS)
    (folder / "credentials").write_text("[default]\naws_access_key_id = mine\n")
    aws_profile.write_profile(folder, PROFILE, "http://127.0.0.1:1111")
    aws_profile.write_profile(folder, PROFILE, MOTO)
    config = (folder / "config").read_text()
    assert config.startswith(OTHERS)
    assert config.count(f"[profile {PROFILE}]") == 1
    assert f"endpoint_url = {MOTO}\n" in config and "1111" not in config
    credentials = (folder / "credentials").read_text()
    assert credentials.startswith("[default]\naws_access_key_id = mine\n")
    assert credentials.count(f"[{PROFILE}]") == 1


def test_the_check_takes_the_profile_endpoint_and_lets_aws_endpoint_url_win(
    tmp_path: Path,
) -> None:
    aws_profile.write_profile(tmp_path, PROFILE, MOTO)
    env = profile_env(tmp_path)
    local = aws_endpoint.resolve(env, ["ec2", "s3"], base={})
    assert local["loopback"] and local["problems"] == []
    assert local["endpoints"] == {"ec2": MOTO, "s3": MOTO}
    assert local["source"] == f"endpoint_url of profile {PROFILE} in {tmp_path}/config"
    # Set in the shell (the play's environment does not blank it), it wins, as in botocore.
    aws = aws_endpoint.resolve(env, ["ec2", "s3"], base={"AWS_ENDPOINT_URL": AWS_EC2})
    assert not aws["loopback"]
    assert aws["problems"] == [f"ec2, s3: '{AWS_EC2}' (from AWS_ENDPOINT_URL)"]
    per_service = aws_endpoint.resolve(dict(env, AWS_ENDPOINT_URL_S3=AWS_EC2), ["ec2", "s3"], {})
    assert per_service["problems"] == [f"s3: '{AWS_EC2}' (from AWS_ENDPOINT_URL_S3)"]


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:5000", True),
        ("http://127.1.2.3", True),
        ("http://localhost:5000/", True),
        ("http://[::1]:5000", True),
        ("http://10.0.0.1:5000", False),
        ("http://127.0.0.1.nip.io:5000", False),
        ("http://127.0.0.1:5000/prefix", False),
        ("ftp://127.0.0.1", False),
        ("http://127.0.0.1:x", False),
        ("", False),
    ],
)
def test_what_counts_as_a_loopback_url(url: str, loopback: bool) -> None:
    assert aws_endpoint.is_loopback_url(url) is loopback


def test_no_endpoint_at_all_is_aws_itself(tmp_path: Path) -> None:
    aws_profile.write_profile(tmp_path, PROFILE, MOTO)
    ignored = dict(profile_env(tmp_path), AWS_IGNORE_CONFIGURED_ENDPOINT_URLS="true")
    for env in ({}, ignored):
        answer = aws_endpoint.resolve(env, ["ec2"], base={})
        assert answer["problems"] == ["ec2: '' (from nothing: AWS itself)"]


def test_the_check_names_a_missing_profile(tmp_path: Path) -> None:
    answer = aws_endpoint.resolve(profile_env(tmp_path), ["ec2"], base={})
    assert not answer["loopback"]
    assert answer["problems"][0].startswith(f"profile {PROFILE} ({tmp_path}/config): ")
    assert PROFILE in answer["problems"][0].split(": ", 1)[1]


def test_the_sandbox_refuses_a_profile_whose_endpoint_is_not_local(tmp_path: Path) -> None:
    """Role sandbox_hosts, under inventory/sandbox's environment, stops before it touches
    podman: its message names the profile, its file, the URL and what was expected."""
    aws = tmp_path / "aws"
    aws_profile.write_profile(aws, PROFILE, AWS_EC2)
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        "- hosts: localhost\n"
        "  gather_facts: false\n"
        '  environment: "{{ release_aws_environment }}"\n'
        "  tasks:\n"
        "    - ansible.builtin.include_role: {name: sandbox_hosts}\n"
        "      vars: {sandbox_hosts_run_id: rcheck-endpoint}\n"
    )
    env = {k: v for k, v in ansible_env().items() if not k.startswith("AWS_")}
    run = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), str(playbook), "-i", "inventory/sandbox"],
        cwd=REPO,
        env=dict(env, R_LAMBDA_SANDBOX_AWS_DIR=str(aws)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = " ".join(run.stdout.split())
    assert run.returncode == 2, said[-2000:]
    assert f"through the AWS profile {PROFILE} ({aws}/config)" in said
    assert (
        f"{SERVICES}: '{AWS_EC2}' (from endpoint_url of profile {PROFILE} in {aws}/config)" in said
    )
    assert "must be a loopback URL such as http://127.0.0.1:5000" in said
    assert "Build the image" not in said
