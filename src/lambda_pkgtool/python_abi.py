"""python-abi: gate extension modules and bytecode on the target's Python."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from .common import (
    EXIT_WRONG_PYTHON,
    ToolError,
    is_elf,
    iter_regular_files,
    log,
    relpath,
    require_dir,
)

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
