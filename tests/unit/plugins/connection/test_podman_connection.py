"""plugins/connection/podman.py: containers.podman.podman with pipelining. Ansible sends a
pipelined module on the standard input of `podman exec`, which reaches the container's
process only with --interactive."""

from __future__ import annotations

from ansible_collections.containers.podman.plugins.connection.podman import (
    Connection as UpstreamConnection,
)
from ansible_collections.r_lambda.release.plugins.connection.podman import Connection


def calls(monkeypatch) -> list[tuple]:
    seen: list[tuple] = []

    def record(self, cmd, cmd_args=None, in_data=None, use_container_id=True):
        seen.append((list(cmd) if not isinstance(cmd, str) else cmd, cmd_args, in_data))
        return 0, b"", b""

    monkeypatch.setattr(UpstreamConnection, "_podman", record)
    return seen


def test_it_declares_pipelining_which_upstream_declines() -> None:
    assert (Connection.has_pipelining, UpstreamConnection.has_pipelining) == (True, False)
    assert Connection.transport == "r_lambda.release.podman"


def test_an_exec_with_input_keeps_the_standard_input_open(monkeypatch) -> None:
    seen = calls(monkeypatch)
    connection = Connection.__new__(Connection)
    connection._podman(["exec", "--user", "nobody"], ["python3"], b"module source")
    connection._podman(["exec"], ["true"], None)
    connection._podman("mount", None, None)
    assert seen == [
        (["exec", "--interactive", "--user", "nobody"], ["python3"], b"module source"),
        (["exec"], ["true"], None),
        ("mount", None, None),
    ]
