"""The release role's phase_seconds filter turns phase start marks into durations."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[4] / "plugins/filter/release_filters.py"
_spec = importlib.util.spec_from_file_location("release_filters", _PATH)
release_filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(release_filters)


def test_each_phase_lasts_until_the_next_one_starts() -> None:
    marks = {"plan": 100.0, "build": 110.25, "publish": 180.0, "test": 190.0, "end": 200.04}
    assert release_filters.phase_seconds(marks) == {
        "plan": 10.2,
        "build": 69.8,
        "publish": 10.0,
        "test": 10.0,
    }


def test_phases_are_ordered_by_time_not_by_insertion() -> None:
    marks = {"end": 30.0, "build": 10.0, "plan": 0.0}
    assert release_filters.phase_seconds(marks) == {"plan": 10.0, "build": 20.0}


def test_an_end_mark_is_required() -> None:
    with pytest.raises(ValueError, match="'end' mark"):
        release_filters.phase_seconds({"plan": 1.0, "build": 2.0})


def test_the_filter_is_registered_under_its_name() -> None:
    assert release_filters.FilterModule().filters() == {
        "phase_seconds": release_filters.phase_seconds
    }
