#!/usr/bin/python
"""The release's run records on the controller: who runs, and which runs died.

``start`` writes ``<runs_dir>/<run_id>/run.json``: the run's platform, bucket, version,
region and folders, and its controller process (host, boot, the ansible-playbook pid and
that pid's start time, so that a reused pid is not taken for the run). A run's teardown
removes its folder.
``dead`` lists the records of runs on this controller whose process is gone with the
folder still there: runs killed (SIGKILL, a lost machine) before their teardown. The next
release reaps what each left (role release_reap).
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_runs
short_description: Record a release run on the controller, or list the runs that died
version_added: 1.0.0
description:
  - C(start) writes C(<runs_dir>/<run_id>/run.json) (by a rename), the run's I(record) with its
    controller process (host, boot id, the C(ansible-playbook) pid and that pid's start time, so
    that a reused pid is not taken for the run) and the time it started. A run's teardown
    removes its folder.
  - C(dead) lists the records of the runs on this controller whose process is gone while their
    folder is still there (runs killed before their teardown), so that the next release reaps
    what each left (role C(release_reap)). A record from another machine is never judged here;
    one from an earlier boot of this machine is dead.
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - "Runs on the controller (C(delegate_to: localhost)); reads C(/proc), so Linux only."
  - No check mode.
options:
  action:
    description: Record this run (C(start)) or list the runs that died (C(dead)).
    type: str
    required: true
    choices: [start, dead]
  runs_dir:
    description: The folder of the run records.
    type: path
    required: true
  run_id:
    description: This run (C(start)), or the run to leave out of the list (C(dead)).
    type: str
    required: true
  record:
    description:
      - With C(start), what the record holds besides the controller (platform, bucket, version,
        folders).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Record this run on the controller
  r_lambda.release.release_runs:
    action: start
    runs_dir: "{{ playbook_dir }}/../.state/runs"
    run_id: "{{ release_run_id }}"
    record: {platform: local, bucket: r-lambda-releases, version: "{{ release_version }}"}
  delegate_to: localhost

- name: Find the runs of this controller that died before their teardown
  r_lambda.release.release_runs:
    action: dead
    runs_dir: "{{ playbook_dir }}/../.state/runs"
    run_id: "{{ release_run_id }}"
  register: dead_runs
  delegate_to: localhost
"""

RETURN = r"""
controller:
  description: With C(start), the controller process recorded.
  returned: when action is start
  type: dict
  sample:
    host: ci-1
    boot_id: 6f1c0e1e-5b0c-4c1e-9a57-1d2f3a4b5c6d
    pid: 4242
    pid_started: "123456"
    user: root
run_dir:
  description: With C(start), the run's folder.
  returned: when action is start
  type: str
  sample: /srv/r-lambda/.state/runs/20260101T120000Z-1a2b3c
runs:
  description: With C(dead), the records of the dead runs, each with its C(run_dir).
  returned: when action is dead
  type: list
  elements: dict
  sample:
    - run_id: 20251231T230000Z-9f8e7d
      platform: local
      bucket: r-lambda-releases
      version: 1.3.0
      run_dir: /srv/r-lambda/.state/runs/20251231T230000Z-9f8e7d
"""

import json
import os
import pwd
import socket
from datetime import datetime, timezone
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat from the state on (index 0 is field 3), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the command name may hold spaces


def _playbook_pid() -> int | None:
    """The outermost ansible-playbook process above this module, or None when there is
    none to be found (such a run is never judged dead by its process)."""
    pid, found = os.getpid(), None
    while pid > 1:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            break
        if b"ansible-playbook" in cmdline:
            found = pid
        fields = _stat(pid)
        if fields is None:
            break
        pid = int(fields[1])
    return found


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def controller() -> dict:
    pid = _playbook_pid()
    return {
        "host": socket.gethostname(),
        "boot_id": _boot_id(),
        "pid": pid,
        "pid_started": (_stat(pid) or [""] * 20)[19] if pid else "",
        "user": pwd.getpwuid(os.getuid()).pw_name,
    }


def is_gone(owner: dict, here: dict) -> bool:
    """True when owner ran on this machine since its last boot and its process is gone
    (a record from another machine or boot is never judged here, except a past boot's)."""
    if owner.get("host") != here["host"]:
        return False
    if owner.get("boot_id") != here["boot_id"]:
        return True  # the machine rebooted since: every process of that boot is gone
    if not owner.get("pid"):
        return False  # its process was never known
    fields = _stat(int(owner["pid"]))
    return fields is None or fields[19] != owner.get("pid_started")


def start(runs_dir: Path, run_id: str, record: dict) -> dict:
    folder = runs_dir / run_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    here = controller()
    body = dict(
        record,
        run_id=run_id,
        controller=here,
        started_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    partial = folder / "run.json.partial"
    partial.write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    partial.replace(folder / "run.json")
    return {"changed": True, "controller": here, "run_dir": str(folder)}


def dead(runs_dir: Path, run_id: str) -> dict:
    here, runs = controller(), []
    for path in sorted(runs_dir.glob("*/run.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("run_id") != run_id and is_gone(record.get("controller", {}), here):
            runs.append(dict(record, run_dir=str(path.parent)))
    return {"changed": False, "runs": runs}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "action": {"type": "str", "required": True, "choices": ["start", "dead"]},
            "runs_dir": {"type": "path", "required": True},
            "run_id": {"type": "str", "required": True},
            "record": {"type": "dict", "default": {}},
        },
    )
    params = module.params
    runs_dir = Path(params["runs_dir"])
    if params["action"] == "start":
        module.exit_json(**start(runs_dir, params["run_id"], params["record"]))
    module.exit_json(**dead(runs_dir, params["run_id"]))


if __name__ == "__main__":
    main()
