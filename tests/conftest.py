"""Shared by every suite: the order of the slow tests, and release_runs.py (the commands
the slow suites run) on the import path.

`make test` runs the sandbox's slow tests alongside the local platform's (Makefile,
test-platforms). The sandbox's tests that start no release run first, while the local
suite builds R; the ones that need R wait for that build (tests/sandbox/conftest.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for --import-mode=importlib

# The sandbox's files in this order: first those that start no release (while the local
# suite builds R), then the first release, the interrupted and failed releases (they
# compare with the first release's latest.json, which must still be latest), then the
# deploys, whose spline release becomes latest. Other files keep their order.
ORDER = (
    "test_ec2_host_sandbox.py",
    "test_iam_policy.py",
    "test_ami_watch_sandbox.py",
    "test_release_sandbox.py",
    "test_release_sandbox_failures.py",
    "test_deploy_sandbox.py",
)
# Reads what every other sandbox test made the playbooks call (moto's recording): last.
LAST = ("test_every_aws_call_the_playbooks_made_is_in_the_iam_policy",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[bool, int]:
        name = item.path.name
        return item.name in LAST, ORDER.index(name) if name in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: tests keep their order within a file
