"""The bench's models that need R packages: one local release each, then measured in the
Lambda stand-in exactly as the project's package is (bench/run.py).

Each model is fitted on the project's UCLA data by tests/handler/fit_model_kinds.R with
the controller's R (its packages are Debian's), and released as the operator's model
(`lambda_package_model_rds`) with the package it needs (`lambda_package_model_packages`):
the release resolves, builds and ships that package and its dependencies, and its clean
host checks the handler's predictions against R's own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "dist"
FIT_MODEL_KINDS_R = REPO / "tests" / "handler" / "fit_model_kinds.R"
TRAINING_DATA = REPO / "handler" / "model" / "binary.csv"
ADMISSION_MODEL_R = REPO / "handler" / "admission_model.R"
# The cold start's event (bench/in_host.py), predicted as the handler plans the model.
PREDICT_EVENT_R = (
    "a <- commandArgs(TRUE); source(a[1]); "
    'cat(sprintf("%.17g\\n", plan_model(readRDS(a[2]))$predict(800, 4, 1)))'
)
# Model kind (fit_model_kinds.R's name) -> the R packages its release ships. The gam's
# release ships randomForest too: the same list as the tests' R packages release
# (tests/integration/test_release_r_packages.py), so that the installed library (Matrix,
# nlme and mgcv compile for minutes) is the one `make test` left in the machine's cache.
PACKAGE_MODELS = {"random_forest": ["randomForest"], "gam": ["randomForest", "mgcv"]}
# The Lambda memory each release targets (package_test_memory_mb): a gam loads Matrix and
# peaks near 200 MB at its first prediction (handler/README.md), past 128 MB's margin.
TARGET_MEMORY_MB = {"random_forest": 128, "gam": 512}


def fit(out: Path) -> dict[str, Path]:
    """Every kind fit_model_kinds.R fits, into out; the ones the bench releases, by kind."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["Rscript", str(FIT_MODEL_KINDS_R), str(TRAINING_DATA), str(out)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: fitting the package models failed: {proc.stderr.strip()[-2000:]}")
    return {kind: out / f"{kind}.rds" for kind in PACKAGE_MODELS}


def probability(model: Path) -> float:
    """P(admit) the model gives the cold start's event (gre 800, gpa 4, rank 1), with the
    controller's R and the handler's own plan of the model: what its cold start must answer."""
    proc = subprocess.run(["Rscript", "--vanilla", "-e", PREDICT_EVENT_R, str(ADMISSION_MODEL_R),
                           str(model)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench: predicting with {model.name} failed: "
                         f"{proc.stderr.strip()[-2000:]}")
    return float(proc.stdout.split()[-1])


def release(kind: str, model: Path, bucket: str,
            playbook: Callable[..., float]) -> tuple[Path, dict, float]:
    """Release one model with its packages; its zip (copied out of dist/latest, which the
    next release replaces), its manifest and the release's wall time."""
    settings = {"release_bucket": f"{bucket}-{kind.replace('_', '-')}",
                "lambda_package_model_rds": str(model),
                "lambda_package_model_packages": PACKAGE_MODELS[kind],
                "package_test_memory_mb": TARGET_MEMORY_MB[kind]}
    seconds = playbook("playbooks/release.yml", "-e", json.dumps(settings),
                       log_name=f"release-{kind}")
    zip_path = DIST / f"bench-{kind}.zip"
    shutil.copyfile(DIST / "latest" / "admission.zip", zip_path)
    manifest = json.loads((DIST / "release.json").read_text())
    return zip_path, manifest, seconds


def memory(manifest: dict) -> str:
    """The stand-in's memory for a release: the Lambda size it chose (podman's notation)."""
    return f"{(manifest.get('memory') or {}).get('memory_mb') or 128}m"


def shipped(manifest: dict) -> list[str]:
    """name version of each R package the release resolved for its model."""
    package = manifest.get("package", manifest)
    resolved = (package.get("model_packages") or {}).get("packages") or []
    return [f"{p['name']} {p['version']}" for p in resolved]


def figures(kind: str, manifest: dict, seconds: float, sizes: dict, measured: dict) -> dict:
    """bench.json's `package_models.<kind>`: what was shipped, its sizes, the memory the
    release chose, and what the stand-in measured (cold start, warm call, batch, RSS)."""
    row = {
        "packages": PACKAGE_MODELS[kind],
        "shipped": shipped(manifest),
        "release_s": seconds,
        "memory_mb": (manifest.get("memory") or {}).get("memory_mb"),
        "zip_bytes": sizes["zip_bytes"],
        "unzipped_bytes": sizes["unzipped_bytes"],
        "cold_start_s": measured.get("cold_start_s"),
        "peak_rss_mb": measured.get("peak_rss_mb"),
        "warm_predict_ms": measured.get("single_call_median_ms"),
        "batch_1000_ms": measured.get("batch_median_ms"),
        "method": measured.get("method"),
    }
    if "error" in measured:
        row["error"] = measured["error"]
    return row


def table(models: dict[str, dict]) -> str:
    """One line per released model kind."""
    mb = 1024 * 1024
    lines = [f"{'package model':<14} {'zip MB':>7} {'unzip MB':>9} {'memory':>7} {'cold s':>7} "
             f"{'warm ms':>8} {'1000 ms':>8} {'RSS MB':>7}  path / shipped"]
    for kind, row in models.items():
        if "error" in row:
            lines.append(f"{kind:<14} failed: {row['error'][:200]}")
            continue
        lines.append(f"{kind:<14} {row['zip_bytes'] / mb:>7.1f} {row['unzipped_bytes'] / mb:>9.1f} "
                     f"{row['memory_mb']!s:>7} {row['cold_start_s']!s:>7} "
                     f"{row['warm_predict_ms']!s:>8} {row['batch_1000_ms']!s:>8} "
                     f"{row['peak_rss_mb']!s:>7}  {row['method']} / {', '.join(row['shipped'])}")
    return "\n".join(lines)
