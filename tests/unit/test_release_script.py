"""scripts/release (make release): a first release on a machine records its wall time.

Run in a copy of the script's checkout layout whose bootstrap, playbook and podman are
stubs: what is tested is the script's own decision, when to record and what.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = """#!/bin/sh
# a promoted release writes its manifest; "unchanged" writes none
[ "$RELEASE_OUTCOME" = unchanged ] && exit 0
mkdir -p dist
printf '{"version": "v9", "phase_seconds": {"plan": 1.0, "build": 2.0}}' > dist/release.json
"""


def _checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    (checkout / "scripts" / "release").write_bytes((REPO / "scripts" / "release").read_bytes())
    (checkout / "scripts" / "bootstrap.sh").write_text("#!/bin/sh\nexit 0\n")
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "ansible-playbook").write_text(PLAYBOOK)
    (venv_bin / "python").symlink_to(sys.executable)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "podman").write_text('#!/bin/sh\n[ -n "$BASE_IMAGE" ] && echo "$BASE_IMAGE"\nexit 0\n')
    for path in [*venv_bin.iterdir(), *(checkout / "scripts").iterdir(), stubs / "podman"]:
        if not path.is_symlink():
            path.chmod(0o755)
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    return checkout


def _release(tmp_path: Path, cache: Path, **env: str) -> subprocess.CompletedProcess:
    checkout = _checkout(tmp_path)
    environ = dict(os.environ, R_LAMBDA_CACHE_DIR=str(cache),
                   PATH=f"{tmp_path / 'stubs'}:{os.environ['PATH']}", **env)
    return subprocess.run([str(checkout / "scripts" / "release"), "-e", "x=1"], env=environ,
                          capture_output=True, text=True, check=True)


def test_a_first_release_on_a_fresh_machine_records_its_time_and_phases(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    result = _release(tmp_path, cache)
    record = json.loads((cache / "first-release.json").read_text())
    assert record["phase_seconds"] == {"plan": 1.0, "build": 2.0}
    assert record["version"] == "v9"
    assert 0 <= record["seconds"] < 60
    assert record["commit"] == "unknown"  # a checkout with no commit: never this commit's
    assert "the first release on this machine took" in result.stdout


@pytest.mark.parametrize("machine", ["virtualenv", "built R", "base image", "unchanged"])
def test_a_release_on_a_machine_that_released_before_records_nothing(
    tmp_path: Path, machine: str
) -> None:
    cache = tmp_path / "cache"
    env = {}
    if machine == "virtualenv":
        (cache / "venvs" / "0123").mkdir(parents=True)
    elif machine == "built R":
        (cache / "r-source").mkdir(parents=True)
        (cache / "r-source" / "R-4.6.1-abc.tar.gz").write_bytes(b"")
    elif machine == "base image":
        env["BASE_IMAGE"] = "0123456789ab"
    else:
        env["RELEASE_OUTCOME"] = "unchanged"
    _release(tmp_path, cache, **env)
    assert not (cache / "first-release.json").exists()
