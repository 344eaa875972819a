"""Entry point: `python3 lambda_invoke ARGS ...`, or `python3 -m lambda_invoke ARGS ...`."""

import os
import sys

if not __package__:
    # Run as a folder, Python put the folder itself first on sys.path: put the folder above
    # instead, so that the modules are imported as this package's (and never shadow the
    # standard library's).
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from lambda_invoke.cli import main

sys.exit(main())
