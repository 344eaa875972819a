"""Filters of the ec2_host role."""

from __future__ import annotations

import ipaddress


def operator_cidr_problem(cidr: str, narrowest_allowed: int = 24) -> str:
    """Why ``cidr`` may not be the one network the security group admits SSH from, or "".

    It must be an IPv4 network (``203.0.113.7/32``; host bits are allowed and ignored) whose
    prefix is at least ``narrowest_allowed`` bits long: a broader one admits strangers.
    """
    text = str(cidr or "").strip()
    if not text:
        return "it is required"
    if "/" not in text:
        return f'"{text}" has no prefix length (e.g. /32)'
    try:
        network = ipaddress.IPv4Network(text, strict=False)
    except ValueError as exc:
        return f'"{text}" is not an IPv4 CIDR ({exc})'
    if network.prefixlen < int(narrowest_allowed):
        return (
            f'"{text}" admits {network.num_addresses} addresses: a prefix shorter than '
            f"/{int(narrowest_allowed)} is refused (ec2_host_operator_cidr_min_prefix)"
        )
    return ""


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict:
        return {"ec2_host_operator_cidr_problem": operator_cidr_problem}
