"""plugins/module_utils/sbom.py and plugins/modules/release_sbom.py: a release's CycloneDX
bill of materials, written with cyclonedx-python-lib from the package report and checked
against CycloneDX's JSON schema (the library's JsonStrictValidator)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.r_lambda.release.plugins.module_utils import sbom
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

REPO = Path(__file__).resolve().parents[4]
MODULE = REPO / "plugins" / "modules" / "release_sbom.py"

RELEASE = {"version": "20261207T063000Z-abc1234", "created_at": "2026-12-07T06:30:00Z",
           "distro": "debian"}
R = {"method": "source", "version": "4.6.1",
     "url": "http://deb.debian.org/debian/pool/main/r/r-base/r-base_4.6.1.orig.tar.xz",
     "sha256": "e4149581e151f3f1bc5edd6475e24ca1e2f452c08b6a22c29b570ce8abfe5783"}
PYTHON = {"method": "source", "version": "3.13.5",
          "url": "http://deb.debian.org/debian/pool/main/p/python3.13/python3.13_3.13.5.orig.tar.xz",
          "sha256": "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"}
REPORT = {
    "zip_sha256": "a" * 64, "r_version": "4.6.1", "python_version": "3.13",
    "inventory": {
        "python_distributions": [
            {"name": "rpy2-rinterface", "version": "3.6.7", "file": "rpy2_rinterface-3.6.7.tar.gz",
             "sha256": "3aee0b44b9204d96c2eb2503b2f9b03f6d9c9e525f9a2d1a2e194b3a789856c1"},
            {"name": "cffi", "version": "2.1.1",
             "file": "cffi-2.1.1-cp313-cp313-manylinux2014_x86_64.whl", "sha256": "b" * 64},
        ],
        "r_packages": [{"name": "stats", "version": "4.6.1", "license": "Part of R 4.6.1"},
                       {"name": "base", "version": "4.6.1", "license": "Part of R 4.6.1"}],
        "shared_libraries": [
            {"soname": "libgfortran.so.5",
             "source": "/usr/lib/x86_64-linux-gnu/libgfortran.so.5.0.0",
             "path": "lib/libgfortran.so.5", "sha256": "c" * 64,
             "package": {"manager": "dpkg", "name": "libgfortran5", "version": "10.2.1-6",
                         "arch": "amd64"}},
            {"soname": "libfoo.so.1", "source": "/opt/foo/libfoo.so.1", "path": "lib/libfoo.so.1",
             "sha256": "d" * 64, "package": {"manager": "", "name": "", "version": "", "arch": ""}},
        ],
        "files": [{"path": "handler.py", "sha256": "e" * 64, "bytes": 10},
                  {"path": "admission.rds", "sha256": "f" * 64, "bytes": 20}],
    },
}


def written() -> dict:
    return json.loads(sbom.render(sbom.build_bom(RELEASE, REPORT, R, PYTHON)))


def by_ref(document: dict) -> dict[str, dict]:
    return {component["bom-ref"]: component for component in document["components"]}


def test_the_sbom_validates_against_the_cyclonedx_1_6_json_schema() -> None:
    text = sbom.render(sbom.build_bom(RELEASE, REPORT, R, PYTHON))
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    document = json.loads(text)
    assert (document["bomFormat"], document["specVersion"]) == ("CycloneDX", "1.6")


def test_r_and_python_carry_their_version_source_url_and_sha256() -> None:
    components = by_ref(written())
    for ref, source in (("runtime:R", R), ("runtime:Python", PYTHON)):
        reference = components[ref]["externalReferences"][0]
        assert (components[ref]["version"], reference["type"], reference["url"],
                reference["hashes"]) == (source["version"], "source-distribution", source["url"],
                                         [{"alg": "SHA-256", "content": source["sha256"]}])
    assert components["runtime:Python"]["scope"] == "excluded"  # Lambda provides it


def test_each_python_distribution_has_the_sha256_of_the_file_it_was_installed_from() -> None:
    component = by_ref(written())["pypi:rpy2-rinterface@3.6.7"]
    assert component["purl"] == "pkg:pypi/rpy2-rinterface@3.6.7"
    assert component["hashes"] == [{"alg": "SHA-256", "content": REPORT["inventory"][
        "python_distributions"][0]["sha256"]}]


def test_each_shared_library_names_the_debian_package_it_came_from() -> None:
    components = by_ref(written())
    assert components["so:libgfortran.so.5"]["purl"] == (
        "pkg:deb/debian/libgfortran5@10.2.1-6?arch=amd64")
    assert components["so:libgfortran.so.5"]["version"] == "10.2.1-6"
    unowned = components["so:libfoo.so.1"]
    assert "purl" not in unowned and {"name": "r-lambda:os_package",
                                      "value": "none (not from a package)"} in unowned["properties"]


def test_r_packages_and_the_handlers_files_are_listed_and_the_release_depends_on_all() -> None:
    document = written()
    refs = set(by_ref(document))
    assert {"r-package:stats@4.6.1", "r-package:base@4.6.1", "file:handler.py",
            "file:admission.rds"} <= refs
    assert len(document["components"]) == 2 + 2 + 2 + 2 + 2
    subject = document["metadata"]["component"]
    assert (subject["bom-ref"], subject["version"]) == (f"release:{RELEASE['version']}",
                                                        RELEASE["version"])
    root = next(d for d in document["dependencies"] if d["ref"] == subject["bom-ref"])
    assert set(root["dependsOn"]) == refs


def test_the_same_release_gives_the_same_bytes() -> None:
    first = sbom.render(sbom.build_bom(RELEASE, REPORT, R, PYTHON))
    assert sbom.render(sbom.build_bom(RELEASE, REPORT, R, PYTHON)) == first


def test_a_report_without_an_inventory_is_refused_with_what_to_do() -> None:
    with pytest.raises(sbom.SbomError, match="rebuild the package"):
        sbom.build_bom(RELEASE, {"r_version": "4.6.1"}, R, PYTHON)


def test_the_validator_catches_a_broken_sbom() -> None:
    document = written()
    document["components"][0]["type"] = "not-a-type"
    with pytest.raises(sbom.SbomError, match="does not validate"):
        sbom.validate(json.dumps(document))


def test_the_module_writes_the_sbom_and_returns_its_sha256(tmp_path: Path) -> None:
    dest = tmp_path / "dist" / "sbom.cdx.json"
    args = {"dest": str(dest), "release": RELEASE, "report": REPORT, "r": R, "python": PYTHON}
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    done = subprocess.run([sys.executable, "-m", "ansible_collections.r_lambda.release.plugins"
                           ".modules.release_sbom", str(args_file)],
                          capture_output=True, text=True, check=False, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO / "collections")})
    result = json.loads(done.stdout)
    assert (result["changed"], result["components"], result["spec_version"]) == (True, 10, "1.6")
    assert result["sha256"] == hashlib.sha256(dest.read_bytes()).hexdigest()
