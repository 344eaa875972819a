"""tools/orig_matches_cran.py: Debian's xz orig tarball is recognised as CRAN's .tar.gz
when gzip --best (zlib, the file's name and time in the header, as R's make dist on the
release manager's machine) of its tar rebuilds CRAN's sha256, and refused when a byte of
the tar differs."""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "orig_matches_cran.py"
NEWEST = 1_782_284_048  # the newest member's time
PACKED_AFTER = 21  # seconds from it to the gzip header's time


def _tar(version_text: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data, mtime in (("R-9.9.9/VERSION", version_text, NEWEST),
                                  ("R-9.9.9/README", b"R\n" * 5000, NEWEST - 60)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), mtime
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _cran_gzip(tar: bytes, name: bytes, mtime: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, 8)
    header = b"\x1f\x8b\x08\x08" + mtime.to_bytes(4, "little") + b"\x02\x03" + name + b"\0"
    trailer = (zlib.crc32(tar) & 0xFFFFFFFF).to_bytes(4, "little") + len(tar).to_bytes(4, "little")
    return header + compressor.compress(tar) + compressor.flush() + trailer


def _run(orig: Path, sha256: str) -> tuple[int, dict]:
    done = subprocess.run([sys.executable, str(TOOL), str(orig), sha256, "--window", "120"],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, json.loads(done.stdout)


def test_the_time_that_rebuilds_crans_tarball_is_found(tmp_path: Path) -> None:
    tar = _tar(b"9.9.9\n")
    cran = _cran_gzip(tar, b"R-9.9.9.tar", NEWEST + PACKED_AFTER)
    orig = tmp_path / "r-base_9.9.9.orig.tar.xz"
    orig.write_bytes(lzma.compress(tar))
    code, report = _run(orig, hashlib.sha256(cran).hexdigest())
    assert code == 0
    assert report["matches_cran"] is True
    assert report["gzip_name"] == "R-9.9.9.tar"
    assert (report["gzip_mtime"], report["seconds_after_newest_member"]) == (
        NEWEST + PACKED_AFTER, PACKED_AFTER)
    assert report["tar_sha256"] == hashlib.sha256(tar).hexdigest()


def test_a_tar_that_differs_by_one_byte_matches_no_time(tmp_path: Path) -> None:
    cran = _cran_gzip(_tar(b"9.9.9\n"), b"R-9.9.9.tar", NEWEST + PACKED_AFTER)
    orig = tmp_path / "r-base_9.9.9.orig.tar.xz"
    orig.write_bytes(lzma.compress(_tar(b"9.9.8\n")))
    code, report = _run(orig, hashlib.sha256(cran).hexdigest())
    assert code == 1
    assert (report["matches_cran"], report["gzip_mtime"]) == (False, None)
