"""Entry point: `python3 lambda_pkgtool.pyz SUBCOMMAND ...` (the zip application the role
ships), or `python -m lambda_pkgtool ...` where the package is installed."""

import sys

from lambda_pkgtool.cli import main

sys.exit(main())
