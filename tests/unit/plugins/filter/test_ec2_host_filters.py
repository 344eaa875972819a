"""The operator CIDR check of roles/ec2_host (plugins/filter/ec2_host_filters.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[4] / "plugins/filter/ec2_host_filters.py"
_spec = importlib.util.spec_from_file_location("ec2_host_filters", _PATH)
assert _spec is not None and _spec.loader is not None
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)


@pytest.mark.parametrize(
    "cidr", ["203.0.113.7/32", "203.0.113.0/24", "203.0.113.7/24", "127.0.0.1/32"]
)
def test_a_narrow_ipv4_network_is_accepted(cidr: str) -> None:
    assert filters.operator_cidr_problem(cidr) == ""


@pytest.mark.parametrize(
    ("cidr", "problem"),
    [
        ("", "it is required"),
        ("   ", "it is required"),
        ("203.0.113.7", '"203.0.113.7" has no prefix length (e.g. /32)'),
        ("999.1.1.1/32", '"999.1.1.1/32" is not an IPv4 CIDR'),
        ("203.0.113.7/33", '"203.0.113.7/33" is not an IPv4 CIDR'),
        ("2001:db8::1/128", '"2001:db8::1/128" is not an IPv4 CIDR'),
        ("0.0.0.0/0", '"0.0.0.0/0" admits 4294967296 addresses'),
        ("0.0.0.0/1", '"0.0.0.0/1" admits 2147483648 addresses'),
        ("10.0.0.0/16", '"10.0.0.0/16" admits 65536 addresses: a prefix shorter than /24'),
    ],
)
def test_a_malformed_or_broad_network_is_refused_saying_why(cidr: str, problem: str) -> None:
    assert filters.operator_cidr_problem(cidr).startswith(problem)


def test_the_narrowest_allowed_prefix_is_a_setting() -> None:
    assert filters.operator_cidr_problem("10.0.0.0/16", 16) == ""
    assert filters.operator_cidr_problem("10.0.0.0/24", 28).startswith('"10.0.0.0/24" admits 256')


def test_ansible_sees_the_filter_under_the_roles_name() -> None:
    assert "ec2_host_operator_cidr_problem" in filters.FilterModule().filters()
