#!/usr/bin/env python3
"""Print prediction timings of the handler as one JSON object (standard library only).

    PYTHONPATH=DIR python3 bench_predict.py [--calls 1000] [--batch-size 1000] [--batch-repeats 5]

DIR holds the handler: a package's root (Lambda's task root) or the repository's handler/.

- ``load_ms``: first prediction in this process (import rpy2, start R, read the model).
- ``single_call_median_ms``: median of ``--calls`` calls of admit_probability().
- ``batch_median_ms``: median of ``--batch-repeats`` calls of admit_probabilities() on
  ``--batch-size`` applicants (one R call each).
- ``method``: how the model predicts: ``direct`` (the model matrix times the
  coefficients, then the inverse link, as predict.glm computes them) or ``predict.glm``.

The model comes from the handler's usual source (MODEL_PATH, bundled, or S3).
"""

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any, Optional

# The module measured: the handler, or another with the same functions (BENCH_HANDLER, e.g.
# the benchmark's 2017-style baseline handler).
handler = importlib.import_module(os.environ.get("BENCH_HANDLER", "handler"))


def _milliseconds(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def _applicants(count: int, ranks: tuple = (1, 2, 3, 4)) -> list:
    """A deterministic spread of valid applicants, of the ranks the model knows."""
    return [
        {
            "gre": 200 + (i * 37) % 601,
            "gpa": round((i * 0.13) % 4.0, 2),
            "rank": ranks[i % len(ranks)],
        }
        for i in range(count)
    ]


def _ranks() -> tuple:
    """The ranks the model knows (the 2017 baseline handler knows no such thing: all four)."""
    return tuple(getattr(handler.get_model(), "ranks", (1, 2, 3, 4)))


def measure(calls: int, batch_size: int, batch_repeats: int) -> dict:
    load_ms = _milliseconds(lambda: handler.get_model())
    rank = _ranks()[0]
    load_ms += _milliseconds(lambda: handler.admit_probability(800, 4, rank))
    for _ in range(min(calls, 20)):  # warm up
        handler.admit_probability(800, 4, rank)
    single = [_milliseconds(lambda: handler.admit_probability(800, 4, rank)) for _ in range(calls)]
    batch = _applicants(batch_size, _ranks())
    batches = [
        _milliseconds(lambda: handler.admit_probabilities(batch)) for _ in range(batch_repeats)
    ]
    return {
        "load_ms": round(load_ms, 3),
        "single_calls": calls,
        "single_call_median_ms": round(statistics.median(single), 4),
        "single_call_p90_ms": round(sorted(single)[int(0.9 * (calls - 1))], 4),
        "batch_size": batch_size,
        "batch_repeats": batch_repeats,
        "batch_median_ms": round(statistics.median(batches), 3),
        "batch_per_applicant_ms": round(statistics.median(batches) / batch_size, 5),
        "python": platform.python_version(),
        "model": handler.get_model().source,
        "method": getattr(handler.get_model(), "method", "predict.glm"),
    }


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if min(args.calls, args.batch_size, args.batch_repeats) < 1:
        parser.error("--calls, --batch-size and --batch-repeats must be at least 1")
    print(json.dumps(measure(args.calls, args.batch_size, args.batch_repeats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
