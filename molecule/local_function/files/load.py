#!/usr/bin/env python3
"""Send requests to a local function continuously while it is redeployed.

    load.py URL WORK_DIR [--threads N] [--max-seconds S] [--after N]

Threads send ``{"gre": 700, "gpa": 3.5, "rank": 2}`` over keep-alive connections until
WORK_DIR/stop exists (WORK_DIR/started is written after the first answer), then N more
requests. Prints one JSON object: total, failed (any answer but 200, or no answer), the
first failures, the count per X-Function-Version, and the versions of the last N.
"""

from __future__ import annotations

import argparse
import http.client
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

BODY = json.dumps({"gre": 700, "gpa": 3.5, "rank": 2})


def one(conn: http.client.HTTPConnection) -> tuple[int, str | None, bytes]:
    conn.request("POST", "/", BODY, {"Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, answer.getheader("X-Function-Version"), answer.read()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("work_dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--after", type=int, default=20)
    args = parser.parse_args()
    target = urlsplit(args.url)
    work = Path(args.work_dir)
    stop, lock = work / "stop", threading.Lock()
    versions: Counter[str] = Counter()
    failures: list[str] = []
    counts = {"total": 0}
    end = time.monotonic() + args.max_seconds

    def record(status: int | None, version: str | None, detail: Any) -> None:
        with lock:
            counts["total"] += 1
            versions[str(version)] += 1
            if status != 200:
                failures.append(f"{status}: {detail!r}"[:300])

    def worker() -> None:
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        while not stop.exists() and time.monotonic() < end:
            try:
                status, version, body = one(conn)
                record(status, version, body)
                (work / "started").touch()
            except (OSError, http.client.HTTPException) as exc:
                record(None, None, exc)
                conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    after: Counter[str] = Counter()
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
    for _ in range(args.after):
        status, version, body = one(conn)
        record(status, version, body)
        after[str(version)] += 1
    print(json.dumps({"total": counts["total"], "failed": len(failures),
                      "failures": failures[:5], "versions": dict(versions),
                      "after_versions": dict(after), "stopped_by_file": stop.exists()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
