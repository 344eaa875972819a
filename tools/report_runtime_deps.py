#!/usr/bin/env python3
"""Print what one prediction needs at run time, as JSON (standard library + handler).

    PYTHONPATH=DIR python3 report_runtime_deps.py

DIR holds the handler: a package's root or the repository's handler/. Imports the
handler, makes one prediction (which starts R and reads the model from the
handler's usual source: MODEL_PATH, bundled, or S3) and prints

    {"python_modules": [...], "r_namespaces": [...]}

- ``python_modules``: the entries of sys.modules from outside the standard library
  that importing the handler and predicting added (e.g. rpy2.*, _cffi_backend and
  rpy2's compiled _rinterface_cffi_api; not the handler's own modules, not what the
  interpreter's site setup had loaded already).
- ``r_namespaces``: R's loadedNamespaces() after that prediction.

A package needs these and their files; Python distributions and R packages listed in
neither are not used by a prediction (S3 adds boto3 and botocore when the model comes
from there).
"""

import json
import os
import sys
import sysconfig


def _stdlib_dirs() -> list:
    paths = sysconfig.get_paths()
    dirs = {os.path.realpath(paths[name]) for name in ("stdlib", "platstdlib")}
    return sorted(d for d in dirs if os.path.isdir(d))


def _location(module: object) -> str:
    path = getattr(module, "__file__", None)
    if not path:
        locations = list(getattr(module, "__path__", []) or [])  # a namespace package
        path = locations[0] if locations else ""
    return os.path.realpath(path) if path else ""


def _is_standard(name: str, stdlib_dirs: list) -> bool:
    """Whether ``name`` belongs to the standard library (decided by its top-level module)."""
    top = name.split(".")[0]
    if top in sys.builtin_module_names:
        return True
    stdlib_names = getattr(sys, "stdlib_module_names", None)  # Python >= 3.10
    if stdlib_names is not None:
        return top in stdlib_names
    location = _location(sys.modules.get(top))
    if not location:
        return True  # frozen or built in
    parts = location.split(os.sep)
    in_stdlib = any(os.path.commonpath([location, d]) == d for d in stdlib_dirs)
    return in_stdlib and "site-packages" not in parts and "dist-packages" not in parts


def report() -> dict:
    stdlib_dirs = _stdlib_dirs()
    before = set(sys.modules)
    import handler  # found through PYTHONPATH

    handler.admit_probability(800, 4, 1)
    handler_dir = os.path.dirname(_location(handler))
    added = sorted(
        name
        for name in list(sys.modules)
        if name not in before
        and not _is_standard(name, stdlib_dirs)
        and os.path.dirname(_location(sys.modules[name])) != handler_dir
    )
    import admission_r_session

    ri = admission_r_session.start_r()  # the R the prediction started
    with admission_r_session.R_LOCK:
        namespaces = sorted(ri.baseenv["loadedNamespaces"]())
    return {"python_modules": added, "r_namespaces": namespaces}


def main() -> int:
    print(json.dumps(report()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
