"""closure: copy the shared libraries the package's ELF files load (ldd, to a fixed point)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import (
    EXIT_UNRESOLVED,
    ToolError,
    find_elf_files,
    is_inside,
    log,
    relpath,
    require_dir,
)

LDD_TIMEOUT_SECONDS = 120


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


def compile_excludes(patterns: list[str]) -> list[re.Pattern[str]]:
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
        excludes=compile_excludes(args.exclude),
        dry_run=args.dry_run,
        ldd=ldd,
    )
    return compute_closure(plan)
