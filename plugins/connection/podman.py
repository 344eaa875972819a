"""containers.podman.podman with pipelining: one ``podman exec`` per task instead of three.

Without pipelining, every task on a container costs three ``podman exec`` calls (make a
temporary folder, make the module executable, run it and remove the folder), each a new
runc process: about a second per task, minutes per release. With pipelining Ansible sends
the module on the standard input of one ``podman exec --interactive``, as it does over
SSH. The upstream plugin declines pipelining because it never passes its standard input
to the container (no ``--interactive``); this one does, and is otherwise the same plugin.
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

from ansible_collections.containers.podman.plugins.connection.podman import (
    Connection as PodmanConnection,
)


class Connection(PodmanConnection):
    transport = "r_lambda.release.podman"
    has_pipelining = True

    def _podman(self, cmd, cmd_args=None, in_data=None, use_container_id=True):
        if in_data is not None and cmd_args is not None and list(cmd[:1]) == ["exec"]:
            cmd = ["exec", "--interactive", *cmd[1:]]
        return super()._podman(cmd, cmd_args, in_data, use_container_id)
