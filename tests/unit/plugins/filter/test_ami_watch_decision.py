"""The ami_watch role's ami_watch_decision filter: rebuild or not, and why."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_PATH = Path(__file__).resolve().parents[4] / "plugins/filter/ami_watch_filters.py"
_spec = importlib.util.spec_from_file_location("ami_watch_filters", _PATH)
assert _spec is not None and _spec.loader is not None
ami_watch_filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ami_watch_filters)
decide = ami_watch_filters.ami_watch_decision

CURRENT: dict[str, Any] = {
    "id": "ami-0d27e0fb3bac4d724",
    "name": "al2023-ami-2023.6.20241121.0-kernel-6.1-x86_64",
    "source": "ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
}
OTHER_AMI = "ami-0a1b2c3d4e5f60718"
VERSION = "20261126T120000Z-6e3ee72a"
LATEST: dict[str, Any] = {
    "version": VERSION,
    "manifest": f"s3://r-lambda-releases/releases/{VERSION}/manifest.json",
}


def manifest_with_ami(ami_id: str) -> dict[str, Any]:
    return {
        "version": VERSION,
        "status": "verified",
        "ami": {"id": ami_id, "name": "al2023-ami-older", "source": "ssm"},
    }


def expected_fields(released_ami: str | None, released_version: str | None) -> dict[str, Any]:
    return {
        "current_ami": CURRENT["id"],
        "current_ami_name": CURRENT["name"],
        "current_ami_source": CURRENT["source"],
        "released_ami": released_ami,
        "released_version": released_version,
    }


@pytest.mark.parametrize("latest", [None, {}], ids=["latest-None", "latest-empty"])
def test_no_release_yet_means_rebuild(latest: dict[str, Any] | None) -> None:
    decision = decide(CURRENT, latest, manifest_with_ami(CURRENT["id"]))
    assert decision["rebuild"] is True
    assert "no release" in decision["reason"]
    assert decision["released_version"] is None


@pytest.mark.parametrize("manifest", [None, {}], ids=["manifest-None", "manifest-empty"])
def test_a_missing_manifest_means_rebuild(manifest: dict[str, Any] | None) -> None:
    decision = decide(CURRENT, LATEST, manifest)
    assert decision["rebuild"] is True
    assert VERSION in decision["reason"]
    assert "missing or unreadable" in decision["reason"]
    assert decision["released_ami"] is None


@pytest.mark.parametrize(
    "manifest",
    [
        {"version": VERSION, "status": "verified"},
        {"version": VERSION, "ami": {}},
        {"version": VERSION, "ami": {"id": "", "name": "x"}},
    ],
    ids=["no-ami-key", "ami-empty", "ami-id-empty"],
)
def test_a_manifest_without_an_ami_means_rebuild(manifest: dict[str, Any]) -> None:
    decision = decide(CURRENT, LATEST, manifest)
    assert decision["rebuild"] is True
    assert VERSION in decision["reason"]
    assert "records no AMI" in decision["reason"]
    assert decision["released_ami"] is None


def test_another_ami_means_rebuild_and_the_reason_names_both() -> None:
    decision = decide(CURRENT, LATEST, manifest_with_ami(OTHER_AMI))
    assert decision["rebuild"] is True
    assert OTHER_AMI in decision["reason"]
    assert CURRENT["id"] in decision["reason"]
    assert VERSION in decision["reason"]


def test_the_same_ami_means_no_rebuild() -> None:
    decision = decide(CURRENT, LATEST, manifest_with_ami(CURRENT["id"]))
    assert decision["rebuild"] is False
    assert CURRENT["id"] in decision["reason"]


@pytest.mark.parametrize(
    "current",
    [{}, {"id": "", "name": "x", "source": "y"}, {"name": "x", "source": "y"}, {"id": None}],
    ids=["empty", "id-empty", "id-missing", "id-None"],
)
def test_a_current_ami_without_an_id_is_refused(current: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="no id"):
        decide(current, LATEST, manifest_with_ami(OTHER_AMI))


@pytest.mark.parametrize(
    ("latest", "manifest", "released_ami", "released_version"),
    [
        (None, None, None, None),
        ({}, {}, None, None),
        (LATEST, {}, None, VERSION),
        (LATEST, {"version": VERSION}, None, VERSION),
        (LATEST, manifest_with_ami(OTHER_AMI), OTHER_AMI, VERSION),
        (LATEST, manifest_with_ami(CURRENT["id"]), CURRENT["id"], VERSION),
    ],
    ids=["nothing", "empty", "no-manifest", "no-ami", "other-ami", "same-ami"],
)
def test_the_output_carries_exactly_the_amis_and_version(
    latest: dict[str, Any] | None,
    manifest: dict[str, Any] | None,
    released_ami: str | None,
    released_version: str | None,
) -> None:
    decision = decide(CURRENT, latest, manifest)
    assert {k: v for k, v in decision.items() if k not in ("rebuild", "reason")} == expected_fields(
        released_ami, released_version
    )
    assert set(decision) == {*expected_fields(None, None), "rebuild", "reason"}
    assert isinstance(decision["rebuild"], bool)
    assert isinstance(decision["reason"], str) and decision["reason"]


def test_a_current_ami_with_only_an_id_gives_none_for_name_and_source() -> None:
    decision = decide({"id": CURRENT["id"]}, LATEST, manifest_with_ami(CURRENT["id"]))
    assert decision["current_ami_name"] is None
    assert decision["current_ami_source"] is None
    assert decision["rebuild"] is False


def test_the_inputs_are_left_unchanged() -> None:
    current, latest, manifest = dict(CURRENT), dict(LATEST), manifest_with_ami(OTHER_AMI)
    decide(current, latest, manifest)
    assert (current, latest, manifest) == (CURRENT, LATEST, manifest_with_ami(OTHER_AMI))


def test_the_filter_is_registered_under_its_name() -> None:
    assert ami_watch_filters.FilterModule().filters() == {"ami_watch_decision": decide}
