"""The local platform's releases that several test files check, each made once a session.

first_release is the project's release as `make release` makes it; overlapping_releases two
releases into one bucket at once, then the next (tests/integration/test_release_local_models.py);
local_deploy deploys the first and redeploys the newest as a local function
(test_release_local_deploy.py). Exposed to the tests by conftest.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from release_runs import REPO
from release_support import (
    assert_no_hosts_left,
    read_json,
    run_playbook,
    s3_client,
    signal_once_latest_names,
    start_playbook,
)


@pytest.fixture(scope="session")
def first_release(bucket: str) -> dict:
    run = run_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}", name="release-first"
    ).check()
    assert_no_hosts_left(run)
    return {"run": run, "manifest": (REPO / "dist" / "release.json").read_text()}


def _fit(kind: str, out: Path) -> Path:
    """A model fitted the way users fit theirs (tests/handler/fit_models.R), as an .rds."""
    subprocess.run(
        [
            "Rscript",
            str(REPO / "tests/handler/fit_models.R"),
            str(REPO / "handler/model/binary.csv"),
            str(out),
            kind,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return out / f"{kind}.rds"


def _tamper(client, bucket: str, prefix: str) -> str:
    """Replace a release's zip and its manifest together, as someone with write access to
    the bucket could: the manifest names the new zip's sha256, the metadata is copied.
    Returns the new zip's sha256."""
    zip_key, manifest_key = f"{prefix}/admission.zip", f"{prefix}/manifest.json"
    original = client.get_object(Bucket=bucket, Key=zip_key)
    buffer = io.BytesIO(original["Body"].read())
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("sitecustomize.py", "print('not what was released')\n")
    body = buffer.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    client.put_object(Bucket=bucket, Key=zip_key, Body=body, Metadata=original["Metadata"])
    manifest = client.get_object(Bucket=bucket, Key=manifest_key)
    changed = json.loads(manifest["Body"].read())
    changed["zip"].update(sha256=digest, bytes=len(body))
    client.put_object(
        Bucket=bucket,
        Key=manifest_key,
        Body=json.dumps(changed, indent=2).encode(),
        Metadata=manifest["Metadata"],
    )
    return digest


@pytest.fixture(scope="session")
def overlapping_releases(bucket: str, first_release: dict, tmp_path_factory) -> dict:
    """Two releases into one bucket at once (#13). A (the project's model) starts; B (the
    model the 2017 procedure fits at the prompt, an operator's .rds) starts as A begins to
    build. A reaches the bucket first and takes its lock; B, finding it taken, waits. Between
    A's publish and its clean-host test (A stopped with SIGSTOP until B is seen waiting), A's
    zip and manifest are replaced together in S3. A's clean host must refuse them and A
    roll back; B then publishes and is promoted, and is killed (SIGKILL) the moment
    latest.json names it, before it records its promotion. The next release of B's inputs
    reaps the dead run and must find B published (issue 23)."""
    client = s3_client()
    model = _fit("2017", tmp_path_factory.mktemp("model"))
    latest_before = read_json(client, bucket, "releases/latest.json")
    common = ("-e", f"release_bucket={bucket}", "-e", "release_force=true")
    a = start_playbook(
        "playbooks/release.yml",
        *common,
        "-e",
        "release_version=it-overlap-a",
        name="release-overlap-a",
    )
    b = None
    try:
        started_build = a.wait_for("TASK [Mark the phase that starts: build]", 600)
        assert started_build, f"A did not build, see {a.log}"
        b = start_playbook(
            "playbooks/release.yml",
            *common,
            "-e",
            "release_version=it-overlap-b",
            "-e",
            f"lambda_package_model_rds={model}",
            name="release-overlap-b",
        )
        assert a.wait_for("PLAY [Test the published package on a clean host without R]", 1200), (
            f"A did not publish, see {a.log}"
        )
        a.signal(signal.SIGSTOP)
        try:
            a_run = a.run_id
            b_waited = b.wait_for(f"is being released by run {a_run}", 1200)
            tampered = _tamper(client, bucket, "releases/it-overlap-a")
        finally:
            a.signal(signal.SIGCONT)
        runs = {"a": a.finish()}
        runs["b"] = signal_once_latest_names(b, client, bucket, "it-overlap-b", signal.SIGKILL)
        runs["after"] = run_playbook(
            "playbooks/release.yml", "-e", f"release_bucket={bucket}",
            "-e", f"lambda_package_model_rds={model}", name="release-after-killed-b",
        )  # fmt: skip
    finally:
        for started in (a, b):
            if started and started.proc.poll() is None:
                started.signal(signal.SIGCONT)
                started.signal(signal.SIGTERM)
                started.finish(timeout=600)
    return dict(
        runs,
        a_run=a_run,
        b_waited=b_waited,
        tampered_sha256=tampered,
        latest_before=latest_before,
        model_sha256=hashlib.sha256(model.read_bytes()).hexdigest(),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, payload: object) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture(scope="session")
def local_deploy(bucket: str, first_release: dict, overlapping_releases: dict, tmp_path_factory):
    """The first release deployed as a local function on a port of its own, curl-style
    requests, then a redeploy of the newest release (B of overlapping_releases) while a
    client keeps sending requests, then make undeploy."""
    port, state = _free_port(), tmp_path_factory.mktemp("local-function")
    dist = tmp_path_factory.mktemp("deploy-dist")
    first = json.loads(first_release["manifest"])["version"]
    common = (
        "-e",
        f"release_bucket={bucket}",
        "-e",
        f"local_function_port={port}",
        "-e",
        f"local_function_state_dir={state}",
        "-e",
        f"deploy_dist_dir={dist}",
    )
    url = f"http://127.0.0.1:{port}/"
    seen: dict = {"url": url, "first": first, "dist": dist}
    seen["deploy"] = run_playbook(
        "playbooks/deploy.yml", *common, "-e", f"deploy_version={first}", name="deploy-local"
    )
    if seen["deploy"].returncode != 0:
        return seen
    seen["good"] = _post(url, {"gre": 800, "gpa": 4, "rank": 1})
    seen["bad"] = _post(url, {"gre": 800, "gpa": 4, "rank": 7})
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                status, headers, _ = _post(url, {"gre": 700, "gpa": 3.5, "rank": 2})
                answers.append((status, headers.get("X-Function-Version", "")))
            except OSError as error:  # a refused or dropped connection is a failed request
                answers.append((0, str(error)))

    client = threading.Thread(target=load)
    client.start()
    try:
        seen["redeploy"] = run_playbook("playbooks/deploy.yml", *common, name="redeploy-local")
        time.sleep(2)  # a few requests served by the new release
    finally:
        stop.set()
        client.join(timeout=60)
    seen["answers"] = answers
    seen["newest"] = read_json(s3_client(), bucket, "releases/latest.json")["version"]
    seen["undeploy"] = run_playbook(
        "playbooks/deploy.yml", *common, "-e", "deploy_state=absent", name="undeploy-local"
    )
    with socket.socket() as sock:
        seen["port_open_after"] = sock.connect_ex(("127.0.0.1", port)) == 0
    return seen
