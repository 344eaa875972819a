"""plugins/filter/lambda_package_filters.py: reading the hash-pinned locks the package's
Python distributions are installed from (every pin has its hashes, or the lock is refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.r_lambda.release.plugins.filter.lambda_package_filters import (
    python_lock_pins,
    python_lock_select,
)

REPO = Path(__file__).resolve().parents[4]
LOCK = """# header
cffi==2.1.1 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
    # via rpy2-rinterface
rpy2-rinterface==3.6.7 \\
    --hash=sha256:{c}
    # via rpy2
setuptools==80.9.0 \\
    --hash=sha256:{d}
""".format(a="a" * 64, b="b" * 64, c="c" * 64, d="d" * 64)


def test_each_pin_has_its_name_version_and_allowed_sha256() -> None:
    assert python_lock_pins(LOCK) == [
        {"name": "cffi", "version": "2.1.1", "sha256": ["a" * 64, "b" * 64]},
        {"name": "rpy2-rinterface", "version": "3.6.7", "sha256": ["c" * 64]},
        {"name": "setuptools", "version": "80.9.0", "sha256": ["d" * 64]},
    ]


def test_a_selection_keeps_each_entry_whole_with_its_hashes() -> None:
    selected = python_lock_select(LOCK, without=["rpy2_rinterface", "setuptools"])
    assert selected == (f"cffi==2.1.1 \\\n    --hash=sha256:{'a' * 64} \\\n"
                        f"    --hash=sha256:{'b' * 64}\n")
    assert python_lock_pins(python_lock_select(LOCK, only=["Setuptools"])) == [
        {"name": "setuptools", "version": "80.9.0", "sha256": ["d" * 64]}]


def test_a_pin_without_a_hash_or_a_missing_name_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="has no --hash"):
        python_lock_pins("cffi==2.1.1\n")
    with pytest.raises(AnsibleFilterError, match="is not a pin"):
        python_lock_pins("cffi>=2\n")
    with pytest.raises(AnsibleFilterError, match="pins no wheel"):
        python_lock_select(LOCK, only=["wheel"])


@pytest.mark.parametrize("lock", sorted(REPO.glob("roles/*/files/**/*.lock")), ids=str)
def test_the_shipped_locks_pin_every_distribution_with_hashes(lock: Path) -> None:
    pins = python_lock_pins(lock.read_text())
    assert pins and all(pin["sha256"] for pin in pins)
