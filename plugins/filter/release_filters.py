"""Filters of the release_promote role."""

from __future__ import annotations


def phase_seconds(marks: dict[str, float]) -> dict[str, float]:
    """Turn phase start times into durations: each phase lasts until the next one starts.

    ``marks`` maps a phase name to the epoch second it started, plus ``end`` for the
    end of the last phase.
    """
    if "end" not in marks:
        raise ValueError("phase_seconds needs an 'end' mark")
    order = sorted(marks, key=marks.__getitem__)
    return {
        name: round(marks[after] - marks[name], 1)
        for name, after in zip(order, order[1:])
    }


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict:
        return {"phase_seconds": phase_seconds}
