"""Helpers shared by the handler tests (fixtures live in conftest.py)."""

import dataclasses
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
HANDLER_DIR = REPO / "handler"
TRAIN_R = HANDLER_DIR / "model" / "train.R"
TRAINING_CSV = HANDLER_DIR / "model" / "binary.csv"
LAMBDA_PACKAGE_DEFAULTS = REPO / "roles" / "lambda_package" / "defaults" / "main.yml"

# The published glm (UCLA admissions), rounded to six decimals as published.
PUBLISHED_COEFFICIENTS = {
    "(Intercept)": -3.989979,
    "gre": 0.002264,
    "gpa": 0.804038,
    "rank2": -0.675443,
    "rank3": -1.340204,
    "rank4": -1.551464,
}
VENV_BIN = Path(sys.executable).parent

# The handler and its sibling modules, top-level modules as in a package's root (handler/
# is on pytest's pythonpath: pyproject.toml); F401: the tests import them from here.
import admission_model_source  # noqa: E402, F401
import admission_predictor  # noqa: E402, F401
import admission_r_session  # noqa: E402
import admission_requests  # noqa: E402, F401

import handler  # noqa: E402, F401

# An answer's headers with no CORS_ALLOW_ORIGINS (the default): no CORS header at all.
CORS = {"Content-Type": "application/json"}
# Those for a request from an origin CORS_ALLOW_ORIGINS names.
CORS_FOR_ORIGIN = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Content-Type, Authorization, X-Api-Key, X-Amz-Date, X-Amz-Security-Token"
    ),
    "Content-Type": "application/json",
    "Vary": "Origin",
}
OK = {"gre": 800, "gpa": 4, "rank": 1}


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    trimmed: Path
    untrimmed: Path
    stderr: str


@dataclasses.dataclass
class ModelObject:
    bucket: str
    key: str
    body: bytes
    client: Any
    cache_dir: Path


def shipped_handler_files() -> list[str]:
    """The handler files a package holds in its root (lambda_package_handler_files)."""
    defaults = yaml.safe_load(LAMBDA_PACKAGE_DEFAULTS.read_text())
    return defaults["lambda_package_handler_files"]


def run_train(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["Rscript", str(TRAIN_R), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


# The handler starts R with no package attached (admission_r_session.R_STARTUP_ENV); test code
# written as at an R prompt (coef, predict, read.csv, mtcars) needs these.
TEST_R_PACKAGES = ("utils", "stats", "datasets")
_attached = False


def r_eval(code: str) -> Any:
    """Evaluate R code in the handler's embedded R (started if needed), as at a prompt."""
    global _attached
    ri = admission_r_session.start_r()
    with admission_r_session.R_LOCK:
        if not _attached:
            for package in TEST_R_PACKAGES:
                ri.baseenv["library"](ri.StrSexpVector([package]))
            _attached = True
        return ri.baseenv["eval"](ri.parse(code))


def r_predict(
    model: Any, applicants: Sequence[Mapping[str, Any]], rank_as: str = "numeric"
) -> list[float]:
    """R's own predict(model, data.frame(gre, gpa, rank), type = "response").

    The columns are built from the very doubles given (no decimal text in between).
    ``rank_as`` says how the model expects rank: ``numeric``, ``character``, or
    ``factor``/``ordered`` with the levels the model records (model$xlevels$rank).
    """
    ri = admission_r_session.start_r()
    with admission_r_session.R_LOCK:
        stats = ri.baseenv["getNamespace"](ri.StrSexpVector(["stats"]))
        rank: Any = ri.FloatSexpVector([float(a["rank"]) for a in applicants])
        if rank_as != "numeric":
            text = ri.baseenv["as.character"](rank)
            rank = text
            if rank_as in ("factor", "ordered"):
                levels = r_eval("function(m) m$xlevels$rank")(model)
                ordered = ri.BoolSexpVector([rank_as == "ordered"])
                rank = ri.baseenv["factor"](text, levels=levels, ordered=ordered)
        frame = ri.baseenv["data.frame"](
            gre=ri.FloatSexpVector([float(a["gre"]) for a in applicants]),
            gpa=ri.FloatSexpVector([float(a["gpa"]) for a in applicants]),
            rank=rank,
            stringsAsFactors=ri.BoolSexpVector([False]),
        )
        response = ri.StrSexpVector(["response"])
        return list(stats["predict"](model, newdata=frame, type=response))


def r_read_model(path: Path) -> Any:
    """The model as R's readRDS gives it: a separate object from the handler's own."""
    ri = admission_r_session.start_r()
    with admission_r_session.R_LOCK:
        return ri.baseenv["readRDS"](ri.StrSexpVector([str(path)]))


def bits(values: Sequence[float]) -> list[str]:
    """Exact renderings of doubles, for comparisons that must be bitwise."""
    return [float(v).hex() for v in values]


def r_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Ctx:
    """A stand-in for the Lambda context object."""

    def __init__(self, request_id: str = "req-1") -> None:
        self.aws_request_id = request_id


def caller_error(error_type: str, request_id: str) -> dict:
    """What a direct caller learns of a server-side failure (errorMessage's JSON): the
    request id to look up in the function log, nothing of the cause."""
    return {
        "errorType": error_type,
        "httpStatus": 500,
        "request_id": request_id,
        "message": "the service could not answer; the function log has the cause "
        f"under request_id {request_id}",
    }
