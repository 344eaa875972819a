"""Entry point: `python3 lambda_invoke.pyz ARGS ...` (the zip application the roles ship),
or `python -m lambda_invoke ARGS ...` where the package is installed."""

import sys

from lambda_invoke.cli import main

sys.exit(main())
