"""Helpers shared by the handler tests (fixtures live in conftest.py)."""

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HANDLER_DIR = REPO / "handler"
TRAIN_R = HANDLER_DIR / "model" / "train.R"
TRAINING_CSV = HANDLER_DIR / "model" / "binary.csv"
VENV_BIN = Path(sys.executable).parent

if str(HANDLER_DIR) not in sys.path:
    sys.path.insert(0, str(HANDLER_DIR))

import handler  # noqa: E402  (needs the sys.path entry above)

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "Content-Type, Authorization, X-Api-Key, X-Amz-Date, X-Amz-Security-Token"
    ),
    "Content-Type": "application/json",
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


def run_train(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["Rscript", str(TRAIN_R), *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def r_eval(code: str) -> Any:
    """Evaluate R code in the handler's embedded R (started if needed)."""
    ri = handler._start_r()
    with handler._LOCK:
        return ri.baseenv["eval"](ri.parse(code))


def r_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Ctx:
    """A stand-in for the Lambda context object."""

    def __init__(self, request_id: str = "req-1") -> None:
        self.aws_request_id = request_id
