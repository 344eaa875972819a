"""What the modules share: package_test's Runtime API stand-in, the containers' label, the
operator's error and the front's log."""

from __future__ import annotations

import sys
import time
from pathlib import Path

# The Runtime API, the runtime client process and Lambda's environment variables come from
# package_test's stand-in (lambda_invoke.py, or a lambda_invoke/ package folder): next to
# these modules when copied, else in the source tree (roles/package_test/files, two folders
# above roles/local_function/files/local_function/).
_HERE = Path(__file__).resolve().parent
for _candidate in (_HERE, _HERE.parents[2] / "package_test" / "files"):
    if (_candidate / "lambda_invoke.py").is_file() or (
        _candidate / "lambda_invoke" / "__init__.py"
    ).is_file():
        sys.path.insert(0, str(_candidate))
        break
import lambda_invoke as li  # noqa: E402

__all__ = ["ID_LABEL", "FrontError", "li", "log"]

ID_LABEL = "r-lambda.local_function"


class FrontError(Exception):
    """A message for the operator: what failed and what to do."""


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stderr.write(f"{stamp} local_function: {message}\n")
    sys.stderr.flush()
