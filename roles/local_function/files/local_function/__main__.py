"""Entry point: `python3 local_function COMMAND ...`, or `python3 -m local_function ...`."""

import os
import sys

if not __package__:
    # Run as a folder, Python put the folder itself first on sys.path: put the folder above
    # instead, so that the modules are imported as this package's (and never shadow the
    # standard library's).
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from local_function.cli import main

sys.exit(main())
