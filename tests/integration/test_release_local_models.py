"""Releases of other models on the local platform: two releases at once into one bucket
(one of them the 2017 procedure's own model), and a model the handler cannot serve.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
from pathlib import Path

import pytest
from release_runs import REPO
from release_support import (
    assert_no_hosts_left,
    assert_release_intact,
    keys,
    read_json,
    run_playbook,
    s3_client,
)

pytestmark = pytest.mark.slow


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
        [
            "Rscript",
            str(REPO / "tests/handler/fit_model_kinds.R"),
            str(REPO / "handler/model/binary.csv"),
            str(tmp_path),
            "random_forest",
        ],
        check=True,
        capture_output=True,
        timeout=120,
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
