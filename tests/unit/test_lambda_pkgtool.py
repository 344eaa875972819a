"""Tests for src/lambda_pkgtool/ (role lambda_package's package tool): zip, split, sizes,
prune, python-abi.

elf-list and closure are in test_lambda_pkgtool_closure.py, the glibc gate in
test_lambda_pkgtool_glibc.py; what they share in pkgtool_support.py.

The tool runs as a subprocess (`python3 lambda_pkgtool.pyz ...`, the way the role runs it) and,
where handier, its functions are imported from its modules. The glibc family it must never
bundle and Lambda's size limits are the role's (defaults/main.yml), passed as the role
passes them. Shared libraries and programs are built with gcc in tmp_path; the glibc parser
is cross-checked against readelf and objdump on Debian's libR.so and libstdc++.so.6.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from pkgtool_support import (
    ROLE_DEFAULTS,
    Run,
    error_line,
    gcc,
    needs_gcc,
    run_tool,
)

# --------------------------------------------------------------------------- zip

TREE = {
    "handler.py": (b"def handler(event, context):\n    return 1\n", False),
    "R/bin/Rscript": (b'#!/bin/sh\nexec R "$@"\n', True),
    "R/lib/libR.so": (bytes(range(256)) * 40, True),
    "R/library/base/DESCRIPTION": (b"Package: base\n", False),
    "R/etc/Renviron": (b"R_HOME=/var/task/R\n", False),
}


def make_tree(root: Path, names: list[str], plain: int, executable: int, mtime: int) -> None:
    for name in names:
        content, is_exec = TREE[name]
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(executable if is_exec else plain)
        os.utime(path, (mtime, mtime))
    (root / "R" / "lib" / "libR.so.4").symlink_to("libR.so")


def test_zip_is_identical_for_trees_differing_in_order_mtimes_and_umask(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    make_tree(first, sorted(TREE), 0o644, 0o755, 1_700_000_000)
    old = os.umask(0o077)
    try:
        make_tree(second, sorted(TREE, reverse=True), 0o600, 0o700, 1_000_000_000)
    finally:
        os.umask(old)

    one = run_tool("zip", "--root", first, "--out", tmp_path / "one.zip")
    two = run_tool("zip", "--root", second, "--out", tmp_path / "two.zip", umask=0o077)

    assert one.code == two.code == 0, one.err + two.err
    assert one.out["sha256"] == two.out["sha256"]
    assert one.out["sha256"] == hashlib.sha256((tmp_path / "two.zip").read_bytes()).hexdigest()


def test_zip_entries_are_sorted_files_with_fixed_date_and_modes(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    make_tree(root, sorted(TREE), 0o640, 0o750, 1_700_000_000)
    (root / "empty-folder").mkdir()
    out = tmp_path / "pkg.zip"

    run = run_tool("zip", "--root", root, "--out", out, "--level", "6")

    with zipfile.ZipFile(out) as archive:
        infos = archive.infolist()
        linked = archive.read("R/lib/libR.so.4")
    names = [info.filename for info in infos]
    assert run.code == 0, run.err
    assert names == sorted([*TREE, "R/lib/libR.so.4"])
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.create_system for info in infos} == {3}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}
    modes = {info.filename: info.external_attr >> 16 for info in infos}
    assert modes == {
        name: 0o100755 if TREE.get(name, (b"", True))[1] else 0o100644 for name in names
    }
    assert linked == TREE["R/lib/libR.so"][0]
    assert run.out == {
        "path": str(out),
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "zip_bytes": out.stat().st_size,
        "unzipped_bytes": sum(len(c) for c, _ in TREE.values()) + len(TREE["R/lib/libR.so"][0]),
        "file_count": len(TREE) + 1,
        "top_level": sorted({name.split("/")[0] for name in names}),
    }


def test_zip_does_not_include_its_own_output_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    make_tree(root, sorted(TREE), 0o644, 0o755, 1_700_000_000)
    out = root / "package.zip"

    first = run_tool("zip", "--root", root, "--out", out)
    second = run_tool("zip", "--root", root, "--out", out)

    assert first.code == second.code == 0
    assert first.out["sha256"] == second.out["sha256"]
    assert "package.zip" not in zipfile.ZipFile(out).namelist()


def test_zip_fails_on_a_dangling_symlink_and_leaves_no_file(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    make_tree(root, sorted(TREE), 0o644, 0o755, 1_700_000_000)
    (root / "R" / "etc" / "broken").symlink_to("missing-target")
    out = tmp_path / "pkg.zip"

    run = run_tool("zip", "--root", root, "--out", out)

    assert run.code == 2
    assert error_line(run) == (
        "lambda_pkgtool: error: dangling symlink R/etc/broken -> missing-target"
    )
    assert not out.exists()
    assert not out.with_name("pkg.zip.tmp").exists()


# --------------------------------------------------------------------------- split


def package_tree(root: Path) -> None:
    """A one-zip package: handler, model and check at the root with their bytecode, R/, lib/,
    Python modules, a dist-info and a top-level extension module."""
    files = {
        "handler.py": b"import rpy2\n",
        "admission.rds": b"RDS",
        "test_handler.py": b"import handler\n",
        "__pycache__/handler.cpython-311.pyc": b"pyc-handler",
        "__pycache__/test_handler.cpython-311.pyc": b"pyc-test",
        "__pycache__/_cffi_glue.cpython-311.pyc": b"pyc-glue",
        "_cffi_glue.py": b"glue\n",
        "_cffi_backend.cpython-311-x86_64-linux-gnu.so": b"\x7fELF-ish",
        "rpy2/__init__.py": b"",
        "rpy2/__pycache__/__init__.cpython-311.pyc": b"pyc-rpy2",
        "rpy2-3.5.17.dist-info/METADATA": b"Name: rpy2\n",
        "R/lib/libR.so": b"libR",
        "R/library/base/DESCRIPTION": b"Package: base\n",
        "lib/libgfortran.so.5": b"gfortran",
    }
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return archive.namelist()


def run_split(root: Path, out: Path, *function_files: str) -> Run:
    """lambda_pkgtool split: function_files into out/function.zip, the rest into out/layer.zip."""
    return run_tool(
        "split", "--root", root, "--function", *function_files,
        "--layer-out", out / "layer.zip", "--function-out", out / "function.zip",
    )  # fmt: skip


def test_split_puts_the_function_files_in_one_zip_and_the_runtime_in_a_layer(
    tmp_path: Path,
) -> None:
    root, out = tmp_path / "root", tmp_path / "out"
    package_tree(root)
    out.mkdir()
    run = run_split(root, out, "handler.py", "admission.rds", "test_handler.py")
    assert run.code == 0, run.err
    assert zip_names(out / "function.zip") == [
        "__pycache__/handler.cpython-311.pyc",
        "__pycache__/test_handler.cpython-311.pyc",
        "admission.rds",
        "handler.py",
        "test_handler.py",
    ]
    assert zip_names(out / "layer.zip") == [
        "R/lib/libR.so",
        "R/library/base/DESCRIPTION",
        "lib/libgfortran.so.5",
        "python/__pycache__/_cffi_glue.cpython-311.pyc",
        "python/_cffi_backend.cpython-311-x86_64-linux-gnu.so",
        "python/_cffi_glue.py",
        "python/rpy2-3.5.17.dist-info/METADATA",
        "python/rpy2/__init__.py",
        "python/rpy2/__pycache__/__init__.cpython-311.pyc",
    ]
    for part in ("layer", "function"):
        described = run.out[part]
        path = out / f"{part}.zip"
        assert described["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert described["zip_bytes"] == path.stat().st_size
        assert described["file_count"] == len(zip_names(path))
        assert described["top_level"] == sorted({name.split("/")[0] for name in zip_names(path)})
    assert run.out["layer"]["top_level"] == ["R", "lib", "python"]
    # Together they carry exactly the one-zip package's bytes.
    assert run.out["layer"]["unzipped_bytes"] + run.out["function"]["unzipped_bytes"] == sum(
        p.stat().st_size for p in root.rglob("*") if p.is_file()
    )


def test_split_is_deterministic_and_a_model_change_leaves_the_layer_identical(
    tmp_path: Path,
) -> None:
    runs = []
    for name, model in (("first", b"RDS"), ("second", b"RDS, retrained")):
        root, out = tmp_path / name / "root", tmp_path / name / "out"
        package_tree(root)
        (root / "admission.rds").write_bytes(model)
        out.mkdir()
        runs.append(run_split(root, out, "handler.py", "admission.rds"))
    first, second = runs
    assert first.out["layer"]["sha256"] == second.out["layer"]["sha256"]
    assert first.out["function"]["sha256"] != second.out["function"]["sha256"]


def test_split_refuses_a_function_file_that_is_not_there(tmp_path: Path) -> None:
    root = tmp_path / "root"
    package_tree(root)
    run = run_split(root, tmp_path, "handler.py", "model.rds")
    assert run.code == 2
    assert error_line(run) == (
        "lambda_pkgtool: error: --function names files that are not at the package root: model.rds"
    )
    assert not (tmp_path / "layer.zip").exists() and not (tmp_path / "function.zip").exists()


# --------------------------------------------------------------------------- sizes


# The role's size gate: Lambda's direct-upload and unzipped limits, as the role passes them.
ROLE_MAX_ZIP = str(ROLE_DEFAULTS["lambda_package_max_zip_bytes"])
ROLE_MAX_UNZIPPED = str(ROLE_DEFAULTS["lambda_package_max_unzipped_bytes"])


def write_zip(path: Path, size: int, random: bool) -> Path:
    data = os.urandom(size) if random else bytes(size)
    method = zipfile.ZIP_STORED if random else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("blob", data)
    return path


def test_sizes_gate_passes_within_the_lambda_limits(tmp_path: Path) -> None:
    package = write_zip(tmp_path / "small.zip", 3 * 2**20, random=False)

    run = run_tool(
        "sizes", "--zip", package,
        "--max-zip-bytes", ROLE_MAX_ZIP, "--max-unzipped-bytes", ROLE_MAX_UNZIPPED,
    )

    assert run.code == 0, run.err
    assert run.out["ok"] is True
    assert run.out["unzipped_bytes"] == 3 * 2**20
    assert run.out["zip_bytes"] == package.stat().st_size
    assert run.out["file_count"] == 1
    assert (run.out["max_zip_bytes"], run.out["max_unzipped_bytes"]) == (50 * 2**20, 250 * 2**20)


def test_sizes_gate_fails_with_exit_5_naming_the_zipped_limit(tmp_path: Path) -> None:
    package = write_zip(tmp_path / "big.zip", 3 * 2**19, random=True)  # 1.5 MB stored

    run = run_tool(
        "sizes", "--zip", package,
        "--max-zip-bytes", str(2**20), "--max-unzipped-bytes", ROLE_MAX_UNZIPPED,
    )

    assert run.code == 5
    assert run.out["ok"] is False
    assert error_line(run) == (
        "lambda_pkgtool: error: package too large: zipped 1.5 MB > "
        "limit 1.0 MB (Lambda direct-upload limit)"
    )


def test_sizes_gate_fails_with_exit_5_naming_the_unzipped_limit(tmp_path: Path) -> None:
    package = write_zip(tmp_path / "sparse.zip", 3 * 2**20, random=False)

    run = run_tool(
        "sizes", "--zip", package,
        "--max-zip-bytes", ROLE_MAX_ZIP, "--max-unzipped-bytes", str(2 * 2**20),
    )

    assert run.code == 5
    assert error_line(run) == (
        "lambda_pkgtool: error: package too large: unzipped 3.0 MB > "
        "limit 2.0 MB (Lambda unzipped-size limit)"
    )


# --------------------------------------------------------------------------- prune


def write_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        ("../outside/*", "--pattern '../outside/*' must not contain '..'"),
        ("R/../../outside", "--pattern 'R/../../outside' must not contain '..'"),
        ("/etc/*", "--pattern '/etc/*' must be a non-empty path relative to --root"),
        ("", "--pattern '' must be a non-empty path relative to --root"),
    ],
)
def test_prune_refuses_absolute_and_parent_patterns_and_removes_nothing(
    tmp_path: Path, pattern: str, error: str
) -> None:
    root = tmp_path / "pkg"
    write_file(root / "R" / "lib" / "libR.so", 10)
    write_file(tmp_path / "outside" / "keep", 10)

    run = run_tool("prune", "--root", root, "--pattern", "R/lib/*", "--pattern", pattern)

    assert run.code == 2
    assert run.out["error"] == error
    assert files_under(root) == ["R/lib/libR.so"]
    assert (tmp_path / "outside" / "keep").exists()


def test_prune_removes_matching_folders_and_counts_the_bytes(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    for package in ("base", "stats"):
        write_file(root / "R" / "library" / package / "help" / "AnIndex", 10)
        write_file(root / "R" / "library" / package / "html" / "00Index.html", 20)
        write_file(root / "R" / "library" / package / "R" / package, 5)
    write_file(root / "handler" / "__pycache__" / "app.cpython-312.pyc", 7)
    write_file(root / "handler" / "app.py", 4)
    write_file(root / "a" / "b" / "__pycache__" / "c.pyc", 3)

    run = run_tool(
        "prune",
        "--root",
        root,
        "--pattern",
        "R/library/*/help",
        "R/library/*/html",
        "--pattern",
        "**/__pycache__",
    )

    assert run.code == 0, run.err
    assert run.out == {
        "removed": 6,
        "bytes_freed": 2 * 10 + 2 * 20 + 7 + 3,
        "matches": {"R/library/*/help": 2, "R/library/*/html": 2, "**/__pycache__": 2},
    }
    assert files_under(root) == [
        "R/library/base/R/base",
        "R/library/stats/R/stats",
        "handler/app.py",
    ]
    assert not (root / "a" / "b" / "__pycache__").exists()


def test_prune_refuses_a_match_reached_through_a_symlink_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    write_file(tmp_path / "system-etc" / "Renviron", 10)
    write_file(root / "R" / "keep", 1)
    (root / "etc").symlink_to(tmp_path / "system-etc", target_is_directory=True)

    run = run_tool("prune", "--root", root, "--pattern", "R/*", "--pattern", "etc/*")

    assert run.code == 2
    assert "outside --root through a symlinked folder" in run.out["error"]
    assert (tmp_path / "system-etc" / "Renviron").exists()
    assert (root / "R" / "keep").exists()


def test_prune_removes_a_matched_symlink_but_not_its_target(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    write_file(tmp_path / "real.so", 100)
    root.mkdir()
    (root / "link.so").symlink_to(tmp_path / "real.so")

    run = run_tool("prune", "--root", root, "--pattern", "*.so")

    assert run.code == 0, run.err
    assert (run.out["removed"], run.out["bytes_freed"]) == (1, 0)
    assert not (root / "link.so").is_symlink()
    assert (tmp_path / "real.so").exists()


def test_prune_refuses_a_pattern_matching_the_root_itself(tmp_path: Path) -> None:
    write_file(tmp_path / "pkg" / "keep", 1)

    run = run_tool("prune", "--root", tmp_path / "pkg", "--pattern", "**")

    assert run.code == 2
    assert run.out["error"] == "--pattern '**' matches --root itself"
    assert (tmp_path / "pkg" / "keep").exists()


# --------------------------------------------------------------------------- python-abi


def python_tree(root: Path, *names: str) -> Path:
    """A package tree whose extension modules are real shared objects named as given."""
    for name in names:
        if name.endswith(".pyc"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"\x00" * 16)
        else:
            gcc(root / name, "int f(void) { return 0; }\n", shared=True)
    return root


@needs_gcc
def test_python_abi_passes_abi3_and_target_tagged_modules_and_bytecode(tmp_path: Path) -> None:
    root = python_tree(
        tmp_path,
        "_rinterface_cffi_api.abi3.so",
        "_cffi_backend.cpython-313-x86_64-linux-gnu.so",
        "rpy2/rinterface_lib/_bufferprotocol.cpython-313-x86_64-linux-gnu.so",
        "rpy2/__pycache__/__init__.cpython-313.pyc",
        # R's own shared objects carry no Python tag and are not Python's business.
        "R/library/stats/libs/stats.so",
        "lib/libR.so",
    )
    run = run_tool("python-abi", "--root", root, "--python", "3.13")
    assert run.code == 0, run.err
    assert run.out["extensions"] == {"abi3": 1, "cpython-313": 2, "bytecode": 1}
    assert run.out["wrong_python"] == []


@needs_gcc
def test_python_abi_fails_with_exit_6_naming_each_module_of_another_python(tmp_path: Path) -> None:
    root = python_tree(
        tmp_path,
        "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
        "rpy2/rinterface_lib/_bufferprotocol.so",
        "_ok.abi3.so",
    )
    run = run_tool("python-abi", "--root", root, "--python", "3.13")
    assert run.code == 6
    assert run.out["wrong_python"] == [
        "_cffi_backend.cpython-311-x86_64-linux-gnu.so is built for cpython-311, not cpython-313",
        "rpy2/rinterface_lib/_bufferprotocol.so is an extension module with no ABI tag "
        "(only its own Python loads it)",
    ]
    assert "_cffi_backend.cpython-311-x86_64-linux-gnu.so" in error_line(run)


def test_python_abi_fails_on_bytecode_of_another_python(tmp_path: Path) -> None:
    root = python_tree(
        tmp_path,
        "rpy2/__pycache__/__init__.cpython-311.pyc",
        "rpy2/__pycache__/sexp.cpython-313.pyc",
    )
    run = run_tool("python-abi", "--root", root, "--python", "3.13")
    assert run.code == 6
    assert run.out["wrong_python"] == [
        "rpy2/__pycache__/__init__.cpython-311.pyc is bytecode of cpython-311, not cpython-313"
    ]


def test_python_abi_rejects_a_malformed_version(tmp_path: Path) -> None:
    run = run_tool("python-abi", "--root", tmp_path, "--python", "313")
    assert run.code == 2
    assert "--python '313' is not a Python version like 3.13" in error_line(run)
