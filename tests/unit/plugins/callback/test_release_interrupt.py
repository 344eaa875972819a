"""plugins/callback/release_interrupt.py: an interrupted release is torn down, even when
Ansible's own signal handler fails (a race in TaskQueueManager: a worker object that has
just been closed raises ValueError)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from ansible_collections.r_lambda.release.plugins.callback import release_interrupt


@pytest.mark.parametrize("failure", [KeyboardInterrupt, ValueError("process object is closed")])
def test_the_teardown_runs_whatever_ansibles_handler_raises(monkeypatch, failure) -> None:
    callback = release_interrupt.CallbackModule.__new__(release_interrupt.CallbackModule)
    callback.playbook, callback.run_id = Path("/repo/playbooks/release.yml"), "r1-abc"

    def ansible_handler(signum, frame):
        raise failure

    callback.ansible_handler = ansible_handler
    torn: list[str] = []
    exits: list[int] = []
    monkeypatch.setattr(callback, "_tear_down", torn.append, raising=False)
    monkeypatch.setattr(release_interrupt.os, "_exit", exits.append)
    monkeypatch.setattr(release_interrupt.signal, "signal", lambda *args: None)

    callback._interrupted(signal.SIGINT, None)

    assert torn == ["SIGINT"] and exits == [130]


def test_before_the_run_is_named_an_interrupt_is_ansibles_own(monkeypatch) -> None:
    callback = release_interrupt.CallbackModule.__new__(release_interrupt.CallbackModule)
    callback.playbook, callback.run_id = Path("/repo/playbooks/release.yml"), None
    seen: list[int] = []
    callback.ansible_handler = lambda signum, frame: seen.append(signum)
    monkeypatch.setattr(
        callback, "_tear_down", lambda name: pytest.fail("no teardown"), raising=False
    )
    with pytest.raises(KeyboardInterrupt):
        callback._interrupted(signal.SIGTERM, None)
    assert seen == [signal.SIGINT]
