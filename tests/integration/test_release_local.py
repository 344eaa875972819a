"""The project's first release on the local platform: podman hosts, SeaweedFS, the real
playbook (fixture first_release, local_release_fixtures.py).

What a release promises: a verified package in S3 with the manifest and SBOM ops need,
built for Lambda's Python 3.13 runtime and run under its runtime client on the clean host,
nothing new when nothing changed, and the AMI watch agreeing on the base image.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from release_runs import RELEASE_FILES, REPO, containers
from release_support import (
    keys,
    read_json,
    run_command,
    run_playbook,
    s3_client,
)

pytestmark = pytest.mark.slow

# The R packages the releases are configured to carry.
EXPECTED_R_PACKAGES = set(
    yaml.safe_load((REPO / "playbooks/group_vars/all/package.yml").read_text())[
        "lambda_package_r_packages"
    ]
)


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
        "1.6",
        len(document["components"]),
    )
    components = {c["bom-ref"]: c for c in document["components"]}
    kinds: dict[str, list[dict]] = {}
    for ref, component in components.items():
        kinds.setdefault(ref.split(":", 1)[0], []).append(component)
    # R and Python: their versions, and the pinned source tarballs' URL and sha256.
    r_defaults = yaml.safe_load((REPO / "roles/r_runtime/defaults/main.yml").read_text())
    [r_source] = components["runtime:R"]["externalReferences"]
    r_seen = (components["runtime:R"]["version"], r_source["url"], r_source["hashes"][0]["content"])
    assert r_seen == (
        manifest["r_version"],
        r_defaults["r_runtime_source_url"],
        r_defaults["r_runtime_source_sha256"],
    )
    python_pins = yaml.safe_load((REPO / "roles/target_python/defaults/main.yml").read_text())
    pin = python_pins["target_python_sources"][manifest["python_version"]]
    [python_source] = components["runtime:Python"]["externalReferences"]
    assert (
        components["runtime:Python"]["version"],
        python_source["url"],
        python_source["hashes"][0]["content"],
    ) == (pin["version"], pin["url"], pin["sha256"])
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
