"""Invoke a deployed-as-on-Lambda handler the way Lambda does, and check its answers.

The tool serves Lambda's Runtime API (2018-06-01) on 127.0.0.1 and starts Lambda's own
runtime interface client against it, as the managed Python runtimes do::

    <python> -m awslambdaric handler.lambda_handler     (cwd: the task root)

optionally as an unprivileged user (``setpriv``, from util-linux), with an environment
like Lambda's: nothing is inherited but PATH (no R_HOME, no PYTHON* variables).
Each case of the events file is handed out on ``GET /invocation/next``; what the client
posts back (``/response`` or ``/error``) is checked against the case's expectation.

Run as ``python3 lambda_invoke.pyz --python PYTHON --events FILE --junit FILE --report FILE ...``
(the zip application roles package_test and deploy pack from this package with module
r_lambda.release.zipapp; ``python -m lambda_invoke`` where the package is installed).
One module per concern: errors (UsageError), cases (the events file, its format, and the
judging of an answer), runtime_api (the Runtime API server), client (the runtime
client process and Lambda's environment), driver (the run), reports (the JUnit XML file
and the JSON report) and cli (the arguments and main).

Events file: a JSON list of ``{"name": ..., "event": ..., "expect": ...}`` (the
expectations are described in cases.py).

Outputs: a JUnit XML file (one testcase per case; system-out holds the path the client
posted to and the body it posted), a JSON report (python version, init time, first
invocation time, peak RSS of the client, the cases: each with its event and what the client
posted, the record a deploy's smoke test compares with) and a last stdout line
``N passed, M failed``.

Exit status: 0 every case passed; 1 a case failed; 2 bad arguments or events file;
3 the runtime client failed: it reported an init error, exited early, or did not answer
within --timeout (the cases not run are reported as failed).

Standard library only; runs on Python 3.9 to 3.14 (awslambdaric itself needs 3.10+).
The names other code uses (role deploy's filters, role local_function's front, the bench
and the tests) are re-exported here.
"""

from .cases import Case, ignoring, judge, load_cases, parse_cases, subset_mismatches, without_keys
from .cli import ACCOUNT_ID, EXIT_CLIENT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, main, parse_args
from .client import Client, interpreter_version, lambda_environment, run_as
from .driver import CaseResult, RunResult, drive, exit_description
from .errors import UsageError
from .reports import junit_xml, report_json, write_outputs
from .runtime_api import (
    ANSWERED,
    EXITED,
    INIT_FAILED,
    MAX_BODY,
    TIMED_OUT,
    BadRequest,
    BodyTooLarge,
    BoundedHandler,
    BoundedHTTPServer,
    InitError,
    Invocation,
    RequestTimeout,
    RuntimeApi,
    RuntimeApiHandler,
    RuntimeApiServer,
    content_length,
)

__all__ = [
    "ACCOUNT_ID",
    "ANSWERED",
    "EXITED",
    "EXIT_CLIENT",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "INIT_FAILED",
    "MAX_BODY",
    "TIMED_OUT",
    "BadRequest",
    "BodyTooLarge",
    "BoundedHTTPServer",
    "BoundedHandler",
    "Case",
    "CaseResult",
    "Client",
    "InitError",
    "Invocation",
    "RequestTimeout",
    "RunResult",
    "RuntimeApi",
    "RuntimeApiHandler",
    "RuntimeApiServer",
    "UsageError",
    "content_length",
    "drive",
    "exit_description",
    "ignoring",
    "interpreter_version",
    "judge",
    "junit_xml",
    "lambda_environment",
    "load_cases",
    "main",
    "parse_args",
    "parse_cases",
    "report_json",
    "run_as",
    "subset_mismatches",
    "without_keys",
    "write_outputs",
]
