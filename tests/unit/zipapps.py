"""The project's tools as the roles ship them to hosts: packages of src/ packed into one zip
application by the collection's module zipapp, and run as ``python3 <tool>.pyz ...``."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from module_loading import load

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
# Written by content (the same sources, the same file): sessions side by side share them,
# and `make clean` removes them with the rest of .state/tmp.
PACKED = REPO / ".state" / "tmp" / "tools"
zipapp = load("zipapp_module", REPO / "plugins" / "modules" / "zipapp.py")


@functools.cache
def packed(main: str, *packages: str) -> Path:
    """The zip application of these packages of src/ whose entry point is ``main``
    (module:function), as the roles pack it."""
    data = zipapp.pack([SRC / name for name in packages], main)
    dest = PACKED / f"{packages[0]}-{hashlib.sha256(data).hexdigest()[:12]}.pyz"
    zipapp.write(dest, data)
    return dest
