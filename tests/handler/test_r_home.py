"""Where the handler looks for its R: next to itself (one zip), else in a layer (/opt/R)."""

import os
from pathlib import Path

import pytest
from handler_support import admission_r_session


@pytest.fixture
def homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    bundled, layer = tmp_path / "task" / "R", tmp_path / "opt" / "R"
    monkeypatch.setattr(admission_r_session, "PACKAGED_R_HOME", str(bundled))
    monkeypatch.setattr(admission_r_session, "LAYER_R_HOME", str(layer))
    monkeypatch.delenv("R_HOME", raising=False)
    return bundled, layer


def test_r_bundled_next_to_the_handler_wins_over_a_layer(homes: tuple[Path, Path]) -> None:
    bundled, layer = homes
    bundled.mkdir(parents=True)
    layer.mkdir(parents=True)
    assert admission_r_session.packaged_r_home() == str(bundled)


def test_r_in_a_layer_is_used_when_none_is_bundled(
    homes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, layer = homes
    layer.mkdir(parents=True)
    assert admission_r_session.packaged_r_home() == str(layer)
    admission_r_session.use_packaged_r_home()
    assert os.environ["R_HOME"] == str(layer)


def test_no_packaged_r_leaves_r_home_alone(homes: tuple[Path, Path]) -> None:
    assert admission_r_session.packaged_r_home() is None
    admission_r_session.use_packaged_r_home()
    assert "R_HOME" not in os.environ


def test_an_r_home_already_set_is_kept(
    homes: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, layer = homes
    layer.mkdir(parents=True)
    monkeypatch.setenv("R_HOME", "/usr/lib/R")
    admission_r_session.use_packaged_r_home()
    assert os.environ["R_HOME"] == "/usr/lib/R"
