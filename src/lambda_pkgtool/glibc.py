"""glibc: report and gate the newest GLIBC_x.y symbol version every ELF file needs."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from typing import Any

from .common import EXIT_GLIBC_TOO_NEW, ToolError, find_elf_files, log, relpath, require_dir
from .elf import FileVersions, VersionNeed, read_file_versions

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


def libstdcxx_too_new(name: str, needs: dict[str, str], ceilings: dict[str, str]
                      ) -> list[dict[str, Any]]:
    """The GLIBCXX_/CXXABI_ needs of one file above the target's libstdc++ (its loader takes
    the runtime's libstdc++ before a bundled copy, so the runtime's is what counts)."""
    return [{"file": name, "family": family, "needs": needs[family], "max": ceiling}
            for family, ceiling in ceilings.items()
            if family in needs and version_key(needs[family]) > version_key(ceiling)]


def libstdcxx_message(too_new: list[dict[str, Any]], limit: int = 5) -> str:
    shown = ", ".join(f"{item['file']} needs {item['family']}_{item['needs']}"
                      for item in too_new[:limit])
    more = f" (and {len(too_new) - limit} more)" if len(too_new) > limit else ""
    ceilings = ", ".join(sorted({f"{item['family']}_{item['max']}" for item in too_new}))
    return (f"libstdc++ too new for the target: {len({i['file'] for i in too_new})} file(s) "
            f"need more than the runtime's libstdc++ has ({ceilings}): {shown}{more}")


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
    cxx_ceilings = {family: value for family, value in
                    (("GLIBCXX", args.max_glibcxx), ("CXXABI", args.max_cxxabi)) if value}
    for family, value in cxx_ceilings.items():
        if not re.fullmatch(r"\d+(?:\.\d+)+", value):
            raise ToolError(f"--max-{family.lower()} {value!r} is not a version like 3.4.29")
    cxx_too_new: list[dict[str, Any]] = []
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
            cxx_too_new.extend(libstdcxx_too_new(name, extra, cxx_ceilings))
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
        "max_libstdcxx": cxx_ceilings,
        "libstdcxx_too_new": cxx_too_new,
    }
    log(f"{len(elf_files)} ELF files, newest glibc needed: {output['max_glibc']}")
    problems = ([glibc_message(too_new, ceiling)] if too_new else []) + (
        [libstdcxx_message(cxx_too_new)] if cxx_too_new else [])
    if problems:
        raise ToolError("; ".join(problems), EXIT_GLIBC_TOO_NEW, output)
    return output
