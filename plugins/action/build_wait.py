"""Wait for a long build started in the background, saying how it goes and how long is left.

(The action plugin; its documentation is plugins/modules/build_wait.py.)

A build started with ``async: <seconds>`` and ``poll: 0`` runs on its host while the play
goes on (the target Python compiles while R does). This action polls it, like
``async_status`` in an ``until`` loop, but prints a line a person can read every
``report_every`` seconds instead of "FAILED - RETRYING": what is being built, for how
long, and about how long is left, from the seconds the last build of the same kind took
on this machine (or a stated first-time estimate). It ends like the build's own task: the
build's rc, stdout and stderr, failed when the build failed or outlasted ``timeout``.
"""

from __future__ import annotations

import contextlib
import os
import time

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

# What async_status adds about the job itself, not what the build returned.
ASYNC_KEYS = {"ansible_job_id", "started", "finished", "results_file", "erased", "_ansible_parsed",
              "invocation", "changed", "failed"}


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest:02d} s"


def progress(label: str, elapsed: float, expected: float, expected_from: str) -> str:
    line = f"{label}: {duration(elapsed)} so far"
    if expected > 0:
        left = expected - elapsed
        basis = f" ({expected_from}: {duration(expected)})" if expected_from else ""
        line += (f", about {duration(left)} left{basis}" if left > 0
                 else f", longer than the {duration(expected)} expected{basis}")
    return line


class ActionModule(ActionBase):
    _requires_connection = True

    _async_dir = ""

    def _status(self, jid: str, mode: str, task_vars: dict) -> dict:
        if not self._async_dir:  # one remote look-up of ~, not one per poll
            option = self.get_shell_option("async_dir", default="~/.ansible_async")
            self._async_dir = self._remote_expand_user(option)
        return self._execute_module(module_name="ansible.legacy.async_status", task_vars=task_vars,
                                    module_args={"jid": jid, "mode": mode,
                                                 "_async_dir": self._async_dir})

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _validation, args = self.validate_argument_spec(argument_spec={
            "jid": {"type": "str", "required": True},
            "label": {"type": "str", "required": True},
            "expected_seconds": {"type": "float", "default": 0},
            "expected_from": {"type": "str", "default": ""},
            "started_at": {"type": "float", "default": 0},
            "timeout": {"type": "int", "default": 3600},
            "poll": {"type": "int", "default": 5},
            "report_every": {"type": "int", "default": 30},
            "keep_alive": {"type": "str", "default": ""},
        })
        host = task_vars.get("inventory_hostname", "")
        start = args["started_at"] or time.time()
        next_report = time.time() + args["report_every"]
        while True:
            if args["keep_alive"]:  # the build's claim in the cache: alive while touched
                with contextlib.suppress(FileNotFoundError):
                    os.utime(args["keep_alive"])
            status = self._status(args["jid"], "status", task_vars)
            if status.get("failed") and not status.get("finished"):
                raise AnsibleActionFail(f"the build of {args['label']} (job {args['jid']}) "
                                        f"cannot be followed: {status.get('msg', status)}")
            if status.get("finished"):
                break
            now = time.time()
            if now - start > args["timeout"]:
                raise AnsibleActionFail(f"the build of {args['label']} took longer than timeout="
                                        f"{args['timeout']} s: see its logs on {host}")
            if now >= next_report:
                line = progress(args["label"], now - start, args["expected_seconds"],
                                args["expected_from"])
                display.display(f"  [{host}] {line}")
                next_report = now + args["report_every"]
            time.sleep(args["poll"])
        self._status(args["jid"], "cleanup", task_vars)
        result.update({key: value for key, value in status.items() if key not in ASYNC_KEYS})
        result["changed"] = bool(status.get("changed", True))
        result["elapsed_seconds"] = round(time.time() - start, 1)
        if status.get("failed") or status.get("rc", 0) != 0:
            result["failed"] = True
            detail = (status.get("msg") or status.get("stdout") or status.get("stderr") or "")
            detail = detail.strip()
            result["msg"] = f"the build of {args['label']} failed: {detail[-3000:]}"
        return result
