#!/usr/bin/python
"""Configure, compile and install an autotools source tree, then pack the installed tree.

R and the target Python are both built this way on the build host: ``./configure``,
``make -jN``, ``make install DESTDIR=<stage>``, and a tarball of ``<stage><prefix>`` that
the controller keeps in its machine-wide cache. Each step writes its log in the sources
(configure.log, make.log, install.log) and leaves a stamp there, so a build interrupted
half-way goes on from the step it reached. The module is meant to run with ``async`` and
``poll: 0`` (module r_lambda.release.build_wait follows it and says how long is left), so
that the Python build runs beside R's, whose ``make`` leaves one of two cores idle most of
the time. A failed step fails the module with the end of its log.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: source_build
short_description: Configure, compile, install and pack an autotools source tree
version_added: 1.0.0
description:
  - C(./configure), C(make -jN), C(make install DESTDIR=stage), then a gzipped tarball of the
    installed tree (owner root, numeric ids), written under a temporary name and renamed.
  - Each step logs to C(<step>.log) in I(chdir) and leaves a stamp, so that a build that was
    interrupted resumes from the step it reached.
  - "Meant to run with C(async) and C(poll: 0), followed by r_lambda.release.build_wait."
  - A failed step fails the task with the end of its log (of C(config.log) for C(configure)).
author:
  - r-lambda maintainers (!UNKNOWN)
notes:
  - No check mode. Runs on the build host, which needs a C(make) and C(tar).
options:
  chdir:
    type: path
    required: true
    description: The unpacked sources (where configure is).
  configure:
    type: list
    elements: str
    default: []
    description: Arguments of C(./configure), C(--prefix) included.
  jobs:
    type: int
    default: 0
    description: Parallel make jobs; 0 for one per CPU of the host.
  make:
    type: list
    elements: list
    default: [[]]
    description:
      - The C(make) runs before C(make install), each a list of arguments after C(make -jN),
        in order (C([[]]), one run of the default target).
      - "R's release build runs C([[R], [-C, doc, docs]]): R itself, then only the documents
        C(make install) copies."
  stage:
    type: path
    required: true
    description: Folder C(make install) installs into (C(DESTDIR)).
  prefix:
    type: path
    required: true
    description: The install prefix; C(<stage><prefix>) is packed.
  tarball:
    type: path
    required: true
    description: The tarball of the installed tree to write.
  record:
    type: dict
    default: {}
    description: >-
      Written as JSON, with the steps' seconds added, to I(record_file) in the tree before
      it is packed.
  record_file:
    type: str
    default: ""
    description: File name, relative to the installed tree, of I(record) (empty writes none).
  niceness:
    type: int
    default: 0
    description: >-
      Added to the build's niceness (0 to 19): a build in the background at 19 takes only
      the CPU another build leaves idle.
"""

EXAMPLES = r"""
- name: Build R in the background
  r_lambda.release.source_build:
    chdir: /var/tmp/r-runtime-source/0123456789abcdef/R-4.6.1
    configure: [--prefix=/opt/R/4.6.1, --enable-R-shlib, --without-x]
    stage: /var/tmp/r-runtime-source/0123456789abcdef/stage
    prefix: /opt/R/4.6.1
    tarball: /var/tmp/r-runtime-source/0123456789abcdef/R-4.6.1.tar.gz
  async: 3600
  poll: 0
  register: build
"""

RETURN = r"""
seconds:
  description: Seconds each step took in this run (a step done by an earlier run is 0).
  type: dict
  returned: success
  sample: {configure: 31.2, make: 170.5, install: 8.1, pack: 2.6}
tarball:
  description: The tarball written.
  type: str
  returned: success
  sample: /var/tmp/r-runtime-source/0123456789abcdef/R-4.5.0.tar.gz
"""

import json
import os
import subprocess
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

TAIL_LINES = 60


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class StepFailed(Exception):
    pass


def run_step(chdir: Path, name: str, argv: list[str]) -> float:
    """Run one step with its output in <name>.log unless its stamp says it is done."""
    stamp = chdir / f".source-build-{name}.done"
    if stamp.exists():
        return 0.0
    log = chdir / f"{name}.log"
    start = time.monotonic()
    with log.open("wb") as out:
        rc = subprocess.call(argv, cwd=chdir, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
    if rc != 0:
        detail = tail(chdir / "config.log") if name == "configure" else tail(log)
        raise StepFailed(f"{name} failed with exit code {rc} in {chdir} ({log.name}); "
                         f"its last lines:\n{detail}")
    stamp.touch()
    return round(time.monotonic() - start, 1)


def build(params: dict) -> dict[str, float]:
    chdir = Path(params["chdir"])
    if not (chdir / "configure").is_file():
        raise StepFailed(f"chdir={str(chdir)!r} holds no configure script: "
                         "unpack the sources first")
    jobs = params["jobs"] or os.cpu_count() or 1
    stage = Path(params["stage"])
    seconds = {
        "configure": run_step(chdir, "configure", ["./configure", *params["configure"]]),
        "make": sum(run_step(chdir, "make" if not index else f"make-{index + 1}",
                             ["make", f"-j{jobs}", *map(str, arguments)])
                    for index, arguments in enumerate(params["make"])),
        "install": run_step(chdir, "install", ["make", "install", f"DESTDIR={stage}"]),
    }
    tree = Path(f"{stage}{params['prefix']}")
    if params["record_file"]:
        (tree / params["record_file"]).write_text(
            json.dumps({**params["record"], "seconds": seconds}, indent=2, sort_keys=True) + "\n")
    tarball = Path(params["tarball"])
    part = tarball.with_name(tarball.name + ".part")
    start = time.monotonic()
    rc = subprocess.call(["tar", "-C", str(tree), "--owner=0", "--group=0", "--numeric-owner",
                          "-czf", str(part), "."], stdin=subprocess.DEVNULL)
    if rc != 0:
        part.unlink(missing_ok=True)
        raise StepFailed(f"packing {tree} into {tarball} failed with exit code {rc}")
    part.rename(tarball)
    seconds["pack"] = round(time.monotonic() - start, 1)
    return seconds


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "chdir": {"type": "path", "required": True},
            "configure": {"type": "list", "elements": "str", "default": []},
            "jobs": {"type": "int", "default": 0},
            "make": {"type": "list", "elements": "list", "default": [[]]},
            "stage": {"type": "path", "required": True},
            "prefix": {"type": "path", "required": True},
            "tarball": {"type": "path", "required": True},
            "record": {"type": "dict", "default": {}},
            "record_file": {"type": "str", "default": ""},
            "niceness": {"type": "int", "default": 0},
        },
    )
    if not 0 <= module.params["niceness"] <= 19:
        module.fail_json(msg=f"niceness must be 0 to 19, got {module.params['niceness']}")
    try:
        os.nice(module.params["niceness"])  # this process's and so every step's
        seconds = build(module.params)
    except (StepFailed, OSError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=True, seconds=seconds, tarball=module.params["tarball"])


if __name__ == "__main__":
    main()
