"""The public home's workflows: CI on pull requests and the collection on version tags.

- ci.yml runs .ci/run (the README's `make test`, then `make bench`) on every pull request;
- collection.yml builds the collection on a `v*` tag, checks the tag names galaxy.yml's
  version and keeps the artifact;
- every workflow asks for nothing by default and reads the repository only, and every
  action is pinned by commit (the AMI watch's own checks: test_ami_watch_schedule.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(loaded, dict)
    return loaded


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def runs(workflow: dict[str, Any]) -> str:
    return "\n".join(str(step.get("run", "")) for step in steps(workflow))


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_action_of_every_workflow_is_pinned_by_commit(name: str) -> None:
    for step in steps(load(name)):
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", str(step["uses"])), (name, step)


@pytest.mark.parametrize("name", ["ci.yml", "collection.yml"])
def test_the_workflow_asks_for_nothing_but_reading_the_repository(name: str) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {}
    for job in workflow["jobs"].values():
        assert job["permissions"] == {"contents": "read"}
    for step in steps(workflow):
        if str(step.get("uses", "")).startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
    assert "secrets." not in (WORKFLOWS / name).read_text()


def test_ci_runs_the_readmes_test_command_on_pull_requests() -> None:
    workflow = load("ci.yml")
    assert set(workflow["on"]) == {"pull_request"}
    assert re.search(r"(^|\s)bash \.ci/run$", runs(workflow), re.MULTILINE)
    ci_run = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci_run, re.MULTILINE)
    assert "make test" in (REPO / "README.md").read_text()
    [job] = workflow["jobs"].values()
    assert job["timeout-minutes"] <= 90


def test_the_collection_is_built_on_version_tags_and_kept() -> None:
    workflow = load("collection.yml")
    assert workflow["on"] == {"push": {"tags": ["v*"]}}
    commands = runs(workflow)
    assert "^(ansible-core|" in commands and "> /tmp/galaxy-requirements.txt" in commands
    assert "pip install -q --require-hashes -r /tmp/galaxy-requirements.txt" in commands
    assert "ansible-galaxy collection build --output-path dist/collection ." in commands
    assert "galaxy.yml" in commands  # the tag is checked against its version
    [upload] = [s for s in steps(workflow) if "upload-artifact" in str(s.get("uses", ""))]
    assert upload["with"]["path"] == "dist/collection/*.tar.gz"
    assert upload["with"]["if-no-files-found"] == "error"
