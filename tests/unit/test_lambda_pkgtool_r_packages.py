"""lambda_pkgtool's parts for the model's R packages (issue #24): the libstdc++ ceilings
of the glibc gate (GLIBCXX_, CXXABI_: Lambda loads AL2023's own libstdc++, GCC 11's) and
each R package's size in a zip, named when the size gate stops a package."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import yaml
from pkgtool_support import REPO, error_line, run_tool

ROLE_DEFAULTS = yaml.safe_load((REPO / "roles/lambda_package/defaults/main.yml").read_text())
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="builds C++ with g++")


def cxx_library(out: Path) -> Path:
    """A shared library that needs libstdc++ (std::string, operator new): GLIBCXX_ and
    CXXABI_ version needs, as a C++ R package such as ranger has."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".cpp")
    src.write_text('#include <string>\nextern "C" int size(const char *s) '
                   "{ std::string *t = new std::string(s); int n = t->size(); delete t; "
                   "return n; }\n")
    subprocess.run(["g++", "-O0", "-shared", "-fPIC", "-o", str(out), str(src)], check=True)
    src.unlink()
    return out


def test_the_role_states_amazon_linux_2023s_libstdcxx_as_the_ceilings() -> None:
    assert (ROLE_DEFAULTS["lambda_package_glibcxx_max"],
            ROLE_DEFAULTS["lambda_package_cxxabi_max"]) == ("3.4.29", "1.3.13")


@needs_gxx
def test_a_cxx_library_within_the_ceilings_passes_and_its_needs_are_reported(
    tmp_path: Path,
) -> None:
    cxx_library(tmp_path / "R/library/cxx/libs/cxx.so")

    run = run_tool("glibc", "--root", tmp_path, "--max-version", "9.99",
                   "--max-glibcxx", "9.9.99", "--max-cxxabi", "9.9.99")

    assert run.code == 0, run.err
    needs = run.out["other_needs"]["R/library/cxx/libs/cxx.so"]
    assert needs["GLIBCXX"].startswith("3.4.") and needs["CXXABI"].startswith("1.3")
    assert run.out["libstdcxx_too_new"] == []
    assert run.out["max_libstdcxx"] == {"GLIBCXX": "9.9.99", "CXXABI": "9.9.99"}


@needs_gxx
def test_a_cxx_library_above_the_glibcxx_ceiling_fails_with_exit_4_naming_it(
    tmp_path: Path,
) -> None:
    cxx_library(tmp_path / "R/library/cxx/libs/cxx.so")

    run = run_tool("glibc", "--root", tmp_path, "--max-version", "9.99",
                   "--max-glibcxx", "3.4", "--max-cxxabi", "9.9.99")

    assert run.code == 4
    [entry] = run.out["libstdcxx_too_new"]
    assert (entry["file"], entry["family"], entry["max"]) == (
        "R/library/cxx/libs/cxx.so", "GLIBCXX", "3.4")
    assert error_line(run) == (
        "lambda_pkgtool: error: libstdc++ too new for the target: 1 file(s) need more than "
        "the runtime's libstdc++ has (GLIBCXX_3.4): R/library/cxx/libs/cxx.so needs "
        f"GLIBCXX_{entry['needs']}"
    )


def test_a_ceiling_that_is_no_version_is_refused(tmp_path: Path) -> None:
    run = run_tool("glibc", "--root", tmp_path, "--max-cxxabi", "new")

    assert run.code == 2
    assert "--max-cxxabi 'new' is not a version like 3.4.29" in error_line(run)


def r_packages_zip(path: Path) -> Path:
    """R's library with a big package (incompressible bytes), a small one and base."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("R/library/big/libs/big.so", bytes(range(256)) * 4096)  # 1 MiB
        archive.writestr("R/library/big/DESCRIPTION", "Package: big\n")
        archive.writestr("R/library/small/R/small.rdb", b"x" * 1000)
        archive.writestr("R/library/base/R/base", b"y" * 3000)
        archive.writestr("lib/libR.so", b"z" * 5000)
        archive.writestr("handler.py", b"print()\n")
    return path


def test_sizes_measure_each_r_package_largest_first_without_a_gate(tmp_path: Path) -> None:
    package = r_packages_zip(tmp_path / "p.zip")

    run = run_tool("sizes", "--zip", package)

    assert run.code == 0, run.err
    assert list(run.out["r_packages"]) == ["big", "base", "small"]
    big = run.out["r_packages"]["big"]
    assert (big["unzipped_bytes"], big["file_count"]) == (2**20 + 13, 2)
    assert 0 < big["zip_bytes"] < big["unzipped_bytes"]
    assert run.out["r_packages"]["small"]["unzipped_bytes"] == 1000
    assert (run.out["max_zip_bytes"], run.out["ok"]) == (None, True)


def test_a_package_over_the_limit_names_its_largest_r_packages(tmp_path: Path) -> None:
    package = r_packages_zip(tmp_path / "p.zip")

    run = run_tool("sizes", "--zip", package, "--max-zip-bytes", "999999999",
                   "--max-unzipped-bytes", str(2**20))

    assert run.code == 5
    line = error_line(run)
    assert line.startswith("lambda_pkgtool: error: package too large: unzipped 1.0 MB > "
                           "limit 1.0 MB (Lambda unzipped-size limit); largest R packages: "
                           "big 1.0 MB unzipped (")
    assert line.index("big") < line.index("base") < line.index("small")
