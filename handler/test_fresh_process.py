"""Checks of a deployment package that start fresh Python processes, as Lambda starts the
function (stdlib only: run by run_checks.py with the others, and first).

This process never starts R itself: every R here runs in a child, one child at a time, so
that the clean host's memory cap (the function's target memory) holds one R at a time, as
Lambda's does. A child R beside an R of this process's own would need twice the function's
memory, and a model that fits the target could be killed for the checks' sake.
"""

import functools
import json
import os
import subprocess
import sys
import textwrap
import unittest
from typing import Optional

import admission_r_session

HERE = os.path.dirname(os.path.abspath(__file__))


def _child(code: str, env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """CODE in a fresh Python process in the package root, as Lambda starts the function."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@functools.cache
def _reference() -> dict:
    """A rank the model knows (a model fitted without rank 1 does not know rank 1) and the
    probability the handler gives gre 800, gpa 4 and that rank, from a child of its own."""
    done = _child(
        """
        import json
        import handler
        rank = handler.get_model().ranks[0]
        print(json.dumps({"rank": rank, "probability": handler.admit_probability(800, 4, rank)}))
        """
    )
    if done.returncode != 0:
        raise AssertionError(f"the handler did not predict in a child process: {done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def _bits(values: list) -> list:
    return [float(v).hex() for v in values]


class FreshProcessTest(unittest.TestCase):
    def test_a_cold_start_writes_only_its_log_lines(self) -> None:
        """A fresh process's first invocation, and its exit, write the function's own log
        lines and nothing else: no R startup or exit warning (a locale the system lacks,
        a file the package left out), no rpy2 or Python message. LANG is Lambda's."""
        event = {"gre": 800, "gpa": 4, "rank": _reference()["rank"]}
        done = _child(
            f"import handler\nhandler.lambda_handler({event!r}, None)\n",
            env={**os.environ, "LANG": "en_US.UTF-8"},
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stderr, "")
        # Every line is one of the handler's own JSON log lines (json.loads fails on any
        # other): the model's plan at load, when it predicts through R, then the invocation's.
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertEqual([line["outcome"] for line in lines if "outcome" in line], ["ok"])

    def test_r_starts_without_running_r_or_rscript(self) -> None:
        if not (os.environ.get("R_HOME") or admission_r_session.packaged_r_home()):
            self.skipTest("neither R_HOME nor a packaged R/ is set: rpy2 would ask `R RHOME`")
        reference = _reference()
        done = _child(
            f"""
            import json, sys
            spawned = []
            def audit(event, args):
                if event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
                    spawned.append(event + " " + repr(args)[:120])
            sys.addaudithook(audit)
            import handler
            probability = handler.admit_probability(800, 4, {reference["rank"]!r})
            print(json.dumps({{"spawned": spawned, "probability": probability}}))
            """
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        report = json.loads(done.stdout.splitlines()[-1])
        self.assertEqual(report["spawned"], [])
        self.assertEqual(_bits([report["probability"]]), _bits([reference["probability"]]))


if __name__ == "__main__":
    unittest.main()
