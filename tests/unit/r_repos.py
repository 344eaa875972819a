"""Tiny R package repositories for the tests of module_utils/r_packages.py: fake source
tarballs (a DESCRIPTION and nothing else), a CRAN-like tree, a Debian-like archive signed
with a throwaway key, served over HTTP from a folder."""

from __future__ import annotations

import functools
import hashlib
import io
import lzma
import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def description(name: str, version: str, **fields: str) -> str:
    lines = [f"Package: {name}", f"Version: {version}", "Title: A test package"]
    lines += [f"{key.replace('_', '-')}: {value}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def tarball(path: Path, name: str, version: str, top: str | None = None, **fields: str) -> Path:
    """An R source tarball at ``path`` holding ``<top or name>/DESCRIPTION``."""
    data = description(name, version, **fields).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(f"{top or name}/DESCRIPTION")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return path


def cran_repo(root: Path, packages: dict[str, dict[str, str]],
              archived: dict[str, dict[str, str]] | None = None) -> Path:
    """A CRAN-like tree: ``packages`` {"name_version": fields} current (in PACKAGES, with
    their MD5sum), ``archived`` under src/contrib/Archive/<name>/."""
    contrib = root / "src" / "contrib"
    index = []
    for key, fields in packages.items():
        name, version = key.split("_")
        made = tarball(contrib / f"{key}.tar.gz", name, version, **fields)
        md5 = hashlib.md5(made.read_bytes()).hexdigest()
        index.append(description(name, version, **fields, MD5sum=md5))
    for key, fields in (archived or {}).items():
        name, version = key.split("_")
        tarball(contrib / "Archive" / name / f"{key}.tar.gz", name, version, **fields)
    (contrib / "PACKAGES").write_text("\n".join(index))
    return root


def gpg(home: Path, *args: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", *args],
                   check=True, capture_output=True)


def signing_key(home: Path) -> Path:
    """A throwaway signing key in ``home``; its public keyring for gpgv."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", "Test archive <test@example.org>",
        "ed25519", "sign", "never")
    keyring = home / "keyring.gpg"
    gpg(home, "--output", str(keyring), "--export")
    stop_agent(home)
    return keyring


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent gpg started for ``home`` (it would outlive the tests)."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                   check=False, capture_output=True)


def debian_archive(root: Path, home: Path, suite: str,
                   sources: dict[str, tuple[str, str, dict[str, str]]]) -> Path:
    """A Debian-like archive: ``sources`` {source name: (debian version, R name, fields)},
    each with an orig tarball under pool/, listed in main/source/Sources.xz, whose sha256
    is in dists/<suite>/InRelease, clearsigned by the key in ``home``."""
    paragraphs = []
    for source, (debian_version, name, fields) in sources.items():
        upstream = debian_version.rsplit("-", 1)[0]
        directory = f"pool/main/{source[0]}/{source}"
        orig = f"{source}_{upstream}.orig.tar.gz"
        made = tarball(root / directory / orig, name, fields.pop("Version", upstream), **fields)
        digest = hashlib.sha256(made.read_bytes()).hexdigest()
        paragraphs.append(
            f"Package: {source}\nBinary: r-cran-{name.lower()}\nVersion: {debian_version}\n"
            f"Build-Depends: debhelper-compat (= 13), r-base-dev\n"
            f"Checksums-Sha256:\n {'0' * 64} 1200 {source}_{debian_version}.dsc\n"
            f" {digest} {made.stat().st_size} {orig}\nDirectory: {directory}\n")
    paragraphs.append("Package: hello\nBinary: hello\nVersion: 2.10-3\n"
                      "Directory: pool/main/h/hello\n")
    dists = root / "dists" / suite
    (dists / "main" / "source").mkdir(parents=True)
    data = lzma.compress("\n".join(paragraphs).encode())
    (dists / "main" / "source" / "Sources.xz").write_bytes(data)
    release = dists / "Release"
    release.write_text(f"Origin: Test\nSuite: {suite}\nSHA256:\n"
                       f" {hashlib.sha256(data).hexdigest()} {len(data)} main/source/Sources.xz\n")
    gpg(home, "--output", str(dists / "InRelease"), "--clearsign", str(release))
    return root


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def served(root: Path) -> Iterator[str]:
    """``root`` over HTTP on a free loopback port, as long as the block runs."""
    handler = functools.partial(_QuietHandler, directory=os.fspath(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
