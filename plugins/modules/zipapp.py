#!/usr/bin/python
"""Pack Python package folders into one runnable file, a zip application.

A host runs it as ``python3 <dest> ARGS``: Python imports the packages from the zip and the
zip's ``__main__.py`` calls the entry point. The roles pack the project's tools from src/
this way (a tool and the packages it imports, standard library only). One file is one
transfer (package_test's stand-in is nine modules: copied one by one, each costs a round
trip to the host), and only the packages' ``.py`` files go in, never the bytecode the
controller's own imports leave in ``__pycache__``. The zip is the same bytes for the same
sources (fixed timestamps, sorted entries), written only when it differs, by a rename, so
that runs side by side may share it.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: zipapp
short_description: Pack Python package folders into one runnable zip application
version_added: 1.0.0
description:
  - Writes I(dest), a zip application a host runs as C(python3 <dest> ARGS) - Python imports the
    packages from the zip and the zip's C(__main__.py) calls I(main).
  - Only the packages' C(.py) files go in (never the bytecode in C(__pycache__)). The zip is the
    same bytes for the same sources (fixed timestamps, sorted entries), written only when it
    differs, by a rename, so that runs side by side may share it.
  - The roles ship the collection's tools (its C(src/) folder) with it - C(lambda_package) its
    package tool, C(package_test) and C(deploy) their Runtime API stand-in (one file is one
    transfer), C(local_function) its front with the stand-in it imports.
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - Check mode says whether I(dest) would change, and writes nothing.
options:
  packages:
    type: list
    elements: path
    required: true
    description:
      - The package folders (each with its __init__.py beside its modules), each packed under
        its own name at the top of the zip.
  main:
    type: str
    required: true
    description: "The entry point, module:function, e.g. lambda_invoke.cli:main."
  dest:
    type: path
    required: true
    description: The zip application to write (its folder is created).
"""

EXAMPLES = r"""
- name: Pack the stand-in
  r_lambda.release.zipapp:
    packages: ["{{ role_path }}/../../src/lambda_invoke"]
    main: lambda_invoke.cli:main
    dest: /tmp/lambda_invoke.pyz
  delegate_to: localhost

- name: Pack the local function's front with the stand-in it imports
  r_lambda.release.zipapp:
    packages:
      - "{{ role_path }}/../../src/local_function"
      - "{{ role_path }}/../../src/lambda_invoke"
    main: local_function.cli:main
    dest: /tmp/local_function.pyz
"""

RETURN = r"""
dest:
  description: The zip application.
  returned: always
  type: str
  sample: /tmp/lambda_invoke.pyz
size:
  description: Its size in bytes.
  returned: when not in check mode
  type: int
  sample: 41290
"""

import io
import os
import tempfile
import zipfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

# The zip's __main__.py: the entry point's return value is the exit status.
MAIN = """import {module}

raise SystemExit({module}.{function}())
"""
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def pack(packages: list[Path], main: str) -> bytes:
    """The zip application's bytes: MAIN, then each package's .py files, sorted."""
    module, _colon, function = main.partition(":")
    if not all(part.isidentifier() for part in module.split(".")) or not function.isidentifier():
        raise ValueError(f"main={main!r} is not module:function (e.g. lambda_invoke.cli:main)")
    if not packages:
        raise ValueError("packages is empty: name at least the package of main")
    for package in packages:
        if not (package / "__init__.py").is_file():
            raise ValueError(f"packages: {str(package)!r} is not a package folder (no __init__.py)")
    names = [package.name for package in packages]
    if len(set(names)) != len(names):
        raise ValueError(f"packages: two folders of the same name ({', '.join(sorted(names))})")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        entries = [("__main__.py", MAIN.format(module=module, function=function).encode())]
        for package in sorted(packages, key=lambda p: p.name):
            files = sorted(package.rglob("*.py"))  # sources only: never __pycache__'s bytecode
            entries += [(f"{package.name}/{p.relative_to(package).as_posix()}", p.read_bytes())
                        for p in files]
        for name, data in entries:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()


def holds(dest: Path, data: bytes) -> bool:
    """dest is a file of exactly these bytes."""
    return dest.is_file() and dest.read_bytes() == data


def write(dest: Path, data: bytes) -> bool:
    """Write dest unless it holds these bytes already; True when written."""
    if holds(dest, data):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(part, 0o644)
        os.replace(part, dest)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
    return True


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "packages": {"type": "list", "elements": "path", "required": True},
            "main": {"type": "str", "required": True},
            "dest": {"type": "path", "required": True},
        },
        supports_check_mode=True,
    )
    dest = Path(module.params["dest"])
    try:
        data = pack([Path(p) for p in module.params["packages"]], module.params["main"])
    except (OSError, ValueError) as error:
        module.fail_json(msg=str(error))
    if module.check_mode:
        module.exit_json(changed=not holds(dest, data), dest=str(dest))
    try:
        changed = write(dest, data)
    except OSError as error:
        module.fail_json(msg=f"writing dest={str(dest)!r} failed: {error}")
    module.exit_json(changed=changed, dest=str(dest), size=len(data))


if __name__ == "__main__":
    main()
