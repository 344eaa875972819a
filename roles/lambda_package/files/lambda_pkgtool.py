#!/usr/bin/env python3
"""Build-host helper for the lambda_package role: inspect, complete, gate and zip a package.

Standard library only, Python 3.9+. The role copies this file to the build host (Debian or
Amazon Linux, where only python3 is certain; `ldd` comes with glibc) and runs it as
`python3 lambda_pkgtool.py SUBCOMMAND ...`.

Subcommands (each prints one JSON value on stdout, an object but for elf-list's list, and
logs progress to stderr):

  elf-list --root DIR
      Every ELF file under DIR (by its 4 magic bytes; symlinks skipped), as a JSON list of
      sorted relative paths (the one subcommand whose output is a list, not an object).

  closure --root DIR --lib-dir DIR/lib [--search-dir D ...] [--exclude REGEX ...]
          [--no-default-excludes] [--dry-run]
      Copy into --lib-dir (as its soname, symlinks resolved, mode 0755) every shared library
      that some ELF under DIR loads, that lives outside DIR, and that the target runtime does
      not guarantee; repeat until a round copies nothing. Resolution is `ldd` with
      LD_LIBRARY_PATH = lib-dir + search dirs (the in-package folders, e.g. DIR/R/lib).
      --exclude patterns are matched with re.fullmatch against the soname and are added to
      DEFAULT_EXCLUDES (the glibc family) unless --no-default-excludes is given.
      A dependency `ldd` reports "not found" after the fixed point is an error (exit 3)
      unless a file of that name exists somewhere inside DIR: such a library is loaded by
      its owner first (libR.so before R's modules), so it is reported in
      "resolved_in_package", not as an error.

  glibc --root DIR [--max-version 2.34]
      Parse every ELF's version needs (SHT_GNU_verneed) in pure Python: ELF32/ELF64, little
      and big endian. Reports the newest GLIBC_x.y needed per file, GLIBCXX_/CXXABI_/GCC_
      needs (informational) and files bound to GLIBC_PRIVATE (they only work with the glibc
      they were built against: a warning). With --max-version, exit 4 if a file needs a newer
      GLIBC version than the ceiling (numeric comparison: 2.9 < 2.10).

  zip --root DIR --out FILE [--level 9]
      Deterministic zip: regular files only (no directory entries, so empty directories are
      not kept), sorted by path, dated 1980-01-01 00:00:00, mode 0100755 if any exec bit is
      set else 0100644, create_system 3 (unix), deflate at --level. Symlinks are followed:
      the entry holds the target's content, so the package works wherever and however it is
      unzipped; a dangling symlink or a symlink loop is an error. FILE is written as FILE.tmp, then
      renamed. The same tree gives the same sha256 whatever the mtimes, the umask and the
      directory listing order (for a given zlib).

  split --root DIR --function NAME [NAME ...] --layer-out FILE --function-out FILE [--level 9]
      The same tree as two deterministic zips (as zip writes them) for a Lambda layer and a
      function: the function zip holds the named top-level files and their __pycache__
      bytecode; the layer zip holds the rest, R/ and lib/ as they are and every other entry
      under python/ (Lambda unpacks layers under /opt, puts /opt/python on sys.path and
      /opt/lib on the library path). A --function name missing from DIR is an error.

  sizes --zip FILE [--max-zip-bytes N] [--max-unzipped-bytes M]
      Read the central directory and gate on Lambda's limits (defaults: 50 MB zipped for a
      direct upload, 250 MB unzipped; MB as AWS counts them, 2**20 bytes). Exit 5 if over.

  prune --root DIR --pattern GLOB [GLOB ...] [--pattern GLOB ...]
      Remove files and folders matching glob patterns relative to DIR (pathlib syntax,
      `**` for any depth). Patterns that are absolute or contain '..' are refused, and so is
      any match that is DIR itself or lies outside DIR through a symlinked folder; all
      matches are checked before anything is removed.

  python-abi --root DIR --python X.Y
      Gate on the target's Python: every compiled extension module must be stable-ABI
      (NAME.abi3.so) or tagged for CPython X.Y (NAME.cpython-XY-*.so), and every bytecode
      file in a __pycache__ folder must be X.Y's (NAME.cpython-XY.pyc). Exit 6 naming the
      files that are built for another Python (or untagged, NAME.so inside a Python package,
      which only the Python that built it is sure to load).

Exit codes: 0 ok; 1 internal error (a bug); 2 bad input or a failed step (usage, missing
path, ldd failure, malformed ELF, dangling symlink...); 3 unresolved shared libraries;
4 glibc too new for the ceiling; 5 package too large; 6 built for another Python. On
failure, stderr gets one line "lambda_pkgtool: error: ..." and stdout a JSON object with
"error" (plus the gate's data).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, NoReturn

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_ERROR = 2
EXIT_UNRESOLVED = 3
EXIT_GLIBC_TOO_NEW = 4
EXIT_TOO_LARGE = 5
EXIT_WRONG_PYTHON = 6

ELF_MAGIC = b"\x7fELF"

# Libraries every target runtime guarantees: the glibc family (and the kernel's vDSO, which
# is no file). Copying one of these is never right: glibc's libraries must match the loader
# and libc.so.6 of the host they run on, and several bind to GLIBC_PRIVATE symbols.
# libnsl.so.1 is built from glibc (Debian ships it in libc6) and binds to GLIBC_PRIVATE, so a
# copy cannot work either; note that Fedora/AL2023 ship it in a separate `libnsl` package.
# libcrypt is NOT excluded: on current distributions it is libxcrypt, not glibc.
# Matched with re.fullmatch against the soname (the name left of "=>" in ldd's output).
DEFAULT_EXCLUDES: tuple[str, ...] = (
    r"ld-linux[\w.-]*\.so\.\d+",  # the dynamic loader (x86-64, aarch64, i386...)
    r"ld64\.so\.\d+",  # the dynamic loader on ppc64/s390x
    r"linux-(?:vdso|gate)[\w.-]*\.so\.\d+",  # kernel vDSO
    r"libc\.so\.\d+",
    r"libm\.so\.\d+",
    r"libmvec\.so\.\d+",
    r"libpthread\.so\.\d+",
    r"libdl\.so\.\d+",
    r"librt\.so\.\d+",
    r"libresolv\.so\.\d+",
    r"libutil\.so\.\d+",
    r"libanl\.so\.\d+",
    r"libnsl\.so\.1",
    r"libBrokenLocale\.so\.\d+",
    r"libthread_db\.so\.\d+",
    r"libc_malloc_debug\.so\.\d+",
    r"libnss_(?:compat|db|dns|files|hesiod)\.so\.\d+",
)

LAMBDA_MAX_ZIP_BYTES = 50 * 2**20  # direct upload through the Lambda API
LAMBDA_MAX_UNZIPPED_BYTES = 250 * 2**20  # function code and layers, unzipped

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_CREATE_SYSTEM_UNIX = 3

LDD_TIMEOUT_SECONDS = 120

DESCRIPTION = "Inspect, complete, gate and zip an AWS Lambda package (see the module docstring)."


class ToolError(Exception):
    """A failure the caller can act on: a one-line message, an exit code, optional data."""

    def __init__(
        self, message: str, code: int = EXIT_ERROR, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}


def log(message: str) -> None:
    print(f"lambda_pkgtool: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- file walking


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ToolError(f"{what} {path} is not a directory")
    return path.resolve()


def relpath(path: str | Path, root: Path) -> str:
    return PurePosixPath(os.path.relpath(path, root)).as_posix()


def is_inside(path: str | Path, root: str | Path) -> bool:
    """True if `path` is `root` or below it (both taken literally; resolve them first)."""
    path_str, root_str = os.fspath(path), os.fspath(root)
    return path_str == root_str or path_str.startswith(root_str.rstrip(os.sep) + os.sep)


def iter_regular_files(root: Path) -> Iterator[Path]:
    """Regular files under root in sorted order; symlinks (to files or folders) are skipped."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if stat.S_ISREG(path.lstat().st_mode):
                yield path


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == ELF_MAGIC


def find_elf_files(root: Path) -> list[Path]:
    return [path for path in iter_regular_files(root) if is_elf(path)]


def cmd_elf_list(args: argparse.Namespace) -> list[str]:
    root = require_dir(args.root, "--root")
    files = [relpath(path, root) for path in find_elf_files(root)]
    log(f"{len(files)} ELF files under {root}")
    return files


# --------------------------------------------------------------------------- closure (ldd)


@dataclass
class LddReport:
    """What ldd said about one file."""

    resolved: dict[str, str] = field(default_factory=dict)  # soname -> path
    missing: list[str] = field(default_factory=list)  # sonames "not found"
    system: list[str] = field(default_factory=list)  # loader and vDSO: never copied
    static: bool = False
    warnings: list[str] = field(default_factory=list)


LDD_ADDR = r"\(0x[0-9a-fA-F]+\)"
LDD_RESOLVED = re.compile(rf"^\s*(?P<name>\S+)\s+=>\s+(?P<path>\S.*?)\s+{LDD_ADDR}\s*$")
LDD_NOT_FOUND = re.compile(r"^\s*(?P<name>\S+)\s+=>\s+not found\s*$")
LDD_NO_PATH = re.compile(rf"^\s*(?P<name>\S+)\s+(?:=>\s+)?{LDD_ADDR}\s*$")
LDD_STATIC = ("statically linked", "not a dynamic executable")


def soname_of(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def parse_ldd_output(text: str) -> LddReport:
    """Classify ldd's lines: `name => path (addr)`, `name => not found`, loader, vDSO."""
    report = LddReport()
    for line in text.splitlines():
        if not line.strip():
            continue
        if any(marker in line for marker in LDD_STATIC):
            report.static = True
        elif match := LDD_NOT_FOUND.match(line):
            report.missing.append(soname_of(match["name"]))
        elif match := LDD_RESOLVED.match(line):
            name = match["name"]
            if name.startswith("/"):  # the program interpreter, named by its path
                report.system.append(soname_of(name))
            else:
                report.resolved[soname_of(name)] = match["path"]
        elif match := LDD_NO_PATH.match(line):
            report.system.append(soname_of(match["name"]))
        else:
            report.warnings.append(line.strip())
    return report


def ldd_environment(search_path: list[Path]) -> dict[str, str]:
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(str(path) for path in search_path)
    env["LC_ALL"] = "C"
    return env


def run_ldd(ldd: str, path: Path, env: dict[str, str]) -> LddReport:
    try:
        proc = subprocess.run(
            [ldd, str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=LDD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"ldd {path} did not finish in {LDD_TIMEOUT_SECONDS} s") from exc
    if proc.returncode != 0:
        if any(marker in proc.stdout + proc.stderr for marker in LDD_STATIC):
            return LddReport(static=True)
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise ToolError(f"ldd {path} failed: {detail[-1] if detail else proc.returncode}")
    return parse_ldd_output(proc.stdout)


def compile_excludes(extra: list[str], use_defaults: bool) -> list[re.Pattern[str]]:
    patterns = [*(DEFAULT_EXCLUDES if use_defaults else ()), *extra]
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern))
        except re.error as exc:
            message = f"--exclude {pattern!r} is not a valid regular expression: {exc}"
            raise ToolError(message) from exc
    return compiled


def is_excluded(soname: str, excludes: list[re.Pattern[str]]) -> bool:
    return any(pattern.fullmatch(soname) for pattern in excludes)


@dataclass
class ClosurePlan:
    """Inputs of the closure computation, resolved once."""

    root: Path
    lib_dir: Path
    search_path: list[Path]
    excludes: list[re.Pattern[str]]
    dry_run: bool
    ldd: str


@dataclass
class RoundResult:
    reports: dict[str, LddReport]  # display name -> report
    new: dict[str, str]  # soname -> real source path, to copy
    excluded: set[str]


def ldd_all(plan: ClosurePlan, files: dict[str, Path]) -> dict[str, LddReport]:
    env = ldd_environment(plan.search_path)
    names = sorted(files)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reports = pool.map(lambda name: run_ldd(plan.ldd, files[name], env), names)
        return dict(zip(names, reports))


def closure_targets(plan: ClosurePlan, planned: dict[str, str]) -> dict[str, Path]:
    """ELF files to ask ldd about: the package, plus (dry run) what would have been copied."""
    files = {relpath(path, plan.root): path for path in find_elf_files(plan.root)}
    if plan.lib_dir.is_dir() and not is_inside(plan.lib_dir, plan.root):
        files.update({relpath(p, plan.root): p for p in find_elf_files(plan.lib_dir)})
    if plan.dry_run:
        for soname, source in planned.items():
            files.setdefault(relpath(plan.lib_dir / soname, plan.root), Path(source))
    return files


def new_libraries(
    plan: ClosurePlan, reports: dict[str, LddReport], planned: dict[str, str]
) -> tuple[dict[str, str], set[str]]:
    """Libraries resolved outside the package and not yet copied; sonames excluded."""
    new: dict[str, str] = {}
    excluded: set[str] = set()
    for name, report in reports.items():
        excluded.update(report.system)
        excluded.update(s for s in report.missing if is_excluded(s, plan.excludes))
        for soname, path in sorted(report.resolved.items()):
            if is_excluded(soname, plan.excludes):
                excluded.add(soname)
                continue
            source = os.path.realpath(path)
            if is_inside(source, plan.root):
                continue
            known = planned.get(soname) or new.get(soname)
            if known is not None:
                if known != source:
                    log(f"warning: {name} resolves {soname} to {source}, keeping {known}")
                continue
            if (plan.lib_dir / soname).exists():
                log(f"warning: {name} loads {soname} from {source} (DT_RPATH?) although "
                    f"{plan.lib_dir / soname} exists; keeping the packaged copy")
                continue
            new[soname] = source
    return new, excluded


def copy_library(source: str, dest: Path) -> int:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest.stat().st_size


def files_by_name(folders: list[Path], root: Path) -> dict[str, str]:
    """Basename -> first relative path of every file (or symlink to a file) in folders."""
    names: dict[str, str] = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_file():
                    names.setdefault(name, relpath(path, root))
    return names


def classify_missing(
    plan: ClosurePlan, reports: dict[str, LddReport], planned: dict[str, str]
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Split the final round's "not found" into errors and names a package file provides."""
    in_package = files_by_name([plan.root, plan.lib_dir], plan.root)
    not_found: list[dict[str, str]] = []
    provided: list[dict[str, str]] = []
    for name, report in sorted(reports.items()):
        for soname in sorted(set(report.missing)):
            if is_excluded(soname, plan.excludes) or soname in planned:
                continue
            if soname in in_package:
                provided.append({"file": name, "soname": soname, "provider": in_package[soname]})
            else:
                not_found.append({"file": name, "soname": soname})
    return not_found, provided


def closure_round(plan: ClosurePlan, planned: dict[str, str]) -> RoundResult:
    reports = ldd_all(plan, closure_targets(plan, planned))
    new, excluded = new_libraries(plan, reports, planned)
    return RoundResult(reports=reports, new=new, excluded=excluded)


def unresolved_message(not_found: list[dict[str, str]], limit: int = 5) -> str:
    shown = ", ".join(f"{item['file']} -> {item['soname']}" for item in not_found[:limit])
    more = f" (and {len(not_found) - limit} more)" if len(not_found) > limit else ""
    return f"unresolved shared libraries: {shown}{more}"


def warn_if_in_package(soname: str, source: str, in_package: dict[str, str]) -> None:
    if soname in in_package:
        log(f"warning: copying {soname} from {source} although the package has "
            f"{in_package[soname]}: pass its folder with --search-dir to use that one")


def compute_closure(plan: ClosurePlan) -> dict[str, Any]:
    in_package = files_by_name([plan.root], plan.root)
    planned: dict[str, str] = {}
    copied: list[dict[str, Any]] = []
    excluded: set[str] = set()
    rounds = 0
    while True:
        rounds += 1
        result = closure_round(plan, planned)
        excluded |= result.excluded
        log(f"round {rounds}: {len(result.reports)} ELF files, {len(result.new)} new libraries")
        if not result.new:
            break
        if not plan.dry_run:
            plan.lib_dir.mkdir(parents=True, exist_ok=True)
        for soname, source in sorted(result.new.items()):
            size = os.path.getsize(source)
            warn_if_in_package(soname, source, in_package)
            if not plan.dry_run:
                size = copy_library(source, plan.lib_dir / soname)
            log(f"{'would copy' if plan.dry_run else 'copied'} {soname} <- {source}")
            planned[soname] = source
            copied.append({"soname": soname, "source": source, "bytes": size})
    not_found, provided = classify_missing(plan, result.reports, planned)
    for item in provided:
        log(f"note: {item['file']} needs {item['soname']}, provided in package by "
            f"{item['provider']} (loaded first at run time?)")
    warnings = [f"{name}: {w}" for name, r in sorted(result.reports.items()) for w in r.warnings]
    for warning in warnings:
        log(f"ldd warning: {warning}")
    output = {
        "copied": sorted(copied, key=lambda item: item["soname"]),
        "copied_bytes": sum(item["bytes"] for item in copied),
        "elf_count": len(result.reports),
        "rounds": rounds,
        "not_found": not_found,
        "resolved_in_package": provided,
        "excluded": sorted(excluded),
        "exclude_patterns": [pattern.pattern for pattern in plan.excludes],
        "ldd_warnings": warnings,
        "lib_dir": str(plan.lib_dir),
        "dry_run": plan.dry_run,
    }
    if not_found:
        raise ToolError(unresolved_message(not_found), EXIT_UNRESOLVED, output)
    return output


def cmd_closure(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    ldd = shutil.which("ldd")
    if ldd is None:
        raise ToolError("ldd not found on PATH (it comes with glibc: install libc-bin/glibc)")
    lib_dir = Path(os.path.realpath(args.lib_dir))
    search_dirs = [Path(os.path.realpath(path)) for path in args.search_dir]
    for path in search_dirs:
        require_dir(path, "--search-dir")
    plan = ClosurePlan(
        root=root,
        lib_dir=lib_dir,
        search_path=[lib_dir, *search_dirs],
        excludes=compile_excludes(args.exclude, not args.no_default_excludes),
        dry_run=args.dry_run,
        ldd=ldd,
    )
    return compute_closure(plan)


# --------------------------------------------------------------------------- ELF parsing

SHT_DYNSYM = 11
SHT_GNU_VERNEED = 0x6FFFFFFE
SHT_GNU_VERSYM = 0x6FFFFFFF
VERSYM_INDEX_MASK = 0x7FFF


@dataclass(frozen=True)
class Section:
    type: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@dataclass(frozen=True)
class VersionNeed:
    """One Vernaux entry: `library` must provide `version`; `index` is its versym number."""

    library: str
    version: str
    index: int


class ElfReader:
    """Just enough of an ELF reader for version needs: section headers, string tables."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        ident = self.read(0, 16)
        if ident[:4] != ELF_MAGIC:
            raise ToolError(f"{name}: not an ELF file")
        if ident[4] not in (1, 2) or ident[5] not in (1, 2):
            raise ToolError(f"{name}: unknown ELF class {ident[4]} or data encoding {ident[5]}")
        self.is64 = ident[4] == 2
        self.endian = "<" if ident[5] == 1 else ">"
        self.sections = self.read_sections()

    def read(self, offset: int, size: int) -> bytes:
        self.handle.seek(offset)
        data = self.handle.read(size)
        if len(data) != size:
            raise ToolError(f"{self.name}: truncated ELF (wanted {size} bytes at {offset})")
        return data

    def unpack(self, fmt: str, data: bytes, offset: int = 0) -> tuple[int, ...]:
        try:
            return struct.unpack_from(self.endian + fmt, data, offset)
        except struct.error as exc:
            raise ToolError(f"{self.name}: malformed ELF structure at {offset}") from exc

    def read_sections(self) -> list[Section]:
        header_fmt = "HHIQQQIHHHHHH" if self.is64 else "HHIIIIIHHHHHH"
        header = self.unpack(header_fmt, self.read(16, struct.calcsize("<" + header_fmt)))
        shoff, shentsize, shnum = header[5], header[10], header[11]
        if shoff == 0:
            raise ToolError(f"{self.name}: ELF has no section headers; cannot read its "
                            "symbol versions (was it sstrip'ed?)")
        section_fmt = "IIQQQQIIQQ" if self.is64 else "IIIIIIIIII"
        if shentsize < struct.calcsize("<" + section_fmt):
            raise ToolError(f"{self.name}: section header size {shentsize} is too small")
        first = self.section_at(shoff, section_fmt)
        count = shnum or first.size  # extended numbering: the count is in section 0
        return [self.section_at(shoff + i * shentsize, section_fmt) for i in range(count)]

    def section_at(self, offset: int, fmt: str) -> Section:
        fields = self.unpack(fmt, self.read(offset, struct.calcsize("<" + fmt)))
        return Section(type=fields[1], offset=fields[4], size=fields[5], link=fields[6],
                       info=fields[7], entsize=fields[9])

    def section_data(self, section: Section) -> bytes:
        return self.read(section.offset, section.size)

    def linked(self, section: Section) -> Section:
        if section.link >= len(self.sections):
            raise ToolError(f"{self.name}: section link {section.link} out of range")
        return self.sections[section.link]

    def string(self, table: bytes, offset: int) -> str:
        end = table.find(b"\0", offset)
        if offset >= len(table) or end < 0:
            raise ToolError(f"{self.name}: string offset {offset} out of range")
        return table[offset:end].decode("utf-8", "replace")


def walk_verneed(elf: ElfReader, section: Section) -> Iterator[VersionNeed]:
    data = elf.section_data(section)
    strings = elf.section_data(elf.linked(section))
    offset, seen = 0, set()
    for _ in range(section.info or len(data) // 16):
        if offset in seen or offset + 16 > len(data):
            raise ToolError(f"{elf.name}: malformed version-needs section")
        seen.add(offset)
        _version, count, file_name, aux, next_need = elf.unpack("HHIII", data, offset)
        library = elf.string(strings, file_name)
        aux_offset = offset + aux
        for _ in range(count):
            _hash, _flags, index, name, next_aux = elf.unpack("IHHII", data, aux_offset)
            yield VersionNeed(library, elf.string(strings, name), index)
            if next_aux == 0:
                break
            aux_offset += next_aux
        if next_need == 0:
            break
        offset += next_need


def version_needs(elf: ElfReader) -> list[VersionNeed]:
    needs: list[VersionNeed] = []
    for section in elf.sections:
        if section.type == SHT_GNU_VERNEED:
            needs.extend(walk_verneed(elf, section))
    return needs


def symbols_by_version_index(elf: ElfReader) -> dict[int, list[str]]:
    """Dynamic symbol names grouped by their versym index (from SHT_GNU_versym)."""
    result: dict[int, list[str]] = {}
    for versym in (s for s in elf.sections if s.type == SHT_GNU_VERSYM):
        dynsym = elf.linked(versym)
        if dynsym.type != SHT_DYNSYM:
            continue
        entsize = dynsym.entsize or (24 if elf.is64 else 16)
        symbols = elf.section_data(dynsym)
        strings = elf.section_data(elf.linked(dynsym))
        indices = elf.section_data(versym)
        for i in range(min(len(indices) // 2, len(symbols) // entsize)):
            (index,) = elf.unpack("H", indices, 2 * i)
            (name,) = elf.unpack("I", symbols, i * entsize)
            if name:
                result.setdefault(index & VERSYM_INDEX_MASK, []).append(elf.string(strings, name))
    return result


@dataclass
class FileVersions:
    needs: list[VersionNeed]
    symbols: dict[str, list[str]]  # version name -> symbols bound to it


def read_file_versions(path: Path, name: str) -> FileVersions:
    with path.open("rb") as handle:
        elf = ElfReader(handle, name)
        needs = version_needs(elf)
        by_index = symbols_by_version_index(elf) if needs else {}
    symbols: dict[str, set[str]] = {}
    for need in needs:  # one version name can come from several libraries (libc, libm)
        symbols.setdefault(need.version, set()).update(by_index.get(need.index, []))
    return FileVersions(needs=needs, symbols={v: sorted(names) for v, names in symbols.items()})


GLIBC_VERSION = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
OTHER_VERSION = re.compile(r"(GLIBCXX|CXXABI|GCC)_(\d+(?:\.\d+)*)")


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def newest(versions: Iterable[str]) -> str | None:
    return max(versions, key=version_key, default=None)


def glibc_versions(needs: list[VersionNeed]) -> list[str]:
    found = {m[1] for need in needs if (m := GLIBC_VERSION.fullmatch(need.version))}
    return sorted(found, key=version_key)


def other_needs(needs: list[VersionNeed]) -> dict[str, str]:
    families: dict[str, list[str]] = {}
    for need in needs:
        if match := OTHER_VERSION.fullmatch(need.version):
            families.setdefault(match[1], []).append(match[2])
    return {family: str(newest(found)) for family, found in sorted(families.items())}


def too_new_entry(name: str, info: FileVersions, ceiling: str) -> dict[str, Any] | None:
    over = [v for v in glibc_versions(info.needs) if version_key(v) > version_key(ceiling)]
    if not over:
        return None
    symbols: list[str] = []
    for version in sorted(over, key=version_key, reverse=True):
        bound = info.symbols.get(f"GLIBC_{version}") or []
        symbols.extend(f"{symbol}@GLIBC_{version}" for symbol in bound)
        if not bound:
            symbols.append(f"GLIBC_{version}")
    return {"file": name, "needs": over[-1], "symbols_versions": symbols}


def glibc_message(too_new: list[dict[str, Any]], ceiling: str, limit: int = 5) -> str:
    shown = ", ".join(f"{item['file']} needs {item['needs']}" for item in too_new[:limit])
    more = f" (and {len(too_new) - limit} more)" if len(too_new) > limit else ""
    return (f"glibc too new for the target: {len(too_new)} file(s) need more than "
            f"GLIBC_{ceiling} (the ceiling): {shown}{more}")


def cmd_glibc(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    ceiling = args.max_version
    if ceiling is not None and not re.fullmatch(r"\d+(?:\.\d+)+", ceiling):
        raise ToolError(f"--max-version {ceiling!r} is not a version like 2.34")
    files: dict[str, str] = {}
    others: dict[str, dict[str, str]] = {}
    private: list[str] = []
    too_new: list[dict[str, Any]] = []
    elf_files = find_elf_files(root)
    for path in elf_files:
        name = relpath(path, root)
        info = read_file_versions(path, name)
        if needed := newest(glibc_versions(info.needs)):
            files[name] = needed
        if extra := other_needs(info.needs):
            others[name] = extra
        if any(need.version == "GLIBC_PRIVATE" for need in info.needs):
            private.append(name)
            log(f"warning: {name} needs GLIBC_PRIVATE: it works only with the glibc it was "
                "built against")
        if ceiling is not None and (entry := too_new_entry(name, info, ceiling)):
            too_new.append(entry)
    too_new.sort(key=lambda item: (tuple(-n for n in version_key(item["needs"])), item["file"]))
    output = {
        "max_glibc": newest(files.values()),
        "max_version": ceiling,
        "elf_count": len(elf_files),
        "files": files,
        "other_needs": others,
        "glibc_private": private,
        "too_new": too_new,
    }
    log(f"{len(elf_files)} ELF files, newest glibc needed: {output['max_glibc']}")
    if too_new:
        raise ToolError(glibc_message(too_new, ceiling), EXIT_GLIBC_TOO_NEW, output)
    return output


# --------------------------------------------------------------------------- python-abi

EXTENSION_TAG = re.compile(r"\.(?:cpython-(?P<cp>\d+)[^.]*|(?P<abi3>abi3))\.so$")
BYTECODE_TAG = re.compile(r"\.cpython-(?P<cp>\d+)(?:\.opt-\d)?\.pyc$")
# Folders of the package that hold no Python: R's own shared objects end in .so too.
NON_PYTHON_TOP = {"R", "lib", "bin"}


def python_tag(version: str) -> str:
    if not re.fullmatch(r"3\.\d+", version):
        raise ToolError(f"--python {version!r} is not a Python version like 3.13")
    return version.replace(".", "")


def python_file_problem(path: Path, name: str, tag: str) -> str | None:
    """Why a file of the Python part does not suit CPython <tag>, or None when it does."""
    if path.suffix == ".pyc":
        match = BYTECODE_TAG.search(path.name)
        if path.parent.name == "__pycache__" and (match is None or match["cp"] != tag):
            found = f"cpython-{match['cp']}" if match else "untagged"
            return f"{name} is bytecode of {found}, not cpython-{tag}"
        return None
    if path.suffix != ".so" or not is_elf(path):
        return None
    match = EXTENSION_TAG.search(path.name)
    if match is None:
        return f"{name} is an extension module with no ABI tag (only its own Python loads it)"
    if match["cp"] is not None and match["cp"] != tag:
        return f"{name} is built for cpython-{match['cp']}, not cpython-{tag}"
    return None


def cmd_python_abi(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    tag = python_tag(args.python)
    problems: list[str] = []
    counts = {"abi3": 0, f"cpython-{tag}": 0, "bytecode": 0}
    for path in iter_regular_files(root):
        name = relpath(path, root)
        if name.split("/", 1)[0] in NON_PYTHON_TOP and "/" in name:
            continue
        if problem := python_file_problem(path, name, tag):
            problems.append(problem)
        elif path.suffix == ".pyc":
            counts["bytecode"] += 1
        elif path.suffix == ".so" and (match := EXTENSION_TAG.search(path.name)):
            counts["abi3" if match["abi3"] else f"cpython-{tag}"] += 1
    output = {"python": args.python, "extensions": counts, "wrong_python": sorted(problems)}
    log(f"Python {args.python}: {counts['abi3']} abi3 and {counts[f'cpython-{tag}']} "
        f"cpython-{tag} extension modules, {counts['bytecode']} bytecode files")
    if problems:
        shown = "; ".join(sorted(problems)[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ToolError(f"{len(problems)} file(s) built for another Python than the target's "
                        f"{args.python}: {shown}{more}", EXIT_WRONG_PYTHON, output)
    return output


# --------------------------------------------------------------------------- zip


def zip_entries(root: Path, skip: set[str]) -> list[tuple[str, Path]]:
    """(archive name, path) of every file under root, following symlinks, sorted by name."""
    entries: list[tuple[str, Path]] = []
    walk_for_zip(root, "", frozenset({os.path.realpath(root)}), skip, entries)
    entries.sort(key=lambda entry: entry[0])
    return entries


def walk_for_zip(
    folder: Path, prefix: str, ancestors: frozenset[str], skip: set[str],
    entries: list[tuple[str, Path]],
) -> None:
    for name in sorted(os.listdir(folder)):
        path = folder / name
        arcname = f"{prefix}{name}"
        if os.path.realpath(path) in skip:
            continue
        try:
            mode = path.stat().st_mode
        except FileNotFoundError as exc:
            raise ToolError(f"dangling symlink {arcname} -> {os.readlink(path)}") from exc
        if stat.S_ISDIR(mode):
            real = os.path.realpath(path)
            if real in ancestors:
                raise ToolError(f"symlink loop: {arcname} -> {real}")
            walk_for_zip(path, f"{arcname}/", ancestors | {real}, skip, entries)
        elif stat.S_ISREG(mode):
            entries.append((arcname, path))
        else:
            raise ToolError(f"{arcname} is not a regular file or folder; cannot zip it")


def zip_info(arcname: str, executable: bool) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
    info.create_system = ZIP_CREATE_SYSTEM_UNIX
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    return info


def write_zip(entries: list[tuple[str, Path]], tmp: Path, level: int) -> tuple[int, int]:
    """Write entries to tmp; return (file count, unzipped bytes)."""
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for arcname, path in entries:
            executable = bool(path.stat().st_mode & 0o111)
            data = path.read_bytes()
            archive.writestr(zip_info(arcname, executable), data, compresslevel=level)
            unzipped += len(data)
    return len(entries), unzipped


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def zip_to(out: Path, entries: list[tuple[str, Path]], level: int) -> dict[str, Any]:
    """Write entries to out through a temporary file; describe the zip."""
    tmp = out.with_name(f"{out.name}.tmp")
    try:
        count, unzipped = write_zip(entries, tmp, level)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    # top_level: what unzipping creates at the destination (a test host clears just those).
    return {"path": str(out), "sha256": sha256_of(out), "zip_bytes": out.stat().st_size,
            "unzipped_bytes": unzipped, "file_count": count,
            "top_level": sorted({arcname.split("/", 1)[0] for arcname, _ in entries})}


def cmd_zip(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    if not 0 <= args.level <= 9:
        raise ToolError(f"--level {args.level} is not between 0 and 9")
    out = Path(os.path.abspath(args.out))
    if not out.parent.is_dir():
        raise ToolError(f"--out folder {out.parent} does not exist")
    tmp = out.with_name(f"{out.name}.tmp")
    entries = zip_entries(root, {os.path.realpath(out), os.path.realpath(tmp)})
    output = zip_to(out, entries, args.level)
    log(f"wrote {out}: {output['file_count']} files, {output['zip_bytes']} bytes")
    return output


# --------------------------------------------------------------------------- split

# Top-level folders a Lambda layer keeps as they are; everything else Python imports goes
# under python/ (Lambda puts /opt/python on sys.path and /opt/lib on the library path).
LAYER_KEEP = ("R", "lib")


def split_entries(
    entries: list[tuple[str, Path]], function_files: list[str]
) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """(layer entries, function entries) of a one-zip package's entries.

    The function gets the named top-level files and their cached bytecode
    (__pycache__/<stem>.*.pyc); the layer gets the rest, R/ and lib/ as they are and the
    Python modules under python/.
    """
    names = set(function_files)
    stems = {name[:-3] for name in names if name.endswith(".py")}
    missing = sorted(names - {arcname for arcname, _ in entries})
    if missing:
        raise ToolError(f"--function names files that are not at the package root: "
                        f"{', '.join(missing)}")
    layer: list[tuple[str, Path]] = []
    function: list[tuple[str, Path]] = []
    for arcname, path in entries:
        top, _, rest = arcname.partition("/")
        if arcname in names or (top == "__pycache__" and rest.split(".", 1)[0] in stems
                                and "/" not in rest):
            function.append((arcname, path))
        elif top in LAYER_KEEP and rest:
            layer.append((arcname, path))
        else:
            layer.append((f"python/{arcname}", path))
    layer.sort(key=lambda entry: entry[0])
    return layer, function


def cmd_split(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    if not 0 <= args.level <= 9:
        raise ToolError(f"--level {args.level} is not between 0 and 9")
    outs = {"layer": Path(os.path.abspath(args.layer_out)),
            "function": Path(os.path.abspath(args.function_out))}
    for flag, out in (("--layer-out", outs["layer"]), ("--function-out", outs["function"])):
        if not out.parent.is_dir():
            raise ToolError(f"{flag} folder {out.parent} does not exist")
    skip = {os.path.realpath(p) for out in outs.values()
            for p in (out, out.with_name(f"{out.name}.tmp"))}
    layer, function = split_entries(zip_entries(root, skip), args.function)
    output = {"layer": zip_to(outs["layer"], layer, args.level),
              "function": zip_to(outs["function"], function, args.level)}
    log(f"layer {output['layer']['zip_bytes']} bytes ({output['layer']['file_count']} files), "
        f"function {output['function']['zip_bytes']} bytes "
        f"({output['function']['file_count']} files)")
    return output


# --------------------------------------------------------------------------- sizes


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def size_violations(
    zip_bytes: int, unzipped_bytes: int, max_zip: int, max_unzipped: int
) -> list[str]:
    problems = []
    if zip_bytes > max_zip:
        problems.append(f"zipped {megabytes(zip_bytes)} > limit {megabytes(max_zip)} "
                        "(Lambda direct-upload limit)")
    if unzipped_bytes > max_unzipped:
        problems.append(f"unzipped {megabytes(unzipped_bytes)} > limit "
                        f"{megabytes(max_unzipped)} (Lambda unzipped-size limit)")
    return problems


def cmd_sizes(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.zip)
    if not path.is_file():
        raise ToolError(f"--zip {path} is not a file")
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ToolError(f"{path} is not a readable zip file: {exc}") from exc
    zip_bytes = path.stat().st_size
    unzipped = sum(info.file_size for info in infos)
    problems = size_violations(zip_bytes, unzipped, args.max_zip_bytes, args.max_unzipped_bytes)
    output = {
        "zip_bytes": zip_bytes,
        "unzipped_bytes": unzipped,
        "file_count": sum(1 for info in infos if not info.is_dir()),
        "max_zip_bytes": args.max_zip_bytes,
        "max_unzipped_bytes": args.max_unzipped_bytes,
        "ok": not problems,
    }
    log(f"{path}: zipped {megabytes(zip_bytes)}, unzipped {megabytes(unzipped)}")
    if problems:
        raise ToolError(f"package too large: {'; '.join(problems)}", EXIT_TOO_LARGE, output)
    return output


# --------------------------------------------------------------------------- prune


def check_pattern(pattern: str) -> str:
    if not pattern or pattern.startswith(("/", "\\")) or os.path.isabs(pattern):
        raise ToolError(f"--pattern {pattern!r} must be a non-empty path relative to --root")
    if ".." in pattern:
        raise ToolError(f"--pattern {pattern!r} must not contain '..'")
    return pattern


def pattern_matches(root: Path, pattern: str) -> list[Path]:
    try:
        matches = sorted(root.glob(pattern))
    except (ValueError, NotImplementedError) as exc:
        raise ToolError(f"--pattern {pattern!r} is not a usable glob: {exc}") from exc
    for match in matches:
        if match == root:
            raise ToolError(f"--pattern {pattern!r} matches --root itself")
        parent = os.path.realpath(match.parent)
        if not is_inside(parent, root):
            raise ToolError(f"--pattern {pattern!r} reaches {match} outside --root through a "
                            f"symlinked folder ({parent})")
    return matches


def tree_bytes(path: Path) -> int:
    """Bytes of the regular files a removal frees (symlinks are not followed)."""
    if path.is_symlink() or not path.is_dir():
        mode = path.lstat()
        return mode.st_size if stat.S_ISREG(mode.st_mode) else 0
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path, followlinks=False):
        for name in filenames:
            mode = os.lstat(os.path.join(dirpath, name))
            total += mode.st_size if stat.S_ISREG(mode.st_mode) else 0
    return total


def remove_path(path: Path) -> int:
    freed = tree_bytes(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return freed


def outermost(paths: Iterable[Path]) -> list[Path]:
    """Drop paths that lie below another path of the set."""
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: p.parts):
        if not set(path.parents) & set(kept):
            kept.append(path)
    return kept


def cmd_prune(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    patterns = [check_pattern(pattern) for pattern in args.pattern]
    per_pattern: dict[str, int] = {}
    matched: list[Path] = []
    for pattern in patterns:
        found = pattern_matches(root, pattern)
        per_pattern[pattern] = len(found)
        matched.extend(found)
    freed = 0
    targets = outermost(matched)
    for path in targets:
        freed += remove_path(path)
    log(f"removed {len(targets)} paths, freed {freed} bytes")
    return {"removed": len(targets), "bytes_freed": freed, "matches": per_pattern}


# --------------------------------------------------------------------------- command line


class ToolArgumentParser(argparse.ArgumentParser):
    """Usage errors become ToolError, so they are reported like every other failure."""

    def error(self, message: str) -> NoReturn:
        raise ToolError(f"usage: {self.prog}: {message}")


def add_elf_list(subparsers: Any) -> None:
    parser = subparsers.add_parser("elf-list", help="list ELF files under a folder")
    parser.add_argument("--root", type=Path, required=True)
    parser.set_defaults(handler=cmd_elf_list)


def add_closure(subparsers: Any) -> None:
    parser = subparsers.add_parser("closure", help="copy the shared-library closure")
    parser.add_argument("--root", type=Path, required=True, help="package root")
    parser.add_argument("--lib-dir", type=Path, required=True, help="where copies go")
    parser.add_argument("--search-dir", type=Path, action="append", default=[],
                        help="in-package library folder for ldd (repeatable)")
    parser.add_argument("--exclude", action="append", default=[],
                        help="soname regex (re.fullmatch) never copied, added to the defaults")
    parser.add_argument("--no-default-excludes", action="store_true",
                        help="do not exclude the glibc family")
    parser.add_argument("--dry-run", action="store_true", help="report, copy nothing")
    parser.set_defaults(handler=cmd_closure)


def add_glibc(subparsers: Any) -> None:
    parser = subparsers.add_parser("glibc", help="report and gate glibc symbol versions")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--max-version", help="newest glibc the target has, e.g. 2.34")
    parser.set_defaults(handler=cmd_glibc)


def add_zip(subparsers: Any) -> None:
    parser = subparsers.add_parser("zip", help="write a deterministic zip")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--level", type=int, default=9, help="deflate level 0-9")
    parser.set_defaults(handler=cmd_zip)


def add_split(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "split", help="write a Lambda layer zip (R, lib, python/) and a function zip")
    parser.add_argument("--root", type=Path, required=True, help="the one-zip package tree")
    parser.add_argument("--function", action="extend", nargs="+", required=True,
                        help="top-level files of the function zip (handler, model, checks)")
    parser.add_argument("--layer-out", type=Path, required=True)
    parser.add_argument("--function-out", type=Path, required=True)
    parser.add_argument("--level", type=int, default=9, help="deflate level 0-9")
    parser.set_defaults(handler=cmd_split)


def add_sizes(subparsers: Any) -> None:
    parser = subparsers.add_parser("sizes", help="gate a zip on Lambda's size limits")
    parser.add_argument("--zip", type=Path, required=True)
    parser.add_argument("--max-zip-bytes", type=int, default=LAMBDA_MAX_ZIP_BYTES)
    parser.add_argument("--max-unzipped-bytes", type=int, default=LAMBDA_MAX_UNZIPPED_BYTES)
    parser.set_defaults(handler=cmd_sizes)


def add_prune(subparsers: Any) -> None:
    parser = subparsers.add_parser("prune", help="remove files and folders by glob")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--pattern", action="extend", nargs="+", required=True,
                        help="globs relative to --root (several after one flag, or repeat it)")
    parser.set_defaults(handler=cmd_prune)


def add_python_abi(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "python-abi", help="gate extension modules and bytecode on the target's Python")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--python", required=True, help="the target's Python, e.g. 3.13")
    parser.set_defaults(handler=cmd_python_abi)


def build_parser() -> argparse.ArgumentParser:
    parser = ToolArgumentParser(prog="lambda_pkgtool.py", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    adders: list[Callable[[Any], None]] = [
        add_elf_list, add_closure, add_glibc, add_python_abi, add_zip, add_split, add_sizes,
        add_prune,
    ]
    for add in adders:
        add(subparsers)
    return parser


def emit(obj: dict[str, Any] | list[str]) -> None:
    print(json.dumps(obj), flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        result = args.handler(args)
    except ToolError as exc:
        print(f"lambda_pkgtool: error: {exc.message}", file=sys.stderr, flush=True)
        emit({"error": exc.message, "exit_code": exc.code, **exc.details})
        return exc.code
    except OSError as exc:
        message = f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
        print(f"lambda_pkgtool: error: {message}", file=sys.stderr, flush=True)
        emit({"error": message, "exit_code": EXIT_ERROR})
        return EXIT_ERROR
    except Exception as exc:  # a bug: still one line and one JSON object
        message = f"internal error: {type(exc).__name__}: {exc}"
        print(f"lambda_pkgtool: error: {message}", file=sys.stderr, flush=True)
        emit({"error": message, "exit_code": EXIT_INTERNAL})
        return EXIT_INTERNAL
    emit(result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
