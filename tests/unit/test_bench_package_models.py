"""Tests for the pure parts of bench/package_models.py (the bench's package-model releases)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from module_loading import load as _load

REPO = Path(__file__).resolve().parents[2]
package_models = _load("bench_package_models", REPO / "bench" / "package_models.py")

MANIFEST = {
    "memory": {"memory_mb": 256, "margin": 0.7},
    "package": {"model_packages": {"packages": [
        {"name": "randomForest", "version": "4.7-1.2", "sha256": "aa", "url": "u"}]}},
}
MEASURED = {"cold_start_s": 0.2, "peak_rss_mb": 61.5, "single_call_median_ms": 0.4,
            "batch_median_ms": 3.1, "method": "predict"}


def test_each_released_kind_names_the_packages_it_needs_and_the_models_are_fitted_for_it() -> None:
    fitted = (REPO / "tests" / "handler" / "fit_model_kinds.R").read_text()
    for kind, packages in package_models.PACKAGE_MODELS.items():
        assert any(f"  {kind} = quote({package}::" in fitted for package in packages)


def test_figures_keep_what_was_shipped_the_memory_chosen_and_what_the_stand_in_measured() -> None:
    row = package_models.figures("random_forest", MANIFEST, 95.2,
                                 {"zip_bytes": 10_500_000, "unzipped_bytes": 18_000_000}, MEASURED)
    assert row == {"packages": ["randomForest"], "shipped": ["randomForest 4.7-1.2"],
                   "release_s": 95.2, "memory_mb": 256, "zip_bytes": 10_500_000,
                   "unzipped_bytes": 18_000_000, "cold_start_s": 0.2, "peak_rss_mb": 61.5,
                   "warm_predict_ms": 0.4, "batch_1000_ms": 3.1, "method": "predict"}


def test_a_stand_in_failure_is_kept_with_the_figures() -> None:
    row = package_models.figures("gam", {}, 80.0, {"zip_bytes": 1, "unzipped_bytes": 2},
                                 {"error": "cold start 1: exited 1"})
    assert row["error"] == "cold start 1: exited 1"
    assert row["shipped"] == [] and row["memory_mb"] is None


def test_the_release_passes_the_model_and_its_packages_and_keeps_the_zip(
        tmp_path, monkeypatch) -> None:
    dist = tmp_path / "dist"
    (dist / "latest").mkdir(parents=True)
    (dist / "latest" / "admission.zip").write_bytes(b"zip")
    (dist / "release.json").write_text(json.dumps(MANIFEST))
    monkeypatch.setattr(package_models, "DIST", dist)
    calls = []

    def playbook(name, *extra, log_name):
        calls.append((name, extra, log_name))
        return 61.0

    zip_path, manifest, seconds = package_models.release(
        "random_forest", tmp_path / "random_forest.rds", "r-lambda-bench", playbook)
    name, extra, log_name = calls[0]
    assert (name, extra[0], log_name) == ("playbooks/release.yml", "-e", "release-random_forest")
    assert json.loads(extra[1]) == {"release_bucket": "r-lambda-bench-random-forest",
                                    "lambda_package_model_rds": str(tmp_path / "random_forest.rds"),
                                    "lambda_package_model_packages": ["randomForest"],
                                    "package_test_memory_mb": 128}
    assert zip_path == dist / "bench-random_forest.zip" and zip_path.read_bytes() == b"zip"
    assert (manifest, seconds) == (MANIFEST, 61.0)


def test_the_table_has_a_line_per_kind_and_names_a_failure() -> None:
    row = package_models.figures("random_forest", MANIFEST, 95.2,
                                 {"zip_bytes": 10_485_760, "unzipped_bytes": 20_971_520}, MEASURED)
    rows = {"random_forest": row, "gam": {"error": "release failed"}}
    lines = package_models.table(rows).splitlines()
    assert lines[1].split()[:4] == ["random_forest", "10.0", "20.0", "256"]
    assert lines[1].endswith("predict / randomForest 4.7-1.2")
    assert lines[2] == "gam            failed: release failed"


def test_the_stand_in_gets_the_memory_the_release_chose() -> None:
    assert package_models.memory(MANIFEST) == "256m"
    assert package_models.memory({}) == "128m"
    assert set(package_models.TARGET_MEMORY_MB) == set(package_models.PACKAGE_MODELS)


def test_each_models_cold_start_is_checked_against_what_r_predicts_for_that_model(
        tmp_path) -> None:
    """The bench fits the gam with the controller's R; its cold start must answer the gam's
    probability, not the glm's (the bench once compared a gam's 0.7196 with the glm's 0.7384)."""
    models = package_models.fit(tmp_path)
    glm = tmp_path / "glm.rds"
    subprocess.run(["Rscript", "--vanilla", "-e",
                    "a <- commandArgs(TRUE); d <- read.csv(a[1]); d$rank <- factor(d$rank); "
                    "saveRDS(glm(admit ~ gre + gpa + rank, family = 'binomial', data = d), a[2])",
                    str(REPO / "handler" / "model" / "binary.csv"), str(glm)], check=True)
    assert round(package_models.probability(glm), 4) == 0.7384  # the 2017 answer
    gam = package_models.probability(models["gam"])
    assert 0 < gam < 1 and round(gam, 4) != 0.7384
