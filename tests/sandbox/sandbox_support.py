"""Helpers for the sandbox platform's tests: a moto server, releases run against it, and
what a run may leave behind in moto, in podman and on the controller.

The tests drive `ansible-playbook playbooks/release.yml -i inventory/sandbox` exactly as
ops would, with EC2, SSM and S3 from one moto server on 127.0.0.1, reached through the AWS
profile r-lambda-sandbox the session writes (as scripts/sandbox-moto.sh start does), and
every instance backed by a real container reachable over SSH.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from module_loading import load
from release_runs import LOG_DIR, REPO, RUN_ID, VENV_BIN, Run, Started, ansible_env, containers

# The writer of the sandbox's AWS profile, shared with scripts/sandbox-moto.sh.
aws_profile = load("aws_profile", REPO / "scripts" / "aws_profile.py")

PROJECT = "r-lambda"
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
# The SSM parameter naming the current Amazon Linux 2023 AMI (moto serves it too).
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
# Sandbox.leftovers() of a run that cleaned up after itself.
NOTHING_LEFT = {
    "instances": [],
    "key_pairs": [],
    "security_groups": [],
    "containers": [],
    "state": [],
}
# Validation as strict as AWS where moto offers it (unknown instance types, AMIs, key pairs).
MOTO_STRICT = {
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "true",
    "MOTO_ENABLE_AMI_VALIDATION": "true",
    "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Pending:
    """A command the sandbox started; the run id it says joins the session's runs, whose
    containers are removed at the end."""

    command: Started
    sandbox: Sandbox

    def wait(self, timeout: float | None = None) -> Run:
        """Wait for the command (timeout None: however long it takes)."""
        run = self.command.finish(timeout=timeout)
        found = RUN_ID.search(run.output)
        if found:
            self.sandbox.runs.append(found.group(1))
        return run


# The bucket's administrator signs with a key of its own (moto accepts any), so that the
# recorded calls of the bucket's set-up can be told from the releases': a profile of its own
# beside the releases' (inventory/sandbox blanks keys set in the environment).
BUCKET_ADMIN_KEY = "sandbox-bucket-admin"
# The sandbox's profile (inventory/sandbox/group_vars/all/aws.yml), and the administrator's.
PROFILE = "r-lambda-sandbox"
BUCKET_ADMIN_PROFILE = "r-lambda-sandbox-bucket-admin"


@dataclass
class Sandbox:
    """A moto server on 127.0.0.1 and the folders a session's releases use."""

    endpoint: str
    workdir: Path
    recording: Path
    region: str = "us-east-1"
    runs: list[str] = field(default_factory=list)
    timings: dict[str, object] = field(default_factory=dict)

    @property
    def aws_dir(self) -> Path:
        """The config and credentials pair holding the moto server's profiles."""
        return self.workdir / "aws"

    def write_profiles(self) -> None:
        """The releases' profile and the bucket administrator's, both at the moto server."""
        for profile, key in ((PROFILE, "sandbox"), (BUCKET_ADMIN_PROFILE, BUCKET_ADMIN_KEY)):
            aws_profile.write_profile(
                self.aws_dir, profile, self.endpoint, self.region, key, key, writer="tests/sandbox"
            )

    @property
    def env(self) -> dict[str, str]:
        """The environment of every ansible-playbook run: no AWS_* of the shell, only the
        sandbox's profile (inventory/sandbox reads its folder from R_LAMBDA_SANDBOX_AWS_DIR;
        the AWS_* variables select it for playbooks with another inventory)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            R_LAMBDA_SANDBOX_AWS_DIR=str(self.aws_dir),
            AWS_CONFIG_FILE=str(self.aws_dir / "config"),
            AWS_SHARED_CREDENTIALS_FILE=str(self.aws_dir / "credentials"),
            AWS_PROFILE=PROFILE,
        )
        return ansible_env(env)

    def isolation(self, name: str) -> list[str]:
        """Extra vars giving one release folders of its own (the release works in a
        runs/<run id>/ folder of each), apart from a local release's."""
        state, dist = self.workdir / name / "state", self.workdir / name / "dist"
        return [
            "-e",
            f"release_state_dir={state}",
            "-e",
            f"release_dist_dir={dist}",
        ]

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            aws_access_key_id="sandbox",
            aws_secret_access_key="sandbox",
            region_name=self.region,
        )

    def start(
        self,
        playbook: str,
        *extra: str,
        name: str,
        env: dict[str, str] | None = None,
        inventory: str = "inventory/sandbox",
        own_process_group: bool = False,
    ) -> Pending:
        """Start a playbook from the repository root; its output goes to dist/test-logs."""
        return self.start_command(
            [str(VENV_BIN / "ansible-playbook"), playbook, "-i", inventory, *extra],
            log_name=name,
            state_name=name,
            env=env,
            own_process_group=own_process_group,
        )

    def start_command(
        self,
        argv: list[str],
        *,
        log_name: str,
        state_name: str,
        env: dict[str, str] | None = None,
        own_process_group: bool = False,
    ) -> Pending:
        """Start a command from the repository root; its output goes to dist/test-logs.
        own_process_group: see Started."""
        command = Started.start(
            argv,
            env=self.env if env is None else env,
            log=LOG_DIR / f"sandbox-{log_name}.log",
            state_dir=self.workdir / state_name / "state",
            own_process_group=own_process_group,
        )
        return Pending(command, self)

    def playbook(
        self, playbook: str, *extra: str, name: str, env: dict[str, str] | None = None
    ) -> Run:
        return self.start(playbook, *extra, name=name, env=env).wait()

    def set_up_bucket(self, bucket: str, *extra: str) -> Run:
        """The bucket's one-time set-up (playbooks/bucket.yml), as its administrator."""
        return self.playbook(
            "playbooks/bucket.yml",
            "-e",
            f"release_bucket={bucket}",
            *extra,
            "-e",
            f"release_aws_profile={BUCKET_ADMIN_PROFILE}",
            name=f"bucket-{bucket}",
            env={**self.env, "AWS_PROFILE": BUCKET_ADMIN_PROFILE},
        ).check()

    def start_release(
        self,
        *extra: str,
        name: str,
        env: dict[str, str] | None = None,
        inventory: str = "inventory/sandbox",
        own_process_group: bool = False,
    ) -> Pending:
        return self.start(
            "playbooks/release.yml",
            *self.isolation(name),
            *extra,
            name=name,
            env=env,
            inventory=inventory,
            own_process_group=own_process_group,
        )

    def release(
        self,
        *extra: str,
        name: str,
        env: dict[str, str] | None = None,
        inventory: str = "inventory/sandbox",
    ) -> Run:
        return self.start_release(*extra, name=name, env=env, inventory=inventory).wait()

    def leftovers(self, run: Run) -> dict[str, list[str]]:
        """Everything of one run still alive: instances, key pairs, security groups,
        containers, controller state. Empty lists when the run cleaned up."""
        run_id = run.run_id
        ec2 = self.client("ec2")
        run_filter = [{"Name": "tag:run_id", "Values": [run_id]}]
        reservations = ec2.describe_instances(
            Filters=[*run_filter, {"Name": "instance-state-name", "Values": LIVE_STATES}]
        )["Reservations"]
        keys = ec2.describe_key_pairs()["KeyPairs"]
        groups = ec2.describe_security_groups(Filters=run_filter)["SecurityGroups"]
        return {
            "instances": [i["InstanceId"] for r in reservations for i in r["Instances"]],
            "key_pairs": [
                k["KeyName"]
                for k in keys
                if run_id in k["KeyName"] or any(t["Value"] == run_id for t in k.get("Tags", []))
            ],
            "security_groups": [g["GroupId"] for g in groups],
            "containers": containers(run_id),
            "state": [str(p) for p in (run.state_dir / "runs" / run_id).glob("*")],
        }


def remove_containers(run_id: str) -> None:
    for name in containers(run_id):
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)


def start_moto(workdir: Path) -> tuple[subprocess.Popen, Sandbox]:
    """A moto server on a free loopback port, recording every request it serves."""
    port = free_port()
    recording = workdir / "moto-recording.jsonl"
    env = dict(
        os.environ,
        **MOTO_STRICT,
        MOTO_ENABLE_RECORDING="True",
        MOTO_RECORDER_FILEPATH=str(recording),
    )
    log = (workdir / "moto.log").open("w")
    proc = subprocess.Popen(
        [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited, see {workdir / 'moto.log'}") from None
            time.sleep(0.1)
    else:
        raise RuntimeError(f"moto_server did not answer on {endpoint}")
    sandbox = Sandbox(endpoint=endpoint, workdir=workdir, recording=recording)
    try:
        sandbox.write_profiles()
    except BaseException:
        stop_moto(proc)
        raise
    return proc, sandbox


def stop_moto(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# The bucket's release lock: every run that publishes writes it (taken, then released).
LOCK_KEY = "releases/.lock.json"


def s3_snapshot(sandbox: Sandbox, bucket: str) -> dict[str, str]:
    """Every current key of a bucket with its ETag ({} when there is no bucket), but the
    release lock."""
    s3 = sandbox.client("s3")
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {
            o["Key"]: o["ETag"]
            for page in pages
            for o in page.get("Contents", [])
            if o["Key"] != LOCK_KEY
        }
    except s3.exceptions.NoSuchBucket:
        return {}


def read_json(sandbox: Sandbox, bucket: str, key: str) -> dict:
    body = sandbox.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def recorded_requests(sandbox: Sandbox) -> Iterator[dict]:
    """The requests the moto server recorded, one dict each (method, url, headers, body).

    moto's recorder writes each record and its newline in two calls, so two requests
    served at once (a multipart upload's parts) can share a line and leave an empty one:
    every JSON object of every line is read.
    """
    decoder = json.JSONDecoder()
    with sandbox.recording.open() as lines:
        for line in lines:
            text, at = line.strip(), 0
            while at < len(text):
                record, end = decoder.raw_decode(text, at)
                yield record
                at = end
                while at < len(text) and text[at].isspace():
                    at += 1


# The release bucket of the sandbox's release tests (conftest.py's release_bucket sets it up).
BUCKET = "r-lambda-releases"


def changed(output: str, task: str) -> bool:
    """Whether the named task reported a change (it created something)."""
    return (
        re.search(
            rf"TASK \[[^\]]*{re.escape(task)}[^\]]*\][^\n]*\n[^\n]*\n(changed|included)", output
        )
        is not None
    )


def run_instances(sandbox: Sandbox, run_id: str) -> list[dict]:
    reservations = sandbox.client("ec2").describe_instances(
        Filters=[{"Name": "tag:run_id", "Values": [run_id]}]
    )["Reservations"]
    return [i for r in reservations for i in r["Instances"]]
