"""lambda_pkgtool's glibc gate: its ELF version-needs parser, cross-checked against readelf
and objdump on Debian's libR.so and libstdc++.so.6 and on synthetic ELF32/64 files of both
byte orders, and the gate's verdict at, above and below a file's real need.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pkgtool_support import (
    LIBR,
    LIBSTDCXX,
    error_line,
    gcc,
    needs_binutils,
    needs_r,
    run_tool,
)

from lambda_pkgtool.elf import ElfReader, read_file_versions, version_needs
from lambda_pkgtool.glibc import newest, version_key

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


