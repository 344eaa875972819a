"""artifact_store's conditional writes against a real S3 API (a moto server over HTTP).

The release's own runs prove the same on SeaweedFS (tests/integration/test_release_faults.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import threading
import time
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[4]
SPEC = importlib.util.spec_from_file_location(
    "artifact_store_s3", REPO / "plugins/modules/artifact_store_s3.py"
)
s3mod = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(s3mod)


@pytest.fixture
def store(moto_endpoint, request):
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    bucket = "store-" + hashlib.md5(request.node.name.encode()).hexdigest()[:12]
    client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return s3mod.Store(client, bucket)


def keys(store) -> list[str]:
    return sorted(store.keys(""))


def test_one_run_holds_the_lock_and_a_second_is_refused_until_it_is_released(store) -> None:
    first = store.lock("run-a", "v1", 60, {"user": "ops"})
    assert first["acquired"] and first["taken_from"] is None
    second = store.lock("run-b", "v2", 60, {})
    assert not second["acquired"] and second["holder"]["run_id"] == "run-a"
    assert store.lock("run-a", "v1", 60, {})["acquired"]  # the holder may ask again

    assert store.release("run-a", rollback=False)["held"]
    assert store.lock("run-b", "v2", 60, {})["acquired"]


def test_runs_racing_for_the_lock_get_it_exactly_once(store) -> None:
    results = {}

    def take(run: str) -> None:
        results[run] = store.lock(run, run, 60, {})["acquired"]

    threads = [threading.Thread(target=take, args=(f"run-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results.values()) == 1
    lock = json.loads(store.read(store.lock_key)[0])
    assert results[lock["run_id"]]


def test_an_expired_lock_is_taken_over_and_its_runs_writes_rolled_back(store) -> None:
    store.lock("run-old", "v0", 60, {})
    store.put("run-old", "releases/v0/admission.zip", b"zip")
    # Another run's object that run-old only reused (same bytes) must stay.
    store.release("run-old", rollback=False)
    store.lock("run-shared", "v9", 60, {})
    store.put("run-shared", "layers/L1/layer.zip", b"layer")
    store.release("run-shared", rollback=False)
    store.lock("run-old2", "v1", 0, {})  # a run whose lock expires at once
    store.put("run-old2", "releases/v1/admission.zip", b"zip1")
    assert store.put("run-old2", "layers/L1/layer.zip", b"layer")["created"] is False
    lock = json.loads(store.read(store.lock_key)[0])
    lock["expires_at"] = "2000-01-01T00:00:00Z"
    store.client.put_object(Bucket=store.bucket, Key=store.lock_key, Body=json.dumps(lock))

    taken = store.lock("run-new", "v2", 60, {})

    assert taken["acquired"] and taken["taken_from"]["run_id"] == "run-old2"
    assert taken["rolled_back"]["deleted"] == ["releases/v1/admission.zip"]
    assert "layers/L1/layer.zip (written by another run)" in taken["rolled_back"]["kept"]
    assert "releases/v1/admission.zip" not in keys(store)
    assert "layers/L1/layer.zip" in keys(store)


def test_a_run_that_lost_its_lock_writes_nothing(store) -> None:
    store.lock("run-a", "v1", 60, {})
    store.release("run-a", rollback=False)
    store.lock("run-b", "v2", 60, {})
    with pytest.raises(s3mod.Refused, match=r"run run-a no longer holds the lock.*by run run-b"):
        store.put("run-a", "releases/v1/admission.zip", b"zip")
    assert "releases/v1/admission.zip" not in keys(store)


def test_immutable_keys_are_created_once_and_never_overwritten(store) -> None:
    store.lock("run-a", "v1", 60, {})
    first = store.put("run-a", "releases/v1/admission.zip", b"zip")
    assert first["created"] and first["sha256"] == hashlib.sha256(b"zip").hexdigest()
    again = store.put("run-a", "releases/v1/admission.zip", b"zip")
    assert again == dict(again, created=False, changed=False)
    with pytest.raises(s3mod.Refused, match=r"exists with sha256 .* releases are immutable"):
        store.put("run-a", "releases/v1/admission.zip", b"other bytes")
    body, _, metadata = store.read("releases/v1/admission.zip")
    assert body == b"zip" and metadata == {"sha256": first["sha256"], "run-id": "run-a"}


def test_a_rollback_keeps_a_layer_another_release_names(store) -> None:
    store.lock("run-a", "v1", 60, {})
    store.put("run-a", "layers/L1/layer.zip", b"layer")
    store.put("run-a", "releases/v1/manifest.json", json.dumps({"layer": {"id": "L1"}}).encode())
    # A second release of the same layer was promoted meanwhile (as a failed, then retried
    # run would leave it): its manifest names L1.
    store.client.put_object(
        Bucket=store.bucket,
        Key="releases/v2/manifest.json",
        Body=json.dumps({"layer": {"id": "L1"}, "status": "verified"}),
    )

    rolled_back = store.release("run-a", rollback=True)["rolled_back"]

    assert rolled_back["deleted"] == ["releases/v1/manifest.json"]
    assert rolled_back["kept"] == ["layers/L1/layer.zip (release v2 uses it)"]
    assert json.loads(store.read(store.lock_key)[0])["state"] == "released"


@pytest.mark.parametrize("how", ["reaped", "lock taken over"])
@pytest.mark.parametrize("gap", ["manifest verified", "latest.json moved"])
def test_a_release_promoted_before_its_run_died_is_never_rolled_back(
    store, gap: str, how: str
) -> None:
    """The run dies after the store says the release is promoted (a verified manifest, or
    latest.json naming it) but before its own record says so: the reaper, or another run
    taking over its expired lock, rolls the run back, and every object stays."""
    store.lock("run-a", "v1", 0 if how == "lock taken over" else 60, {})
    for name in ("admission.zip", "admission.rds"):
        store.put("run-a", f"releases/v1/{name}", name.encode())
    verified = gap == "manifest verified"
    manifest = {"version": "v1", "status": "verified" if verified else "candidate"}
    store.put("run-a", "releases/v1/manifest.json", json.dumps(manifest).encode())
    if gap == "latest.json moved":
        store.move_latest("run-a", {"version": "v1", "created_at": "2026-12-07T00:00:00Z"})
    before = keys(store)

    if how == "reaped":
        rolled_back = store.release("run-a", rollback=True)["rolled_back"]
    else:  # the lock expired (ttl 0) while run-a was dead; run-b takes it over
        time.sleep(1.1)
        taken = store.lock("run-b", "v2", 60, {})
        assert taken["acquired"] and taken["taken_from"]["run_id"] == "run-a"
        rolled_back = taken["rolled_back"]

    reason = "release v1 is verified" if verified else "latest.json names release v1"
    names = ("manifest.json", "admission.rds", "admission.zip")  # newest first
    assert rolled_back == {"deleted": [], "kept": [f"releases/v1/{n} ({reason})" for n in names]}
    assert keys(store) == before
    if how == "lock taken over":  # the lock's own key changed hands; nothing else did
        assert json.loads(store.read(store.lock_key)[0])["run_id"] == "run-b"


def test_a_release_is_trusted_only_when_verified_and_every_object_has_its_bytes(store) -> None:
    zip_sha = hashlib.sha256(b"zip").hexdigest()
    manifest = {"version": "v1", "status": "verified",
                "zip": {"key": "releases/v1/admission.zip", "sha256": zip_sha},
                "model": {"key": "releases/v1/admission.rds", "sha256": "0" * 64,
                          "source": {"sha256": "not an object"}}}
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/manifest.json",
                            Body=json.dumps(manifest))
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/admission.zip", Body=b"zip")

    assert store.check("v1") == [f"s3://{store.bucket}/releases/v1/admission.rds does not exist"]
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/admission.rds", Body=b"rds")
    assert store.check("v1") == [f"s3://{store.bucket}/releases/v1/admission.rds does not have "
                                 f"the sha256 its manifest records ({'0' * 64})"]
    manifest["model"]["sha256"] = hashlib.sha256(b"rds").hexdigest()
    manifest["status"] = "candidate"
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/manifest.json",
                            Body=json.dumps(manifest))
    assert store.check("v1") == ["its manifest is candidate, not verified"]
    manifest["status"] = "verified"
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/manifest.json",
                            Body=json.dumps(manifest))
    assert store.check("v1") == []
    assert store.check("v2") == [
        f"its manifest s3://{store.bucket}/releases/v2/manifest.json does not exist"]
    assert store.check("../v1") == ["its version '../v1' is not a release version"]


def test_latest_never_moves_to_an_older_release(store) -> None:
    store.lock("run-a", "v2", 60, {})
    newer = {"version": "v2", "created_at": "2026-11-30T12:00:00Z"}
    older = {"version": "v1", "created_at": "2026-11-30T11:00:00Z"}
    assert store.move_latest("run-a", newer)["moved"]
    kept = store.move_latest("run-a", older)
    assert not kept["moved"] and kept["latest"]["version"] == "v2"
    assert json.loads(store.read("releases/latest.json")[0])["version"] == "v2"


def _release(store, version: str, layer: str, created_at: str, status: str = "verified") -> None:
    manifest = {"layer": {"id": layer}, "status": status, "created_at": created_at}
    store.client.put_object(
        Bucket=store.bucket, Key=f"releases/{version}/manifest.json", Body=json.dumps(manifest)
    )
    store.client.put_object(Bucket=store.bucket, Key=f"layers/{layer}/layer.zip", Body=b"z")
    store.client.put_object(Bucket=store.bucket, Key=f"layers/{layer}/manifest.json", Body=b"{}")


def test_gc_removes_only_layers_no_recent_release_uses_and_only_when_told(store) -> None:
    _release(store, "v1", "L1", "2026-11-01T00:00:00Z")
    _release(store, "v2", "L2", "2026-11-02T00:00:00Z")
    _release(store, "v3", "L3", "2026-11-03T00:00:00Z")
    _release(store, "v4", "L4", "2026-11-04T00:00:00Z", status="candidate")
    store.client.put_object(Bucket=store.bucket, Key="layers/L9/layer.zip", Body=b"orphan")
    store.lock("gc-1", "gc", 60, {})

    dry = store.gc("gc-1", keep=1, apply=False)
    assert dry["unused"] == ["L1", "L2", "L9"] and not dry["changed"]
    assert "layers/L1/layer.zip" in keys(store)

    applied = store.gc("gc-1", keep=1, apply=True)
    assert applied["kept"] == {"L3": ["v3"], "L4": ["v4"]}
    assert [k for k in keys(store) if k.startswith("layers/")] == [
        "layers/L3/layer.zip",
        "layers/L3/manifest.json",
        "layers/L4/layer.zip",
        "layers/L4/manifest.json",
    ]


def test_gc_keeps_the_layer_of_any_release_ever_deployed(store) -> None:
    """An old release a live alias may still use (it has a deploys.jsonl) keeps its layer,
    however many releases came after it."""
    _release(store, "v1", "L1", "2026-11-01T00:00:00Z")
    _release(store, "v2", "L2", "2026-11-02T00:00:00Z")
    _release(store, "v3", "L3", "2026-11-03T00:00:00Z")
    store.append("releases/v1/deploys.jsonl", {"alias": "live", "function_version": "1"})
    store.lock("gc-1", "gc", 60, {})

    applied = store.gc("gc-1", keep=1, apply=True)

    assert applied["unused"] == ["L2"]
    assert applied["kept"] == {"L1": ["v1"], "L3": ["v3"]}
    assert "layers/L1/layer.zip" in keys(store) and "layers/L2/layer.zip" not in keys(store)


def test_gc_needs_the_lock(store) -> None:
    with pytest.raises(s3mod.Refused, match="no longer holds the lock"):
        store.gc("gc-2", keep=1, apply=True)


def test_appends_from_many_writers_at_once_lose_no_line(store) -> None:
    """A deploy's record (deploys.jsonl) grows by conditional puts: 8 writers at once, each
    line kept exactly once, no lock needed."""
    key = "releases/v1/deploys.jsonl"

    def add(i: int) -> None:
        store.append(key, {"deploy": i})

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = store.read(key)[0].decode().splitlines()
    assert sorted(json.loads(line)["deploy"] for line in lines) == list(range(8))
    assert store.append(key, {"deploy": 8})["lines"] == 9


def test_put_files_uploads_each_file_once_and_reads_it_back(store, tmp_path) -> None:
    files = {"admission.zip": tmp_path / "a.zip", "sbom.cdx.json": tmp_path / "sbom.json"}
    files["admission.zip"].write_bytes(b"zip bytes")
    files["sbom.cdx.json"].write_bytes(b"{}")
    store.lock("run-a", "v1", 60, {})
    named = {name: str(path) for name, path in files.items()}

    first = store.put_files("run-a", "releases/v1", named)
    assert first["changed"] and sorted(first["uploaded"]) == [
        "releases/v1/admission.zip", "releases/v1/sbom.cdx.json"]
    digest = hashlib.sha256(b"zip bytes").hexdigest()
    assert first["published"]["releases/v1/admission.zip"] == digest
    assert store.read("releases/v1/admission.zip")[0] == b"zip bytes"

    again = store.put_files("run-a", "releases/v1", named)  # the same bytes: reused
    assert not again["changed"] and again["uploaded"] == []
    assert again["published"] == first["published"]


def test_put_files_names_a_missing_file_and_writes_nothing(store, tmp_path) -> None:
    (tmp_path / "a.zip").write_bytes(b"zip")
    store.lock("run-a", "v1", 60, {})
    gone = re.escape(f"artifact_store_files: {tmp_path}/gone.json does not exist")
    with pytest.raises(s3mod.Refused, match=gone):
        store.put_files("run-a", "releases/v1", {"admission.zip": str(tmp_path / "a.zip"),
                                                  "sbom.cdx.json": str(tmp_path / "gone.json")})
    assert keys(store) == [store.lock_key]


def test_put_files_stops_when_s3_gives_back_other_bytes(store, tmp_path) -> None:
    class Garbling(s3mod.Store):  # a store whose reads come back changed
        def read(self, key):
            body, etag, metadata = super().read(key)
            return (body + b"!" if body and key != self.lock_key else body), etag, metadata

    garbling = Garbling(store.client, store.bucket)
    (tmp_path / "a.zip").write_bytes(b"zip")
    garbling.lock("run-a", "v1", 60, {})
    with pytest.raises(s3mod.Refused, match=r"admission\.zip came back from S3 with sha256 "):
        garbling.put_files("run-a", "releases/v1", {"admission.zip": str(tmp_path / "a.zip")})


def test_read_gives_latest_its_manifest_its_problems_and_a_versions_manifest_at_once(
    store,
) -> None:
    empty = {"changed": False, "bucket_found": True, "latest": {}, "latest_manifest": {},
             "problems": [], "version_manifest": {}}
    assert store.read_latest("") == empty
    manifest = {"version": "v1", "status": "verified",
                "zip": {"key": "releases/v1/admission.zip",
                        "sha256": hashlib.sha256(b"z").hexdigest()}}
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/manifest.json",
                            Body=json.dumps(manifest))
    store.client.put_object(Bucket=store.bucket, Key="releases/v1/admission.zip", Body=b"z")
    latest = {"version": "v1", "manifest": f"s3://{store.bucket}/releases/v1/manifest.json"}
    store.client.put_object(Bucket=store.bucket, Key="releases/latest.json",
                            Body=json.dumps(latest))
    read = store.read_latest("v1")
    assert (read["latest"], read["latest_manifest"], read["problems"]) == (latest, manifest, [])
    assert read["version_manifest"] == manifest
    assert store.read_latest("v2")["version_manifest"] == {}
    # latest.json naming a manifest that is gone: an empty manifest, and the reason
    store.client.delete_object(Bucket=store.bucket, Key="releases/v1/manifest.json")
    read = store.read_latest("")
    assert read["latest_manifest"] == {}
    assert read["problems"] == [
        f"its manifest s3://{store.bucket}/releases/v1/manifest.json does not exist"]


def test_read_names_a_latest_json_that_is_not_json_and_a_missing_bucket(store) -> None:
    store.client.put_object(Bucket=store.bucket, Key="releases/latest.json", Body=b"{half")
    not_json = f"s3://{store.bucket}/releases/latest.json is not JSON"
    with pytest.raises(s3mod.Refused, match=not_json):
        store.read_latest("")
    missing = s3mod.Store(store.client, "no-such-bucket-here")
    assert missing.read_latest("v1") == {
        "changed": False, "bucket_found": False, "latest": {}, "latest_manifest": {},
        "problems": [], "version_manifest": {}}
