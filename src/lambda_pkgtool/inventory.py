"""inventory: what a package holds, for its bill of materials (the release's SBOM).

- the Python distributions installed in the package (their *.dist-info), each matched to
  the wheel or sdist it was installed from (in --wheels) and that file's sha256;
- the R packages under R/library (their DESCRIPTION's Package and Version);
- the shared libraries the closure copied (--library SONAME=SOURCE), each with the sha256
  of the copy shipped and the distribution package that owns its source on the build host
  (dpkg on Debian, rpm on Amazon Linux and Fedora; none when neither knows the file);
- the files given with --file (the handler's), each with its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

from .common import ToolError, require_dir

OWNER_TIMEOUT_SECONDS = 60
RPM_FORMAT = "%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH}\\n"
# A wheel: name-version(-build)?-python-abi-platform.whl; an sdist: name-version.tar.gz|.zip
WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")
SDIST = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+?)\.(?:tar\.gz|zip|tar\.bz2)$")


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifacts(wheels: Path | None) -> dict[tuple[str, str], dict[str, str]]:
    """(canonical name, version) -> {file, sha256} of every wheel and sdist in the folder."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for path in sorted(wheels.iterdir()) if wheels else []:
        match = WHEEL.match(path.name) or SDIST.match(path.name)
        if match and path.is_file():
            key = (canonical_name(match["name"]), match["version"])
            found[key] = {"file": path.name, "sha256": file_sha256(path)}
    return found


def installed(root: Path) -> list[dict[str, Any]]:
    """Each *.dist-info under root: name, version, license and the files its RECORD lists."""
    found = []
    for metadata in sorted(root.glob("*.dist-info/METADATA")):
        headers = HeaderParser().parsestr(metadata.read_text(errors="replace"))
        name, version = headers["Name"], headers["Version"]
        if not name or not version:
            raise ToolError(f"{metadata} names no Name or Version")
        record = metadata.with_name("RECORD")
        files = ([line.rsplit(",", 2)[0] for line in record.read_text().splitlines() if line]
                 if record.is_file() else [])
        found.append({"name": name, "version": version, "dist_info": metadata.parent.name,
                      "license": headers.get("License-Expression") or "",
                      "files": sorted(f for f in files if not f.startswith(("..", "/")))})
    return found


def cmd_dists(args: argparse.Namespace) -> dict[str, Any]:
    """Save what pip installed (before pruning removes dist-info folders and RECORDs)."""
    found = installed(require_dir(args.root, "--root"))
    args.out.write_text(json.dumps(found, indent=1) + "\n")
    return {"distributions": len(found), "out": str(args.out)}


def shipped(root: Path, dist: dict[str, Any]) -> bool:
    """A distribution is in the package while its dist-info or any file it installed is."""
    return (root / dist["dist_info"]).is_dir() or any((root / f).exists() for f in dist["files"])


def python_distributions(root: Path, wheels: Path | None,
                         saved: Path | None = None) -> list[dict[str, Any]]:
    files = artifacts(wheels)
    distributions = []
    found = json.loads(saved.read_text()) if saved else installed(root)
    for dist in found:
        if not shipped(root, dist):
            continue  # pruned whole (lambda_package_prune): not in the package
        name, version = dist["name"], dist["version"]
        artifact = files.get((canonical_name(name), version))
        if wheels and artifact is None:
            raise ToolError(f"{name} {version} is installed in the package but no wheel or sdist "
                            f"of it is in {wheels}: where did it come from?")
        distributions.append({"name": name, "version": version, "license": dist["license"],
                              **(artifact or {"file": "", "sha256": ""})})
    return distributions


def r_packages(root: Path) -> list[dict[str, str]]:
    packages = []
    for description in sorted((root / "R" / "library").glob("*/DESCRIPTION")):
        fields = HeaderParser().parsestr(description.read_text(errors="replace"))
        packages.append({"name": fields["Package"] or description.parent.name,
                         "version": fields["Version"] or "",
                         "license": " ".join((fields["License"] or "").split())})
    return packages


def run(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False,
                              timeout=OWNER_TIMEOUT_SECONDS)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def usr_merge_aliases(path: str) -> list[str]:
    """dpkg records /lib/... while a merged-/usr system resolves to /usr/lib/...: try both."""
    paths = [path]
    for short, long in (("/lib/", "/usr/lib/"), ("/lib64/", "/usr/lib64/"),
                        ("/bin/", "/usr/bin/"), ("/sbin/", "/usr/sbin/")):
        if path.startswith(long):
            paths.append(short + path[len(long):])
        elif path.startswith(short):
            paths.append(long + path[len(short):])
    return paths


def dpkg_owner(paths: list[str]) -> dict[str, str] | None:
    for path in paths:
        out = run(["dpkg-query", "-S", path])
        if not out:
            continue
        package = out.splitlines()[0].split(":")[0].strip()
        arch_package = out.splitlines()[0].rsplit(": ", 1)[0].strip()
        version = run(["dpkg-query", "-W", "-f=${Version} ${Architecture}", arch_package])
        if version:
            number, _sep, arch = version.strip().partition(" ")
            return {"manager": "dpkg", "name": package, "version": number, "arch": arch}
    return None


def rpm_owner(paths: list[str]) -> dict[str, str] | None:
    for path in paths:
        out = run(["rpm", "-qf", "--qf", RPM_FORMAT, path])
        if out and " " in out:
            name, version, arch = out.splitlines()[0].split(" ", 2)
            return {"manager": "rpm", "name": name,
                    "version": version[2:] if version.startswith("0:") else version, "arch": arch}
    return None


def owner_of(sources: list[str]) -> dict[str, str]:
    """The distribution package that installed the file, by any of its names."""
    paths = [alias for source in sources for alias in usr_merge_aliases(source)]
    if shutil.which("dpkg-query"):
        owner = dpkg_owner(paths)
        if owner:
            return owner
    if shutil.which("rpm"):
        owner = rpm_owner(paths)
        if owner:
            return owner
    return {"manager": "", "name": "", "version": "", "arch": ""}


def shared_libraries(root: Path, lib_dir: Path, libraries: list[str]) -> list[dict[str, Any]]:
    found = []
    for item in libraries:
        soname, sep, source = item.partition("=")
        if not sep or not soname or not source:
            raise ToolError(f"--library {item!r} is not SONAME=SOURCE")
        shipped = lib_dir / soname
        if not shipped.is_file():
            raise ToolError(f"--library {soname}: {shipped} is not in the package")
        # The closure names the resolved file; the owner may list the soname link instead.
        names = [source, str(Path(source).with_name(soname)), os.path.realpath(source)]
        found.append({"soname": soname, "source": source,
                      "path": shipped.relative_to(root).as_posix(),
                      "sha256": file_sha256(shipped),
                      "package": owner_of(list(dict.fromkeys(names)))})
    return sorted(found, key=lambda library: library["soname"])


def cmd_inventory(args: argparse.Namespace) -> dict[str, Any]:
    root = require_dir(args.root, "--root")
    wheels = require_dir(args.wheels, "--wheels") if args.wheels else None
    files = []
    for name in args.file:
        path = root / name
        if not path.is_file():
            raise ToolError(f"--file {name}: {path} is not in the package")
        files.append({"path": name, "sha256": file_sha256(path), "bytes": path.stat().st_size})
    return {
        "python_distributions": python_distributions(root, wheels, args.dists),
        "r_packages": r_packages(root),
        "shared_libraries": shared_libraries(root, Path(args.lib_dir or root / "lib"),
                                             args.library),
        "files": files,
    }
