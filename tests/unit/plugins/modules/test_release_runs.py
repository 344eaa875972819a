"""The release's run records (plugins/modules/release_runs.py): which runs died."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[4]
SPEC = importlib.util.spec_from_file_location(
    "release_runs", REPO / "plugins/modules/release_runs.py"
)
runs = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(runs)


def _record(runs_dir: Path, run_id: str, **controller) -> None:
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    here = runs.controller()
    body = {"run_id": run_id, "platform": "local", "controller": dict(here, **controller)}
    (folder / "run.json").write_text(json.dumps(body))


def _ended_process() -> tuple[int, str]:
    proc = subprocess.Popen(["sleep", "0"])
    started = runs._stat(proc.pid)[19]
    proc.wait()
    return proc.pid, started


def test_start_records_the_run_and_its_controller(tmp_path: Path) -> None:
    result = runs.start(tmp_path, "r1", {"platform": "local", "bucket": "b", "version": "v"})
    record = json.loads((tmp_path / "r1" / "run.json").read_text())
    assert record["run_id"] == "r1" and record["bucket"] == "b"
    assert record["controller"] == result["controller"]
    assert oct((tmp_path / "r1").stat().st_mode & 0o777) == "0o700"


def test_only_runs_whose_process_is_gone_are_dead(tmp_path: Path) -> None:
    pid, started = _ended_process()
    _record(tmp_path, "r-ended", pid=pid, pid_started=started)
    mine = runs._stat(os.getpid())[19]
    _record(tmp_path, "r-alive", pid=os.getpid(), pid_started=mine)
    # The same pid, started at another time: the pid was reused, the run is gone.
    _record(tmp_path, "r-reused", pid=os.getpid(), pid_started=str(int(mine) - 1))
    _record(tmp_path, "r-elsewhere", pid=pid, pid_started=started, host="another-machine")
    _record(tmp_path, "r-rebooted", pid=os.getpid(), pid_started=mine, boot_id="an-old-boot")
    _record(tmp_path, "r-unknown", pid=None, pid_started="")
    _record(tmp_path, "r-me", pid=pid, pid_started=started)

    dead = runs.dead(tmp_path, "r-me")["runs"]

    assert sorted(r["run_id"] for r in dead) == ["r-ended", "r-rebooted", "r-reused"]
    assert all(r["run_dir"] == str(tmp_path / r["run_id"]) for r in dead)


def test_a_playbook_process_is_found_above_the_module(tmp_path: Path) -> None:
    """Run as Ansible runs it (under ansible-playbook, by its FQCN from the checkout as the
    collection r_lambda.release), start names that process."""
    play = tmp_path / "play.yml"
    play.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - r_lambda.release.release_runs:\n"
        f"        {{action: start, runs_dir: '{tmp_path}/runs', run_id: r9}}\n"
    )
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"))
    proc = subprocess.Popen(
        [
            str(Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin/ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(play),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    controller = json.loads((tmp_path / "runs" / "r9" / "run.json").read_text())["controller"]
    assert controller["pid"] == proc.pid
    # That process has ended now: the run is dead.
    assert [r["run_id"] for r in runs.dead(tmp_path / "runs", "")["runs"]] == ["r9"]
