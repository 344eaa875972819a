"""handler/model/train.R: reproduces the published glm and saves a trimmed, equivalent model."""

import re
from pathlib import Path

import pytest
from handler_support import (
    PUBLISHED_COEFFICIENTS,
    TRAINING_CSV,
    TrainedModel,
    r_eval,
    r_string,
    run_train,
)


def _predict(model: Path, newdata: str) -> list[float]:
    return list(r_eval(f"predict(readRDS({r_string(str(model))}), {newdata}, type = 'response')"))


def test_coefficients_equal_the_published_ones(model_coefficients: dict[str, float]) -> None:
    assert list(model_coefficients) == list(PUBLISHED_COEFFICIENTS)
    for name, published in PUBLISHED_COEFFICIENTS.items():
        assert model_coefficients[name] == pytest.approx(published, rel=1e-6, abs=5e-7), name


def test_published_probabilities_with_rank_as_a_plain_number(trained_model: TrainedModel) -> None:
    probabilities = _predict(
        trained_model.trimmed, "data.frame(gre = 800, gpa = 4, rank = c(1, 4))"
    )
    assert [round(p, 4) for p in probabilities] == [0.7384, 0.3743]


@pytest.mark.parametrize(
    "rank",
    ["c(1, 2, 3, 4)", "c(1L, 2L, 3L, 4L)", "c('1', '2', '3', '4')", "factor(1:4)"],
)
def test_rank_as_number_integer_string_or_factor_predicts_alike(
    trained_model: TrainedModel, rank: str
) -> None:
    expected = _predict(trained_model.trimmed, "data.frame(gre = 700, gpa = 3.5, rank = 1:4)")
    got = _predict(trained_model.trimmed, f"data.frame(gre = 700, gpa = 3.5, rank = {rank})")
    assert got == expected


def test_trimmed_and_untrimmed_predict_identically_on_all_training_rows(
    trained_model: TrainedModel,
) -> None:
    rows = f"read.csv({r_string(str(TRAINING_CSV))})"
    trimmed = _predict(trained_model.trimmed, rows)
    untrimmed = _predict(trained_model.untrimmed, rows)
    assert len(trimmed) == 400
    assert trimmed == untrimmed
    fitted = list(r_eval(f"fitted(readRDS({r_string(str(trained_model.untrimmed))}))"))
    assert trimmed == pytest.approx(fitted, abs=1e-12)


def test_trimmed_model_is_smaller_and_sizes_are_reported(trained_model: TrainedModel) -> None:
    trimmed_size = trained_model.trimmed.stat().st_size
    untrimmed_size = trained_model.untrimmed.stat().st_size
    assert trimmed_size < untrimmed_size
    match = re.search(r"untrimmed (\d+) bytes, trimmed (\d+) bytes", trained_model.stderr)
    assert match is not None, trained_model.stderr
    assert (int(match[1]), int(match[2])) == (untrimmed_size, trimmed_size)


def test_trimmed_model_keeps_no_data_and_no_captured_environment(
    trained_model: TrainedModel,
) -> None:
    path = r_string(str(trained_model.trimmed))
    names = set(r_eval(f"names(readRDS({path}))"))
    dropped = {"data", "model", "residuals", "fitted.values", "effects", "weights"}
    dropped |= {"prior.weights", "y", "linear.predictors", "R"}
    assert names.isdisjoint(dropped)
    assert list(r_eval(f"names(readRDS({path})$qr)")) == ["pivot", "rank", "tol"]
    environments = (
        f"m <- readRDS({path}); c(identical(environment(m$terms), baseenv()), "
        "identical(environment(m$formula), baseenv()))"
    )
    assert list(r_eval(environments)) == [True, True]


def test_missing_column_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    csv = tmp_path / "no-gpa.csv"
    csv.write_text("admit,gre,rank\n1,800,1\n0,400,4\n")
    out = tmp_path / "admission.rds"
    done = run_train(str(csv), str(out))
    assert done.returncode == 1
    assert (
        f"train.R: {csv}: missing column(s) 'gpa'; expected columns admit, gre, gpa, rank, "
        "found admit, gre, rank"
    ) in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-gpa.csv"]


@pytest.mark.parametrize("args", [[], ["only-data.csv"], ["a.csv", "b.rds", "c.rds", "d"]])
def test_wrong_argument_count_prints_usage(args: list[str]) -> None:
    done = run_train(*args)
    assert done.returncode == 2
    assert done.stderr == "usage: Rscript train.R DATA.csv OUT.rds [UNTRIMMED.rds]\n"


def test_output_is_replaced_whole_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    out = tmp_path / "admission.rds"
    out.write_bytes(b"previous model")
    done = run_train(str(TRAINING_CSV), str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admission.rds"]
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # saveRDS writes gzip


def test_failed_training_leaves_an_existing_output_untouched(tmp_path: Path) -> None:
    csv = tmp_path / "bad-rank.csv"
    csv.write_text("admit,gre,gpa,rank\n1,800,4,5\n")
    out = tmp_path / "admission.rds"
    out.write_bytes(b"previous model")
    done = run_train(str(csv), str(out))
    assert done.returncode == 1
    assert "column 'rank' must be one of 1, 2, 3, 4" in done.stderr
    assert out.read_bytes() == b"previous model"
