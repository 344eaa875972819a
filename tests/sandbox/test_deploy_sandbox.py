"""Deploys on the sandbox platform (playbooks/deploy.yml) against moto's Lambda API, of a
layered release whose model needs an R package beyond the default set (splines), and of
the first release.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from release_fixtures import FUNCTION, PAGE_ORIGIN, deploys_of
from release_runs import Run
from sandbox_support import (
    BUCKET,
    NOTHING_LEFT,
    Sandbox,
    read_json,
    recorded_requests,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("release_bucket")]


def test_a_spline_model_ships_with_the_r_package_it_needs_and_is_predicted_exactly(
    sandbox: Sandbox, spline_release: tuple[Run, Path]
) -> None:
    """The build host finds that predicting the spline model loads splines and adds it to the
    package's R library; the clean host (no R) predicts it bitwise as the package's R
    predict() does, on the predict path."""
    run, model = spline_release
    run.check()
    assert sandbox.leftovers(run) == NOTHING_LEFT
    manifest = read_json(sandbox, BUCKET, "releases/sbx-spline/manifest.json")
    assert manifest["status"] == "verified"
    assert manifest["model"]["r_packages_added"] == ["splines"]
    assert "splines" in manifest["r_packages"]
    assert manifest["model"]["plan"]["method"] == "predict"
    assert manifest["model"]["source"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert (
        manifest["tests"]["runtime_client"]["passed"],
        manifest["tests"]["runtime_client"]["failed"],
    ) == (5, 0)
    # Base R's packages, splines among them, are in the layer the function zip runs over.
    assert manifest["layout"] == "layer"
    layer = sandbox.client("s3").get_object(Bucket=BUCKET, Key=manifest["layer"]["key"])
    body = layer["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert "R/library/splines/NAMESPACE" in archive.namelist()


def test_a_first_deploy_creates_the_function_publishes_a_version_and_points_the_alias(
    sandbox: Sandbox, deploys: dict
) -> None:
    run, first = deploys["first"], deploys["first_version"]
    run.check()
    manifest = read_json(sandbox, BUCKET, f"releases/{first}/manifest.json")
    config = sandbox.client("lambda").get_function(FunctionName=FUNCTION, Qualifier="1")[
        "Configuration"
    ]
    sha = base64.b64encode(bytes.fromhex(manifest["zip"]["sha256"])).decode()
    assert config["CodeSha256"] == sha  # the verified bytes, as moto computed them
    assert config["Runtime"] == manifest["target_runtime"]["name"] == "python3.13"
    assert config["Handler"] == "handler.lambda_handler"
    assert (config["MemorySize"], config["Architectures"]) == (128, ["x86_64"])
    assert config["Environment"]["Variables"]["MODEL_SHA256"] == manifest["model"]["sha256"]
    assert deploys["alias_after_first"] == "1"
    # The smoke events ran in the stand-in against those bytes before the alias existed.
    assert "Move the alias to the verified version" in run.output
    assert "smoke-standin | Invoke the deployed bytes" in run.output
    [record] = deploys_of(sandbox, first)[:1]
    assert (record["function_version"], record["alias"], record["previous_version"]) == (
        "1",
        "live",
        "",
    )
    assert record["code_sha256"] == manifest["zip"]["sha256"]
    # The release's immutable keys are untouched: the record lives next to them.
    assert read_json(sandbox, BUCKET, f"releases/{first}/manifest.json") == manifest


def test_an_update_publishes_a_new_version_and_moves_the_alias(
    sandbox: Sandbox, deploys: dict
) -> None:
    deploys["update"].check()
    assert deploys["latest_at_update"] == "sbx-spline"  # latest.json's, as no version was given
    assert deploys["alias_after_update"] == "2"
    [line] = deploys_of(sandbox, "sbx-spline")
    assert (line["function_version"], line["previous_version"]) == ("2", "1")


def test_a_function_url_is_optional_public_only_when_asked_and_cors_only_for_its_origins(
    sandbox: Sandbox, deploys: dict
) -> None:
    deploys["update"].check()
    assert deploys["url_after_first"] is None  # off by default
    url = deploys["url_after_update"]
    assert url is not None and url["url"].startswith("https://")
    assert url["auth_type"] == "NONE"
    assert url["cors"] == {
        "AllowOrigins": [PAGE_ORIGIN],
        "AllowMethods": ["POST"],
        "AllowHeaders": ["content-type"],
        "MaxAge": 300,
    }
    public = url["statements"]["r-lambda-function-url-public"]
    invoke = url["statements"]["r-lambda-function-url-invoke"]
    assert (public["Action"], public["Principal"], public["FunctionUrlAuthType"]) == (
        "lambda:InvokeFunctionUrl",
        "*",
        "NONE",
    )
    assert (invoke["Action"], invoke["InvokedViaFunctionUrl"]) == ("lambda:InvokeFunction", True)
    assert public["Resource"].endswith(f":function:{FUNCTION}:live")
    # moto keeps one URL per function whatever the qualifier: the calls must name the alias.
    calls = [
        r
        for r in recorded_requests(sandbox)
        if "r-lambda-deploy_function_url/" in r["headers"].get("User-Agent", "")
    ]
    made = {(r["method"], urlparse(r["url"]).path) for r in calls}
    assert ("POST", f"/2021-10-31/functions/{FUNCTION}/url") in made
    assert ("DELETE", f"/2021-10-31/functions/{FUNCTION}/url") in made  # the rollback's
    assert all(parse_qs(urlparse(r["url"]).query)["Qualifier"] == ["live"] for r in calls)
    record = deploys["deploy_json_after_update"]
    assert (record["endpoint"], record["endpoint_auth_type"]) == (url["url"], "NONE")
    assert [line["endpoint"] for line in deploys_of(sandbox, "sbx-spline")] == [url["url"]]
    assert f"at {url['url']} (public: anyone may call it)" in deploys["update"].output
    # A failed smoke test changes nothing in front of the alias; a deploy without the
    # setting takes the URL and its public statements away.
    assert deploys["url_after_smoke_fails"] == url
    assert deploys["url_after_rollback"] is None


def test_a_failed_smoke_test_leaves_the_alias_where_it_was_and_names_the_event(
    sandbox: Sandbox, deploys: dict
) -> None:
    run = deploys["smoke_fails"]
    assert run.returncode != 0, run.log
    assert "The smoke test of r-lambda-admission version 3" in run.output
    assert "event 'direct call answers P(admit) for gre 800, gpa 4, rank 1'" in run.output
    assert "The alias live stays on version 2" in run.output
    assert deploys["alias_after_smoke_fails"] == "2"
    assert run_standins(run) == []


def run_standins(run: Run) -> list[str]:
    """Stand-in containers left by a deploy (none: they run with --rm)."""
    found = subprocess.run(
        [
            "podman",
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            "label=r-lambda.deploy_run_id",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [n for n in found.stdout.split() if n]


def test_a_layered_release_publishes_its_layer_version_and_the_function_uses_it(
    sandbox: Sandbox, deploys: dict
) -> None:
    """The update deploys the spline release, which is layered."""
    deploys["update"].check()
    manifest = read_json(sandbox, BUCKET, "releases/sbx-spline/manifest.json")
    assert manifest["layout"] == "layer"
    client = sandbox.client("lambda")
    [layer] = client.list_layer_versions(LayerName="r-lambda-admission-r")["LayerVersions"]
    assert layer["Description"] == f"r-lambda layer sha256:{manifest['layer']['sha256']}"
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    live = deploys["alias_after_update"]
    assert live == "2"
    config = client.get_function(FunctionName=FUNCTION, Qualifier=live)["Configuration"]
    assert [item["Arn"] for item in config["Layers"]] == [layer["LayerVersionArn"]]
    digest = base64.b64encode(bytes.fromhex(manifest["function"]["sha256"])).decode()
    assert config["CodeSha256"] == digest  # function.zip, the layer apart
    [line] = deploys_of(sandbox, "sbx-spline")
    assert line["layer_version_arn"] == layer["LayerVersionArn"]


def test_deploying_an_older_version_is_the_rollback(sandbox: Sandbox, deploys: dict) -> None:
    deploys["rollback"].check()
    first = deploys["first_version"]
    manifest = read_json(sandbox, BUCKET, f"releases/{first}/manifest.json")
    live = deploys["alias_after_rollback"]
    assert live == "4"  # a new version of the first release's bytes (3 failed its smoke test)
    config = sandbox.client("lambda").get_function(FunctionName=FUNCTION, Qualifier=live)[
        "Configuration"
    ]
    assert (
        config["CodeSha256"] == base64.b64encode(bytes.fromhex(manifest["zip"]["sha256"])).decode()
    )
    assert deploys_of(sandbox, first)[-1]["previous_version"] == "2"
    assert config.get("Layers", []) == []  # the layered release's layer is detached


def test_a_release_that_is_not_verified_is_refused(sandbox: Sandbox, deploys: dict) -> None:
    run = deploys["unverified"]
    assert run.returncode != 0
    assert "Release sbx-candidate is not verified (status 'candidate')" in run.output
    assert deploys["alias_after_unverified"] == deploys["alias_after_rollback"]
    versions = sandbox.client("lambda").list_versions_by_function(FunctionName=FUNCTION)
    assert len(versions["Versions"]) == 5  # $LATEST and 1-4: nothing published for it
