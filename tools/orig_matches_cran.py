#!/usr/bin/env python3
"""Check that Debian's recompressed R tarball holds CRAN's bytes (standard library only).

    python3 tools/orig_matches_cran.py r-base_4.6.1.orig.tar.xz CRAN_SHA256 [--name R-4.6.1.tar]

Debian ships R's upstream tarball as ``r-base_<version>.orig.tar.xz``; CRAN publishes
``R-<version>.tar.gz``, made by R's ``make dist``: ``tar -cf R-<version>.tar`` then
``gzip --best`` of that file (the gzip header keeps its name and modification time).
When Debian only changed the compression, gzip --best of the unpacked tar, with that name
and a time a few seconds after the newest member's, gives CRAN's file exactly: this tool
compresses once (zlib, level 9) and tries each time in a window after the newest member,
and says which one rebuilds CRAN_SHA256. Exit 0 with the time found, 1 when none does
(then the bytes differ, or CRAN's gzip was another implementation: compare the unpacked
trees instead).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import struct
import sys
import tarfile
import zlib

FNAME = 0x08  # gzip header flag: the original file name follows
BEST = 2  # gzip header XFL: maximum compression
UNIX = 3  # gzip header OS


def gzip_header(name: bytes, mtime: int) -> bytes:
    return struct.pack("<BBBBIBB", 0x1F, 0x8B, 8, FNAME, mtime, BEST, UNIX) + name + b"\0"


def find_mtime(tar: bytes, name: str, sha256: str, start: int, window: int) -> int | None:
    """The gzip time in [start, start + window) at which gzip --best of tar, named name,
    has this sha256; None when no time gives it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, 8)
    body = compressor.compress(tar) + compressor.flush()
    trailer = struct.pack("<II", zlib.crc32(tar) & 0xFFFFFFFF, len(tar) & 0xFFFFFFFF)
    for mtime in range(start, start + window):
        digest = hashlib.sha256(gzip_header(name.encode(), mtime))
        digest.update(body)
        digest.update(trailer)
        if digest.hexdigest() == sha256:
            return mtime
    return None


def newest_member(tar: bytes) -> int:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return max(member.mtime for member in archive.getmembers())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("orig", help="Debian's r-base_<version>.orig.tar.xz")
    parser.add_argument("cran_sha256", help="sha256 of CRAN's R-<version>.tar.gz")
    parser.add_argument("--name",
                        help="file name in CRAN's gzip header (default: the tar's top folder.tar)")
    parser.add_argument("--window", type=int, default=3600,
                        help="seconds after the newest member to try (default 3600)")
    args = parser.parse_args(argv)
    with lzma.open(args.orig) as handle:
        tar = handle.read()
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        top = archive.getnames()[0].split("/")[0]
    name = args.name or f"{top}.tar"
    start = newest_member(tar)
    found = find_mtime(tar, name, args.cran_sha256.lower(), start, args.window)
    print(json.dumps({"orig": args.orig, "tar_sha256": hashlib.sha256(tar).hexdigest(),
                      "gzip_name": name, "matches_cran": found is not None,
                      "gzip_mtime": found, "seconds_after_newest_member": None
                      if found is None else found - start}))
    return 0 if found is not None else 1


if __name__ == "__main__":
    sys.exit(main())
