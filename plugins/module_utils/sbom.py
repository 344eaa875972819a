"""A release's bill of materials, CycloneDX 1.6 JSON, written with cyclonedx-python-lib.

The input is what the release already knows: the package report's ``inventory`` (written
on the build host by ``lambda_pkgtool inventory``: Python distributions and the sha256 of
the file each was installed from, R packages, bundled shared libraries with the Debian or
Amazon Linux package each came from, the handler's files) and the pinned sources of R and
of the target's Python. The BOM's subject is the release (an application named after the
function, versioned by the release); every part is a component it depends on.
"""

from __future__ import annotations

import json
import traceback
import uuid
from datetime import datetime, timezone
from typing import Any

try:
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentScope, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL
except ImportError:  # release_sbom fails naming the library to install
    IMPORT_ERROR: str | None = traceback.format_exc()
else:
    IMPORT_ERROR = None

SPEC_VERSION = "1.6"
PROPERTY = "r-lambda"  # namespace of the BOM's own properties
# A fixed namespace: the same release version always gets the same serial number.
SERIAL_NAMESPACE = uuid.UUID("6f1c5d1e-4b8a-4d59-9a52-2f0d6b3a7c11")


class SbomError(Exception):
    """The inputs cannot describe the release (a caller can act on the message)."""


def sha256_hash(value: str) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=value)] if value else []


def prop(name: str, value: object) -> Property:
    return Property(name=f"{PROPERTY}:{name}", value=str(value))


def source_component(name: str, ref: str, source: dict[str, Any], *, shipped: bool,
                     description: str) -> Component:
    """R or Python: its version, the source tarball's URL and sha256 (when built from one)."""
    version = str(source.get("version") or "")
    if not version:
        raise SbomError(f"{name}'s version is unknown: the SBOM cannot name it")
    url, sha256 = source.get("url") or "", source.get("sha256") or ""
    qualifiers = {"download_url": url, "checksum": f"sha256:{sha256}"} if url else {}
    references = ([ExternalReference(type=ExternalReferenceType.SOURCE_DISTRIBUTION,
                                     url=XsUri(url), hashes=sha256_hash(sha256))] if url else [])
    return Component(
        name=name, version=version, type=ComponentType.APPLICATION, bom_ref=ref,
        description=description,
        scope=ComponentScope.REQUIRED if shipped else ComponentScope.EXCLUDED,
        purl=PackageURL(type="generic", name=name, version=version, qualifiers=qualifiers),
        external_references=references,
        properties=[prop("method", source.get("method") or ("source" if url else "package"))],
    )


def python_component(dist: dict[str, Any]) -> Component:
    name, version = dist["name"], dist["version"]
    properties = [prop("artifact", dist.get("file") or "")]
    if str(dist.get("file", "")).endswith((".tar.gz", ".zip", ".tar.bz2")):
        properties.append(prop("built_from", "sdist, compiled on the build host against its R"))
    return Component(
        name=name, version=version, type=ComponentType.LIBRARY, bom_ref=f"pypi:{name}@{version}",
        purl=PackageURL(type="pypi", name=name, version=version),
        hashes=sha256_hash(dist.get("sha256") or ""), properties=properties,
    )


def r_package_component(package: dict[str, Any], r_version: str) -> Component:
    name, version = package["name"], package.get("version") or r_version
    return Component(
        name=name, version=version, type=ComponentType.LIBRARY, group="R",
        bom_ref=f"r-package:{name}@{version}",
        purl=PackageURL(type="cran", name=name, version=version),
        properties=[prop("r_license", package.get("license") or "")],
    )


def library_component(library: dict[str, Any], distro: str) -> Component:
    package = library.get("package") or {}
    manager, owner = package.get("manager") or "", package.get("name") or ""
    version = package.get("version") or ""
    purl = None
    if manager == "dpkg" and owner:
        qualifiers = {"arch": package["arch"]} if package.get("arch") else {}
        purl = PackageURL(type="deb", namespace=distro or "debian", name=owner, version=version,
                          qualifiers=qualifiers)
    elif manager == "rpm" and owner:
        qualifiers = {"arch": package["arch"]} if package.get("arch") else {}
        purl = PackageURL(type="rpm", namespace=distro or "amzn", name=owner, version=version,
                          qualifiers=qualifiers)
    return Component(
        name=library["soname"], version=version or None, type=ComponentType.LIBRARY,
        bom_ref=f"so:{library['soname']}", purl=purl,
        hashes=sha256_hash(library.get("sha256", "")),
        properties=[prop("path", library.get("path") or ""),
                    prop("source", library.get("source") or ""),
                    prop("os_package",
                         f"{owner} {version}".strip() or "none (not from a package)")],
    )


def file_component(item: dict[str, Any]) -> Component:
    return Component(name=item["path"], type=ComponentType.FILE, bom_ref=f"file:{item['path']}",
                     hashes=sha256_hash(item["sha256"]))


def build_bom(release: dict[str, Any], report: dict[str, Any], r: dict[str, Any],
              python: dict[str, Any]) -> Bom:
    """The BOM of one release (release: version, created_at, name, distro)."""
    inventory = report.get("inventory")
    if not isinstance(inventory, dict):
        raise SbomError("the package report has no inventory (lambda_pkgtool inventory): "
                        "rebuild the package with this collection")
    version = str(release["version"])
    created = release.get("created_at") or datetime.now(timezone.utc).isoformat()
    subject = Component(name=release.get("name") or "admission", version=version,
                        type=ComponentType.APPLICATION, bom_ref=f"release:{version}",
                        hashes=sha256_hash(report.get("zip_sha256") or ""))
    r_version = str(r.get("version") or report.get("r_version") or "")
    components = [
        source_component("R", "runtime:R", {**r, "version": r_version}, shipped=True,
                         description="R, built for the package (R_HOME minus its library)"),
        source_component("Python", "runtime:Python",
                         {**python, "version": python.get("version") or report["python_version"]},
                         shipped=False,
                         description="the target runtime's Python: rpy2 is built for it, "
                                     "Lambda provides it"),
        *(python_component(d) for d in inventory.get("python_distributions", [])),
        *(r_package_component(p, r_version) for p in inventory.get("r_packages", [])),
        *(library_component(lib, release.get("distro") or "")
          for lib in inventory.get("shared_libraries", [])),
        *(file_component(f) for f in inventory.get("files", [])),
    ]
    bom = Bom(serial_number=uuid.uuid5(SERIAL_NAMESPACE, version), components=components)
    bom.metadata.component = subject
    bom.metadata.timestamp = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    bom.metadata.properties.add(prop("release", version))
    bom.register_dependency(subject, components)
    return bom


def validate(text: str, spec: SchemaVersion | None = None) -> None:
    """Check text against CycloneDX's JSON schema (1.6 by default); raise SbomError naming
    the first problem."""
    spec = SchemaVersion.V1_6 if spec is None else spec
    error = JsonStrictValidator(spec).validate_str(text)
    if error is not None:
        raise SbomError(
            f"the SBOM does not validate against CycloneDX {spec.to_version()}: {error}")


def render(bom: Bom) -> str:
    """The BOM as CycloneDX 1.6 JSON (sorted keys, so the same inputs give the same bytes),
    validated against the schema."""
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    validate(text)
    return text
