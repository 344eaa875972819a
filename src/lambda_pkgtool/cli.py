"""The command line: one argument parser per subcommand, and main(), which runs one."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from .archive import cmd_sizes, cmd_split, cmd_zip
from .closure import cmd_closure
from .common import EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, ToolError, cmd_elf_list
from .glibc import cmd_glibc
from .inventory import cmd_dists, cmd_inventory
from .prune import cmd_prune
from .python_abi import cmd_python_abi

DESCRIPTION = "Inspect, complete, gate and zip an AWS Lambda package (see the package docstring)."


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
                        help="soname regex (re.fullmatch) never copied (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="report, copy nothing")
    parser.set_defaults(handler=cmd_closure)


def add_glibc(subparsers: Any) -> None:
    parser = subparsers.add_parser("glibc", help="report and gate glibc symbol versions")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--max-version", help="newest glibc the target has, e.g. 2.34")
    parser.add_argument("--max-glibcxx", help="newest GLIBCXX_ the target has, e.g. 3.4.29")
    parser.add_argument("--max-cxxabi", help="newest CXXABI_ the target has, e.g. 1.3.13")
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
    parser.add_argument("--max-zip-bytes", type=int, help="gate: no gate when left out")
    parser.add_argument("--max-unzipped-bytes", type=int, help="gate: no gate when left out")
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


def add_inventory(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "inventory", help="list what the package holds, for its bill of materials")
    parser.add_argument("--root", type=Path, required=True, help="package root")
    parser.add_argument("--wheels", type=Path, help="the wheels and sdists it was installed from")
    parser.add_argument("--dists", type=Path,
                        help="what dists saved before pruning (else the dist-info folders left)")
    parser.add_argument("--lib-dir", type=Path, help="where the closure's copies are (ROOT/lib)")
    parser.add_argument("--library", action="append", default=[],
                        help="SONAME=SOURCE of a library the closure copied (repeatable)")
    parser.add_argument("--file", action="append", default=[],
                        help="a file under --root to list with its sha256 (repeatable)")
    parser.set_defaults(handler=cmd_inventory)


def add_dists(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dists", help="save the installed Python distributions and their files (pre-prune)")
    parser.add_argument("--root", type=Path, required=True, help="package root")
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.set_defaults(handler=cmd_dists)


def build_parser() -> argparse.ArgumentParser:
    parser = ToolArgumentParser(prog="lambda_pkgtool", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    adders: list[Callable[[Any], None]] = [
        add_elf_list, add_closure, add_glibc, add_python_abi, add_zip, add_split, add_sizes,
        add_prune, add_dists, add_inventory,
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
