"""Fixtures shared by the unit tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest
from moto.server import ThreadedMotoServer

# The checkout is the collection (collections/ansible_collections/r_lambda/release, on
# pytest's pythonpath: pyproject.toml), so that the collection's modules import its
# module_utils as Ansible would ship them.


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto server on a free loopback port (a real AWS API over HTTP), one per module."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def moto_client(moto_endpoint):
    """boto3 clients of the module's moto server: ``moto_client("lambda")``."""

    def make(service: str):
        return boto3.client(
            service,
            endpoint_url=moto_endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    return make
