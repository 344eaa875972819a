"""Real releases on the local platform that carry R packages a model needs (issue #24):
resolved against Debian's archive (the local inventory's repository), each tarball checked
against its sha256 on the controller, compiled on the build host with the release's R,
shipped in the layer's R library, and loaded on a clean host that has no R.

The release ships a randomForest model with `lambda_package_model_packages: [randomForest,
mgcv]`; the clean host's own checks load every packaged R package and compare the handler
with R's predict on a grid (test_package.py), and this test then fits a randomForest and a
gam with the published layer's R in a container of the clean host's image (no R, no
network), as Lambda would run it. A second release, of an mgcv gam with the same packages
(their installed library from the cache), is served as mgcv predicts on the clean host.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

# A CRAN-like tree over HTTP, as the unit tests of module_utils/r_packages.py serve one
# (tests/unit/r_repos.py, on pytest's pythonpath).
from r_repos import served
from release_runs import REPO
from release_support import (
    assert_no_hosts_left,
    keys,
    read_json,
    run_playbook,
    s3_client,
)

pytestmark = pytest.mark.slow

MODEL_PACKAGES = ["randomForest", "mgcv"]
# What randomForest and mgcv need, resolved against Debian's archive (mgcv: Matrix, nlme;
# Matrix: lattice), in install order.
RESOLVED = {"lattice", "Matrix", "nlme", "mgcv", "randomForest"}
CLEAN_IMAGE = "localhost/r-lambda-base:trixie"


FIT_FOREST = """
a <- commandArgs(TRUE); d <- read.csv(a[1])
d <- transform(d, rank = factor(rank), admit = factor(admit)); set.seed(42)
saveRDS(randomForest::randomForest(admit ~ gre + gpa + rank, data = d, ntree = 100), a[2])
"""


def release_model(bucket: str, fit: str, model: Path, name: str, *extra: str) -> dict:
    """Fit a model with the controller's R (fit: R code given the data and the .rds path),
    release it with MODEL_PACKAGES at a 512 MB target (the clean host's checks load every
    packaged namespace, mgcv's and Matrix's included, in one process: 128 MB is killed);
    the run, the version latest.json then names and its manifest."""
    subprocess.run(["Rscript", "-e", fit, str(REPO / "handler/model/binary.csv"), str(model)],
                   check=True, capture_output=True, timeout=120)
    run = run_playbook(
        "playbooks/release.yml",
        "-e", f"release_bucket={bucket}",
        "-e", "release_force=true",
        "-e", "package_test_memory_mb=512",
        "-e", f"lambda_package_model_rds={model}",
        "-e", json.dumps({"lambda_package_model_packages": MODEL_PACKAGES}),
        *extra,
        name=name,
    ).check()
    assert_no_hosts_left(run)
    client = s3_client()
    version = read_json(client, bucket, "releases/latest.json")["version"]
    return {"run": run, "version": version,
            "manifest": read_json(client, bucket, f"releases/{version}/manifest.json")}


@pytest.fixture(scope="module")
def r_packages_release(bucket: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One layered release of a randomForest model (fitted here with the controller's R)
    with randomForest and mgcv: about 9 min the first time on 2 busy cores (Matrix's
    compilation 5.5 of them), 183 s once the installed library is in the cache."""
    forest = tmp_path_factory.mktemp("model") / "forest.rds"
    return release_model(bucket, FIT_FOREST, forest, "release-r-packages",
                         "-e", "lambda_package_layer=true")


def test_the_release_records_what_was_resolved_and_what_each_package_weighs(
    r_packages_release: dict,
) -> None:
    manifest = r_packages_release["manifest"]
    assert manifest["status"] == "verified"
    resolved = manifest["model_packages"]
    assert resolved["requested"] == MODEL_PACKAGES
    assert resolved["repository"]["kind"] == "debian"
    names = [p["name"] for p in resolved["packages"]]
    assert set(names) == RESOLVED
    assert names.index("Matrix") < names.index("mgcv") and names.index("nlme") < names.index("mgcv")
    for package in resolved["packages"]:
        assert package["url"].startswith("http://deb.debian.org/debian/pool/main/")
        assert len(package["sha256"]) == 64
        assert package["unzipped_bytes"] > 0 and package["zip_bytes"] > 0, package["name"]


def test_the_clean_host_loaded_every_r_package_and_served_the_forest_as_r_predicts(
    bucket: str, r_packages_release
) -> None:
    """On the clean host: every packaged namespace loads (no dyn.load failure), and the
    handler's probability is bitwise randomForest's predict(type = "prob")[, "1"] on the
    grid of ranks x gre x gpa (test_package.py), through the layer's R."""
    client = s3_client()
    manifest = r_packages_release["manifest"]
    version = r_packages_release["version"]
    junit = client.get_object(Bucket=bucket, Key=f"releases/{version}/package-test.xml")
    report = junit["Body"].read().decode()
    assert 'name="test_every_packaged_r_package_loads"' in report
    assert 'name="test_predictions_are_identical_to_r_predict"' in report
    assert manifest["tests"]["failed"] == 0 and manifest["tests"]["passed"] >= 6
    assert "randomForest" in json.dumps(manifest["model"]["plan"])
    runtime = manifest["tests"]["runtime_client"]
    assert (runtime["passed"], runtime["failed"]) == (5, 0)


FIT_GAM = """
a <- commandArgs(TRUE); d <- read.csv(a[1])
saveRDS(mgcv::gam(admit ~ s(gpa) + s(gre) + rank, data = transform(d, rank = factor(rank)),
                  family = binomial), a[2])
"""


def test_a_gam_model_is_released_with_mgcv_and_served_as_r_predicts(
    bucket: str, r_packages_release: dict, tmp_path: Path
) -> None:
    """A second model kind, an mgcv gam (fitted here with the controller's R), released as
    one zip with the same packages: the installed library comes from the cache (the
    release above built it), and on the clean host, through the packaged R, the handler's
    probability is bitwise mgcv's predict(type = "response") on the grid (test_package.py)
    and Lambda's runtime client answers every event."""
    released = release_model(bucket, FIT_GAM, tmp_path / "gam.rds", "release-r-packages-gam")
    client = s3_client()
    version, manifest = released["version"], released["manifest"]
    assert version != r_packages_release["version"]
    assert manifest["status"] == "verified" and manifest["layout"] == "zip"
    assert "predict.gam" in json.dumps(manifest["model"]["plan"])
    assert {p["name"] for p in manifest["model_packages"]["packages"]} == RESOLVED
    assert manifest["tests"]["failed"] == 0
    assert (manifest["tests"]["runtime_client"]["passed"],
            manifest["tests"]["runtime_client"]["failed"]) == (5, 0)
    junit = client.get_object(Bucket=bucket, Key=f"releases/{version}/package-test.xml")
    report = junit["Body"].read().decode()
    assert 'name="test_predictions_are_identical_to_r_predict"' in report
    assert "<failure" not in report and "<error" not in report
    assert manifest["memory"]["memory_mb"] >= 256  # mgcv and Matrix: over 128 MB's margin


# Fitted and predicted with the layer's R on the clean host's image: randomForest's and
# mgcv's compiled code runs (no dyn.load failure, their libraries bundled), and the answers
# are probabilities of the UCLA data's rows.
FIT = r"""
library(stats); library(utils)  # the handler starts R with no default package attached
suppressMessages({library(randomForest); library(mgcv)})
d <- read.csv("/data/binary.csv")
set.seed(42)
rf <- randomForest(factor(admit) ~ gre + gpa + rank, data = d, ntree = 50)
gm <- gam(admit ~ s(gre) + s(gpa) + factor(rank), family = binomial, data = d)
c(predict(rf, d[1:3, ], type = "prob")[, "1"], predict(gm, d[1:3, ], type = "response"))
"""

STAND_IN = """
import json, sys
import admission_r_session
ri = admission_r_session.start_r()
out = ri.baseenv["eval"](ri.parse(sys.argv[1]))
print(json.dumps(list(out)))
"""


def test_randomforest_and_mgcv_fit_and_predict_with_the_layers_r_on_a_host_without_r(
    bucket: str, r_packages_release: dict, tmp_path: Path
) -> None:
    client = s3_client()
    manifest = r_packages_release["manifest"]
    layer, function = tmp_path / "opt", tmp_path / "task"
    for key, dest in ((manifest["layer"]["key"], layer), (manifest["function"]["key"], function)):
        archive = tmp_path / Path(key).name
        client.download_file(bucket, key, str(archive))
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(dest)
    for folder in (layer / "R/library/randomForest/libs", layer / "R/library/mgcv/libs"):
        assert any(folder.glob("*.so")), folder

    done = subprocess.run(
        ["podman", "run", "--rm", "--network=none", "--read-only", "--tmpfs", "/tmp",
         "--memory=512m", "-v", f"{layer}:/opt:ro", "-v", f"{function}:/var/task:ro",
         "-v", f"{REPO / 'handler/model/binary.csv'}:/data/binary.csv:ro", "-w", "/var/task",
         "-e", "LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/task/lib:/opt/lib",
         "-e", "PYTHONPATH=/var/task:/opt/python", "-e", "PYTHONDONTWRITEBYTECODE=1",
         CLEAN_IMAGE, "sh", "-c", 'test ! -e /usr/lib/R && exec python3.13 -c "$0" "$1"',
         STAND_IN, FIT],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(answers) == 6 and all(0 <= p <= 1 for p in answers), answers


def test_a_lock_with_a_wrong_sha256_stops_the_release_before_anything_is_built(
    bucket: str, r_packages_release: dict, tmp_path: Path
) -> None:
    """The lock of the release above with randomForest's sha256 changed: the plan stops,
    naming the package and both digests, before any host is made or object written."""
    client = s3_client()
    before = keys(client, bucket)
    resolved = r_packages_release["manifest"]["model_packages"]
    packages = [dict(p) for p in resolved["packages"]]
    forest = next(p for p in packages if p["name"] == "randomForest")
    actual, wrong = forest["sha256"], "0" * 64
    forest["sha256"] = wrong
    lock = tmp_path / "r.lock.json"
    lock.write_text(json.dumps({
        "lock_version": 1, "r_version_min": None, "repository": resolved["repository"],
        "packages": [{k: p[k] for k in ("name", "version", "url", "sha256", "needs")}
                     | {"linking_to": []} for p in packages]}))

    run = run_playbook("playbooks/release.yml", "-e", f"release_bucket={bucket}",
                       "-e", "release_force=true", "-e", f"lambda_package_r_lock={lock}",
                       name="release-r-lock-wrong-sha256")

    assert run.returncode != 0
    assert "Planning failed" in run.output
    assert f"randomForest {forest['version']}: " in run.output
    assert f"sha256 {actual}, expected {wrong}" in run.output
    assert "TASK [r_runtime" not in run.output and "TASK [lambda_package : inputs" not in run.output
    assert "TASK [local_hosts : hosts" not in run.output
    assert keys(client, bucket) == before
    assert_no_hosts_left(run)


# ------------------------------------ the cran kind, from an renv.lock, a C and C++ package

TINY_C = """#include <Rinternals.h>
SEXP tiny_twice(SEXP x) { return Rf_ScalarReal(2 * Rf_asReal(x)); }
"""
# C++ that needs libstdc++ itself (an exception thrown and caught), as ranger's and every
# Rcpp package's code does: the release bundles libstdc++ and gates its GLIBCXX_ needs.
TINY_CXX = """#include <stdexcept>
#include <vector>
#include <Rinternals.h>
extern "C" SEXP tiny_sum(SEXP x) {
  std::vector<double> values(REAL(x), REAL(x) + Rf_xlength(x));
  try {
    if (values.empty()) throw std::invalid_argument("no value");
  } catch (const std::invalid_argument &) {
    return Rf_ScalarReal(0);
  }
  double total = 0;
  for (double v : values) total += v;
  return Rf_ScalarReal(total);
}
"""


def tiny_package(contrib: Path) -> Path:
    """tinyc 0.1: R code calling a C and a C++ function through its shared object."""
    files = {
        "tinyc/DESCRIPTION": "Package: tinyc\nVersion: 0.1\nTitle: Twice\nDescription: Twice.\n"
                             "Author: Test\nMaintainer: Test <t@example.org>\nLicense: MIT\n"
                             "Imports: stats\n",
        "tinyc/NAMESPACE": "useDynLib(tinyc)\nexport(twice, total)\n",
        "tinyc/R/twice.R": 'twice <- function(x) .Call("tiny_twice", x, PACKAGE = "tinyc")\n',
        "tinyc/R/total.R": 'total <- function(x)\n'
                           '  .Call("tiny_sum", as.double(x), PACKAGE = "tinyc")\n',
        "tinyc/src/twice.c": TINY_C,
        "tinyc/src/total.cpp": TINY_CXX,
    }
    contrib.mkdir(parents=True, exist_ok=True)
    path = contrib / "tinyc_0.1.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    (contrib / "PACKAGES").write_text(
        f"Package: tinyc\nVersion: 0.1\nImports: stats\nMD5sum: {md5}\n")
    return path


def test_the_cran_kind_resolves_an_renv_lock_and_builds_a_c_and_cxx_package(
    bucket: str, r_packages_release: dict, tmp_path: Path
) -> None:
    """A CRAN-like repository served on the controller, an renv.lock naming tinyc 0.1: the
    release resolves it there, compiles its C and C++ code on the build host, bundles the
    libstdc++ its shared object loads (its GLIBCXX_ needs within the gate's, Amazon Linux
    2023's), and the clean host loads it (122 s: a release whose R package builds in
    seconds)."""
    client = s3_client()
    tarball = tiny_package(tmp_path / "cran/src/contrib")
    renv = tmp_path / "renv.lock"
    renv.write_text(json.dumps({"R": {"Version": "4.5.0"}, "Packages": {
        "tinyc": {"Package": "tinyc", "Version": "0.1", "Source": "Repository",
                  "Repository": "CRAN"}}}))
    with served(tmp_path / "cran") as url:
        run = run_playbook(
            "playbooks/release.yml", "-e", f"release_bucket={bucket}", "-e", "release_force=true",
            "-e", f"lambda_package_r_lock={renv}",
            "-e", json.dumps({"lambda_package_r_repository": {"kind": "cran", "url": url}}),
            name="release-r-packages-cran",
        ).check()
    assert_no_hosts_left(run)
    version = read_json(client, bucket, "releases/latest.json")["version"]
    manifest = read_json(client, bucket, f"releases/{version}/manifest.json")
    assert manifest["status"] == "verified" and manifest["tests"]["failed"] == 0
    resolved = manifest["model_packages"]
    assert (resolved["source"], resolved["repository"]["kind"]) == ("renv.lock", "cran")
    [tiny] = resolved["packages"]
    assert (tiny["name"], tiny["version"], tiny["url"]) == (
        "tinyc", "0.1", f"{url}/src/contrib/tinyc_0.1.tar.gz")
    assert tiny["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert "tinyc" in manifest["r_packages"]
    assert "libstdc++.so.6" in manifest["shared_libraries"]
    junit = client.get_object(Bucket=bucket, Key=f"releases/{version}/package-test.xml")
    assert 'name="test_every_packaged_r_package_loads"' in junit["Body"].read().decode()
