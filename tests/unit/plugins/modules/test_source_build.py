"""plugins/modules/source_build.py: configure, make, make install into a stage, then a
tarball of the installed tree; steps resume after an interruption; a failure names its
step and shows the end of its log. Runs a small autotools-shaped tree (no compiler)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
MODULE = REPO / "plugins" / "modules" / "source_build.py"
MAKEFILE = """all:
\techo built > program
\techo made >> steps
install:
\tmkdir -p $(DESTDIR)$(PREFIX)/bin
\tcp program $(DESTDIR)$(PREFIX)/bin/program
"""


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    tree = tmp_path / "src"
    tree.mkdir()
    configure = tree / "configure"
    configure.write_text('#!/bin/sh\necho configured >> steps\n'
                         'prefix=${1#--prefix=}\nprintf "PREFIX=%s\\n" "$prefix" > Makefile\n'
                         f"cat >> Makefile <<'EOF'\n{MAKEFILE}EOF\n")
    configure.chmod(0o755)
    return tree


def run(tmp_path: Path, sources: Path, **extra: object) -> dict:
    args = {"chdir": str(sources), "configure": ["--prefix=/opt/tool"], "jobs": 2,
            "stage": str(tmp_path / "stage"), "prefix": "/opt/tool",
            "tarball": str(tmp_path / "tool.tar.gz"), **extra}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, str(MODULE), str(args_file)],
                          capture_output=True, text=True, check=False)
    return json.loads(done.stdout)


def test_the_installed_tree_is_packed_with_the_record_and_step_logs(
    tmp_path: Path, sources: Path
) -> None:
    result = run(tmp_path, sources, record_file=".build.json", record={"version": "1.0"})
    assert result["changed"] is True and sorted(result["seconds"]) == [
        "configure", "install", "make", "pack"]
    with tarfile.open(tmp_path / "tool.tar.gz") as tar:
        assert sorted(tar.getnames()) == [".", "./.build.json", "./bin", "./bin/program"]
        assert {m.uid for m in tar.getmembers()} == {0}
        record = json.load(tar.extractfile("./.build.json"))
    assert record["version"] == "1.0" and sorted(record["seconds"]) == [
        "configure", "install", "make"]
    assert {p.name for p in sources.glob("*.log")} == {"configure.log", "make.log", "install.log"}
    assert not (tmp_path / "tool.tar.gz.part").exists()


def test_a_second_run_resumes_without_repeating_finished_steps(
    tmp_path: Path, sources: Path
) -> None:
    run(tmp_path, sources)
    again = run(tmp_path, sources)
    assert [again["seconds"][s] for s in ("configure", "make", "install")] == [0, 0, 0]
    assert (sources / "steps").read_text() == "configured\nmade\n"


def test_a_failed_step_is_named_with_the_end_of_its_log(tmp_path: Path, sources: Path) -> None:
    (sources / "configure").write_text('#!/bin/sh\necho "all:\n\t@echo cc: error: no such '
                                       'header; exit 2" > Makefile\n')
    result = run(tmp_path, sources)
    assert result["failed"] is True
    assert result["msg"].startswith(f"make failed with exit code 2 in {sources} (make.log)")
    assert "cc: error: no such header" in result["msg"]
    assert not (tmp_path / "tool.tar.gz").exists()


def test_sources_without_configure_are_refused(tmp_path: Path) -> None:
    result = run(tmp_path, tmp_path)
    assert result["failed"] is True and "holds no configure script" in result["msg"]
