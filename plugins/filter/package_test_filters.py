"""Filters of the package_test role."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def package_test_expected(zip_entry: dict, published: dict) -> dict:
    """The zip entry with the sha256 the controller computed when it published the zip's
    key; unchanged when the controller gave none at all (a manifest tested on its own)."""
    if not published:
        return zip_entry
    if zip_entry["key"] not in published:
        raise AnsibleFilterError(
            f"package_test_expected_sha256 names no sha256 for {zip_entry['key']}, which the "
            f"manifest lists: the controller did not publish it"
        )
    return dict(zip_entry, sha256=published[zip_entry["key"]])


class FilterModule:
    def filters(self) -> dict:
        return {"package_test_expected": package_test_expected}
