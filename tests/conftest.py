"""Shared by every suite: the order of the slow tests, and a check that the tools the
virtualenv holds are this checkout's src/. (release_runs.py, the commands the slow suites
run, and the other support modules are on pytest's pythonpath: pyproject.toml.)

`make test` runs the sandbox's slow tests alongside the local platform's (Makefile,
test-platforms). The sandbox's tests that start no release run first, while the local
suite builds R; the ones that need R wait for that build (tests/sandbox/conftest.py).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
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
    # The local platform's, in the order of the releases they share: the first release,
    # then what runs beside it, then the overlapping releases, then the deploy of both.
    "test_release_layer.py",
    "test_release_local.py",
    "test_release_local_hosts.py",
    "test_release_local_models.py",
    "test_release_local_deploy.py",
)
# Reads what every other sandbox test made the playbooks call (moto's recording): last.
LAST = ("test_every_aws_call_the_playbooks_made_is_in_the_iam_policy",)


def stale_tools() -> list[str]:
    """The files of src/'s packages that the virtualenv's copy lacks or holds otherwise."""
    stale = []
    for package in sorted(p.parent for p in SRC.glob("*/__init__.py")):
        spec = importlib.util.find_spec(package.name)
        installed = Path(spec.origin).parent if spec and spec.origin else None
        for source in sorted(package.rglob("*.py")):
            relative = source.relative_to(SRC)
            copy = installed / source.relative_to(package) if installed else None
            if copy is None or not copy.is_file() or copy.read_bytes() != source.read_bytes():
                stale.append(str(relative))
    return stale


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_tools()
    if stale:
        raise pytest.UsageError(
            f"the virtualenv's tools are not this checkout's src/ ({', '.join(stale[:5])}"
            f"{', ...' if len(stale) > 5 else ''}): run `make bootstrap`, which links .venv "
            "to a virtualenv holding them (the sources are part of its digest)"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[bool, int]:
        name = item.path.name
        return item.name in LAST, ORDER.index(name) if name in ORDER else len(ORDER)

    items.sort(key=rank)  # stable: tests keep their order within a file
