"""plugins/connection/podman.py: containers.podman.podman with pipelining. Ansible sends a
pipelined module on the standard input of `podman exec`, which reaches the container's
process only with --interactive; on a running runc container a task is one `runc exec`."""

from __future__ import annotations

import json
import subprocess

from ansible.plugins.connection import ConnectionBase
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


# --- runc: a task is one runc exec, copies go through the container's root filesystem ---


class FakeContext:
    remote_addr = "r-lambda-run-build"
    remote_user = None


def connection_with_state(monkeypatch, tmp_path, *, user=None, runc="/usr/sbin/runc"):
    """A connection whose container is running under runc (its state in tmp_path/runc),
    with podman's inspect recorded instead of run."""
    from ansible_collections.r_lambda.release.plugins.connection import podman as plugin

    rootfs = tmp_path / "rootfs"
    (rootfs / "tmp").mkdir(parents=True)
    state = tmp_path / "runc" / "c0ffee"
    state.mkdir(parents=True)
    state.joinpath("state.json").write_text(json.dumps({"config": {"rootfs": str(rootfs)}}))
    monkeypatch.setattr(plugin, "RUNC_ROOT", tmp_path / "runc")
    monkeypatch.setattr(plugin.C, "DEFAULT_LOCAL_TMP", str(tmp_path / "local"))
    monkeypatch.setattr(plugin.shutil, "which", lambda name, path=None: runc)
    seen = calls(monkeypatch)

    def inspect(self, cmd, cmd_args=None, in_data=None, use_container_id=True):
        seen.append((cmd, cmd_args, in_data))
        return 0, b"c0ffee\n", b""

    monkeypatch.setattr(UpstreamConnection, "_podman", inspect)
    connection = Connection.__new__(Connection)
    connection._container_id = FakeContext.remote_addr
    connection.user = user
    connection._mount_point = None
    connection._connected = True
    connection._play_context = FakeContext()
    return connection, rootfs, seen


def test_a_task_on_a_runc_container_is_one_runc_exec_with_its_input(monkeypatch, tmp_path) -> None:
    connection, _, seen = connection_with_state(monkeypatch, tmp_path)
    ran = []

    def run(argv, input=None, capture_output=False, check=False):
        ran.append((argv, input))
        return subprocess.CompletedProcess(argv, 3, b"out", b"err")

    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(ConnectionBase, "exec_command", lambda *a, **k: None)
    assert connection.exec_command("/bin/sh -c 'python3 && echo done'", in_data=b"module") == (
        3, b"out", b"err",
    )  # fmt: skip
    assert ran == [
        (["/usr/sbin/runc", "--root", str(tmp_path / "runc"), "exec", "c0ffee",
          "/bin/sh", "-c", "python3 && echo done"], b"module"),
    ]  # fmt: skip
    # The id is learnt once per playbook run: a second connection does not ask podman.
    again = Connection.__new__(Connection)
    again.__dict__.update({k: v for k, v in connection.__dict__.items() if k != "_runc"})
    again.exec_command("true")
    assert [call[0] for call in seen] == ["inspect"]


def test_files_go_in_and_out_through_the_containers_root_filesystem(monkeypatch, tmp_path) -> None:
    connection, rootfs, seen = connection_with_state(monkeypatch, tmp_path)
    monkeypatch.setattr(ConnectionBase, "put_file", lambda *a, **k: None)
    monkeypatch.setattr(ConnectionBase, "fetch_file", lambda *a, **k: None)
    source = tmp_path / "module.py"
    source.write_text("print(1)\n")
    connection.put_file(str(source), "/tmp/module.py")
    assert (rootfs / "tmp" / "module.py").read_text() == "print(1)\n"
    connection.fetch_file("/tmp/module.py", str(tmp_path / "back.py"))
    assert (tmp_path / "back.py").read_text() == "print(1)\n"
    assert [call[0] for call in seen] == ["inspect"]  # no podman mount, no podman cp


def test_a_remote_user_or_no_runc_takes_podman_exec(monkeypatch, tmp_path) -> None:
    for options in ({"user": "nobody"}, {"runc": None}):
        connection, _, seen = connection_with_state(
            monkeypatch, tmp_path / next(iter(options)), **options
        )
        assert connection._runc_state() is None
        upstream = []
        monkeypatch.setattr(
            UpstreamConnection,
            "exec_command",
            lambda self, cmd, upstream=upstream, **k: upstream.append(cmd) or (0, b"", b""),
        )
        connection.exec_command("true")
        assert upstream == ["true"] and seen == []
