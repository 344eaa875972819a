"""Shared by every suite: how the slow suites run side by side.

`make test-integration` runs `pytest -m slow -n 2 --dist loadgroup`: the local platform's
tests (tests/integration) and the sandbox's (tests/sandbox) each in a worker of their own,
so they never share a worker's session fixtures (the local S3, the moto server). In the
sandbox's worker the tests that need no R run first, while the local worker builds R.
"""

from __future__ import annotations

import pytest

# Sandbox files that start no release: run first in their worker.
R_FREE_FIRST = ("test_ec2_host_sandbox.py", "test_iam_policy.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in R_FREE_FIRST)  # stable otherwise
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        suite = item.path.parent.name  # integration, sandbox, unit, handler
        item.add_marker(pytest.mark.xdist_group(suite))
