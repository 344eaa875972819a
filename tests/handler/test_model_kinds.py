"""Models other than glm and lm: predicted exactly as R's own predict(), or refused at load.

fit_model_kinds.R fits each kind in a fresh Rscript with the controller's R packages
(Debian's r-cran-randomforest, -ranger, -mgcv, -rpart, -nnet). R's answer below is
written from how each model was fitted (R_PREDICT: newdata as the model's data was, and
the column of class "1"), not asked of the handler, and computed from the very doubles
the handler is given. The comparisons are on the doubles' bits.
"""

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from handler_support import (
    HANDLER_DIR,
    TRAINING_CSV,
    admission_predictor,
    admission_r_session,
    bits,
    handler,
    r_eval,
    r_read_model,
)

FIT_MODEL_KINDS_R = Path(__file__).resolve().parent / "fit_model_kinds.R"

# gre, gpa and rank of every applicant: the edges, values between, doubles next to them.
GRID = [
    {"gre": gre, "gpa": gpa, "rank": rank}
    for rank in (1, 2, 3, 4)
    for gre in (200, 200.00000000000003, 317.5, 520, 580, 666.6, 799.9999999999999, 800)
    for gpa in (0, 5e-324, 1.13, 2.5, 3.07, 3.3333, 3.9999999999999996, 4)
]

# R's own prediction, function(m, gre, gpa, rank), as at a prompt after fitting.
FACTOR = "rank = factor(rank, levels = c('1', '2', '3', '4'))"
R_PREDICT = {
    "random_forest": f"predict(m, data.frame(gre, gpa, {FACTOR}), type = 'prob')[, '1']",
    "random_forest_xy": f"predict(m, data.frame(gre, gpa, {FACTOR}), type = 'prob')[, '1']",
    "random_forest_regression": "predict(m, data.frame(gre, gpa, rank))",
    "gam": f"predict(m, data.frame(gre, gpa, {FACTOR}), type = 'response')",
    "rpart": f"predict(m, data.frame(gre, gpa, {FACTOR}), type = 'prob')[, '1']",
    "rpart_anova": "predict(m, data.frame(gre, gpa, rank))",
    "nnet": f"predict(m, data.frame(gre, gpa, {FACTOR}), type = 'raw')[, 1]",
    "multinom": f"predict(m, data.frame(gre, gpa, {FACTOR}), type = 'probs')",
    "ranger": "predict(m, data.frame(gre, gpa, rank))$predictions[, '1']",
    "ranger_factor_rank": f"predict(m, data.frame(gre, gpa, {FACTOR}))$predictions[, '1']",
}
# kind: (package, the method the plan names, whether every answer is a probability)
FOREST_PROB = 'predict.randomForest(model, newdata, type = "prob")[, "1"]'
PLANS = {
    "random_forest": ("randomForest", FOREST_PROB, True),
    "random_forest_xy": ("randomForest", FOREST_PROB, True),
    "random_forest_regression": ("randomForest", "predict.randomForest(model, newdata)", False),
    "gam": ("mgcv", 'predict.gam(model, newdata, type = "response")', True),
    "rpart": ("rpart", 'predict.rpart(model, newdata, type = "prob")[, "1"]', True),
    "rpart_anova": ("rpart", 'predict.rpart(model, newdata, type = "vector")', False),
    "nnet": ("nnet", 'predict.nnet(model, newdata, type = "raw")[, 1]', True),
    "multinom": ("nnet", 'predict.multinom(model, newdata, type = "probs")', True),
    "ranger": ("ranger", 'predict.ranger(model, newdata)$predictions[, "1"]', True),
    "ranger_factor_rank": ("ranger", 'predict.ranger(model, newdata)$predictions[, "1"]', True),
}
SETTING = "to the setting lambda_package_model_packages"
REFUSED = {
    "ranger_classes": "the model is a ranger forest of type 'Classification', which predicts no "
    "probability: fit it with probability = TRUE",
    "forest_with_gender": "the model uses variable 'gender', which the handler cannot supply: "
    "requests carry only gre, gpa and rank",
    "unknown_class": "the model is of class 'svm', and no R package in this R has a predict "
    f"method for it: add 'e1071' {SETTING}",
    "unheard_of_class": "the model is of class 'admission_oracle', and no R package in this R "
    f"has a predict method for it: add the R package that provides it {SETTING}",
}


@pytest.fixture(scope="session")
def fitted_kinds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fitted_kinds")
    done = subprocess.run(
        ["Rscript", str(FIT_MODEL_KINDS_R), str(TRAINING_CSV), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture
def use_kind(fitted_kinds: Path, fresh_model_cache: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(kind: str) -> Path:
        path = fitted_kinds / f"{kind}.rds"
        monkeypatch.setenv("MODEL_PATH", str(path))
        return path

    return use


def r_own_predict(kind: str, path: Path, applicants: Sequence[Mapping[str, Any]]) -> list[float]:
    """R's own prediction (R_PREDICT) for a model read afresh, on the very doubles given."""
    ri = admission_r_session.start_r()
    package = PLANS[kind][0]
    function = r_eval(
        f"function(m, gre, gpa, rank) {{ loadNamespace('{package}'); {R_PREDICT[kind]} }}"
    )
    with admission_r_session.R_LOCK:
        result = function(
            r_read_model(path),
            ri.FloatSexpVector([float(a["gre"]) for a in applicants]),
            ri.FloatSexpVector([float(a["gpa"]) for a in applicants]),
            ri.FloatSexpVector([float(a["rank"]) for a in applicants]),
        )
        return [float(v) for v in result]


@pytest.mark.parametrize("kind", R_PREDICT)
def test_model_kind_predicts_the_bits_of_r_predict_single_and_batch(
    use_kind: Any, capsys: pytest.CaptureFixture, kind: str
) -> None:
    path = use_kind(kind)
    capsys.readouterr()
    model = handler.get_model()
    package, call, bounded = PLANS[kind]
    assert (model.method, model.unmatched, model.ranks) == (
        admission_predictor.PREDICT,
        ("class",),
        (1, 2, 3, 4),
    )
    assert model.call == f"{package}:::{call}"
    assert (model.packages, model.bounded) == ((package,), bounded)
    logged = json.loads(capsys.readouterr().out)
    assert logged["event"] == "model_predicts_with_predict"
    assert logged["call"] == model.call
    expected = bits(r_own_predict(kind, path, GRID))
    assert len(set(expected)) > 4  # the grid tells the applicants apart
    assert bits(handler.admit_probabilities(GRID)) == expected
    singles = [handler.admit_probability(a["gre"], a["gpa"], a["rank"]) for a in GRID]
    assert bits(singles) == expected
    for size in (2, 7, 33):
        batch = GRID[size : 2 * size]
        assert bits(handler.admit_probabilities(batch)) == expected[size : 2 * size]


def test_answer_is_the_probability_of_admission_and_result_whether_above_one_half(
    use_kind: Any,
) -> None:
    path = use_kind("random_forest")
    event = {"gre": 800, "gpa": 4, "rank": 1}
    answer = handler.lambda_handler(event, None)
    (probability,) = r_own_predict("random_forest", path, [event])
    assert answer == {"result": probability > 0.5, "probability": probability}
    batch = handler.lambda_handler({"applicants": GRID[:3]}, None)
    expected = r_own_predict("random_forest", path, GRID[:3])
    assert batch == {"results": [{"result": p > 0.5, "probability": p} for p in expected]}


def _loaded_namespaces() -> list[str]:
    return list(r_eval("loadedNamespaces()"))


@pytest.mark.parametrize("kind", ["ranger", "gam"])
def test_model_package_is_loaded_once_when_the_model_loads_not_per_call(
    use_kind: Any, kind: str
) -> None:
    use_kind(kind)
    model = handler.get_model()
    loaded = _loaded_namespaces()
    assert model.packages[0] in loaded
    handler.admit_probabilities(GRID)
    handler.admit_probability(700, 3.5, 2)
    assert _loaded_namespaces() == loaded


@pytest.mark.parametrize("kind", REFUSED)
def test_model_the_handler_cannot_serve_is_refused_at_load_naming_the_cause(
    use_kind: Any, kind: str
) -> None:
    path = use_kind(kind)
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.get_model()
    assert caught.value.message == f"the model in {path} cannot be served: {REFUSED[kind]}"


def _check_model(path: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HANDLER_DIR / "handler.py"), "check-model", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_model_whose_package_this_r_lacks_is_refused_naming_the_package_to_ship(
    fitted_kinds: Path, tmp_path: Path
) -> None:
    # R with only its own library (Debian's r-cran-* packages are in the site library).
    empty = str(tmp_path)
    done = _check_model(
        fitted_kinds / "random_forest.rds", {"R_LIBS_SITE": empty, "R_LIBS_USER": empty}
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().endswith(
        "cannot be served: the model is of class 'randomForest.formula', 'randomForest', "
        "predicted by R package 'randomForest', which is not in this R: add 'randomForest' "
        f"{SETTING}"
    )


def test_check_model_command_reports_the_method_and_packages_of_a_forest(
    fitted_kinds: Path,
) -> None:
    done = _check_model(fitted_kinds / "ranger.rds")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "ranger Probability estimation"
    assert report["call"] == 'ranger:::predict.ranger(model, newdata)$predictions[, "1"]'
    assert report["packages"] == ["ranger"]
    assert report["warm_call_ms"] > 0


# ------------------------------------------------- the same check on a release's build host

MODEL_YML = HANDLER_DIR.parent / "roles" / "lambda_package" / "tasks" / "model.yml"


def _build_host_check(
    model: Path, r_packages: Sequence[str] = ("base", "stats"), env: Mapping[str, str] | None = None
) -> Any:
    """lambda_package's model.yml step "Find the R packages predicting with the model needs",
    as it runs on the build host: the task's own R code and environment, this R."""
    tasks = {task["name"]: task for task in yaml.safe_load(MODEL_YML.read_text())}
    task = tasks["model | Find the R packages predicting with the model needs"]
    code = task["vars"]["__lambda_package_needs_r"]
    return subprocess.run(
        [
            *("Rscript", "--vanilla", "-e", code),
            *(str(HANDLER_DIR / "admission_model.R"), str(model), *r_packages),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **task["environment"], **(env or {})},
    )


def test_build_host_lists_the_package_a_forest_needs_for_the_release_to_ship(
    fitted_kinds: Path,
) -> None:
    done = _build_host_check(fitted_kinds / "random_forest.rds")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert "randomForest" in found["needed"]
    assert "randomForest" in found["extra"]
    assert any(path.endswith("/randomForest") for path in found["paths"])


@pytest.mark.parametrize("kind", ["unknown_class", "forest_with_gender", "ranger_classes"])
def test_build_host_refuses_a_model_the_handler_cannot_serve_with_the_handlers_message(
    fitted_kinds: Path, kind: str
) -> None:
    done = _build_host_check(fitted_kinds / f"{kind}.rds")
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: {REFUSED[kind]}\n")


def test_build_host_refuses_a_model_whose_package_the_release_does_not_list_naming_it(
    fitted_kinds: Path, tmp_path: Path
) -> None:
    """As on a release's build host whose R library has only the listed packages (here
    none: R's own library, Debian's site library hidden), the check names the package to
    add to lambda_package_model_packages (test_release_local.py: through a real release)."""
    empty = str(tmp_path)
    done = _build_host_check(
        fitted_kinds / "random_forest.rds", env={"R_LIBS_SITE": empty, "R_LIBS_USER": empty}
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: the model is of class 'randomForest.formula', 'randomForest', predicted by R "
        f"package 'randomForest', which is not in this R: add 'randomForest' {SETTING}\n"
    )
