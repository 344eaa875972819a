"""Filters of the lambda_package role: the hash-pinned requirement files (locks) of the
Python distributions a package is built from."""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

# One entry of a pip-compile/uv lock: "name==version \" then "--hash=sha256:..." lines
# (comments and "# via" lines between entries are not part of it).
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(?P<version>[^\s;\\]+)")
HASH = re.compile(r"--hash=sha256:(?P<sha256>[0-9a-f]{64})")


def canonical_name(name: str) -> str:
    """PEP 503's normalised name: rpy2_rinterface, Rpy2.Rinterface -> rpy2-rinterface."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _entries(text: str) -> list[dict]:
    entries: list[dict] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            match = PIN.match(line)
            if match is None:
                raise AnsibleFilterError(
                    f"lock line {line!r} is not a pin (name==version): every requirement of a "
                    "hash-pinned lock is pinned to one version")
            entries.append({"name": canonical_name(match["name"]), "version": match["version"],
                            "sha256": [], "lines": [line.split(" #")[0].rstrip()]})
        elif entries:
            entries[-1]["lines"].append(line.split(" #")[0].rstrip())
        for found in HASH.finditer(line):
            if entries:
                entries[-1]["sha256"].append(found["sha256"])
    for entry in entries:
        if not entry["sha256"]:
            raise AnsibleFilterError(
                f"{entry['name']}=={entry['version']} has no --hash=sha256: in the lock: every "
                "distribution is installed with --require-hashes")
    return entries


def python_lock_pins(text: str) -> list[dict]:
    """Each pin of a lock: name (normalised), version and the sha256 of its allowed files."""
    return [{key: entry[key] for key in ("name", "version", "sha256")} for entry in _entries(text)]


def python_lock_select(text: str, only: list[str] | None = None,
                       without: list[str] | None = None) -> str:
    """The lock's entries named in only (all when None) and not in without, as a
    requirement file for pip --require-hashes. A name in only that the lock lacks fails."""
    entries = _entries(text)
    names = {entry["name"] for entry in entries}
    wanted = None if only is None else {canonical_name(name) for name in only}
    missing = sorted((wanted or set()) - names)
    if missing:
        raise AnsibleFilterError(f"the lock pins no {', '.join(missing)}")
    skipped = {canonical_name(name) for name in without or []}
    kept = [entry for entry in entries
            if (wanted is None or entry["name"] in wanted) and entry["name"] not in skipped]
    return "".join("\n".join(entry["lines"]).rstrip(" \\") + "\n" for entry in kept)


class FilterModule:
    def filters(self) -> dict:
        return {"python_lock_pins": python_lock_pins, "python_lock_select": python_lock_select}
