"""Deploy on the local platform: make deploy (playbooks/deploy.yml, role local_function)
serves the verified release on a local HTTP endpoint, a redeploy under load drops no
request, make undeploy stops it (fixture local_deploy, local_release_fixtures.py).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from release_support import (
    read_json,
    s3_client,
)

pytestmark = pytest.mark.slow


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
