"""The bucket policy (roles/artifact_store/templates/bucket-policy.json.j2), evaluated
(iam_support.decide): published objects are write-once for everyone and TLS is required,
and every write the artifact store really sends, with its headers, is allowed."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import yaml
from iam_evaluation import (
    ACCOUNT,
    Request,
    bucket_policy,
    decide,
)
from iam_support import (
    REPO,
    load_policy,
)

# --- The bucket policy: published objects are write-once for everyone ---

BUCKET = "r-lambda-releases"


def _put(key: str, **headers: str) -> Request:
    context = {"aws:ResourceAccount": ACCOUNT, "aws:SecureTransport": True}
    if "if_none_match" in headers:
        context["s3:if-none-match"] = headers["if_none_match"]
    if "if_match" in headers:
        context["s3:if-match"] = headers["if_match"]
    return Request.of("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{key}", context)


def _s3(request: Request, **settings: object) -> str:
    return decide(request, [load_policy()], [bucket_policy(**settings)])


def test_the_bucket_policy_is_write_once_and_tls_only_by_default() -> None:
    sids = [s["Sid"] for s in bucket_policy()["Statement"]]
    assert sids == [
        "DenyRequestsWithoutTls",
        "DenyPutsWithoutAPrecondition",
        "DenyOverwritesOfImmutableObjects",
    ]
    for statement in bucket_policy()["Statement"]:
        assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    for platform in ("local", "sandbox"):  # SeaweedFS unknown, moto cannot evaluate it
        settings = yaml.safe_load(
            (REPO / f"inventory/{platform}/group_vars/all/platform.yml").read_text()
        )
        assert settings["artifact_store_conditional_writes_only"] is False, platform
    aws = yaml.safe_load((REPO / "inventory/aws/group_vars/all/platform.yml").read_text())
    assert "artifact_store_conditional_writes_only" not in aws
    assert (
        bucket_policy(artifact_store_tls_only=False, artifact_store_conditional_writes_only=False)[
            "Statement"
        ]
        == []
    )


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        # Immutable objects: created once (If-None-Match: *), never replaced.
        (_put("releases/v1/admission.zip", if_none_match="*"), "allowed"),
        (_put("releases/v1/admission.zip"), "denied"),
        (_put("releases/v1/admission.zip", if_match='"abc"'), "denied"),
        (_put("releases/v1/admission.rds", if_match='"abc"'), "denied"),
        (_put("layers/0123abcd/layer.zip", if_match='"abc"'), "denied"),
        (_put("layers/0123abcd/layer.zip"), "denied"),
        # The lock and latest.json: replaced only over the ETag read (or created).
        (_put("releases/.lock.json", if_match='"abc"'), "allowed"),
        (_put("releases/.lock.json", if_none_match="*"), "allowed"),
        (_put("releases/.lock.json"), "denied"),
        (_put("releases/latest.json", if_match='"abc"'), "allowed"),
        (_put("releases/latest.json"), "denied"),
        # What a release rewrites: candidate -> verified manifests, deploys.jsonl, results.
        (_put("releases/v1/manifest.json", if_match='"abc"'), "allowed"),
        (_put("releases/v1/manifest.json"), "denied"),
        (_put("layers/0123abcd/manifest.json", if_match='"abc"'), "allowed"),
        (_put("releases/v1/deploys.jsonl", if_match='"abc"'), "allowed"),
        (_put("releases/v1/deploys.jsonl"), "denied"),
        (_put("releases/v1/package-test.xml", if_match='"abc"'), "allowed"),
        # Not a rewritable name anywhere else: no other "latest.json" or "manifest.json".
        (_put("releases/v1/latest.json", if_match='"abc"'), "denied"),
        (_put("other/v1/manifest.json", if_match='"abc"'), "denied"),
    ],
    ids=lambda v: v if isinstance(v, str) else f"{v.resource.split(':::')[1]}:{dict(v.context)}",
)
def test_the_bucket_refuses_unconditional_puts_and_overwrites_of_immutable_objects(
    request_, expected
) -> None:
    assert _s3(request_) == expected


def test_without_the_setting_only_the_client_keeps_objects_immutable() -> None:
    """The setting's point: with it off, the policies allow an overwrite."""
    overwrite = _put("releases/v1/admission.zip")
    assert _s3(overwrite, artifact_store_conditional_writes_only=False) == "allowed"
    assert _s3(overwrite) == "denied"


def test_the_rewritable_names_are_those_the_roles_rewrite() -> None:
    """vars/main.yml's list: the manifest, the append log's default name and promote's
    result files (release_promote); nothing a release publishes with publish."""
    names = yaml.safe_load((REPO / "roles/artifact_store/vars/main.yml").read_text())[
        "__artifact_store_rewritable_names"
    ]
    defaults = yaml.safe_load((REPO / "roles/artifact_store/defaults/main.yml").read_text())
    promote = yaml.safe_load((REPO / "roles/release_promote/tasks/main.yml").read_text())
    results = {
        name
        for task in promote
        for name in task.get("vars", {}).get("artifact_store_result_files", {})
    }
    assert results == {"package-test.xml", "lambda-runtime.xml", "lambda-runtime.json"}
    assert set(names) == {"manifest.json", defaults["artifact_store_append_name"]} | results


@pytest.fixture(scope="module")
def store_writes() -> list[dict]:
    """Every put artifact_store_s3 sends, with its precondition headers, through two runs
    of one version and a deploy record: lock, immutable files, candidate manifest, results,
    verified manifest, latest.json, a layer, unlock; then a second run that tests the same
    version again, moves latest.json and releases; then two deploy lines."""
    import importlib.util

    import boto3
    from moto import mock_aws

    spec = importlib.util.spec_from_file_location(
        "artifact_store_s3", REPO / "plugins/modules/artifact_store_s3.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with mock_aws():
        client = boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        writes: list[dict] = []

        def record(request, **_) -> None:
            if request.method == "PUT":
                writes.append(
                    {
                        # Virtual-hosted style: the path is the key.
                        "key": urlparse(request.url).path.lstrip("/"),
                        "headers": {k.lower(): v for k, v in request.headers.items()},
                    }
                )

        client.meta.events.register("before-send.s3.PutObject", record)
        store = module.Store(client, BUCKET)
        for run, created_at, results in (("run-a", "1", b"<a/>"), ("run-b", "2", b"<b/>")):
            assert store.lock(run, "v1", 60, {})["acquired"]
            store.put(run, "releases/v1/admission.zip", b"zip")
            store.put(run, "layers/0123abcd/layer.zip", b"layer")
            if run == "run-a":  # publish writes no candidate over a verified manifest
                store.put(run, "releases/v1/manifest.json", b"candidate")
                store.put(run, "layers/0123abcd/manifest.json", b"candidate")
            store.put(run, "releases/v1/package-test.xml", results, create_only=False)
            store.put(run, "layers/0123abcd/manifest.json", b"verified", create_only=False)
            store.put(run, "releases/v1/manifest.json", b"verified", create_only=False)
            store.move_latest(run, {"version": "v1", "created_at": created_at})
            store.release(run, rollback=False)
        store.append("releases/v1/deploys.jsonl", {"deploy": 1})
        store.append("releases/v1/deploys.jsonl", {"deploy": 2})
    return writes


def test_every_write_of_the_store_is_allowed_with_the_headers_it_sends(store_writes) -> None:
    assert len(store_writes) > 10
    for write in store_writes:
        headers = write["headers"]
        preconditions = {
            name: headers[header]
            for name, header in (("if_none_match", "if-none-match"), ("if_match", "if-match"))
            if header in headers
        }
        assert preconditions, write  # never unconditional
        assert _s3(_put(write["key"], **preconditions)) == "allowed", write


def test_the_store_rewrites_only_the_objects_the_bucket_policy_names(store_writes) -> None:
    """The writes with If-Match are exactly the lock, latest.json, the manifests, the test
    results and deploys.jsonl: the exceptions the policy states, and each is used."""
    rewritten = {w["key"] for w in store_writes if "if-match" in w["headers"]}
    assert rewritten == {
        "releases/.lock.json",
        "releases/latest.json",
        "releases/v1/manifest.json",
        "layers/0123abcd/manifest.json",
        "releases/v1/package-test.xml",
        "releases/v1/deploys.jsonl",
    }
    created_once = {w["key"] for w in store_writes} - rewritten
    assert {"releases/v1/admission.zip", "layers/0123abcd/layer.zip"} <= created_once
