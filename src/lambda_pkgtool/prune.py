"""prune: remove files and folders of the package by glob, never outside its root."""

from __future__ import annotations

import argparse
import os
import shutil
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .common import ToolError, is_inside, log, require_dir


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
