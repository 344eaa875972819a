#!/usr/bin/env python3
"""Measure the package of one Lambda stand-in container (standard library only).

Runs inside a container made like a Lambda sandbox by bench/run.py: the package
read-only at /var/task, awslambdaric's wheels unpacked at /var/runtime, this script,
lambda_invoke.pyz (package_test's stand-in, packed) and bench_predict.py at /bench, /tmp
the only writable folder.

    python3.13 in_host.py cold --handler MODULE [--python python3.13]
    python3.13 in_host.py warm --handler MODULE [--calls 1000] [--batch-size 1000]

cold: one cold start through Lambda's runtime client. lambda_invoke serves the Runtime
API and runs ``python3.13 -m awslambdaric MODULE.lambda_handler`` as nobody with Lambda's
environment; the one event is a direct call whose answer is checked. Prints the Python
that ran, init_s (process start to the first GET /next), first_invoke_s (that event
handed out to its answer posted), first_prediction_s (their sum: process start to the
first prediction) and peak_rss_mb (the client's VmHWM after that answer).

warm: bench/bench_predict.py run as nobody with Lambda's environment (BENCH_HANDLER
names the module): single-call median of --calls calls, median of 5 batches; with
--model, of that model (MODEL_PATH) instead of the package's.

Both print one JSON object on stdout; exit 1 with the reason on stderr when the package
fails to answer.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
from typing import Any

TASK_ROOT = "/var/task"
RUNTIME_DIR = "/var/runtime"
OPT_DIR = "/opt"
TOOLS = os.path.dirname(os.path.abspath(__file__))
USER = "nobody"
TIMEOUT_S = 120
# The direct call of roles/package_test/files/lambda_events.json: both handlers answer it
# with {"result": ..., "probability": ...}; the model is the same glm, so the same value.
# Another model (bench/package_models.py) is checked against its own probability for it.
GLM_PROBABILITY = 0.7384


def first_event(probability: float = GLM_PROBABILITY) -> list[dict[str, Any]]:
    """The cold start's one event, expecting PROBABILITY (to 4 decimals) and its result."""
    return [
        {
            "name": "direct call answers P(admit) for gre 800, gpa 4, rank 1",
            "event": {"gre": 800, "gpa": 4, "rank": 1},
            "expect": {
                "kind": "response",
                "json_subset": {"result": probability > 0.5, "probability": probability},
                "abs_tol": 0.00005,
            },
        }
    ]


FIRST_EVENT = first_event()


def lambda_env(module: str, python_minor: str, path: str) -> dict[str, str]:
    """Lambda's environment for a function in MODULE: its library path, no R_HOME."""
    return {
        "PATH": path,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LD_LIBRARY_PATH": ":".join([
            "/var/lang/lib", "/lib64", "/usr/lib64", RUNTIME_DIR, f"{RUNTIME_DIR}/lib",
            TASK_ROOT, f"{TASK_ROOT}/lib", f"{OPT_DIR}/lib",
        ]),
        "PYTHONPATH": ":".join([
            TASK_ROOT, f"{OPT_DIR}/python/lib/python{python_minor}/site-packages",
            f"{OPT_DIR}/python", RUNTIME_DIR,
        ]),
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{python_minor}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "BENCH_HANDLER": module,
    }


def cold_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The figures of one lambda_invoke report; SystemExit when the call did not pass."""
    if report.get("error") or report.get("passed") != 1:
        cases = report.get("cases") or [{}]
        reason = report.get("error") or cases[0].get("message") or "no answer"
        raise SystemExit(f"the cold start through the runtime client failed: {reason}")
    init_s, first_s = report["init_s"], report["first_invoke_s"]
    return {
        "python": report["python"],
        "init_s": init_s,
        "first_invoke_s": first_s,
        "first_prediction_s": round(init_s + first_s, 6),
        "peak_rss_mb": report["peak_rss_mb"],
    }


def as_user(user: str) -> list[str]:
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]


def cold(module: str, python: str, probability: float = GLM_PROBABILITY) -> dict[str, Any]:
    events, report = "/tmp/bench-events.json", "/tmp/bench-cold.json"
    with open(events, "w", encoding="utf-8") as handle:
        json.dump(first_event(probability), handle)
    if os.path.exists(report):
        os.remove(report)
    done = subprocess.run(
        [python, os.path.join(TOOLS, "lambda_invoke.pyz"), "--python", python,
         "--task-root", TASK_ROOT, "--runtime-dir", RUNTIME_DIR, "--opt-dir", OPT_DIR,
         "--events", events, "--junit", "/tmp/bench-cold.xml", "--report", report,
         "--user", USER, "--handler", f"{module}.lambda_handler", "--timeout", str(TIMEOUT_S)],
        capture_output=True, text=True, check=False,
    )
    if not os.path.exists(report):
        raise SystemExit(f"lambda_invoke wrote no report (exit {done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    with open(report, encoding="utf-8") as handle:
        return cold_summary(json.load(handle))


def warm(
    module: str, python: str, calls: int, batch_size: int, model: str | None = None
) -> dict[str, Any]:
    minor = ".".join(map(str, sys.version_info[:2]))
    env = lambda_env(module, minor, os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"))
    if model:
        env["MODEL_PATH"] = model  # another model than the package's admission.rds
    done = subprocess.run(
        [*as_user(USER), python, os.path.join(TOOLS, "bench_predict.py"),
         "--calls", str(calls), "--batch-size", str(batch_size)],
        cwd=TASK_ROOT, env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench_predict.py failed in {TASK_ROOT} (exit {done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("cold", "warm"))
    parser.add_argument("--handler", default="handler", help="module with lambda_handler")
    parser.add_argument("--python", default="python3.13", help="the runtime's interpreter")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--model", help="warm: predict with this .rds instead")
    parser.add_argument("--probability", type=float, default=GLM_PROBABILITY,
                        help="cold: the probability the package's model gives the event")
    args = parser.parse_args()
    if args.what == "cold":
        result = cold(args.handler, args.python, args.probability)
    else:
        result = warm(args.handler, args.python, args.calls, args.batch_size, args.model)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
