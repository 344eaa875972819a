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

# Sandbox files that start no release: run first.
R_FREE_FIRST = ("test_ec2_host_sandbox.py", "test_iam_policy.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in R_FREE_FIRST)  # stable otherwise
