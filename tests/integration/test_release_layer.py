"""Layer-layout releases on the local platform (`lambda_package_layer: true`).

The layer (R, libraries, Python modules) is stored once per content under layers/<id>/;
each release folder holds only function.zip, the model and the manifest. The clean host
unpacks the layer under /opt and the function under /var/task, as Lambda does.
"""

from __future__ import annotations

import hashlib
import io
import signal
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from release_support import (
    assert_no_hosts_left,
    assert_release_intact,
    empty_and_delete,
    keys,
    read_json,
    run_playbook,
    s3_client,
    signal_once_latest_names,
    start_playbook,
)

pytestmark = pytest.mark.slow

LAYER = ("-e", "lambda_package_layer=true")


def release(bucket: str, *extra: str, name: str):
    return run_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}", *LAYER, *extra, name=name
    )


def latest_manifest(client, bucket: str) -> dict:
    latest = read_json(client, bucket, "releases/latest.json")
    return read_json(client, bucket, f"releases/{latest['version']}/manifest.json")


def body_of(client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def extra_file(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    return f'{{"lambda_package_extra_files": ["{path}"]}}'


@pytest.fixture(scope="module")
def layer_bucket(bucket: str) -> Iterator[str]:
    """A bucket of the module's own (the session's bucket holds one-zip releases)."""
    name = f"{bucket}-layer"
    yield name
    empty_and_delete(s3_client(), name)


@pytest.fixture(scope="module")
def first_layer_release(layer_bucket: str) -> dict:
    run = release(layer_bucket, name="release-layer-first").check()
    assert_no_hosts_left(run)
    return latest_manifest(s3_client(), layer_bucket)


def test_a_layer_release_publishes_a_shared_layer_and_a_small_function_zip(
    layer_bucket: str, first_layer_release: dict
) -> None:
    client = s3_client()
    manifest = first_layer_release
    version, layer = manifest["version"], manifest["layer"]

    assert manifest["status"] == "verified"
    assert manifest["layout"] == "layer" and "zip" not in manifest
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert layer["reused"] is False
    assert layer["compatible_runtimes"] == ["python3.13"]
    runtime = manifest["tests"]["runtime_client"]
    assert (runtime["passed"], runtime["failed"]) == (5, 0)
    assert keys(client, layer_bucket, f"releases/{version}/") == sorted(
        f"releases/{version}/{name}"
        for name in (
            "function.zip",
            "admission.rds",
            "sbom.cdx.json",
            "manifest.json",
            "package-test.xml",
            "lambda-runtime.xml",
            "lambda-runtime.json",
        )
    )
    assert keys(client, layer_bucket, "layers/") == [
        f"layers/{layer['id']}/layer.zip",
        f"layers/{layer['id']}/manifest.json",
    ]
    layer_manifest = read_json(client, layer_bucket, layer["manifest_key"])
    assert layer_manifest["status"] == "verified"
    assert layer_manifest["first_release"] == version

    layer_body = body_of(client, layer_bucket, layer["key"])
    function_body = body_of(client, layer_bucket, manifest["function"]["key"])
    assert hashlib.sha256(layer_body).hexdigest() == layer["sha256"]
    assert layer["id"] == layer["sha256"][:16]
    assert hashlib.sha256(function_body).hexdigest() == manifest["function"]["sha256"]
    with zipfile.ZipFile(io.BytesIO(layer_body)) as archive:
        layer_names = archive.namelist()
    with zipfile.ZipFile(io.BytesIO(function_body)) as archive:
        function_names = archive.namelist()
    # rpy2 3.6 is a namespace package: rpy2/ has no __init__.py of its own.
    assert "lib/libR.so" in layer_names and "python/rpy2/rinterface/__init__.py" in layer_names
    # The target's Python parts, under python/ where Lambda puts a layer on sys.path.
    assert any(n.startswith("python/_cffi_backend.cpython-313-") for n in layer_names)
    assert any(n.startswith("python/_rinterface_cffi_api.abi3") for n in layer_names)
    assert "R/library/stats/DESCRIPTION" in layer_names
    assert sorted({name.split("/")[0] for name in layer_names}) == layer["top_level"]
    assert {"handler.py", "test_handler.py", "admission.rds"} <= set(function_names)
    assert not any(name.startswith(("R/", "lib/", "python/")) for name in function_names)
    # The function zip is what a model update ships: kilobytes next to the layer's megabytes.
    assert len(function_body) < 256 * 1024 < 4 * 1024 * 1024 < len(layer_body)


def test_a_function_only_release_reuses_the_layer_and_ctrl_c_once_promoted_keeps_it(
    layer_bucket: str, first_layer_release: dict, tmp_path: Path
) -> None:
    """A function-only change ships function.zip over the shared layer. The run is also
    interrupted (SIGINT to its process group, Ctrl-C) the moment latest.json names it,
    before it records its promotion: its own teardown rolls back, and keeps every object
    (issue 23)."""
    client = s3_client()
    layers_before = keys(client, layer_bucket, "layers/")
    note = extra_file(tmp_path, "release_note.txt", "function-only change\n")
    version = "it-layer-function-only"
    started = start_playbook(
        "playbooks/release.yml", "-e", f"release_bucket={layer_bucket}", *LAYER, "-e", note,
        "-e", f"release_version={version}", name="release-layer-function-only",
    )  # fmt: skip

    run = signal_once_latest_names(started, client, layer_bucket, version, signal.SIGINT)

    assert f"Release run {run.run_id} torn down after SIGINT" in run.output, run.log
    manifest = assert_release_intact(client, layer_bucket, version)
    assert manifest["layer"]["reused"] is True
    assert manifest["layer"]["id"] == first_layer_release["layer"]["id"]
    assert manifest["function"]["sha256"] != first_layer_release["function"]["sha256"]
    assert keys(client, layer_bucket, "layers/") == layers_before
    assert "this release uploads only function.zip" in run.output
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert_no_hosts_left(run)


def test_a_failed_layer_release_removes_its_new_layer_and_keeps_the_shared_one(
    layer_bucket: str, first_layer_release: dict, tmp_path: Path
) -> None:
    client = s3_client()
    before = keys(client, layer_bucket)
    latest_before = read_json(client, layer_bucket, "releases/latest.json")
    failing = extra_file(
        tmp_path,
        "test_zz_injected.py",
        "import unittest\n\n\nclass Injected(unittest.TestCase):\n"
        "    def test_fails(self):\n        self.fail('injected failure')\n",
    )

    # Unstripped libraries make a new layer, which this run uploads before the test fails.
    run = release(
        layer_bucket, "-e", failing, "-e", "lambda_package_strip=false",
        "-e", "release_version=it-layer-fails", name="release-layer-fails",
    )  # fmt: skip

    assert run.returncode != 0
    assert "The clean-host test failed" in run.output
    assert "Uploaded the new layer" in run.output
    assert "injected failure" in run.output
    assert keys(client, layer_bucket) == before
    assert read_json(client, layer_bucket, "releases/latest.json") == latest_before
    assert_release_intact(client, layer_bucket, latest_before["version"])
    assert_no_hosts_left(run)
