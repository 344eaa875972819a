#!/usr/bin/env python3
"""Measure one unzipped package inside a clean host (standard library only).

    python3 in_host.py TASK_ROOT[:MODULE] [...] [--starts 5] [--calls 1000] [--batch-size 1000]

Prints one JSON object, by task root:
- cold_start_s: median and max wall time from spawning a fresh Python process to its
  first prediction (import handler, start R, read the model, predict), --starts times;
  the roots take turns, so a change of load on the machine hits them alike;
- the warm figures of bench_predict.py (single-call median of --calls, batch median).
MODULE (default handler) is the handler module measured in that root.
Environment as Lambda sets it: task root on PYTHONPATH, its lib/ on LD_LIBRARY_PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

FIRST_PREDICTION = (
    "import importlib, os; handler = importlib.import_module(os.environ['BENCH_HANDLER']); "
    "print(handler.admit_probability(800, 4, 1), flush=True)"
)


def lambda_env(root: str, module: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("R_", "PYTHON"))}
    env.update(
        BENCH_HANDLER=module,
        LAMBDA_TASK_ROOT=root,
        PYTHONPATH=root,
        LD_LIBRARY_PATH=os.path.join(root, "lib"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def split(spec: str) -> tuple[str, str]:
    """TASK_ROOT[:MODULE] -> (root, module)."""
    root, _, module = spec.partition(":")
    return root, module or "handler"


def cold_start(spec: str) -> float:
    root, module = split(spec)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", FIRST_PREDICTION],
        cwd=root, env=lambda_env(root, module), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - started
    _, err = proc.communicate()
    if proc.returncode != 0 or not line.strip():
        raise SystemExit(f"cold start failed in {root}: {err.strip()[-2000:]}")
    return elapsed


def warm(spec: str, calls: int, batch_size: int) -> dict:
    root, module = split(spec)
    bench = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_predict.py")
    out = subprocess.run(
        [sys.executable, bench, "--calls", str(calls), "--batch-size", str(batch_size)],
        cwd=root, env=lambda_env(root, module), capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"warm benchmark failed in {root}: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    starts: dict[str, list[float]] = {root: [] for root in args.roots}
    for _ in range(args.starts):
        for root in args.roots:
            starts[root].append(cold_start(root))
    result = {
        root: {
            "cold_start_s": round(statistics.median(times), 4),
            "cold_start_max_s": round(max(times), 4),
            "cold_starts_s": [round(t, 4) for t in times],
            **warm(root, args.calls, args.batch_size),
        }
        for root, times in starts.items()
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
