"""Entry point: `python3 local_function.pyz COMMAND ...` (the zip application the role
runs), or `python -m local_function COMMAND ...` where the package is installed."""

import sys

from local_function.cli import main

sys.exit(main())
