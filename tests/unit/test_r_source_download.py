"""r_runtime's source tarball download (tasks/source-download.yml), run by Ansible on
localhost with file:// URLs: the first of r_runtime_source_url and r_runtime_source_mirrors
that serves the pinned sha256 wins, a URL that is gone or serves other bytes is passed over,
and when none serves it the run stops naming each URL and what went wrong."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PINNED = b"R's source tarball, as pinned\n" * 100


def _run(tmp_path: Path, url: str, mirrors: list[str]) -> subprocess.CompletedProcess:
    download = tmp_path / "sources" / "R-4.6.1-e4149581e151.tar.xz"
    play = [{
        "name": "Download R's source tarball",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [{
            "name": "Run the role's download step",
            "ansible.builtin.include_role": {"name": "r_runtime", "tasks_from": "source-download"},
            "vars": {
                "r_runtime_source_url": url,
                "r_runtime_source_mirrors": mirrors,
                "r_runtime_source_sha256": hashlib.sha256(PINNED).hexdigest(),
                "r_runtime_source_download_dir": str(download.parent),
                "__r_runtime_source_download": str(download),
            },
        }],
    }]
    playbook = tmp_path / "download.yml"
    playbook.write_text(yaml.safe_dump(play, sort_keys=False))
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
        cwd=REPO,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
             "ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_FORCE_COLOR": "0",
             "PATH": f"{BIN}:{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "pinned.tar.xz").write_bytes(PINNED)
    (tmp_path / "other.tar.xz").write_bytes(b"other bytes\n")
    return {name: (tmp_path / f"{name}.tar.xz").as_uri() for name in ("pinned", "other", "gone")}


def test_a_mirror_serves_the_tarball_when_the_url_is_gone_or_serves_other_bytes(
    tmp_path: Path, files: dict[str, str]
) -> None:
    done = _run(tmp_path, files["gone"], [files["other"], files["pinned"]])
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "sources" / "R-4.6.1-e4149581e151.tar.xz").read_bytes() == PINNED


def test_the_url_wins_and_later_mirrors_are_not_downloaded(
    tmp_path: Path, files: dict[str, str]
) -> None:
    done = _run(tmp_path, files["pinned"], [files["other"]])
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "sources" / "R-4.6.1-e4149581e151.tar.xz").read_bytes() == PINNED
    # The mirror's turn finds the pinned bytes already there: nothing fetched, no change.
    assert f"ok: [localhost] => (item={files['other']})" in done.stdout


def test_no_url_serving_the_pinned_bytes_stops_naming_each_url(
    tmp_path: Path, files: dict[str, str]
) -> None:
    done = _run(tmp_path, files["gone"], [files["other"]])
    assert done.returncode != 0
    message = json.dumps(done.stdout)
    assert "No URL served R" in done.stdout
    assert f"{files['gone']}: " in done.stdout and f"{files['other']}: " in done.stdout, message
    assert not (tmp_path / "sources" / "R-4.6.1-e4149581e151.tar.xz").exists()
