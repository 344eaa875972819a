"""containers.podman.podman with pipelining, and without podman on the path of each task.

Without pipelining, every task on a container costs three ``podman exec`` calls (make a
temporary folder, make the module executable, run it and remove the folder), each a new
runc process: about a second per task, minutes per release. With pipelining Ansible sends
the module on the standard input of one ``podman exec --interactive``, as it does over
SSH. The upstream plugin declines pipelining because it never passes its standard input
to the container (no ``--interactive``); this one does.

Each podman command still costs about 0.15 s (its CLI, its database, conmon), and the
upstream plugin runs two per task: ``podman mount`` when it connects, then ``podman exec``.
runc, the OCI runtime podman uses here, runs the same process in the same container (its
namespaces, cgroups, so its memory cap, environment and working folder) in about 0.05 s.
So, when the container is a running runc container (its state under ``/run/runc``) and
no remote user is set, a task is one ``runc exec``, and files are copied through the
container's root filesystem as runc's state names it: no podman command at all, but one
``podman inspect`` per host and playbook run to learn the container's id. Anything else
(another runtime, rootless podman, a remote user) takes the upstream way.
"""

from __future__ import annotations

DOCUMENTATION = """
    author: Tomas Tomecek (@TomasTomecek), r_lambda.release (pipelining)
    name: podman
    short_description: Interact with an existing podman container, with pipelining
    description:
        - containers.podman.podman, whose options it takes, with pipelining
          (one podman exec per task).
    options:
      remote_addr:
        description:
          - The ID of the container you want to access.
        default: inventory_hostname
        vars:
          - name: ansible_host
          - name: inventory_hostname
          - name: ansible_podman_host
      remote_user:
        description:
            - User specified via name or UID which is used to execute commands inside the container.
              If you specify the user via UID, you must set C(ANSIBLE_REMOTE_TMP) to a path that
              exists inside the container and is writable by Ansible.
        ini:
          - section: defaults
            key: remote_user
        env:
          - name: ANSIBLE_REMOTE_USER
        vars:
          - name: ansible_user
      podman_extra_args:
        description:
          - Extra arguments to pass to the podman command line.
        default: ''
        ini:
          - section: defaults
            key: podman_extra_args
        vars:
          - name: ansible_podman_extra_args
        env:
          - name: ANSIBLE_PODMAN_EXTRA_ARGS
      podman_executable:
        description:
          - Executable for podman command.
        default: podman
        vars:
          - name: ansible_podman_executable
        env:
          - name: ANSIBLE_PODMAN_EXECUTABLE
"""

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display
from ansible_collections.containers.podman.plugins.connection.podman import (
    Connection as PodmanConnection,
)

display = Display()

# Where rootful podman's runc keeps the state of running containers.
RUNC_ROOT = Path("/run/runc")


class Connection(PodmanConnection):
    transport = "r_lambda.release.podman"
    has_pipelining = True

    def _podman(self, cmd, cmd_args=None, in_data=None, use_container_id=True):
        if in_data is not None and cmd_args is not None and list(cmd[:1]) == ["exec"]:
            cmd = ["exec", "--interactive", *cmd[1:]]
        return super()._podman(cmd, cmd_args, in_data, use_container_id)

    def _connect(self):
        # No `podman mount` here (upstream mounts on every task): only copies need the
        # container's files, and they find its root filesystem themselves.
        ConnectionBase._connect(self)
        self._connected = True
        return self

    def _runc_state(self) -> dict | None:
        """runc's state of this container ({"id", "config": {"rootfs"...}}), when it is a
        running runc container and runc is on PATH; None otherwise (the upstream way)."""
        if getattr(self, "_runc", None) is not None:
            return self._runc or None
        self._runc = {}
        runc = shutil.which("runc") or shutil.which("runc", path="/usr/sbin:/usr/local/sbin")
        if self.user or runc is None or not RUNC_ROOT.is_dir():
            return None
        # The container's id, once per playbook run (the local temporary folder is the
        # run's): a name that now belongs to another container has another runc state.
        known = Path(C.DEFAULT_LOCAL_TMP) / "r_lambda-podman-ids" / self._container_id
        try:
            container_id = known.read_text().strip()
        except OSError:
            container_id = ""
        if not container_id or not (RUNC_ROOT / container_id / "state.json").is_file():
            rc, out, _err = super()._podman("inspect", ["--format", "{{.Id}}"])
            container_id = out.decode().strip() if rc == 0 else ""
            if not container_id or "/" in container_id:
                return None
            known.parent.mkdir(parents=True, exist_ok=True)
            known.write_text(container_id)
        try:
            state = json.loads((RUNC_ROOT / container_id / "state.json").read_text())
        except (OSError, ValueError):
            return None
        self._runc = {"binary": runc, "id": container_id, "rootfs": state["config"]["rootfs"]}
        return self._runc

    def exec_command(self, cmd, in_data=None, sudoable=False):
        state = self._runc_state()
        if state is None:
            return super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        ConnectionBase.exec_command(self, cmd, in_data=in_data, sudoable=sudoable)
        argv = [state["binary"], "--root", str(RUNC_ROOT), "exec", state["id"], *shlex.split(cmd)]
        display.vvv(f"RUNC EXEC {argv}", host=self._container_id)
        done = subprocess.run(argv, input=in_data, capture_output=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def _in_rootfs(self, path: str) -> str | None:
        state = self._runc_state()
        if state is None:
            return None
        return state["rootfs"] + "/" + os.path.normpath(path).lstrip("/")

    def put_file(self, in_path, out_path):
        target = self._in_rootfs(out_path)
        if target is None:
            return self._upstream_copy(super().put_file, in_path, out_path)
        ConnectionBase.put_file(self, in_path, out_path)
        self._copy("PUT", in_path, out_path, in_path, target)

    def fetch_file(self, in_path, out_path):
        source = self._in_rootfs(in_path)
        if source is None:
            return self._upstream_copy(super().fetch_file, in_path, out_path)
        ConnectionBase.fetch_file(self, in_path, out_path)
        self._copy("FETCH", in_path, out_path, source, out_path)

    def _upstream_copy(self, copy, in_path, out_path):
        """podman's way: through `podman mount` (made now, not on every task) or podman cp."""
        if self._mount_point is None:
            PodmanConnection._connect(self)
        return copy(in_path, out_path)

    def _copy(self, verb: str, in_path: str, out_path: str, source: str, target: str) -> None:
        """One file between the controller and the container's root filesystem."""
        display.vvv(f"{verb} {in_path} TO {out_path}", host=self._container_id)
        try:
            shutil.copyfile(source, target)
        except OSError as err:
            raise AnsibleError(
                f"Failed to {verb.lower()} {in_path} to {out_path} ({self._container_id}): {err}"
            ) from err
