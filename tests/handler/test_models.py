"""Any admission glm or lm: predicted exactly as R predicts it, or refused when it loads.

Models are fitted by fit_models.R in a fresh Rscript, as at a prompt (the 2017
procedure's way among them), and saved untrimmed. Each is compared on a grid, to the
last bit, with R's own predict(model, newdata, type = "response") for newdata built the
way the model expects: ``rank_as`` below is written from how each model was fitted, not
asked of the handler.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from handler_support import (
    HANDLER_DIR,
    TRAINING_CSV,
    Ctx,
    admission_predictor,
    bits,
    handler,
    r_predict,
    r_read_model,
)

FIT_MODELS_R = Path(__file__).resolve().parent / "fit_models.R"

GRID = [
    {"gre": gre, "gpa": gpa, "rank": rank}
    for rank in (1, 2, 3, 4)
    for gre in (200, 200.00000000000003, 317.5, 520, 666.6, 799.9999999999999, 800)
    for gpa in (0, 5e-324, 1.13, 2.5, 3.3333, 3.9999999999999996, 4)
]

# kind: (rank as the model expects it, path, unmatched checks of the direct design)
SERVED = {
    "2017": ("factor", admission_predictor.DIRECT, ()),
    "factor_in_formula": ("numeric", admission_predictor.DIRECT, ()),
    "numeric_rank": ("numeric", admission_predictor.DIRECT, ()),
    "reordered": ("factor", admission_predictor.DIRECT, ()),
    "probit": ("factor", admission_predictor.DIRECT, ()),
    "lm": ("factor", admission_predictor.DIRECT, ()),
    "no_intercept": ("factor", admission_predictor.DIRECT, ()),
    "three_ranks": ("factor", admission_predictor.DIRECT, ()),
    "character_rank": ("character", admission_predictor.DIRECT, ()),
    "interaction": ("factor", admission_predictor.PREDICT, ("interactions",)),
    "rank_by_gpa": ("factor", admission_predictor.PREDICT, ("interactions",)),
    "spline": ("factor", admission_predictor.PREDICT, ("terms",)),
    "poly": ("factor", admission_predictor.PREDICT, ("terms",)),
    "offset": ("factor", admission_predictor.PREDICT, ("offset",)),
    "ordered_rank": ("ordered", admission_predictor.PREDICT, ("terms",)),
}
REFUSED = {
    "extra_variable": "the model uses variable 'gender', which the handler cannot supply",
    "prompt_function": "the model calls scale_gre(), which no R package in this R provides",
    "missing_package": "the model calls nosuchpkg::ns(), and R package 'nosuchpkg' is not in",
}


@pytest.fixture(scope="session")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fitted")
    done = subprocess.run(
        ["Rscript", str(FIT_MODELS_R), str(TRAINING_CSV), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def use_model(fitted: Path, fresh_model_cache: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(kind: str) -> Path:
        path = fitted / f"{kind}.rds"
        monkeypatch.setenv("MODEL_PATH", str(path))
        return path

    return use


def _valid_for(model: Any) -> list[dict[str, Any]]:
    return [a for a in GRID if a["rank"] in model.ranks]


@pytest.mark.parametrize("kind", SERVED)
def test_served_model_predicts_the_bits_of_r_predict_single_and_batch(
    use_model: Any, capsys: pytest.CaptureFixture, kind: str
) -> None:
    rank_as, method, unmatched = SERVED[kind]
    path = use_model(kind)
    capsys.readouterr()
    model = handler.get_model()
    assert (model.method, model.unmatched) == (method, unmatched)
    logged = capsys.readouterr().out
    if method == admission_predictor.PREDICT:
        assert f'"event":"model_predicts_with_predict","path":"{path}"' in logged
    else:
        assert logged == ""
    applicants = _valid_for(model)
    expected = bits(r_predict(r_read_model(path), applicants, rank_as))
    assert bits(handler.admit_probabilities(applicants)) == expected
    singles = [handler.admit_probability(a["gre"], a["gpa"], a["rank"]) for a in applicants]
    assert bits(singles) == expected


def test_the_2017_model_predicts_the_published_probability(use_model: Any) -> None:
    use_model("2017")
    assert round(handler.admit_probability(800, 4, 1), 4) == 0.7384


def test_rank_the_model_never_saw_is_a_400_naming_rank_and_its_levels(use_model: Any) -> None:
    use_model("three_ranks")
    assert handler.get_model().ranks == (1, 2, 3)
    event = {"httpMethod": "POST", "body": json.dumps({"gre": 700, "gpa": 3.5, "rank": 4})}
    response = handler.lambda_handler(event, Ctx())
    assert response["statusCode"] == 400
    body = json.loads(response["body"])
    assert body["field"] == "rank"
    assert body["message"] == (
        "rank must be one of 1, 2, 3 (the levels of rank this model was fitted with), got 4"
    )
    batch = {"applicants": [{"gre": 700, "gpa": 3.5, "rank": rank} for rank in (3, 4)]}
    with pytest.raises(handler.BadRequest) as caught:
        handler.lambda_handler(batch, Ctx())
    assert caught.value.field == "applicants[1].rank"


@pytest.mark.parametrize("kind", REFUSED)
def test_model_the_handler_cannot_serve_fails_at_load_naming_what_is_missing(
    use_model: Any, kind: str
) -> None:
    path = use_model(kind)
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.get_model()
    assert caught.value.message.startswith(f"the model in {path} cannot be served: ")
    assert REFUSED[kind] in caught.value.message


def _check_model(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HANDLER_DIR / "handler.py"), "check-model", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_model_command_reports_the_path_a_model_takes(fitted: Path) -> None:
    done = _check_model(fitted / "spline.rds")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["method"] == admission_predictor.PREDICT
    assert report["kind"] == "glm binomial(logit)"
    assert report["ranks"] == [1, 2, 3, 4]
    assert report["warm_call_ms"] > 0


def test_check_model_command_exits_1_with_the_load_error(fitted: Path) -> None:
    done = _check_model(fitted / "extra_variable.rds")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "the model uses variable 'gender'" in done.stderr
