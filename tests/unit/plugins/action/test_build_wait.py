"""plugins/action/build_wait.py: the progress line a person reads while a build runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from module_loading import load

REPO = Path(__file__).resolve().parents[4]
build_wait = load("build_wait_action", REPO / "plugins" / "action" / "build_wait.py")


@pytest.mark.parametrize(
    ("elapsed", "expected", "basis", "line"),
    [
        (35, 200, "the last build here",
         "compiling R: 35 s so far, about 2 min 45 s left (the last build here: 3 min 20 s)"),
        (230, 200, "an estimate",
         "compiling R: 3 min 50 s so far, longer than the 3 min 20 s expected "
         "(an estimate: 3 min 20 s)"),
        (61, 0, "", "compiling R: 1 min 01 s so far"),
    ],
)
def test_the_line_says_how_long_so_far_and_about_how_long_is_left(
    elapsed: float, expected: float, basis: str, line: str
) -> None:
    assert build_wait.progress("compiling R", elapsed, expected, basis) == line
