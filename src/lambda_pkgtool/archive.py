"""zip, split and sizes: deterministic zips of the package, and Lambda's size gate."""

from __future__ import annotations

import argparse
import hashlib
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

from .common import EXIT_TOO_LARGE, ToolError, log, require_dir

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
ZIP_CREATE_SYSTEM_UNIX = 3


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
            "top_level": sorted({arcname.split("/", 1)[0] for arcname, _data in entries})}


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
    missing = sorted(names - {arcname for arcname, _data in entries})
    if missing:
        raise ToolError(f"--function names files that are not at the package root: "
                        f"{', '.join(missing)}")
    layer: list[tuple[str, Path]] = []
    function: list[tuple[str, Path]] = []
    for arcname, path in entries:
        top, _sep, rest = arcname.partition("/")
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
    zip_bytes: int, unzipped_bytes: int, max_zip: int | None, max_unzipped: int | None
) -> list[str]:
    problems = []
    if max_zip is not None and zip_bytes > max_zip:
        problems.append(f"zipped {megabytes(zip_bytes)} > limit {megabytes(max_zip)} "
                        "(Lambda direct-upload limit)")
    if max_unzipped is not None and unzipped_bytes > max_unzipped:
        problems.append(f"unzipped {megabytes(unzipped_bytes)} > limit "
                        f"{megabytes(max_unzipped)} (Lambda unzipped-size limit)")
    return problems


# R's packages sit under R/library/<name>/ in the one-zip package and in the layer alike.
R_LIBRARY = "R/library/"


def r_package_sizes(infos: list[zipfile.ZipInfo]) -> dict[str, dict[str, int]]:
    """Each R package's bytes in the zip (unzipped and compressed) and its file count,
    largest first."""
    sizes: dict[str, dict[str, int]] = {}
    for info in infos:
        if info.is_dir() or not info.filename.startswith(R_LIBRARY):
            continue
        name = info.filename[len(R_LIBRARY):].split("/", 1)[0]
        entry = sizes.setdefault(name, {"unzipped_bytes": 0, "zip_bytes": 0, "file_count": 0})
        entry["unzipped_bytes"] += info.file_size
        entry["zip_bytes"] += info.compress_size
        entry["file_count"] += 1
    return dict(sorted(sizes.items(), key=lambda item: (-item[1]["unzipped_bytes"], item[0])))


def largest_packages(sizes: dict[str, dict[str, int]], limit: int = 3) -> str:
    shown = [f"{name} {megabytes(size['unzipped_bytes'])} unzipped "
             f"({megabytes(size['zip_bytes'])} zipped)"
             for name, size in list(sizes.items())[:limit]]
    return f"; largest R packages: {', '.join(shown)}" if shown else ""


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
    r_packages = r_package_sizes(infos)
    output = {
        "zip_bytes": zip_bytes,
        "unzipped_bytes": unzipped,
        "file_count": sum(1 for info in infos if not info.is_dir()),
        "max_zip_bytes": args.max_zip_bytes,
        "max_unzipped_bytes": args.max_unzipped_bytes,
        "r_packages": r_packages,
        "ok": not problems,
    }
    log(f"{path}: zipped {megabytes(zip_bytes)}, unzipped {megabytes(unzipped)}")
    if problems:
        raise ToolError(f"package too large: {'; '.join(problems)}{largest_packages(r_packages)}",
                        EXIT_TOO_LARGE, output)
    return output
