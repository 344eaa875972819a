"""Filters of the package_test role."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

# The Lambda memory sizes a release chooses from (MB): the smallest, doubled, up to the
# largest Lambda offers.
LAMBDA_MEMORY_SIZES_MB = (128, 256, 512, 1024, 2048, 4096, 8192, 10240)


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


def package_test_memory(peak_rss_mb: Any, margin: Any, target_mb: Any) -> dict[str, Any]:
    """What the clean-host test's peak RSS asks of Lambda's memory.

    ``memory_mb`` is the smallest of LAMBDA_MEMORY_SIZES_MB whose ``margin`` share holds the
    peak (peak RSS <= margin x size), None when none does or the peak was not measured;
    ``fits`` whether that size is at most ``target_mb``, the memory the release targets.
    """
    try:
        margin = float(margin)
        target = int(target_mb)
    except (TypeError, ValueError) as exc:
        raise AnsibleFilterError(
            f"package_test_memory: margin and target must be numbers: {exc}"
        ) from exc
    if not 0.0 < margin <= 1.0:
        raise AnsibleFilterError(f"package_test_memory_margin must be in (0, 1], got {margin}")
    if not LAMBDA_MEMORY_SIZES_MB[0] <= target <= LAMBDA_MEMORY_SIZES_MB[-1]:
        raise AnsibleFilterError(f"package_test_memory_mb must be 128-10240, got {target}")
    peak = None if peak_rss_mb in (None, "", "None") else float(peak_rss_mb)
    if peak is not None and peak <= 0.0:
        peak = None  # no process was measured
    memory_mb = None
    if peak is not None:
        memory_mb = next((size for size in LAMBDA_MEMORY_SIZES_MB if peak <= margin * size), None)
    return {
        "peak_rss_mb": peak,
        "margin": margin,
        "target_mb": target,
        "target_limit_mb": round(margin * target, 1),
        "memory_mb": memory_mb,
        "fits": memory_mb is not None and memory_mb <= target,
    }


class FilterModule:
    def filters(self) -> dict:
        return {
            "package_test_expected": package_test_expected,
            "package_test_memory": package_test_memory,
        }
