"""Tests for roles/lambda_package/files/lambda_pkgtool/ on real ELF files.

The tool runs as a subprocess (`python3 lambda_pkgtool ...`, the way the role runs it) and,
where handier, its functions are imported from its modules. The glibc family it must never
bundle and Lambda's size limits are the role's (defaults/main.yml), passed as the role
passes them. Shared libraries and programs are built with gcc in tmp_path; the glibc parser
is cross-checked against readelf and objdump on Debian's libR.so and libstdc++.so.6.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

# The tool's modules, imported from the folder that holds the tool (as on the build host).
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "roles/lambda_package/files"))
from lambda_pkgtool.closure import compile_excludes, is_excluded, parse_ldd_output
from lambda_pkgtool.elf import ElfReader, read_file_versions, version_needs
from lambda_pkgtool.glibc import newest, version_key

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "lambda_package"
TOOL = ROLE / "files" / "lambda_pkgtool"
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


# --------------------------------------------------------------------------- elf-list


@needs_gcc
def test_elf_list_names_elf_files_by_magic_and_skips_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    gcc(root / "bin" / "prog", "int main(void) { return 0; }\n")
    gcc(root / "lib" / "libx.so", "int x(void) { return 1; }\n", shared=True)
    (root / "lib" / "fake.bin").write_bytes(b"\x7fELF-but-not-really")
    (root / "lib" / "short.bin").write_bytes(b"\x7fEL")
    (root / "README.txt").write_text("not an ELF file\n")
    (root / "lib" / "libx.so.1").symlink_to("libx.so")
    (root / "linked").symlink_to(root / "bin", target_is_directory=True)

    run = run_tool("elf-list", "--root", root)

    assert run.code == 0
    assert run.out == ["bin/prog", "lib/fake.bin", "lib/libx.so"]


def test_missing_root_is_one_json_error_and_one_stderr_line(tmp_path: Path) -> None:
    run = run_tool("elf-list", "--root", tmp_path / "nope")

    assert run.code == 2
    assert run.out == {"error": f"--root {tmp_path / 'nope'} is not a directory", "exit_code": 2}
    assert run.err == f"lambda_pkgtool: error: --root {tmp_path / 'nope'} is not a directory\n"


def test_usage_errors_are_reported_as_json_with_exit_2() -> None:
    run = run_tool("zip", "--root", ".")

    assert run.code == 2
    assert "the following arguments are required: --out" in run.out["error"]
    assert len(run.err.splitlines()) == 1


# --------------------------------------------------------------------------- closure


def test_parse_ldd_output_classifies_every_kind_of_line() -> None:
    text = (
        "\tlinux-vdso.so.1 (0x00007ffd0e5f0000)\n"
        "\tlinux-vdso.so.1 =>  (0x00007ffd0e5f0000)\n"
        "\tlibfoo.so.1 => /opt/my libs/libfoo.so.1 (0x00007f0000000000)\n"
        "\tlibgone.so.2 => not found\n"
        "\t/lib64/ld-linux-x86-64.so.2 (0x00007f1000000000)\n"
        "\t/lib64/ld-linux-x86-64.so.2 => /usr/lib64/ld-linux-x86-64.so.2 (0x00007f1000000000)\n"
        "./p: ./libv.so: no version information available (required by ./p)\n"
    )

    report = parse_ldd_output(text)

    assert report.resolved == {"libfoo.so.1": "/opt/my libs/libfoo.so.1"}
    assert report.missing == ["libgone.so.2"]
    assert report.system == [
        "linux-vdso.so.1",
        "linux-vdso.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-x86-64.so.2",
    ]
    assert report.warnings == ["./p: ./libv.so: no version information available (required by ./p)"]
    assert not report.static
    assert parse_ldd_output("\tstatically linked\n").static


@needs_r
def test_closure_of_libr_copies_exactly_its_non_glibc_dependencies(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "R" / "lib").mkdir(parents=True)
    shutil.copy(LIBR, root / "R" / "lib" / "libR.so")
    expected = ldd_sonames(LIBR) - GLIBC_FAMILY

    run = run_closure(root)

    assert run.code == 0, run.err
    assert set(copied_sonames(run)) == expected
    assert {"libblas.so.3", "libpcre2-8.so.0", "libz.so.1"} <= expected
    assert run.out["excluded"] == sorted(ldd_sonames(LIBR) & GLIBC_FAMILY)
    assert "libc.so.6" in run.out["excluded"]
    assert sorted(p.name for p in (root / "lib").iterdir()) == sorted(expected)
    for item in run.out["copied"]:
        copy = root / "lib" / item["soname"]
        assert not copy.is_symlink()
        assert copy.stat().st_mode & 0o777 == 0o755
        assert item["bytes"] == copy.stat().st_size == os.path.getsize(item["source"])
    assert run.out["not_found"] == []
    assert run.out["elf_count"] == 1 + len(expected)


@needs_r
def test_closure_keeps_in_package_libr_and_copies_lapack_fortran_runtime(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "R" / "lib").mkdir(parents=True)
    (root / "R" / "modules").mkdir()
    shutil.copy(LIBR, root / "R" / "lib" / "libR.so")
    shutil.copy(LAPACK_MODULE, root / "R" / "modules" / "lapack.so")
    expected = ldd_sonames(LAPACK_MODULE) - GLIBC_FAMILY - {"libR.so"}

    run = run_closure(root, "--search-dir", root / "R" / "lib")

    assert run.code == 0, run.err
    assert set(copied_sonames(run)) == expected
    assert {"libgfortran.so.5", "libquadmath.so.0", "liblapack.so.3"} <= expected
    assert "libR.so" not in copied_sonames(run)


@needs_gcc
def test_closure_reaches_transitive_dependencies_and_the_program_runs_from_them(
    tmp_path: Path,
) -> None:
    libs = build_foo_bar(tmp_path, foo_runpath=True)
    root = tmp_path / "pkg"
    program = build_foo_program(root / "bin" / "prog", libs)

    run = run_closure(root)
    shutil.rmtree(libs.ext)
    env = {**os.environ, "LD_LIBRARY_PATH": str(root / "lib")}
    ran = subprocess.run([str(program)], env=env, check=False)

    assert run.code == 0, run.err
    assert copied_sonames(run) == ["libbar.so", "libfoo.so"]
    assert ran.returncode == 0


@needs_gcc
def test_closure_fixed_point_resolves_a_library_missing_until_a_copy_exists(
    tmp_path: Path,
) -> None:
    libs = build_foo_bar(tmp_path, foo_runpath=False)  # libfoo alone cannot find libbar
    root = tmp_path / "pkg"
    build_foo_program(root / "bin" / "uses-foo", libs)
    gcc(
        root / "bin" / "uses-bar",
        "int bar(void);\nint main(void) { return bar() != 42; }\n",
        f"-L{libs.bar_dir}",
        "-lbar",
        runpath(libs.bar_dir),
    )
    before = subprocess.run(
        ["ldd", str(root / "bin" / "uses-foo")], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"libbar\.so => not found", before)

    run = run_closure(root)

    assert run.code == 0, run.err
    assert copied_sonames(run) == ["libbar.so", "libfoo.so"]
    assert run.out["not_found"] == []
    assert run.out["rounds"] == 2


@needs_gcc
def test_closure_exits_3_naming_the_file_and_the_missing_soname(tmp_path: Path) -> None:
    gone = gcc(tmp_path / "gone" / "libgone.so", "int gone(void) { return 0; }\n", shared=True)
    root = tmp_path / "pkg"
    gcc(
        root / "bin" / "prog",
        "int gone(void);\nint main(void) { return gone(); }\n",
        f"-L{gone.parent}",
        "-lgone",
    )

    run = run_closure(root)

    assert run.code == 3
    assert run.out["not_found"] == [{"file": "bin/prog", "soname": "libgone.so"}]
    assert error_line(run) == (
        "lambda_pkgtool: error: unresolved shared libraries: bin/prog -> libgone.so"
    )


@needs_gcc
def test_closure_accepts_a_missing_soname_that_a_package_file_provides(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    plugin = gcc(root / "plugins" / "libinpkg.so", "int inpkg(void) { return 0; }\n", shared=True)
    gcc(
        root / "bin" / "prog",
        "int inpkg(void);\nint main(void) { return inpkg(); }\n",
        f"-L{plugin.parent}",
        "-linpkg",
    )

    run = run_closure(root)

    assert run.code == 0, run.err
    assert run.out["copied"] == []
    assert run.out["resolved_in_package"] == [
        {"file": "bin/prog", "soname": "libinpkg.so", "provider": "plugins/libinpkg.so"}
    ]


@needs_gcc
def test_closure_warns_when_it_copies_a_library_the_package_already_has(tmp_path: Path) -> None:
    host = gcc(tmp_path / "host" / "libdup.so", "int dup(void) { return 0; }\n", shared=True)
    root = tmp_path / "pkg"
    gcc(root / "plugins" / "libdup.so", "int dup(void) { return 0; }\n", shared=True)
    gcc(
        root / "bin" / "prog",
        "int dup(void);\nint main(void) { return dup(); }\n",
        f"-L{host.parent}",
        "-ldup",
        runpath(host.parent),
    )

    run = run_closure(root)

    assert run.code == 0, run.err
    assert copied_sonames(run) == ["libdup.so"]
    assert (
        f"warning: copying libdup.so from {host} although the package has "
        "plugins/libdup.so: pass its folder with --search-dir to use that one"
    ) in run.err


def test_the_roles_exclude_list_is_the_glibc_family_and_spares_what_must_be_bundled() -> None:
    excludes = compile_excludes(ROLE_DEFAULTS["lambda_package_exclude_libs"])
    # libcrypt is libxcrypt today, not glibc; the others come with R, rpy2 or gcc.
    bundled = ["libR.so", "libz.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libgfortran.so.5",
               "libquadmath.so.0", "libcrypt.so.1", "libtirpc.so.3", "libpcre2-8.so.0"]

    assert [name for name in sorted(GLIBC_FAMILY) if not is_excluded(name, excludes)] == []
    assert [name for name in bundled if is_excluded(name, excludes)] == []


@needs_gcc
def test_closure_never_copies_a_soname_an_exclude_pattern_matches(tmp_path: Path) -> None:
    libs = build_foo_bar(tmp_path, foo_runpath=True)
    root = tmp_path / "pkg"
    build_foo_program(root / "bin" / "prog", libs)

    run = run_closure(root, "--exclude", r"libbar\.so")

    assert run.code == 0, run.err
    assert copied_sonames(run) == ["libfoo.so"]
    assert "libbar.so" in run.out["excluded"]
    assert "libc.so.6" in run.out["excluded"]


@needs_gcc
def test_closure_excludes_only_what_it_is_told_to(tmp_path: Path) -> None:
    libs = build_foo_bar(tmp_path, foo_runpath=True)
    root = tmp_path / "pkg"
    build_foo_program(root / "bin" / "prog", libs)

    run = run_tool("closure", "--root", root, "--lib-dir", root / "lib", "--dry-run")

    assert run.code == 0, run.err
    assert {"libbar.so", "libfoo.so", "libc.so.6"} <= set(copied_sonames(run))
    assert run.out["exclude_patterns"] == []


@needs_gcc
def test_closure_dry_run_reports_the_copies_and_writes_nothing(tmp_path: Path) -> None:
    libs = build_foo_bar(tmp_path, foo_runpath=True)
    root = tmp_path / "pkg"
    build_foo_program(root / "bin" / "prog", libs)

    run = run_closure(root, "--dry-run")

    assert run.code == 0, run.err
    assert copied_sonames(run) == ["libbar.so", "libfoo.so"]
    assert run.out["dry_run"] is True
    assert not (root / "lib").exists()


# --------------------------------------------------------------------------- glibc


def readelf_needs(path: Path) -> list[tuple[str, str, int]]:
    """(library, version, index) of every Vernaux entry, as readelf -V prints them."""
    text = subprocess.run(
        ["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout
    needs, library = [], ""
    for line in text.split("Version needs section", 1)[1].splitlines():
        if match := re.search(r"File: (\S+)", line):
            library = match[1]
        elif match := re.search(r"Name: (\S+)\s+Flags: \S+\s+Version: (\d+)", line):
            needs.append((library, match[1], int(match[2])))
    return needs


def objdump_glibc_symbols(path: Path) -> set[str]:
    """symbol@GLIBC_x.y of every undefined dynamic symbol, as objdump -T prints them."""
    text = subprocess.run(
        ["objdump", "-T", str(path)], capture_output=True, text=True, check=True
    ).stdout
    pattern = re.compile(r"\*UND\*\s+[0-9a-f]+\s+\(?(GLIBC_[0-9.]+)\)?\s+(\S+)$")
    return {f"{m[2]}@{m[1]}" for line in text.splitlines() if (m := pattern.search(line))}


@needs_binutils
@pytest.mark.parametrize("path", [LIBR, LIBSTDCXX], ids=["libR", "libstdc++"])
def test_version_needs_parser_matches_readelf_and_objdump(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is not installed")

    info = read_file_versions(path, path.name)
    parsed = [(need.library, need.version, need.index) for need in info.needs]
    symbols = {
        f"{symbol}@{version}"
        for version, names in info.symbols.items()
        for symbol in names
        if version.startswith("GLIBC_2")
    }

    assert parsed == readelf_needs(path)
    assert symbols == objdump_glibc_symbols(path)


def synthetic_elf(is64: bool, big: bool, needs: list[tuple[str, list[str]]]) -> bytes:
    """A minimal ELF with .dynstr and .gnu.version_r sections holding the given needs."""
    endian = ">" if big else "<"
    strings, offsets = bytearray(b"\0"), {}

    def add(text: str) -> int:
        if text not in offsets:
            offsets[text] = len(strings)
            strings.extend(text.encode() + b"\0")
        return offsets[text]

    verneed, index = bytearray(), 2
    for i, (library, versions) in enumerate(needs):
        next_need = 16 * (1 + len(versions)) if i < len(needs) - 1 else 0
        verneed += struct.pack(endian + "HHIII", 1, len(versions), add(library), 16, next_need)
        for j, version in enumerate(versions):
            next_aux = 16 if j < len(versions) - 1 else 0
            verneed += struct.pack(endian + "IHHII", 0, 0, index, add(version), next_aux)
            index += 1
    header_size, section_size = (64, 64) if is64 else (52, 40)
    strings_at = header_size
    verneed_at = strings_at + len(strings)
    sections_at = verneed_at + len(verneed)
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 2 if big else 1, 1]) + bytes(9)
    header_fmt = endian + ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH")
    header = struct.pack(
        header_fmt, 3, 62, 1, 0, 0, sections_at, 0, header_size, 0, 0, section_size, 3, 0
    )
    section_fmt = endian + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
    sections = [
        struct.pack(section_fmt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        struct.pack(section_fmt, 0, 3, 0, 0, strings_at, len(strings), 0, 0, 1, 0),
        struct.pack(
            section_fmt, 0, 0x6FFFFFFE, 0, 0, verneed_at, len(verneed), 1, len(needs), 4, 0
        ),
    ]
    return ident + header + bytes(strings) + bytes(verneed) + b"".join(sections)


VERSION_NAMES = st.one_of(
    st.builds("GLIBC_2.{}".format, st.integers(0, 40)),
    st.builds("GLIBCXX_3.4.{}".format, st.integers(0, 33)),
)
NEEDS = st.lists(
    st.tuples(
        st.sampled_from(["libc.so.6", "libm.so.6", "libstdc++.so.6"]),
        st.lists(VERSION_NAMES, min_size=1, max_size=4, unique=True),
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(is64=st.booleans(), big=st.booleans(), needs=NEEDS)
def test_version_needs_parser_reads_elf32_elf64_little_and_big_endian(
    is64: bool, big: bool, needs: list[tuple[str, list[str]]]
) -> None:
    elf = ElfReader(io.BytesIO(synthetic_elf(is64, big, needs)), "synthetic")

    parsed = [(need.library, need.version) for need in version_needs(elf)]

    assert parsed == [(library, version) for library, versions in needs for version in versions]


def test_glibc_versions_compare_numerically() -> None:
    assert newest(["2.9", "2.10", "2.2.5"]) == "2.10"
    assert version_key("2.2.5") < version_key("2.3")


@pytest.fixture
def needs_memcpy_2_14(tmp_path: Path) -> Path:
    """A package whose only ELF file needs memcpy@GLIBC_2.14 (x86-64) and GLIBC_2.2.5."""
    if shutil.which("gcc") is None:
        pytest.skip("builds ELF files with gcc")
    root = tmp_path / "pkg"
    lib = gcc(
        root / "lib" / "libneeds.so",
        "#include <string.h>\n"
        "void copy(char *d, const char *s, unsigned long n) { memcpy(d, s, n); }\n",
        shared=True,
    )
    if "memcpy" not in read_file_versions(lib, "x").symbols.get("GLIBC_2.14", []):
        pytest.skip("memcpy is not versioned GLIBC_2.14 on this architecture")
    return root


def test_glibc_gate_passes_at_the_exact_need(needs_memcpy_2_14: Path) -> None:
    run = run_tool("glibc", "--root", needs_memcpy_2_14, "--max-version", "2.14")

    assert run.code == 0, run.err
    assert run.out["max_glibc"] == "2.14"
    assert run.out["files"] == {"lib/libneeds.so": "2.14"}
    assert run.out["too_new"] == []


def test_glibc_gate_fails_with_exit_4_naming_file_symbol_and_ceiling(
    needs_memcpy_2_14: Path,
) -> None:
    run = run_tool("glibc", "--root", needs_memcpy_2_14, "--max-version", "2.13")

    assert run.code == 4
    assert run.out["too_new"] == [
        {"file": "lib/libneeds.so", "needs": "2.14", "symbols_versions": ["memcpy@GLIBC_2.14"]}
    ]
    assert error_line(run) == (
        "lambda_pkgtool: error: glibc too new for the target: 1 file(s) need more than "
        "GLIBC_2.13 (the ceiling): lib/libneeds.so needs 2.14"
    )


def test_glibc_gate_compares_2_14_above_2_9(needs_memcpy_2_14: Path) -> None:
    run = run_tool("glibc", "--root", needs_memcpy_2_14, "--max-version", "2.9")

    assert run.code == 4
    assert [item["needs"] for item in run.out["too_new"]] == ["2.14"]


@needs_r
@needs_binutils
def test_glibc_gate_on_libr_passes_high_and_fails_below_its_real_need(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "R" / "lib").mkdir(parents=True)
    shutil.copy(LIBR, root / "R" / "lib" / "libR.so")
    versions = [v for _, v, _ in readelf_needs(LIBR) if re.fullmatch(r"GLIBC_[\d.]+", v)]
    real = max((v.split("_", 1)[1] for v in versions), key=version_key)

    passing = run_tool("glibc", "--root", root, "--max-version", "99.0")
    failing = run_tool("glibc", "--root", root, "--max-version", "2.0")

    assert passing.code == 0, passing.err
    assert passing.out["files"] == {"R/lib/libR.so": real}
    assert failing.code == 4
    assert [(item["file"], item["needs"]) for item in failing.out["too_new"]] == [
        ("R/lib/libR.so", real)
    ]
    assert "GLIBC_2.0 (the ceiling): R/lib/libR.so needs " + real in error_line(failing)


def test_glibc_rejects_a_malformed_ceiling(tmp_path: Path) -> None:
    run = run_tool("glibc", "--root", tmp_path, "--max-version", "2.x")

    assert run.code == 2
    assert run.out["error"] == "--max-version '2.x' is not a version like 2.34"


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
