"""Predictions are bitwise identical to R's own predict(model, newdata, type = "response").

The handler computes train.R's model directly (model matrix times coefficients, then
the family's inverse link) instead of calling predict(); every comparison here is on
the exact bits of the doubles (float.hex), for single applicants and for batches.
"""

from typing import Any

import pytest
from handler_support import (
    TrainedModel,
    admission_predictor,
    bits,
    handler,
    r_predict,
    r_read_model,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# All ranks x gre 200..800 step 10 x gpa 0..4 step 0.05: 4 * 61 * 81 = 19,764 applicants.
DENSE_GRID = [
    {"gre": 200 + 10 * g, "gpa": p / 20, "rank": rank}
    for rank in (1, 2, 3, 4)
    for g in range(61)
    for p in range(81)
]
# All ranks x gre step 100 x gpa step 0.25: 476 applicants, each also predicted alone in R.
COARSE_GRID = [
    {"gre": 200 + 100 * g, "gpa": p / 4, "rank": rank}
    for rank in (1, 2, 3, 4)
    for g in range(7)
    for p in range(17)
]
EDGES = [
    {"gre": gre, "gpa": gpa, "rank": rank}
    for gre in (200, 200.00000000000003, 799.9999999999999, 800)
    for gpa in (0, 5e-324, 2.2250738585072014e-308, 1e-300, 3.9999999999999996, 4)
    for rank in (1, 2, 3, 4)
]

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
valid_applicants = st.fixed_dictionaries(
    {
        "gre": st.floats(min_value=200, max_value=800) | st.integers(200, 800),
        "gpa": st.floats(min_value=0, max_value=4) | st.integers(0, 4),
        "rank": st.sampled_from([1, 2, 3, 4, 1.0, 2.0, 3.0, 4.0]),
    }
)


@pytest.fixture(scope="module")
def r_model(trained_model: TrainedModel) -> Any:
    return r_read_model(trained_model.trimmed)


def _singles(applicants: list[dict[str, Any]]) -> list[float]:
    return [handler.admit_probability(a["gre"], a["gpa"], a["rank"]) for a in applicants]


def _one_row_predictions(model: Any, applicants: list[dict[str, Any]]) -> list[float]:
    return [r_predict(model, [a])[0] for a in applicants]


def test_the_trained_model_is_predicted_directly() -> None:
    model = handler.get_model()
    assert model.method == admission_predictor.DIRECT
    assert model.unmatched == ()


def test_batch_on_the_dense_grid_is_identical_to_predict(r_model: Any) -> None:
    assert bits(handler.admit_probabilities(DENSE_GRID)) == bits(r_predict(r_model, DENSE_GRID))


@pytest.mark.parametrize(
    ("grid", "size"), [("coarse", 2), ("coarse", 3), ("dense", 37), ("dense", 1000)]
)
def test_batches_of_any_size_are_identical_to_predict_on_the_same_rows(
    r_model: Any, grid: str, size: int
) -> None:
    applicants = DENSE_GRID if grid == "dense" else COARSE_GRID + EDGES
    for start in range(0, len(applicants), size):
        chunk = applicants[start : start + size]
        assert bits(handler.admit_probabilities(chunk)) == bits(r_predict(r_model, chunk))


def test_single_predictions_on_the_dense_grid_are_identical_to_predict(r_model: Any) -> None:
    assert bits(_singles(DENSE_GRID)) == bits(r_predict(r_model, DENSE_GRID))


def test_single_predictions_are_identical_to_one_row_predict(r_model: Any) -> None:
    applicants = COARSE_GRID + EDGES
    assert bits(_singles(applicants)) == bits(_one_row_predictions(r_model, applicants))


def test_edge_values_are_identical_to_predict_single_and_batch(r_model: Any) -> None:
    expected = bits(r_predict(r_model, EDGES))
    assert bits(handler.admit_probabilities(EDGES)) == expected
    assert bits(_singles(EDGES)) == expected


def test_direct_invocation_and_proxy_answers_carry_the_same_bits(r_model: Any) -> None:
    applicants = COARSE_GRID[:50]
    expected = bits(r_predict(r_model, applicants))
    answer = handler.lambda_handler({"applicants": applicants})
    assert bits([r["probability"] for r in answer["results"]]) == expected
    singles = [handler.lambda_handler(a)["probability"] for a in applicants]
    assert bits(singles) == expected


@SETTINGS
@given(applicant=valid_applicants)
def test_any_single_applicant_is_identical_to_one_row_predict(
    r_model: Any, applicant: dict[str, Any]
) -> None:
    got = handler.admit_probability(applicant["gre"], applicant["gpa"], applicant["rank"])
    assert bits([got]) == bits(r_predict(r_model, [applicant]))


@SETTINGS
@given(applicants=st.lists(valid_applicants, min_size=1, max_size=60))
def test_any_batch_is_identical_to_predict(r_model: Any, applicants: list[dict[str, Any]]) -> None:
    assert bits(handler.admit_probabilities(applicants)) == bits(r_predict(r_model, applicants))
