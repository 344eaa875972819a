"""Models saved by an older R load and predict unchanged with the release's R (issue 24).

The controller's R (Debian 12's R 4.2.2) fits every kind of admission model the handler
serves (tests/handler/fit_models.R, untrimmed, as users save them) and the project's
trimmed model (handler/model/train.R), and predicts a grid with its own predict(). The
latest one-zip release's package (dist/runs/<run>/admission.zip: made by `make release`,
or by test_release_local.py's releases, which run before this file), unzipped into a
Lambda stand-in that has no R (the release's test image: Python 3.13, read-only but /tmp,
128 MB, no network, as nobody), loads each .rds with the packaged R and answers the same
grid through the handler: every probability must be the very double the older R gave.

The grid goes to R and the answers come back as raw little-endian doubles (writeBin,
readBin), so no decimal text can round a value on the way.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest
from release_runs import REPO

pytestmark = pytest.mark.slow

RUNS_DIR = REPO / "dist" / "runs"
TEST_IMAGE = "localhost/r-lambda-base:trixie"  # the release's test host: Python 3.13, no R
FIT_MODELS_R = REPO / "tests" / "handler" / "fit_models.R"
TRAIN_R = REPO / "handler" / "model" / "train.R"
TRAINING_CSV = REPO / "handler" / "model" / "binary.csv"
# Every kind tests/handler/test_models.py proves the handler serves, both paths (direct
# and predict()), rank numeric, character, factor and ordered; not "spline", whose ns()
# needs R package splines, which the releases do not carry (package.yml).
KINDS = ("2017", "factor_in_formula", "numeric_rank", "reordered", "probit", "lm",
         "no_intercept", "three_ranks", "character_rank", "interaction", "rank_by_gpa",
         "poly", "offset", "ordered_rank")
GRID = [
    (gre, gpa, rank)
    for rank in (1.0, 2.0, 3.0, 4.0)
    for gre in (200.0, 200.00000000000003, 317.5, 520.0, 666.6, 799.9999999999999, 800.0)
    for gpa in (0.0, 5e-324, 1.13, 2.5, 3.3333, 3.9999999999999996, 4.0)
]
LAMBDA_LIBRARY_PATH = ("/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
                       "/var/task:/var/task/lib:/opt/lib")

# R's own predict(), newdata built the way the model expects rank (its terms' dataClasses:
# a number, text, or a factor of the levels it was fitted with; the packaged check
# test_package.py builds it the same way), only for the ranks the model knows.
R_PREDICT = r"""
args <- commandArgs(trailingOnly = TRUE)
dir <- args[[1]]
n <- as.integer(args[[2]])
column <- function(name) readBin(file.path(dir, paste0("grid-", name, ".bin")), "double",
                                 n = n, size = 8, endian = "little")
gre <- column("gre"); gpa <- column("gpa"); rank <- column("rank")
for (kind in args[-(1:2)]) {
  model <- readRDS(file.path(dir, paste0(kind, ".rds")))
  classes <- attr(stats::terms(model), "dataClasses")
  class <- if ("rank" %in% names(classes)) classes[["rank"]] else "numeric"
  levels <- model$xlevels$rank
  known <- if (class == "numeric" || is.null(levels)) TRUE else as.character(rank) %in% levels
  r <- rank[known]
  r <- switch(class,
    numeric = r,
    character = as.character(r),
    factor = factor(as.character(r), levels = levels),
    ordered = factor(as.character(r), levels = levels, ordered = TRUE))
  newdata <- data.frame(gre = gre[known], gpa = gpa[known], rank = r, stringsAsFactors = FALSE)
  p <- stats::predict(model, newdata = newdata, type = "response")
  writeBin(as.double(p), file.path(dir, paste0(kind, ".expected.bin")), size = 8,
           endian = "little")
  writeBin(as.double(rank[known]), file.path(dir, paste0(kind, ".ranks.bin")), size = 8,
           endian = "little")
}
cat(R.version.string, "\n", sep = "")
"""

# Run in the stand-in by the target's Python, the package's root first on sys.path as on
# Lambda: each model through the handler (MODEL_PATH), the grid rows of the ranks it knows.
IN_STAND_IN = r"""
import json, os, sys
import admission_r_session, handler
grid = [(float.fromhex(a), float.fromhex(b), float.fromhex(c))
        for a, b, c in json.load(open("/models/grid.json"))]
answers = {}
for kind in sys.argv[1:]:
    os.environ["MODEL_PATH"] = "/models/" + kind + ".rds"
    handler.reset_model_cache()
    model = handler.get_model()
    rows = [{"gre": g, "gpa": p, "rank": r} for g, p, r in grid if r in model.ranks]
    answers[kind] = {"method": model.method, "ranks": [row["rank"] for row in rows],
                     "probabilities": [v.hex() for v in handler.admit_probabilities(rows)]}
ri = admission_r_session.start_r()
with open("/proc/self/maps") as maps:
    libr = sorted({line.split(None, 5)[-1].strip() for line in maps if "/libR.so" in line})
print(json.dumps({"r_version": ri.baseenv["R.version.string"][0], "libR": libr,
                  "python": sys.version.split()[0], "answers": answers}))
"""


def _doubles(path: Path) -> list[float]:
    data = path.read_bytes()
    return list(struct.unpack(f"<{len(data) // 8}d", data))


def _version(text: str) -> tuple[int, ...]:
    match = re.search(r"R version (\d+)\.(\d+)\.(\d+)", text)
    assert match, text
    return tuple(int(part) for part in match.groups())


def _latest_one_zip_release() -> tuple[dict, Path] | None:
    """The record and admission.zip of the newest one-zip release whose outputs this
    checkout keeps (dist/runs/<run>/: release.json, admission.zip); a layer-layout release
    (test_release_layer.py) has no admission.zip."""
    found = []
    for record in RUNS_DIR.glob("*/release.json"):
        release = json.loads(record.read_text())
        package = record.parent / "admission.zip"
        if release.get("layout") == "zip" and package.exists():
            found.append((release["created_at"], release, package))
    return max(found, key=lambda item: item[0])[1:] if found else None


@pytest.fixture(scope="module")
def release_package(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The zip of the latest one-zip release made from this checkout, unzipped, and its
    record."""
    latest = _latest_one_zip_release()
    if latest is None:
        # The local suite's releases run before this file: without one nothing is proven.
        pytest.fail(f"no one-zip release in {RUNS_DIR}: make release (or the local suite) first")
    release, package = latest
    assert hashlib.sha256(package.read_bytes()).hexdigest() == release["zip"]["sha256"]
    if subprocess.run(["podman", "image", "exists", TEST_IMAGE], check=False).returncode:
        pytest.fail(f"no image {TEST_IMAGE}: a release builds it")
    task = tmp_path_factory.mktemp("task")
    with zipfile.ZipFile(package) as archive:
        archive.extractall(task)
    # Modes as Lambda unpacks a function: readable by the function's user, nobody.
    subprocess.run(["chmod", "-R", "a+rX", str(task)], check=True)
    task.chmod(0o755)
    return {"release": release, "task": task}


@pytest.fixture(scope="module")
def older_r_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """KINDS and the trimmed model fitted and saved by the controller's R, with the grid
    and that R's own predictions of it."""
    models = tmp_path_factory.mktemp("models")
    for argv in (["Rscript", str(FIT_MODELS_R), str(TRAINING_CSV), str(models), *KINDS],
                 ["Rscript", str(TRAIN_R), str(TRAINING_CSV), str(models / "trained.rds")]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
    for index, name in enumerate(("gre", "gpa", "rank")):
        values = [row[index] for row in GRID]
        (models / f"grid-{name}.bin").write_bytes(struct.pack(f"<{len(values)}d", *values))
    (models / "grid.json").write_text(json.dumps([[v.hex() for v in row] for row in GRID]))
    (models / "predict.R").write_text(R_PREDICT)
    (models / "in_stand_in.py").write_text(IN_STAND_IN)
    kinds = (*KINDS, "trained")
    done = subprocess.run(["Rscript", str(models / "predict.R"), str(models), str(len(GRID)),
                           *kinds], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    subprocess.run(["chmod", "-R", "a+rX", str(models)], check=True)
    return {"dir": models, "kinds": kinds, "r_version": done.stdout.strip()}


def test_models_saved_by_an_older_r_predict_the_same_bits_with_the_packaged_r(
    release_package: dict, older_r_models: dict
) -> None:
    release, models = release_package["release"], older_r_models["dir"]
    python = f"python{release['python_version']}"
    done = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", "--read-only",
         "--tmpfs", "/tmp:rw,mode=1777", "--memory=128m", "--memory-swap=128m",
         "--user", "65534:65534", "--workdir", "/var/task",
         "-e", f"LD_LIBRARY_PATH={LAMBDA_LIBRARY_PATH}", "-e", "PYTHONPATH=/var/task",
         "-v", f"{release_package['task']}:/var/task:ro", "-v", f"{models}:/models:ro",
         TEST_IMAGE, python, "/models/in_stand_in.py", *older_r_models["kinds"]],
        capture_output=True, text=True, timeout=600, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    # An older R saved them; the package's own R, the release's, read them.
    assert _version(older_r_models["r_version"]) < _version(report["r_version"])
    assert report["r_version"].startswith(f"R version {release['r_version']} ")
    assert report["libR"] == ["/var/task/lib/libR.so"]  # the package's, not a system R
    for kind in older_r_models["kinds"]:
        answer = report["answers"][kind]
        expected = _doubles(models / f"{kind}.expected.bin")
        assert answer["ranks"] == _doubles(models / f"{kind}.ranks.bin"), kind
        assert len(expected) >= 3 * 7 * 7, kind
        assert answer["probabilities"] == [v.hex() for v in expected], kind
