"""Filters of the ami_watch role: the rebuild decision, kept in Python so it is unit-tested."""

from __future__ import annotations

from typing import Any


def ami_watch_decision(current: dict[str, Any], latest: dict[str, Any] | None,
                       manifest: dict[str, Any] | None) -> dict[str, Any]:
    """Whether the release must be rebuilt for the current AMI, and why.

    current: the AMI the release would use now ({"id", "name", "source"}).
    latest: releases/latest.json ({} or None when nothing was released yet).
    manifest: the latest release's manifest.json ({} or None when unreadable).
    """
    if not current or not current.get("id"):
        raise ValueError("ami_watch_decision: the current AMI has no id")
    current_id = current["id"]
    version = (latest or {}).get("version") or None
    released = ((manifest or {}).get("ami") or {}).get("id") or None
    decision = {
        "current_ami": current_id,
        "current_ami_name": current.get("name"),
        "current_ami_source": current.get("source"),
        "released_ami": released,
        "released_version": version,
    }
    if version is None:
        return {**decision, "rebuild": True,
                "reason": "no release yet (no latest.json): the first one is built"}
    if not manifest:
        return {**decision, "rebuild": True,
                "reason": f"the manifest of release {version} is missing or unreadable"}
    if released is None:
        return {**decision, "rebuild": True,
                "reason": f"release {version} records no AMI (its manifest predates the field)"}
    if released != current_id:
        return {**decision, "rebuild": True,
                "reason": f"the AMI changed: release {version} was built on {released}, "
                          f"the current one is {current_id}"}
    return {**decision, "rebuild": False,
            "reason": f"release {version} was built on the current AMI {current_id}"}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"ami_watch_decision": ami_watch_decision}
