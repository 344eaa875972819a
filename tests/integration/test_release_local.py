"""Real releases on the local platform: podman hosts, SeaweedFS, the real playbook.

Each test runs `ansible-playbook playbooks/release.yml` and checks what a release
promises: a verified package in S3, nothing new when nothing changed, and nothing
published nor left running when a stage fails.
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
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from release_runs import RELEASE_FILES, REPO, containers
from release_support import (
    assert_no_hosts_left,
    assert_release_intact,
    keys,
    read_json,
    run_command,
    run_playbook,
    s3_client,
    signal_once_latest_names,
    start_playbook,
)

pytestmark = pytest.mark.slow

# The R packages the releases are configured to carry.
EXPECTED_R_PACKAGES = set(
    yaml.safe_load((REPO / "playbooks/group_vars/all/package.yml").read_text())[
        "lambda_package_r_packages"
    ]
)


@pytest.fixture(scope="module")
def first_release(bucket: str) -> dict:
    run = run_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}", name="release-first"
    ).check()
    assert_no_hosts_left(run)
    return {"run": run, "manifest": (REPO / "dist" / "release.json").read_text()}


def test_release_publishes_a_package_verified_on_a_clean_host(
    bucket: str, first_release: dict
) -> None:
    client = s3_client()
    latest = read_json(client, bucket, "releases/latest.json")
    version = latest["version"]
    manifest = read_json(client, bucket, f"releases/{version}/manifest.json")

    assert manifest["status"] == "verified"
    assert manifest["tests"]["failed"] == 0
    assert manifest["tests"]["passed"] >= 6
    assert keys(client, bucket, f"releases/{version}/") == sorted(
        f"releases/{version}/{name}" for name in RELEASE_FILES
    )
    body = client.get_object(Bucket=bucket, Key=manifest["zip"]["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == manifest["zip"]["sha256"]
    assert len(body) == int(manifest["zip"]["bytes"])
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
    packaged = {name.split("/")[2] for name in names if name.startswith("R/library/")}
    assert packaged == EXPECTED_R_PACKAGES
    assert "lib/libR.so" in names
    assert "handler.py" in names and "test_handler.py" in names and "admission.rds" in names
    assert not any(name.startswith(("rpy2/robjects/", "jinja2/")) for name in names)


def test_manifest_records_what_ops_need(bucket: str, first_release: dict) -> None:
    manifest = read_json(s3_client(), bucket, "releases/latest.json")
    manifest = read_json(s3_client(), bucket, manifest["manifest"].split(f"{bucket}/", 1)[1])
    for field in (
        "version",
        "created_at",
        "git_commit",
        "platform",
        "build_image",
        "r_version",
        "rpy2_version",
        "python_version",
        "unzipped_bytes",
        "file_count",
        "r_packages",
        "shared_libraries",
        "phase_seconds",
        "manifest_uri",
    ):
        assert manifest[field], field
    assert manifest["platform"] == "local"
    # Trained on the build host from the project's copy of the UCLA data.
    source = manifest["model"]["source"]
    assert (source["kind"], source["file"], source["project_data"]) == (
        "training_data",
        "binary.csv",
        True,
    )
    csv = (REPO / "handler/model/binary.csv").read_bytes()
    assert source["sha256"] == hashlib.sha256(csv).hexdigest()
    model = s3_client().get_object(Bucket=bucket, Key=manifest["model"]["key"])["Body"].read()
    assert hashlib.sha256(model).hexdigest() == manifest["model"]["sha256"]
    assert manifest["model"]["plan"]["method"] == "direct"
    needed = tuple(int(x) for x in manifest["glibc"]["needed_max"].split("."))
    ceiling = tuple(int(x) for x in manifest["glibc"]["target_max"].split("."))
    assert needed <= ceiling
    assert set(manifest["phase_seconds"]) == {"plan", "build", "publish", "test", "promote"}
    assert "libR.so" not in manifest["shared_libraries"]  # libR comes from R itself
    assert not any(lib.startswith("libc.so") for lib in manifest["shared_libraries"])
    check_sbom(s3_client(), bucket, manifest)


def check_sbom(client, bucket: str, manifest: dict) -> None:
    """The release's CycloneDX SBOM, published next to its manifest and named in it with its
    sha256, validates against CycloneDX's schema and says where every part came from."""
    body = client.get_object(Bucket=bucket, Key=manifest["sbom"]["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == manifest["sbom"]["sha256"]
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(body.decode()) is None
    document = json.loads(body)
    assert (document["specVersion"], manifest["sbom"]["components"]) == (
        "1.6", len(document["components"]))
    components = {c["bom-ref"]: c for c in document["components"]}
    kinds: dict[str, list[dict]] = {}
    for ref, component in components.items():
        kinds.setdefault(ref.split(":", 1)[0], []).append(component)
    # R and Python: their versions, and the pinned source tarballs' URL and sha256.
    r_defaults = yaml.safe_load((REPO / "roles/r_runtime/defaults/main.yml").read_text())
    [r_source] = components["runtime:R"]["externalReferences"]
    r_seen = (components["runtime:R"]["version"], r_source["url"], r_source["hashes"][0]["content"])
    assert r_seen == (manifest["r_version"], r_defaults["r_runtime_source_url"],
                      r_defaults["r_runtime_source_sha256"])
    python_pins = yaml.safe_load((REPO / "roles/target_python/defaults/main.yml").read_text())
    pin = python_pins["target_python_sources"][manifest["python_version"]]
    [python_source] = components["runtime:Python"]["externalReferences"]
    assert (components["runtime:Python"]["version"], python_source["url"],
            python_source["hashes"][0]["content"]) == (pin["version"], pin["url"], pin["sha256"])
    # Every Python distribution with the sha256 of the file it was installed from, one the
    # lambda_package lock allows.
    lock = (REPO / "roles/lambda_package/files/python/rpy2-3.6.9.lock").read_text()
    python = {c["name"]: c for c in kinds["pypi"]}
    assert {"rpy2", "rpy2-rinterface", "rpy2-robjects", "cffi"} <= set(python)
    for component in python.values():
        [digest] = component["hashes"]
        assert f"--hash=sha256:{digest['content']}" in lock, component["name"]
    # Every R package shipped; every bundled library with the Debian package it came from.
    assert {c["name"] for c in kinds["r-package"]} == set(manifest["r_packages"])
    libraries = {c["name"]: c for c in kinds["so"]}
    assert set(libraries) == set(manifest["shared_libraries"])
    for soname, component in libraries.items():
        assert component["purl"].startswith("pkg:deb/debian/"), soname
        assert component["version"] and component["hashes"], soname
    # The handler's files, with the sha256 of the repository's copy.
    handler = components["file:handler.py"]["hashes"][0]["content"]
    assert handler == hashlib.sha256((REPO / "handler/handler.py").read_bytes()).hexdigest()


def test_release_targets_lambdas_python_3_13_runtime_by_default(
    bucket: str, first_release: dict
) -> None:
    """The default release is built for python3.13 on Amazon Linux 2023 and proven there:
    glibc at most 2.34, R and rpy2 that readRDS safely, the clean host's own Python 3.13."""
    client = s3_client()
    latest = read_json(client, bucket, "releases/latest.json")
    manifest = read_json(client, bucket, f"releases/{latest['version']}/manifest.json")
    assert manifest["target_runtime"] == {
        "name": "python3.13",
        "os": "Amazon Linux 2023",
        "glibc": "2.34",
        "python": "3.13",
    }
    assert manifest["python_version"] == "3.13"
    assert manifest["glibc"]["target_max"] == "2.34"
    needed = tuple(int(x) for x in manifest["glibc"]["needed_max"].split("."))
    assert needed <= (2, 34)
    assert tuple(int(x) for x in manifest["r_version"].split(".")) >= (4, 4, 0)
    assert manifest["rpy2_version"] == "3.6.9"
    with zipfile.ZipFile(
        io.BytesIO(client.get_object(Bucket=bucket, Key=manifest["zip"]["key"])["Body"].read())
    ) as archive:
        names = archive.namelist()
    extensions = [n for n in names if n.endswith(".so") and not n.startswith(("R/", "lib/"))]
    assert extensions and all(".abi3." in n or ".cpython-313-" in n for n in extensions), extensions
    bytecode = [n for n in names if n.endswith(".pyc")]
    assert bytecode and all(".cpython-313." in n for n in bytecode)


def test_clean_host_ran_the_handler_under_lambdas_runtime_client(
    bucket: str, first_release: dict
) -> None:
    """awslambdaric on Python 3.13, as Lambda invokes a function: each event's answer, as
    the runtime client posted it back, is in the published JUnit file; the manifest has
    the init time, the first invocation's time and the peak RSS (under the 128 MB cap)."""
    client = s3_client()
    latest = read_json(client, bucket, "releases/latest.json")
    manifest = read_json(client, bucket, f"releases/{latest['version']}/manifest.json")
    runtime = manifest["tests"]["runtime_client"]
    assert runtime["python"].startswith("3.13.")
    assert (runtime["passed"], runtime["failed"]) == (5, 0)
    assert 0 < float(runtime["init_s"]) < 10
    assert 0 < float(runtime["first_invoke_s"]) < 10
    assert 0 < float(runtime["peak_rss_mb"]) <= 128
    junit = (
        client.get_object(Bucket=bucket, Key=f"releases/{latest['version']}/lambda-runtime.xml")[
            "Body"
        ]
        .read()
        .decode()
    )
    for posted in ("/response", "/error", '"statusCode": 400', "0.7384"):
        assert posted in junit.replace("&quot;", '"'), posted


def test_a_second_run_with_no_change_publishes_nothing(bucket: str, first_release: dict) -> None:
    client = s3_client()
    before = keys(client, bucket)
    latest_before = read_json(client, bucket, "releases/latest.json")

    run = run_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}", name="release-unchanged"
    ).check()

    assert "Nothing changed since release" in run.output
    assert keys(client, bucket) == before
    assert read_json(client, bucket, "releases/latest.json") == latest_before
    assert "r-lambda-" + run.run_id not in " ".join(containers())


def test_ami_watch_sees_the_base_image_of_the_latest_release(
    bucket: str, first_release: dict, tmp_path: Path
) -> None:
    """On the local platform the AMI is the base image: the watch finds the image the
    release ran on, so it has nothing to rebuild and writes nothing to S3."""
    client = s3_client()
    before = keys(client, bucket)
    latest = read_json(client, bucket, "releases/latest.json")
    manifest = read_json(client, bucket, f"releases/{latest['version']}/manifest.json")
    image_id = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", manifest["ami"]["name"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    run = run_command(
        [
            str(REPO / "scripts" / "ami-watch"),
            "-e",
            f"release_bucket={bucket}",
            "-e",
            f"release_dist_dir={tmp_path}",
        ],
        name="ami-watch-local",
        env={"AMI_WATCH_STATE_DIR": str(tmp_path / "watch")},
    ).check()

    decision = json.loads((tmp_path / "ami_watch.json").read_text())
    assert manifest["ami"]["id"] == image_id
    assert decision["current_ami"] == decision["released_ami"] == image_id
    assert decision["current_ami_source"] == "local base image"
    assert decision["rebuild"] is False and decision["outcome"] == "not_needed"
    assert decision["released_version"] == latest["version"]
    assert "lock taken" in run.output
    assert keys(client, bucket) == before


# A failing gate is covered by the Molecule scenario of lambda_package (role level) and
# by the sandbox failure matrix (release level, same roles and teardown, one zip). The late
# failure on this platform, proving the local teardown and the rollback of what was
# published, is test_release_layer.py's failed release (it also proves a shared layer stays).


def test_a_runtime_without_a_local_stand_in_stops_before_building(bucket: str) -> None:
    """python3.12 is selectable, but only the aws platform's test host has its Python: on
    the local platform the run says so before anything is built, publishes nothing and
    removes its hosts."""
    client = s3_client()
    before = keys(client, bucket)
    run = run_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}",
        "-e", "release_target_runtime=python3.12", "-e", "release_force=true",
        name="release-python3.12-local",
    )  # fmt: skip
    assert run.returncode != 0
    assert "has no python3.12, so it cannot stand in for Lambda's python3.12 runtime" in run.output
    assert "tested on the aws platform" in run.output
    assert "TASK [r_runtime" not in run.output
    assert keys(client, bucket) == before
    assert_no_hosts_left(run)


def test_podman_is_usable_here() -> None:
    """Guard: the slow tests need podman with the project's settings."""
    out = subprocess.run(
        ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "runc"


def _plant_container(name: str) -> None:
    image = subprocess.run(
        ["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "localhost/r-lambda-base"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    subprocess.run(
        [
            "podman",
            "run",
            "-d",
            "--init",
            "--name",
            name,
            "--label",
            f"r-lambda.run_id={name}",
            image,
            "sleep",
            "infinity",
        ],
        capture_output=True,
        check=True,
    )


def test_reaper_removes_only_hosts_older_than_the_limit(first_release: dict) -> None:
    """Plants a labelled container as an interrupted run would leave it.

    With the default 6 h limit the fresh container is spared; the dry run at 0 h names it
    without removing it; applied at 0 h to its run id only (so that no other run on this
    machine is touched) it is removed.
    """
    name = "r-lambda-it-reap-planted"
    _plant_container(name)
    try:
        spared = run_playbook("playbooks/reap.yml", "-e", "reap_apply=true", name="reap-spares")
        assert spared.check() and name in containers()

        dry = run_playbook("playbooks/reap.yml", "-e", "reap_older_than_hours=0", name="reap-dry")
        assert name in dry.check().output and "Dry run" in dry.output
        assert name in containers()

        applied = run_playbook(
            "playbooks/reap.yml",
            "-e",
            "reap_apply=true",
            "-e",
            "reap_older_than_hours=0",
            "-e",
            f"reap_run_id={name}",
            name="reap-applied",
        )
        applied.check()
        assert name not in containers()
    finally:
        subprocess.run(["podman", "rm", "-f", "-t", "0", name], capture_output=True, check=False)


# ------------------------------------------------------ a model of the operator's own


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


@pytest.fixture(scope="module")
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


def test_two_releases_at_once_publish_one_at_a_time_and_a_replaced_zip_is_never_promoted(
    bucket: str, overlapping_releases: dict
) -> None:
    client = s3_client()
    run_a, run_b = overlapping_releases["a"], overlapping_releases["b"]

    # B waited for A's lock, saying whose it was, then released (and was killed once
    # latest.json named it).
    assert overlapping_releases["b_waited"], f"B never waited for A's lock, see {run_b.log}"
    assert run_b.returncode == -signal.SIGKILL
    # A's clean host refused the replaced manifest (and so the zip it names): A failed
    # and removed everything of its version, the replaced objects included.
    assert run_a.returncode != 0
    assert "The clean-host test failed" in run_a.output
    assert "it was replaced after publishing. Nothing from it is tested." in run_a.output
    assert overlapping_releases["tampered_sha256"] not in run_b.output
    assert keys(client, bucket, "releases/it-overlap-a/") == []
    assert "Rolled back: removed" in run_a.output
    # The next release reaped killed B and kept it: latest.json names B, verified, every
    # key of it there with the sha256 it names; B's inputs are the reason to publish nothing.
    after = overlapping_releases["after"].check()
    assert run_b.run_id in after.output
    assert "Nothing changed since release it-overlap-b" in after.output
    assert overlapping_releases["latest_before"]["version"] != "it-overlap-b"
    manifest = assert_release_intact(client, bucket, "it-overlap-b")
    for part in ("zip", "model"):
        obj = client.head_object(Bucket=bucket, Key=manifest[part]["key"])
        assert obj["Metadata"]["sha256"] == manifest[part]["sha256"]
    assert read_json(client, bucket, "releases/.lock.json")["state"] == "released"
    assert_no_hosts_left(run_a)
    assert_no_hosts_left(run_b)
    assert_no_hosts_left(after)


def _release_with_model(bucket: str, model: Path, name: str):
    return run_playbook(
        "playbooks/release.yml",
        "-e",
        f"release_bucket={bucket}",
        "-e",
        f"lambda_package_model_rds={model}",
        name=name,
    )


def test_a_model_the_handler_cannot_serve_fails_the_release_before_publishing(
    bucket: str, first_release: dict, tmp_path: Path
) -> None:
    """A randomForest forest (fitted with the controller's R, whose Debian site library has
    r-cran-randomforest) released without lambda_package_model_packages: the build host's
    R (the release's, with no randomForest) refuses it with the handler's own message,
    naming the package to list, and the release fails before publishing. (The handler's
    other refusals, a variable requests do not carry among them, are the same step's:
    tests/handler/test_model_kinds.py runs it with each.)"""
    client = s3_client()
    before = keys(client, bucket)
    latest_before = read_json(client, bucket, "releases/latest.json")
    subprocess.run(
        ["Rscript", str(REPO / "tests/handler/fit_model_kinds.R"),
         str(REPO / "handler/model/binary.csv"), str(tmp_path), "random_forest"],
        check=True, capture_output=True, timeout=120,
    )
    model = tmp_path / "random_forest.rds"

    run = _release_with_model(bucket, model, name="release-unservable-model")

    assert run.returncode != 0
    assert "The build failed" in run.output
    assert (
        f"The model from lambda_package_model_rds={model} cannot be served: the model is of "
        "class 'randomForest.formula', 'randomForest', predicted by R package 'randomForest', "
        "which is not in this R: add 'randomForest' to the setting "
        "lambda_package_model_packages"
    ) in run.output
    assert "TASK [lambda_package : model | Fail when the handler cannot serve" in run.output
    assert "TASK [lambda_package : assemble" not in run.output  # stopped at the model step
    assert keys(client, bucket) == before
    assert read_json(client, bucket, "releases/latest.json") == latest_before
    assert_no_hosts_left(run)


def test_a_release_serves_the_2017_procedures_own_model(
    bucket: str, overlapping_releases: dict
) -> None:
    """Release B of overlapping_releases: the model the 2017 procedure fits at the prompt."""
    client = s3_client()
    digest = overlapping_releases["model_sha256"]
    overlapping_releases["after"].check()  # B was killed once promoted; its objects stayed

    latest = read_json(client, bucket, "releases/latest.json")
    version = latest["version"]
    manifest = read_json(client, bucket, f"releases/{version}/manifest.json")
    assert manifest["status"] == "verified"
    assert manifest["model"]["source"] == {
        "kind": "rds",
        "file": "2017.rds",
        "sha256": digest,
        "project_data": False,
    }
    # Shipped as it is: the published model is the operator's file, byte for byte.
    assert manifest["model"]["sha256"] == digest
    published = client.get_object(Bucket=bucket, Key=manifest["model"]["key"])["Body"].read()
    assert hashlib.sha256(published).hexdigest() == digest
    assert manifest["model"]["plan"]["method"] == "direct"
    assert manifest["model"]["plan"]["rank_levels"] == ["1", "2", "3", "4"]
    # On the clean host: every prediction bitwise R's predict() with rank a factor, the
    # 2017 answers skipped (another model), the runtime client's five events answered.
    junit = client.get_object(Bucket=bucket, Key=f"releases/{version}/package-test.xml")
    report = junit["Body"].read().decode()
    assert 'name="test_predictions_are_identical_to_r_predict"' in report
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert "the release serves a model not trained on the project's UCLA data" in report
    runtime = manifest["tests"]["runtime_client"]
    assert (runtime["passed"], runtime["failed"]) == (5, 0)


# --- Deploy on the local platform: make deploy (playbooks/deploy.yml, role local_function) ---


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


@pytest.fixture(scope="module")
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


def test_make_deploy_serves_the_verified_release_on_a_local_http_endpoint(
    bucket: str, local_deploy: dict
) -> None:
    local_deploy["deploy"].check()
    manifest = read_json(s3_client(), bucket, f"releases/{local_deploy['first']}/manifest.json")
    status, headers, body = local_deploy["good"]
    assert status == 200 and headers["X-Function-Version"] == local_deploy["first"]
    assert body["result"] is True and 0.5 < body["probability"] < 1
    status, _, body = local_deploy["bad"]
    assert status == 400 and body["field"] == "rank" and body["error"] == "BadRequest"
    # The smoke events ran in the stand-in before the local function took a request.
    assert "smoke-standin | Invoke the deployed bytes" in local_deploy["deploy"].output
    lines = (
        s3_client()
        .get_object(Bucket=bucket, Key=f"releases/{local_deploy['first']}/deploys.jsonl")["Body"]
        .read()
        .decode()
        .splitlines()
    )
    record = json.loads(lines[0])
    assert record["endpoint"] == local_deploy["url"] and record["platform"] == "local"
    assert record["code_sha256"] == manifest["zip"]["sha256"]


def test_a_redeploy_under_load_drops_no_request_and_make_undeploy_stops_it(
    local_deploy: dict,
) -> None:
    local_deploy["redeploy"].check()
    answers = local_deploy["answers"]
    assert len(answers) > 20
    assert [a for a in answers if a[0] != 200] == []
    versions = [version for _, version in answers]
    assert versions[0] == local_deploy["first"] and versions[-1] == local_deploy["newest"]
    record = json.loads((local_deploy["dist"] / "deploy.json").read_text())
    assert record["release"] == local_deploy["newest"]
    local_deploy["undeploy"].check()
    assert not local_deploy["port_open_after"]
    functions = subprocess.run(
        [
            "podman",
            "ps",
            "-a",
            "--filter",
            "label=r-lambda.local_function",
            "--format",
            "{{.Names}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert functions == []
