"""`.ci/run`: the README's test command, then the bench only when CI's time left covers it.

Run in a copy of the checkout's layout whose make is a stub that records its targets and
whose bench/run.py is the real one: what is tested is .ci/run's own decision.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Records each call's arguments; `make bench` writes a bench.json as the real one does.
MAKE = """#!/bin/sh
echo "$*" >> "$MAKE_CALLS"
case "$1" in bench) mkdir -p dist; echo '{}' > dist/bench.json ;; esac
exit 0
"""


def _ci_run(tmp_path: Path, limit: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", checkout / ".ci" / "run")
    shutil.copytree(REPO / "bench", checkout / "bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("src", "plugins"):  # bench/run.py's imports
        shutil.copytree(REPO / folder, checkout / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (checkout / ".venv").symlink_to(Path(sys.prefix))  # the virtualenv running this test
    (checkout / "dist").mkdir()
    (checkout / "dist" / "bench.json").write_text('{"left": "by an earlier run"}')
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "make").write_text(MAKE)
    (stubs / "make").chmod(0o755)
    cache = tmp_path / "cache"
    (cache / "r-source").mkdir(parents=True)
    (cache / "r-source" / "R-4.6.1-abc.tar.gz").write_bytes(b"")  # a machine that released
    calls = tmp_path / "calls"
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", MAKE_CALLS=str(calls),
               R_LAMBDA_CACHE_DIR=str(cache), R_LAMBDA_CI_LIMIT_SECONDS=str(limit),
               PYTHONPATH=str(checkout / "src"))
    result = subprocess.run(["bash", str(checkout / ".ci" / "run")], env=env, cwd=checkout,
                            capture_output=True, text=True, check=True)
    return result, calls.read_text().splitlines()


def test_ci_runs_make_test_then_the_bench_when_time_is_left(tmp_path: Path) -> None:
    result, calls = _ci_run(tmp_path, limit=5400)
    assert calls == ["test", "bench"]
    assert "ci: .ci/run took" in result.stdout


def test_ci_skips_the_bench_past_cis_limit_and_keeps_no_old_figure(tmp_path: Path) -> None:
    result, calls = _ci_run(tmp_path, limit=200)  # 5 min spare: nothing is left
    assert calls == ["test"]
    assert "ci: bench skipped" in result.stdout and "R_LAMBDA_CI_LIMIT_SECONDS=200" in result.stdout
    assert not (tmp_path / "checkout" / "dist" / "bench.json").exists()
