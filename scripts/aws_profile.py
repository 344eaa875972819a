#!/usr/bin/env python3
"""Write (or rewrite) one AWS profile for a moto server, as botocore and the aws CLI read it.

  scripts/aws_profile.py DIR PROFILE ENDPOINT_URL [REGION]

DIR/config gets ``[profile PROFILE]`` (``region``, ``endpoint_url``), DIR/credentials
``[PROFILE]`` (moto's keys: it accepts any, these are "sandbox"). Only that profile's
section is replaced: every other section of either file, and its comments, are kept. Both
files are mode 0600, DIR 0700, each written whole to a temporary file then renamed, so a
reader never sees half a file. What scripts/sandbox-moto.sh start and the sandbox tests'
fixture call; the local platform's profile (role local_s3) lives in another folder.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

# moto accepts any key; these stand for "not AWS's".
SANDBOX_KEY = "sandbox"


def _header(profile: str, *, config: bool) -> re.Pattern[str]:
    prefix = r"profile\s+" if config and profile != "default" else ""
    return re.compile(rf"^\[\s*{prefix}{re.escape(profile)}\s*\]\s*$")


def replace_section(text: str, header: re.Pattern[str], section: str) -> str:
    """text with the section whose header matches replaced by section (appended when there
    is none); a section runs to the next line that opens one."""
    lines, out, found, inside = text.splitlines(keepends=True), [], False, False
    for line in lines:
        if line.lstrip().startswith("["):
            inside = bool(header.match(line.strip()))
            if inside and not found:
                out.append(section)
                found = True
            if inside:
                continue
        if not inside:
            out.append(line)
    kept = "".join(out)
    if found:
        return kept
    # Appended after a blank line.
    kept = kept.rstrip("\n")
    return f"{kept}\n\n{section}" if kept else section


def _write_private(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp's file is 0600 already
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_profile(
    folder: Path,
    profile: str,
    endpoint_url: str,
    region: str = "us-east-1",
    access_key: str = SANDBOX_KEY,
    secret_key: str = SANDBOX_KEY,
    writer: str = "scripts/aws_profile.py",
) -> tuple[Path, Path]:
    """Write the profile into folder/config and folder/credentials; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    config, credentials = folder / "config", folder / "credentials"
    name = profile if profile == "default" else f"profile {profile}"
    sections = {
        config: (
            _header(profile, config=True),
            f"[{name}]\n# Written by {writer}: a moto server.\n"
            f"region = {region}\nendpoint_url = {endpoint_url}\n\n",
        ),
        credentials: (
            _header(profile, config=False),
            f"[{profile}]\n# Written by {writer}: moto's keys (it accepts any).\n"
            f"aws_access_key_id = {access_key}\naws_secret_access_key = {secret_key}\n\n",
        ),
    }
    for path, (header, section) in sections.items():
        old = path.read_text() if path.exists() else ""
        _write_private(path, replace_section(old, header, section))
    return config, credentials


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    folder, profile, endpoint_url = Path(argv[0]), argv[1], argv[2]
    region = argv[3] if len(argv) == 4 else "us-east-1"
    write_profile(folder.resolve(), profile, endpoint_url, region)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
