"""lambda_pkgtool inventory: what a package holds and where each part came from, for the
release's bill of materials. Run as the role runs it, on a package tree made in tmp_path
with a real library of this Debian machine (its owner found by dpkg)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from zipapps import packed

REPO = Path(__file__).resolve().parents[2]
TOOL = packed("lambda_pkgtool.cli:main", "lambda_pkgtool")  # as the role ships it
LIBZ = Path("/usr/lib/x86_64-linux-gnu/libz.so.1")


def inventory(*args: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(TOOL), "inventory", *args],
                          capture_output=True, text=True, check=False)
    return done.returncode, json.loads(done.stdout)


@pytest.fixture()
def package(tmp_path: Path) -> tuple[Path, Path]:
    root, wheels = tmp_path / "root", tmp_path / "wheels"
    (root / "rpy2_rinterface-3.6.7.dist-info").mkdir(parents=True)
    (root / "rpy2_rinterface-3.6.7.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.4\nName: rpy2-rinterface\nVersion: 3.6.7\n\nLong text\n")
    (root / "R" / "library" / "stats").mkdir(parents=True)
    (root / "R" / "library" / "stats" / "DESCRIPTION").write_text(
        "Package: stats\nVersion: 4.6.1\nPriority: base\nLicense: Part of R\n 4.6.1\n")
    (root / "lib").mkdir()
    (root / "handler.py").write_text("def lambda_handler(event, context): ...\n")
    wheels.mkdir()
    (wheels / "rpy2_rinterface-3.6.7.tar.gz").write_bytes(b"sdist")
    (wheels / "setuptools-80.9.0-py3-none-any.whl").write_bytes(b"wheel, build only")
    return root, wheels


def test_distributions_r_packages_and_files_are_listed_with_their_sha256(
        package: tuple[Path, Path]) -> None:
    root, wheels = package
    code, out = inventory("--root", str(root), "--wheels", str(wheels), "--file", "handler.py")
    assert code == 0, out
    assert out["python_distributions"] == [{
        "name": "rpy2-rinterface", "version": "3.6.7", "license": "",
        "file": "rpy2_rinterface-3.6.7.tar.gz", "sha256": hashlib.sha256(b"sdist").hexdigest()}]
    assert out["r_packages"] == [{"name": "stats", "version": "4.6.1",
                                  "license": "Part of R 4.6.1"}]
    assert out["files"] == [{"path": "handler.py", "bytes": 40, "sha256": hashlib.sha256(
        (root / "handler.py").read_bytes()).hexdigest()}]


def test_a_distribution_installed_from_no_file_of_the_wheelhouse_is_an_error(
        package: tuple[Path, Path]) -> None:
    root, wheels = package
    (wheels / "rpy2_rinterface-3.6.7.tar.gz").unlink()
    code, out = inventory("--root", str(root), "--wheels", str(wheels))
    assert code != 0 and "rpy2-rinterface 3.6.7 is installed" in out["error"]


@pytest.mark.skipif(shutil.which("dpkg-query") is None or not LIBZ.exists(),
                    reason="needs a Debian machine with zlib")
def test_a_bundled_library_names_the_debian_package_that_installed_it(
        package: tuple[Path, Path]) -> None:
    root, _ = package
    shutil.copyfile(LIBZ, root / "lib" / "libz.so.1")
    source = os.path.realpath(LIBZ)  # what the closure records: the resolved file
    code, out = inventory("--root", str(root), f"--library=libz.so.1={source}")
    assert code == 0, out
    [library] = out["shared_libraries"]
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "zlib1g"],
                             capture_output=True, text=True, check=True).stdout
    assert library["package"] == {"manager": "dpkg", "name": "zlib1g", "version": version,
                                  "arch": "amd64"}
    assert (library["path"], library["sha256"]) == (
        "lib/libz.so.1", hashlib.sha256(LIBZ.read_bytes()).hexdigest())


def test_a_distribution_whose_dist_info_was_pruned_but_whose_module_ships_is_listed(
        package: tuple[Path, Path], tmp_path: Path) -> None:
    """cffi's dist-info is pruned, its _cffi_backend stays: cffi is in the package. jinja2
    is pruned whole: it is not."""
    root, wheels = package
    shipped = [("cffi", "2.1.1", "_cffi_backend.cpython-313-x86_64-linux-gnu.so"),
               ("jinja2", "3.1.6", "jinja2/__init__.py")]
    for name, version, module in shipped:
        info = root / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
        (info / "RECORD").write_text(f"{module},sha256=x,1\n{info.name}/METADATA,,\n"
                                     f"../../bin/tool,,\n")
        (root / module).parent.mkdir(parents=True, exist_ok=True)
        (root / module).write_bytes(b"module")
        (wheels / f"{name}-{version}-py3-none-any.whl").write_bytes(name.encode())
    saved = tmp_path / "dists.json"
    done = subprocess.run([sys.executable, str(TOOL), "dists", "--root", str(root),
                           "--out", str(saved)], capture_output=True, text=True, check=False)
    assert json.loads(done.stdout)["distributions"] == 3
    shutil.rmtree(root / "cffi-2.1.1.dist-info")  # what lambda_package_prune_extra does
    shutil.rmtree(root / "jinja2-3.1.6.dist-info")
    shutil.rmtree(root / "jinja2")
    code, out = inventory("--root", str(root), "--wheels", str(wheels), "--dists", str(saved))
    assert code == 0, out
    assert [(d["name"], d["sha256"]) for d in out["python_distributions"]] == [
        ("cffi", hashlib.sha256(b"cffi").hexdigest()),
        ("rpy2-rinterface", hashlib.sha256(b"sdist").hexdigest())]
