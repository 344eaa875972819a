"""Helpers for tests that run real releases on the local platform.

They drive `ansible-playbook playbooks/release.yml` exactly as ops do, against the real
SeaweedFS S3 and real podman containers, in a bucket of their own.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import boto3
from watched_run import Watched

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
S3_STATE = REPO / ".state" / "seaweedfs"
LOG_DIR = REPO / "dist" / "test-logs"


@dataclass
class Run:
    """One finished ansible-playbook run."""

    returncode: int
    output: str
    log: Path

    def check(self) -> Run:
        assert self.returncode == 0, (
            f"ansible-playbook failed, see {self.log}:\n{self.output[-4000:]}"
        )
        return self


def s3_port_open() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 8333)) == 0


def run_playbook(playbook: str, *extra: str, name: str) -> Run:
    """Run a playbook from the repository root and keep its output in dist/test-logs."""
    return run_command([str(VENV_BIN / "ansible-playbook"), playbook, *extra], name=name)


def run_command(argv: list[str], *, name: str, env: dict[str, str] | None = None) -> Run:
    """Run a command from the repository root and keep its output in dist/test-logs."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{name}.log"
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{VENV_BIN}:{os.environ['PATH']}",
        **(env or {}),
    )
    proc = subprocess.run(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    log.write_text(proc.stdout)
    return Run(proc.returncode, proc.stdout, log)


def start_playbook(playbook: str, *extra: str, name: str) -> Watched:
    """Start a playbook from the repository root in a process group of its own, without
    waiting for it; its output goes to dist/test-logs."""
    return Watched.start(
        [str(VENV_BIN / "ansible-playbook"), playbook, *extra],
        cwd=REPO,
        env=dict(
            os.environ,
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_FORCE_COLOR="0",
            PATH=f"{VENV_BIN}:{os.environ['PATH']}",
        ),
        log=LOG_DIR / f"{name}.log",
    )


def s3_client():
    """A boto3 client for the local S3 with the keys the release generated."""
    return boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:8333",
        aws_access_key_id=S3_STATE.joinpath("access_key").read_text().strip(),
        aws_secret_access_key=S3_STATE.joinpath("secret_key").read_text().strip(),
        region_name="us-east-1",
    )


def empty_and_delete(client, bucket: str) -> None:
    try:
        versions = client.list_object_versions(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        return
    for item in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=bucket)


def keys(client, bucket: str, prefix: str = "") -> list[str]:
    """Every current key under prefix."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def read_json(client, bucket: str, key: str) -> dict:
    return json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def containers_left() -> list[str]:
    """Names of every container this project labels, whatever the run."""
    out = subprocess.run(
        ["podman", "ps", "--all", "--filter", "label=r-lambda.run_id", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def run_id_of(output: str) -> str:
    match = re.search(r"\(run (r[0-9]+-[0-9a-f]+)\)", output)
    assert match, "the release did not say its run id"
    return match.group(1)


def assert_no_hosts_left(output: str) -> None:
    run_id = run_id_of(output)
    assert not [name for name in containers_left() if run_id in name], (
        f"containers of {run_id} remain"
    )
