"""Helpers for tests that run real releases on the local platform.

They drive `ansible-playbook playbooks/release.yml` exactly as ops do, against the real
SeaweedFS S3 and real podman containers, in a bucket of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import boto3
import botocore.session
from release_runs import LOG_DIR, REPO, VENV_BIN, Run, Started, ansible_env, containers

AWS_STATE, AWS_PROFILE = REPO / ".state" / "aws", "r-lambda-local"
# The local S3's port, as role local_s3 reads it (R_LAMBDA_LOCAL_S3_PORT, else 8333).
S3_PORT = int(os.environ.get("R_LAMBDA_LOCAL_S3_PORT", "8333"))


def s3_port_open() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", S3_PORT)) == 0


def run_playbook(playbook: str, *extra: str, name: str) -> Run:
    """Run a playbook from the repository root and keep its output in dist/test-logs."""
    return run_command([str(VENV_BIN / "ansible-playbook"), playbook, *extra], name=name)


def run_command(argv: list[str], *, name: str, env: dict[str, str] | None = None) -> Run:
    """Run a command from the repository root and keep its output in dist/test-logs."""
    return Started.start(
        argv, env=ansible_env({**os.environ, **(env or {})}), log=LOG_DIR / f"{name}.log"
    ).finish(timeout=None)


def start_playbook(playbook: str, *extra: str, name: str) -> Started:
    """Start a playbook from the repository root in a process group of its own, without
    waiting for it; its output goes to dist/test-logs."""
    return Started.start(
        [str(VENV_BIN / "ansible-playbook"), playbook, *extra],
        env=ansible_env(),
        log=LOG_DIR / f"{name}.log",
        own_process_group=True,
    )


def s3_client():
    """A boto3 client for the local S3 through AWS's standard chain: the profile the
    release's local_s3 writes (.state/aws), as the playbooks and a user's aws CLI reach it."""
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(AWS_STATE / "config"))
    core.set_config_variable("credentials_file", str(AWS_STATE / "credentials"))
    # Named explicitly: keys exported in the environment are then ignored.
    core.set_config_variable("profile", AWS_PROFILE)
    return boto3.Session(botocore_session=core).client("s3")


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


def assert_no_hosts_left(run: Run) -> None:
    assert not [name for name in containers() if run.run_id in name], (
        f"containers of {run.run_id} remain"
    )


def signal_once_latest_names(
    started: Started, client, bucket: str, version: str, signum: int
) -> Run:
    """Send signum to the release started the moment latest.json names version (polled every
    0.1 s), before the run records its promotion; wait for it to end."""
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline and started.proc.poll() is None:
        try:
            named = read_json(client, bucket, "releases/latest.json").get("version")
        except client.exceptions.NoSuchKey:
            named = None
        if named == version:
            started.signal(signum)
            break
        time.sleep(0.1)
    run = started.finish()
    assert run.returncode in (-signum, 128 + signum), f"not signalled in time, see {run.log}"
    return run


def assert_release_intact(client, bucket: str, version: str) -> dict:
    """latest.json names version, its manifest is verified and every object the manifest
    names with a sha256 exists with those bytes (issue 23: a promoted release is never lost)."""
    assert read_json(client, bucket, "releases/latest.json")["version"] == version
    manifest = read_json(client, bucket, f"releases/{version}/manifest.json")
    assert manifest["status"] == "verified"
    named = [
        e for e in manifest.values() if isinstance(e, dict) and e.get("key") and e.get("sha256")
    ]
    assert named, "the manifest names no object"
    for entry in named:
        body = client.get_object(Bucket=bucket, Key=entry["key"])["Body"].read()
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["key"]
    return manifest
