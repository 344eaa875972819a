"""How the AMI watch is guarded (docs/ami_watch.md, "Scheduling"): scripts/install-ami-watch
and scripts/ami-watch refuse bad input with exit 2 naming it; a second watch skips (or
waits, then skips) while the lock is held, and logs why; the CI workflow runs on the cron
entry's schedule with OIDC credentials only. Files are rendered into tmp_path (--dest).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from schedule_support import (
    INSTALL,
    REPO,
    SKIPPED,
    WATCH,
    WORKFLOW,
    needs_flock,
    run,
)

# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["launchd", "--dest", "{dest}"], "'launchd'"),
        (["cron", "--dest", "{dest}", "--frobnicate"], "'--frobnicate'"),
        (["cron", "--dest", "{dest}", "--", "-i", "inventory/aws", "-e", "x=a b"], "'x=a b'"),
        (
            ["systemd", "--dest", "{dest}", "--user", "no-such-user-r-lambda"],
            "'no-such-user-r-lambda'",
        ),
        # Characters a cron line, the systemd environment file or sed would mangle.
        (["cron", "--dest", "{dest}", "--", "-e", "x=a&b"], "'x=a&b'"),
        (["cron", "--dest", "{dest}", "--", "-e", "x=a|b"], "'x=a|b'"),
        (["cron", "--dest", "{dest}", "--", "-e", "x=50%"], "'x=50%'"),
        (["systemd", "--dest", "{dest}", "--", "-e", 'x="q"'], """'x="q"'"""),
        (["cron", "--dest", "{dest}", "--user"], "--user needs a user name"),
        (["cron", "--dest"], "--dest needs a folder"),
    ],
    ids=[
        "unknown-kind",
        "unknown-option",
        "option-with-space",
        "unknown-user",
        "ampersand",
        "pipe",
        "percent",
        "quote",
        "user-without-name",
        "dest-without-folder",
    ],
)
def test_install_refuses_bad_input(argv: list[str], named: str, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    result = run([INSTALL, *(a.replace("{dest}", str(dest)) for a in argv)])
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert result.stderr.startswith("install-ami-watch: ")
    assert not dest.exists(), "a refused install wrote files"


def watch_env(state: Path, **settings: str) -> dict[str, str]:
    """This environment without AMI_WATCH_* settings, then the state folder and `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMI_WATCH_")}
    return {**env, "AMI_WATCH_STATE_DIR": str(state), **settings}


@pytest.mark.parametrize(
    ("args", "settings", "named", "bad_value"),
    # --syntax-check: were a refusal missing, the playbook would only be parsed, not run.
    [
        (["--wait", "abc", "--syntax-check"], {}, "--wait", "abc"),
        (["--wait"], {}, "--wait", ""),
        (["--syntax-check"], {"AMI_WATCH_KEEP_LOGS": "0"}, "AMI_WATCH_KEEP_LOGS", "0"),
        (["--syntax-check"], {"AMI_WATCH_KEEP_LOGS": "ten"}, "AMI_WATCH_KEEP_LOGS", "ten"),
    ],
    ids=["wait-abc", "wait-missing", "keep-logs-0", "keep-logs-ten"],
)
def test_the_watch_refuses_bad_settings_before_locking(
    args: list[str], settings: dict[str, str], named: str, bad_value: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    result = run([WATCH, *args], env=watch_env(state, **settings))
    assert result.returncode == 2, result.stderr
    assert named in result.stderr
    assert f"'{bad_value}'" in result.stderr
    assert not state.exists(), "the watch took the lock or logged before refusing"


# --- the lock -----------------------------------------------------------------------------


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Path]:
    """AMI_WATCH_STATE_DIR whose lock another process holds until the test ends."""
    state = tmp_path / "state"
    state.mkdir()
    lock = state / "lock"
    holder = subprocess.Popen(
        ["flock", str(lock), "sleep", "60"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        # `flock -n` fails at once while the holder has the lock.
        while run(["flock", "-n", lock, "true"]).returncode == 0:
            assert holder.poll() is None, "the lock holder exited"
            assert time.monotonic() < deadline, "the holder never took the lock"
            time.sleep(0.05)
        yield state
    finally:
        os.killpg(holder.pid, signal.SIGTERM)  # flock and its sleep, which holds the lock too
        holder.wait(timeout=10)


@needs_flock
@pytest.mark.parametrize(
    ("args", "min_seconds"), [([], 0.0), (["--wait", "1"], 1.0)], ids=["no-wait", "wait-1"]
)
def test_a_second_watch_skips_while_the_lock_is_held(
    held_lock: Path, args: list[str], min_seconds: float
) -> None:
    env = watch_env(held_lock)
    start = time.monotonic()
    result = run([WATCH, *args, "--syntax-check"], env=env, timeout=20)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert SKIPPED in result.stderr
    assert min_seconds <= elapsed < min_seconds + 5, f"took {elapsed:.1f} s"
    logs = list((held_lock / "logs").glob("ami-watch-*.log"))
    assert len(logs) == 1, logs
    assert SKIPPED in logs[0].read_text()
    assert not (held_lock / "holder").exists(), "the skipped watch claimed the lock"


@needs_flock
def test_a_quiet_skip_prints_nothing_but_logs(held_lock: Path) -> None:
    env = watch_env(held_lock)
    result = run([WATCH, "--quiet", "--syntax-check"], env=env, timeout=20)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    (log,) = (held_lock / "logs").glob("ami-watch-*.log")
    assert SKIPPED in log.read_text()


# --- CI workflow --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def workflow_steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_the_workflow_never_overlaps_nor_cancels_a_running_watch(
    workflow: dict[str, Any],
) -> None:
    concurrency = workflow["concurrency"]
    assert isinstance(concurrency, dict) and concurrency["group"]
    assert concurrency["cancel-in-progress"] is False


def test_the_workflow_takes_aws_credentials_from_oidc_only(workflow: dict[str, Any]) -> None:
    # Nothing by default; id-token only on the job that takes the role session.
    assert workflow["permissions"] == {}
    [(name, job)] = workflow["jobs"].items()
    assert job["permissions"] == {"id-token": "write", "contents": "read"}, name
    steps = workflow_steps(workflow)
    credentials = [
        i
        for i, step in enumerate(steps)
        if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
    ]
    assert len(credentials) == 1, steps
    settings = steps[credentials[0]].get("with", {})
    assert settings.get("role-to-assume")
    text = WORKFLOW.read_text()
    for stored_key in (
        "aws-access-key-id",
        "aws-secret-access-key",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        assert stored_key not in text
    secrets = re.findall(r"secrets\.([A-Za-z0-9_]+)|secrets\[\s*['\"]([^'\"]+)", text)
    names = [a or b for a, b in secrets]
    assert [n for n in names if re.search(r"AWS|ACCESS|SECRET|KEY", n, re.IGNORECASE)] == []
    watch = [
        i
        for i, step in enumerate(steps)
        if re.search(r"(^|\s)scripts/ami-watch(\s|$)", str(step.get("run", "")))
    ]
    assert len(watch) == 1, steps
    assert credentials[0] < watch[0], "the watch runs before the credentials are set up"


def test_every_action_is_pinned_by_commit(workflow: dict[str, Any]) -> None:
    uses = [str(step["uses"]) for step in workflow_steps(workflow) if "uses" in step]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action


def test_the_documented_oidc_trust_is_the_subject_the_job_presents(
    workflow: dict[str, Any],
) -> None:
    """A job with an environment presents repo:<owner>/<repo>:environment:<name> as its
    subject; the trust policy in docs/ami_watch.md must name exactly that."""
    [job] = workflow["jobs"].values()
    subject = f"repo:<owner>/<repo>:environment:{job['environment']}"
    doc = (REPO / "docs" / "ami_watch.md").read_text()
    assert f'"token.actions.githubusercontent.com:sub": "{subject}"' in doc
    assert '"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"' in doc


def test_a_reinstall_replaces_the_cron_entry_whole(tmp_path: Path) -> None:
    """The file is written aside and moved into place: a second install with other options
    replaces it, and no temporary file is left for cron to read."""
    dest = tmp_path / "cron.d"
    assert run([INSTALL, "cron", "--dest", str(dest), "--", "-i", "inventory/aws"]).returncode == 0
    assert run([INSTALL, "cron", "--dest", str(dest), "--", "--check"]).returncode == 0
    assert [p.name for p in dest.iterdir()] == ["r-lambda-ami-watch"]
    job = (dest / "r-lambda-ami-watch").read_text().splitlines()[-1]
    assert job.endswith("scripts/ami-watch --quiet --check")
