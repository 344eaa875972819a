"""What the modules share: package_test's Runtime API stand-in, the containers' label, the
operator's error and the front's log."""

from __future__ import annotations

import sys
import time

# The Runtime API, the runtime client process and Lambda's environment variables come from
# package_test's stand-in, the package lambda_invoke beside this one (src/ of the
# repository; the role's zip application carries both).
import lambda_invoke as li

__all__ = ["ID_LABEL", "FrontError", "li", "log"]

ID_LABEL = "r-lambda.local_function"


class FrontError(Exception):
    """A message for the operator: what failed and what to do."""


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} local_function: {message}\n")
    sys.stderr.flush()
