"""lambda_pkgtool's elf-list and closure on real ELF files built with gcc, and on Debian's
libR.so: what the package bundles, what it must never bundle (the role's glibc family), and
how a missing library is named.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from pkgtool_support import (
    GLIBC_FAMILY,
    LAPACK_MODULE,
    LIBR,
    ROLE_DEFAULTS,
    build_foo_bar,
    build_foo_program,
    copied_sonames,
    error_line,
    gcc,
    ldd_sonames,
    needs_gcc,
    needs_r,
    run_closure,
    run_tool,
    runpath,
)

from lambda_pkgtool.closure import compile_excludes, is_excluded, parse_ldd_output

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


