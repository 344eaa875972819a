"""What every subcommand shares: exit codes, the error it raises, logging, walking a tree."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_ERROR = 2
EXIT_UNRESOLVED = 3
EXIT_GLIBC_TOO_NEW = 4
EXIT_TOO_LARGE = 5
EXIT_WRONG_PYTHON = 6

ELF_MAGIC = b"\x7fELF"


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
