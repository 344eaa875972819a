"""What the lambda_pkgtool tests share: the tool run as the role runs it (its zip
application), the role's settings, and real ELF files built with gcc
(tests/unit/test_lambda_pkgtool*.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from zipapps import packed

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "lambda_package"
# The tool as the role runs it on the build host: src/lambda_pkgtool packed into one file.
TOOL = packed("lambda_pkgtool.cli:main", "lambda_pkgtool")
ROLE_DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
# The role's list of libraries never bundled, as the role's closure task passes it.
ROLE_EXCLUDES = [f"--exclude={p}" for p in ROLE_DEFAULTS["lambda_package_exclude_libs"]]
LIBR = Path("/usr/lib/R/lib/libR.so")
LAPACK_MODULE = Path("/usr/lib/R/modules/lapack.so")
LIBSTDCXX = Path("/usr/lib/x86_64-linux-gnu/libstdc++.so.6")
# The interpreter that runs the tool, e.g. a python3.9 like Amazon Linux 2023's.
TOOL_PYTHON = os.environ.get("LAMBDA_PKGTOOL_PYTHON", sys.executable)

# Written out here, independently of the role's exclude patterns.
GLIBC_FAMILY = {
    "linux-vdso.so.1",
    "ld-linux-x86-64.so.2",
    "ld-linux-aarch64.so.1",
    "libc.so.6",
    "libm.so.6",
    "libmvec.so.1",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libutil.so.1",
    "libanl.so.1",
    "libnsl.so.1",
}


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="builds ELF files with gcc")
needs_r = pytest.mark.skipif(not LIBR.is_file(), reason="needs Debian's R (r-base-core)")
needs_binutils = pytest.mark.skipif(
    shutil.which("readelf") is None or shutil.which("objdump") is None,
    reason="cross-checks against binutils",
)


@dataclass
class Run:
    code: int
    out: Any  # the one JSON value on stdout: an object, or elf-list's list
    err: str


def run_tool(*args: str | Path, umask: int = -1) -> Run:
    proc = subprocess.run(
        [TOOL_PYTHON, str(TOOL), *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        check=False,
        umask=umask,
    )
    return Run(proc.returncode, json.loads(proc.stdout), proc.stderr)  # exactly one object


def error_line(run: Run) -> str:
    """The one stderr line a failure ends with."""
    return run.err.splitlines()[-1]


# --------------------------------------------------------------------------- ELF builders


def gcc(out: Path, source: str, *flags: str, shared: bool = False) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / f"{out.name}.src.c"
    src.write_text(source)
    kind = ["-shared", "-fPIC", f"-Wl,-soname,{out.name}"] if shared else []
    subprocess.run(["gcc", "-O0", *kind, "-o", str(out), str(src), *flags], check=True)
    src.unlink()
    return out


def runpath(folder: Path) -> str:
    return f"-Wl,--enable-new-dtags,-rpath,{folder}"


@dataclass
class FooBar:
    """ext/a/libfoo.so -> ext/b/libbar.so, outside the package root."""

    ext: Path
    foo_dir: Path
    bar_dir: Path


def build_foo_bar(tmp_path: Path, foo_runpath: bool) -> FooBar:
    ext = tmp_path / "ext"
    foo_dir, bar_dir = ext / "a", ext / "b"
    gcc(bar_dir / "libbar.so", "int bar(void) { return 42; }\n", shared=True)
    foo_flags = [f"-L{bar_dir}", "-lbar"] + ([runpath(bar_dir)] if foo_runpath else [])
    gcc(
        foo_dir / "libfoo.so",
        "int bar(void);\nint foo(void) { return bar() + 1; }\n",
        *foo_flags,
        shared=True,
    )
    return FooBar(ext=ext, foo_dir=foo_dir, bar_dir=bar_dir)


def build_foo_program(out: Path, libs: FooBar) -> Path:
    source = "int foo(void);\nint main(void) { return foo() == 43 ? 0 : 1; }\n"
    return gcc(
        out,
        source,
        f"-L{libs.foo_dir}",
        "-lfoo",
        runpath(libs.foo_dir),
        f"-Wl,-rpath-link,{libs.bar_dir}",
    )


def ldd_sonames(path: Path) -> set[str]:
    """Every name ldd lists for path (loader and vDSO included), by its last path part."""
    output = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True)
    return {line.split()[0].rsplit("/", 1)[-1] for line in output.stdout.splitlines()}


def run_closure(root: Path, *args: str | Path) -> Run:
    """closure of root into root/lib, excluding what the role excludes (the glibc family)."""
    return run_tool("closure", "--root", root, "--lib-dir", root / "lib", *ROLE_EXCLUDES, *args)


def copied_sonames(run: Run) -> list[str]:
    return [item["soname"] for item in run.out["copied"]]


