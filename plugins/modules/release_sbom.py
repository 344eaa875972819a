#!/usr/bin/python
"""Write a release's bill of materials (CycloneDX 1.6 JSON) from its package report."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_sbom
short_description: Write a release's CycloneDX SBOM from its package report
version_added: 1.0.0
description:
  - Writes I(dest), a CycloneDX 1.6 JSON bill of materials of one release, with
    cyclonedx-python-lib, and validates it against CycloneDX's JSON schema before it is
    kept (an invalid one fails the task and leaves nothing at I(dest)).
  - Its components are R (version, source URL and sha256), the target's Python (the same;
    scope C(excluded), Lambda provides it), every Python distribution in the package (with
    the sha256 of the wheel or sdist it was installed from), every R package shipped, every
    bundled shared library (the sha256 of the copy, and the Debian or Amazon Linux package
    it came from and its version, as a purl), and the handler's files and the model.
  - The same inputs give the same bytes (fixed serial number per release, sorted keys).
author:
  - r-lambda maintainers (!UNKNOWN)
requirements: [cyclonedx-python-lib (with its json-validation extra)]
notes:
  - Check mode says whether I(dest) would change, and writes nothing.
options:
  dest:
    type: path
    required: true
    description: Where the SBOM is written (replaced by a rename).
  release:
    type: dict
    required: true
    description:
      - C(version) and C(created_at) of the release, C(name) of the application
        (C(admission) by default) and C(distro), the purl namespace of the build host's
        packages (C(debian), C(amzn)).
  report:
    type: dict
    required: true
    description: The package report (lambda_package_report), with its C(inventory).
  r:
    type: dict
    required: true
    description: R's C(version), and C(url), C(sha256) and C(method) when built from source.
  python:
    type: dict
    required: true
    description: The target Python's C(version), and C(url) and C(sha256) when built from source.
"""

EXAMPLES = r"""
- name: Write the release's bill of materials
  r_lambda.release.release_sbom:
    dest: "{{ run_dir }}/sbom.cdx.json"
    release: {version: "{{ version }}", created_at: "{{ created_at }}", distro: debian}
    report: "{{ lambda_package_report }}"
    r: "{{ r_runtime_provenance }}"
    python: "{{ target_python_provenance }}"
"""

RETURN = r"""
sha256:
  description: The SBOM file's sha256.
  type: str
  returned: success
  sample: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
bytes:
  description: Its size in bytes.
  type: int
  returned: success
  sample: 48213
components:
  description: How many components it lists.
  type: int
  returned: success
  sample: 143
spec_version:
  description: The CycloneDX version it follows.
  type: str
  returned: success
  sample: "1.6"
"""

import hashlib
import os
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.r_lambda.release.plugins.module_utils.sbom import (
    IMPORT_ERROR as SBOM_IMPORT_ERROR,  # cyclonedx-python-lib missing: said below, with the fix
)
from ansible_collections.r_lambda.release.plugins.module_utils.sbom import (
    SPEC_VERSION,
    SbomError,
    build_bom,
    render,
)


def write_atomically(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(part, 0o644)
    os.replace(part, dest)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "release": {"type": "dict", "required": True},
            "report": {"type": "dict", "required": True},
            "r": {"type": "dict", "required": True},
            "python": {"type": "dict", "required": True},
        },
        supports_check_mode=True,
    )
    if SBOM_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib("cyclonedx-python-lib[json-validation]"),
                         exception=SBOM_IMPORT_ERROR)
    params = module.params
    try:
        bom = build_bom(params["release"], params["report"], params["r"], params["python"])
        text = render(bom)
    except (SbomError, KeyError, ValueError) as error:
        module.fail_json(msg=f"cannot write the release's SBOM: {error}")
    dest = Path(params["dest"])
    changed = not dest.exists() or dest.read_text() != text
    if changed and not module.check_mode:
        write_atomically(dest, text)
    module.exit_json(changed=changed, sha256=hashlib.sha256(text.encode()).hexdigest(),
                     bytes=len(text.encode()), components=len(bom.components),
                     spec_version=SPEC_VERSION)


if __name__ == "__main__":
    main()
