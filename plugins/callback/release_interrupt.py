"""Tear a release down when it is interrupted (SIGINT, SIGTERM), before ansible-playbook exits.

An interrupted ansible-playbook runs no ``rescue`` and no ``always``: its hosts would keep
running and what it published would stay in the bucket. This callback (enabled in
ansible.cfg) notes the run id a release announces; on SIGINT or SIGTERM it lets Ansible
stop its workers, runs ``playbooks/reap.yml`` for that one run with the same inventory and
extra vars (the run's hosts, key pair and security group are removed, what it wrote to
the bucket is rolled back while it holds the bucket's lock, its folders are removed), and
exits with 128 + the signal's number (130, 143). A SIGKILL cannot be caught: the next
release finds the dead run by its record and reaps it (role release_reap).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: release_interrupt
type: aggregate
short_description: Tear an interrupted release down (hosts, bucket writes) before exiting
version_added: 1.0.0
description:
  - On SIGINT or SIGTERM during C(playbooks/release.yml), once the release has named its run,
    lets Ansible stop its workers, runs C(playbooks/reap.yml) for that run with the same
    inventory and extra vars (its hosts, key pair and security group removed, what it wrote to
    the bucket rolled back, its folders removed), and exits with 128 + the signal's number.
  - Any other playbook, or a release before it named its run, is interrupted as usual.
author:
  - r-lambda maintainers (!UNKNOWN)
requirements: [enabled in ansible.cfg callbacks_enabled]
"""

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from ansible import context
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "release_interrupt"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.playbook: Path | None = None
        self.run_id: str | None = None
        # Ansible's own handler (TaskQueueManager): passes the signal to the workers and, for
        # SIGINT, raises KeyboardInterrupt; for SIGTERM it kills its own process.
        self.ansible_handler = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._interrupted)
        signal.signal(signal.SIGTERM, self._interrupted)

    def v2_playbook_on_start(self, playbook) -> None:
        path = Path(playbook._file_name)
        if path.name == "release.yml":
            self.playbook = path.resolve()

    def v2_runner_on_ok(self, result) -> None:
        facts = result._result.get("ansible_facts") or {}
        record = facts.get("release_run_record")
        if self.playbook and not self.run_id and isinstance(record, dict) and record.get("run_id"):
            self.run_id = str(record["run_id"]).strip()

    def _interrupted(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not (self.playbook and self.run_id):  # not a release, or before it named its run
            if callable(self.ansible_handler):
                self.ansible_handler(signal.SIGINT, frame)
            raise KeyboardInterrupt
        if callable(self.ansible_handler):
            # Ansible's own: passes the signal to its workers, which stop their tasks. It
            # can fail on a worker that just ended (ValueError "process object is closed",
            # when the signal lands as the strategy starts the next worker): the teardown
            # must run all the same (the reap removes the hosts their tasks were on).
            with contextlib.suppress(KeyboardInterrupt, ValueError):
                self.ansible_handler(signal.SIGINT, frame)
        # A second signal must not stop the teardown half-way.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # The teardown runs here, not at exit: an interrupted ansible-playbook may wait for
        # its threads before exit handlers run.
        self._tear_down(name)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)

    def _tear_down(self, name: str) -> None:
        argv = [sys.executable, sys.argv[0], str(self.playbook.parent / "reap.yml")]
        for inventory in context.CLIARGS.get("inventory") or ():
            argv += ["-i", inventory]
        for extra in context.CLIARGS.get("extra_vars") or ():
            argv += ["-e", extra]
        argv += ["-e", f"reap_run_id={self.run_id}", "-e", "reap_apply=true"]
        say = self._display.display
        say(
            f"Release run {self.run_id} stopped by {name}: removing its hosts and rolling back "
            "what it published (playbooks/reap.yml; further signals are ignored until it is done)",
            stderr=True,
        )
        reaped = subprocess.run(
            argv,
            check=False,
            env=os.environ.copy(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        say(reaped.stdout, stderr=True)
        if reaped.returncode == 0:
            say(
                f"Release run {self.run_id} torn down after {name}: nothing of it is left "
                "running or published; the release did not happen.",
                stderr=True,
            )
        else:
            say(
                f"Tearing down run {self.run_id} failed (exit {reaped.returncode}): run ansible-"
                f"playbook playbooks/reap.yml -e reap_run_id={self.run_id} -e reap_apply=true",
                stderr=True,
            )
