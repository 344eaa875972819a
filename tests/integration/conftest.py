"""Fixtures for tests that run real releases on the local platform.

They drive `ansible-playbook playbooks/release.yml` exactly as ops do, against the real
SeaweedFS S3 and real podman containers, in a bucket of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from local_release_fixtures import first_release as first_release
from local_release_fixtures import local_deploy as local_deploy
from local_release_fixtures import overlapping_releases as overlapping_releases
from release_support import AWS_STATE, empty_and_delete, run_playbook, s3_client, s3_port_open


@pytest.fixture(scope="session")
def bucket() -> Iterator[str]:
    """A bucket of this test session's own; the local S3 is stopped again if we started it."""
    was_running = s3_port_open()
    name = f"r-lambda-it-{uuid.uuid4().hex[:8]}"
    yield name
    if AWS_STATE.joinpath("credentials").exists() and s3_port_open():
        empty_and_delete(s3_client(), name)
    if not was_running:
        run_playbook("playbooks/local_s3.yml", "-e", "local_s3_state=absent", name="stop-s3")
