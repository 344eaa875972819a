#!/usr/bin/env python3
"""`make bench`: measure the project's package against a 2017-style baseline.

Runs, on the local platform:
1. a cold release (no cached base image, wheels, R or Python build) and a warm one
   (nothing changed), timing each and keeping the phase timings of the cold one. The
   cold one is this machine's first `make release` when scripts/release recorded it for
   this commit (.ci/run starts with it: on a fresh machine it is the cold release), else
   the bench's own in an empty machine-wide cache; then a fresh clone's first release
   (the second checkout);
2. the baseline build (playbooks/bench_baseline.yml: Debian's R, rpy2 compiled for the
   target's Python, no pruning, no stripping, whole closure, and the 2017 handler,
   bench/handler_2017.py: rpy2.robjects, R's default packages, predict() on a data frame);
3. each package in its own Lambda stand-in: a container of the release's test image
   (no R, the target runtime's Python) run as Lambda runs a function: read-only root,
   /tmp the only writable folder, 128 MB of memory and no swap, no network, the package
   read-only at /var/task, awslambdaric unpacked at /var/runtime. Cold starts go through
   Lambda's runtime client (lambda_invoke: process start to the first prediction, and
   the client's peak RSS), the two packages taking turns; then the warm latencies
   (bench/bench_predict.py with Lambda's environment), and the project's handler warm
   with each kind of admission model (tests/handler/fit_models.R: the 2017 model, factor
   or numeric rank, other links, interactions...), the path each takes (direct or predict).
4. the local endpoint (role local_function's front, src/local_function/): the project's
   package served on 127.0.0.1 by LOCAL_ENVIRONMENTS environments of the same stand-in,
   1,000 single requests and 100 batches of 100 applicants sent through it as HTTP
   requests (as many at once as there are environments): requests per second, p50 and
   p99 latency, errors (`local_endpoint`); then the same front under abuse
   (bench/endpoint_abuse.py): 10,000 single requests over 64 connections while 500 idle
   sockets and a set of malformed or stalled requests are open, the front's read timeout
   set to ABUSE_READ_TIMEOUT (`local_endpoint.abuse`: rps, p50, p99, errors, each malformed
   request's answer, how long idle sockets stayed open, the front's memory).
   `--local-endpoint-only` measures only these, for the latest release's zip, and updates
   an existing dist/bench.json.
5. models that need R packages (bench/package_models.py: a randomForest forest and an
   mgcv gam, fitted on the UCLA data): one release each with its package, then measured
   in their own stand-ins beside the project's (`package_models`: packages shipped, zip
   and unzipped size, the memory the release chose, cold start, warm call, batch of
   1,000, peak RSS, the path the handler takes).
Writes dist/bench.json and prints a table of each figure against its target. Figures
are recorded, never asserted: a missed target is reported, not failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

# package_models and endpoint_abuse: the bench's own modules (bench/, the script's folder);
# local_function: the project's tools, installed in the virtualenv from src/.
import package_models
import yaml
from endpoint_abuse import abuse, endpoint_figures, send_load

from local_function.environments import extract

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "dist"
BIN = Path(sys.executable).parent
IMAGE_REPOSITORY = "localhost/r-lambda-base"
# The release's test host image (Debian trixie: the target's Python, no R), not the
# release's build image that release.json records as its AMI.
TEST_IMAGE = f"{IMAGE_REPOSITORY}:trixie"
PKGTOOL = [sys.executable, "-m", "lambda_pkgtool"]  # installed in the virtualenv (src/)
# What runs inside each stand-in, mounted read-only at /bench, with package_test's Runtime
# API stand-in packed into lambda_invoke.pyz as package_test ships it (module zipapp).
STAND_IN_TOOLS = (REPO / "bench" / "in_host.py", REPO / "bench" / "bench_predict.py")
LAMBDA_INVOKE = REPO / "src" / "lambda_invoke"
LABEL = "r-lambda.run_id"  # local_hosts_label: the reaper finds what an interrupted run left
MEMORY = "128m"  # Lambda's smallest memory size
# Admission models fitted the ways users fit them (tests/handler/fit_models.R): each is
# predicted warm in the project's stand-in, to show what each path costs (direct or predict).
FIT_MODELS_R = REPO / "tests" / "handler" / "fit_models.R"
MODEL_KINDS = ("2017", "factor_in_formula", "numeric_rank", "reordered", "probit", "lm",
               "no_intercept", "three_ranks", "character_rank", "interaction", "rank_by_gpa",
               "poly", "offset", "ordered_rank")
COLD_STARTS = 5
MB = 1024 * 1024
LOCAL_FUNCTION = [sys.executable, "-m", "local_function"]  # installed in the virtualenv (src/)


def collection_plugin(relative: str) -> ModuleType:
    """A plugin of the checkout's collection r_lambda.release, loaded from its file (the
    bench runs outside Ansible; these plugins import only Ansible's own modules)."""
    spec = importlib.util.spec_from_file_location(f"bench_{Path(relative).stem}", REPO / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cache_root = collection_plugin("plugins/lookup/cache_dir.py").cache_root
pack = collection_plugin("plugins/modules/zipapp.py").pack

LOCAL_ENVIRONMENTS = 2  # local_function_environments' default
LOCAL_PORT = 9051  # not 9000: `make deploy` may serve there meanwhile
SINGLE_REQUESTS, BATCHES, BATCH_SIZE = 1000, 100, 100
ABUSE_REQUESTS, ABUSE_CONCURRENCY, ABUSE_IDLE, ABUSE_READ_TIMEOUT = 10_000, 64, 500, 5.0


@dataclass(frozen=True)
class Target:
    text: str
    bound: Callable[[dict], float]  # the largest value that meets it, from the figures


TARGETS = {
    "zip_bytes": Target("<= 10,000,000 B and <= 0.25 x baseline",
                        lambda f: min(10_000_000, 0.25 * f["baseline_zip_bytes"])),
    "unzipped_bytes": Target("<= 40 MB", lambda f: 40 * MB),
    "peak_rss_mb": Target("<= 64 MB", lambda f: 64),
    "cold_start_s": Target("<= 0.5 x baseline", lambda f: 0.5 * f["baseline_cold_start_s"]),
    "warm_predict_ms": Target("<= 0.05 ms", lambda f: 0.05),
    "batch_1000_ms": Target("<= 5 ms", lambda f: 5),
    "release_cold_s": Target("<= 480 s, set-up included", lambda f: 480),
    "release_second_checkout_s": Target("< 120 s, set-up included", lambda f: 120),
    "release_warm_s": Target("<= 45 s", lambda f: 45),
    "make_test_s": Target("<= 2,100 s (35 min)", lambda f: 2100),
}
# Shown in the table too, without a target.
RECORDED = ("init_s", "cold_start_max_s", "target_python")


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), check=False, capture_output=capture, text=True)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {proc.returncode}: "
                         f"{(proc.stderr or '').strip()[-2000:]}")
    return proc


def playbook(name: str, *extra: str, log_name: str, cache: Path | None = None) -> float:
    """Run a playbook, keep its output in dist/bench-logs, return its wall time. cache: a
    machine-wide cache folder of its own (R_LAMBDA_CACHE_DIR) instead of the machine's."""
    logs = DIST / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=f"{BIN}:{os.environ['PATH']}")
    if cache is not None:
        env["R_LAMBDA_CACHE_DIR"] = str(cache)
    started = time.monotonic()
    with open(logs / f"{log_name}.log", "w") as out:
        proc = subprocess.run([str(BIN / "ansible-playbook"), name, *extra], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {name} failed (exit {proc.returncode}): {logs}/{log_name}.log")
    return round(elapsed, 1)


def forget_images() -> None:
    """The base images a cold release must build again (podman's store is machine-wide)."""
    images = sh("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY).stdout
    for image in set(images.split()):
        sh("podman", "rmi", image, check=False)


def make_release(checkout: Path, args: str, log_name: str, cache: Path | None = None) -> float:
    """`make release ARGS=...` in a checkout, set-up included, as a new user runs it; its
    output in dist/bench-logs; its wall time. cache: an R_LAMBDA_CACHE_DIR of its own."""
    logs = DIST / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "MAKEFLAGS", "MAKELEVEL")}
    if cache is not None:
        env["R_LAMBDA_CACHE_DIR"] = str(cache)
    started = time.monotonic()
    with open(logs / f"{log_name}.log", "w") as out:
        proc = subprocess.run(["make", "--no-print-directory", "release", f"ARGS={args}"],
                              cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: make release in {checkout} failed (exit {proc.returncode}): "
                         f"{logs}/{log_name}.log")
    return round(elapsed, 1)


def cold_release(bucket: str) -> float:
    """A first `make release` on a machine that never released: the base images removed and
    an empty machine-wide cache (a new virtualenv, no source, wheel or R and Python build),
    set-up included. The apt packages and pip's and uv's download caches stay."""
    forget_images()
    # The machine-wide cache stays as it is (other checkouts and runs use it): the cold
    # release sets up and builds into an empty one, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="r-lambda-cold-cache.", dir="/var/tmp") as cache:
        try:
            return make_release(REPO, f"-e release_bucket={bucket} -e release_force=true",
                                "release-cold", cache=Path(cache))
        finally:  # .venv back to the machine's virtualenv (instant: it exists)
            sh(str(REPO / "scripts" / "bootstrap.sh"))


def second_checkout_release(bucket: str) -> float:
    """A fresh clone's first `make release` on this machine, which has released before: the
    virtualenv, base images, sources, wheels and builds come from the machine-wide cache.
    Its S3 on a port of its own (the checkout's may be serving), stopped afterwards."""
    port = "8343"
    with tempfile.TemporaryDirectory(prefix="r-lambda-second.", dir="/var/tmp") as work:
        clone = Path(work) / "checkout"
        sh("git", "clone", "--quiet", str(REPO), str(clone))
        try:
            return make_release(clone, f"-e release_bucket={bucket}-second "
                                f"-e local_s3_port={port}", "release-second-checkout")
        finally:  # the clone's S3, from the clone (its playbook, settings and state folder)
            stop = [str(clone / ".venv" / "bin" / "ansible-playbook"), "playbooks/local_s3.yml",
                    "-e", "local_s3_state=absent", "-e", f"local_s3_port={port}"]
            subprocess.run(stop, cwd=clone, capture_output=True, check=False,
                           env=dict(os.environ, ANSIBLE_CONFIG=str(clone / "ansible.cfg")))


def recorded_first_release() -> dict | None:
    """The first release on this machine, as scripts/release recorded it (`make release` on
    a machine with no virtualenv, built R or base image: set-up included), if it ran this
    very commit; None when there is none or it ran other sources."""
    record = Path(cache_root()) / "first-release.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    head = sh("git", "-C", str(REPO), "rev-parse", "HEAD", check=False).stdout.strip()
    dirty = sh("git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
               check=False).stdout.strip()
    if not head or dirty or data.get("commit") != head:
        return None
    return data


# The bench's wall time as a share of make test's on the same machine: 0.27 when the
# machine's first release was recorded (fresh-machine CI), 0.46 with its own cold release.
BENCH_SHARE_OF_MAKE_TEST = {"recorded": 0.35, "own cold release": 0.55, "no cold": 0.35}


def ci_plan(left_s: int, make_test_s: int, recorded: bool) -> str:
    """What .ci/run can afford with left_s seconds before CI's limit: the whole bench
    ("full"), the bench without its own cold release ("no-cold"), or none ("skip"), its
    duration estimated from make test's on this machine."""
    full = BENCH_SHARE_OF_MAKE_TEST["recorded" if recorded else "own cold release"]
    if make_test_s * full <= left_s:
        return "full"
    if make_test_s * BENCH_SHARE_OF_MAKE_TEST["no cold"] <= left_s:
        return "no-cold"
    return "skip"


def releases(bucket: str, cold: bool) -> dict:
    figures: dict = {}
    first = recorded_first_release() if cold else None
    if first is not None:
        # This machine's first `make release` ran these sources: it is the cold release,
        # measured where it happened (.ci/run starts with it on a fresh machine).
        log(f"cold release: {first['seconds']} s, set-up included, recorded by this machine's "
            f"first make release of this commit ({first['finished_at']})")
        figures["release_cold_s"] = first["seconds"]
        figures["release_cold_source"] = (
            f"first make release on this machine, {first['finished_at']}")
        figures["release_phase_seconds"] = first["phase_seconds"]
    elif cold:
        log("cold release: make release, set-up included, with no base image and an empty "
            "machine-wide cache (several minutes)")
        figures["release_cold_s"] = cold_release(bucket)
        figures["release_cold_source"] = "the bench's own, in an empty machine-wide cache"
    else:
        figures["release_cold_s"] = None
    if first is not None or not cold:
        # The bench's own release (its package is measured), reusing what is cached.
        log("release (caches kept)")
        playbook("playbooks/release.yml", "-e", f"release_bucket={bucket}",
                 "-e", "release_force=true", log_name="release")
    if cold:
        log("a second checkout's first release on this machine (make release in a fresh clone)")
        try:
            figures["release_second_checkout_s"] = second_checkout_release(bucket)
        except SystemExit as failed:  # reported, as a package failing in its stand-in is
            log(str(failed))
            figures["release_second_checkout_s"] = None
            figures["release_second_checkout_error"] = str(failed)
    else:
        figures["release_second_checkout_s"] = None
    if "release_phase_seconds" not in figures:
        manifest = json.loads((DIST / "release.json").read_text())
        figures["release_phase_seconds"] = manifest["phase_seconds"]
    log("warm release (nothing changed)")
    figures["release_warm_s"] = playbook(
        "playbooks/release.yml", "-e", f"release_bucket={bucket}", log_name="release-warm")
    return figures


def zip_figures(path: Path, prefix: str) -> dict:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    return {
        f"{prefix}zip_bytes": path.stat().st_size,
        f"{prefix}unzipped_bytes": sum(i.file_size for i in infos),
        f"{prefix}file_count": len(infos),
    }


def split_figures(path: Path) -> dict:
    """The optional layer split of the project's package (lambda_package_layer): the same
    tree as lambda_pkgtool splits it, so a model update's size is known."""
    defaults = yaml.safe_load((REPO / "roles/lambda_package/defaults/main.yml").read_text())
    function = [*defaults["lambda_package_handler_files"], "admission.rds"]
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        root, out = Path(tmp) / "root", Path(tmp)
        with zipfile.ZipFile(path) as archive:
            archive.extractall(root)
        made = json.loads(sh(*PKGTOOL, "split", "--root", str(root),
                             "--layer-out", str(out / "layer.zip"),
                             "--function-out", str(out / "function.zip"),
                             "--function", *function).stdout)
    return {
        "layer_zip_bytes": made["layer"]["zip_bytes"],
        "layer_unzipped_bytes": made["layer"]["unzipped_bytes"],
        "function_zip_bytes": made["function"]["zip_bytes"],
        "function_unzipped_bytes": made["function"]["unzipped_bytes"],
    }


def unpack(zip_path: Path, dest: Path) -> None:
    """Unzip as Lambda does (the local endpoint's own extract), into dest, which may
    already hold other wheels."""
    extract(zip_path, dest)
    dest.chmod(0o755)


def awslambdaric_wheels(python_version: str) -> list[Path]:
    """The runtime client's wheels the release downloaded (roles/package_test/tasks/runtime.yml)."""
    defaults = yaml.safe_load((REPO / "roles/package_test/defaults/main.yml").read_text())
    version = defaults["package_test_awslambdaric_version"]
    # Named after the lock's digest as Ansible's file lookup reads it (trailing space stripped).
    lock_file = REPO / "roles/package_test/files" / defaults["package_test_awslambdaric_lock"]
    lock = lock_file.read_text()
    digest = hashlib.sha256(lock.rstrip().encode()).hexdigest()[:12]
    folder = (Path(cache_root()) / "wheels" / f"awslambdaric-{version}-cp"
              f"{python_version.replace('.', '')}-{platform.machine()}-{digest}")
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"bench: no awslambdaric wheels in {folder}: a release downloads them")
    return wheels


def stand_in_command(name: str, image: str, task: Path, runtime: Path, tools: Path,
                     models: Path | None = None, memory: str = MEMORY) -> list[str]:
    """podman run of a container made like a Lambda sandbox, idle until measured."""
    mounts = ["-v", f"{models}:/models:ro"] if models else []
    return [
        "podman", "run", "-d", "--init", "--name", name, "--label", f"{LABEL}={name}",
        # Only /tmp is writable (512 MB, as Lambda's default ephemeral storage).
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,mode=1777,size=512m",
        f"--memory={memory}", f"--memory-swap={memory}", "--network", "none",
        "-v", f"{task}:/var/task:ro", "-v", f"{runtime}:/var/runtime:ro",
        "-v", f"{tools}:/bench:ro", *mounts,
        image, "sleep", "infinity",
    ]


def cold_figures(runs: list[dict]) -> dict[str, Any]:
    """Median and max of the cold starts (in_host.py cold reports), the peak RSS of all."""
    times = [run["first_prediction_s"] for run in runs]
    pythons = sorted({run["python"] for run in runs})
    return {
        "cold_start_s": round(statistics.median(times), 4),
        "cold_start_max_s": round(max(times), 4),
        "cold_starts_s": [round(t, 4) for t in times],
        "init_s": round(statistics.median(run["init_s"] for run in runs), 4),
        "first_invoke_s": round(statistics.median(run["first_invoke_s"] for run in runs), 4),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "target_python": ", ".join(pythons),
    }


class StandInError(Exception):
    """A package failed in its stand-in: its figures are not measured."""


def in_stand_in(container: str, python: str, *argv: str) -> dict:
    out = sh("podman", "exec", container, python, "/bench/in_host.py", *argv, check=False)
    if out.returncode != 0:
        raise StandInError(f"in_host.py {' '.join(argv)} exited {out.returncode}: "
                           f"{out.stderr.strip()[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(containers: dict[str, str], modules: dict[str, str], python: str,
            probabilities: dict[str, float] | None = None) -> dict:
    """Cold starts with the packages taking turns, then warm latencies; a package that
    fails is measured no further and reported with its error. A package whose model is
    not the project's glm is checked against its model's probability (PROBABILITIES)."""
    runs: dict[str, list[dict]] = {label: [] for label in containers}
    errors: dict[str, str] = {}
    for _ in range(COLD_STARTS):
        for label, container in containers.items():
            if label in errors:
                continue
            try:
                expect = ([] if label not in (probabilities or {})
                          else ["--probability", repr(probabilities[label])])
                runs[label].append(in_stand_in(container, python, "cold", "--handler",
                                               modules[label], "--python", python, *expect))
            except StandInError as exc:
                errors[label] = f"cold start {len(runs[label]) + 1}: {exc}"
                log(f"{label}: {errors[label]}")
    log("warm latencies")
    results: dict[str, dict] = {}
    for label, container in containers.items():
        results[label] = cold_figures(runs[label]) if runs[label] else {}
        if label in errors:
            results[label]["error"] = errors[label]
            continue
        try:
            results[label].update(in_stand_in(container, python, "warm",
                                              "--handler", modules[label], "--python", python))
        except StandInError as exc:
            results[label]["error"] = f"warm: {exc}"
            log(f"{label}: {results[label]['error']}")
    return results


def fit_models(out: Path) -> None:
    """MODEL_KINDS fitted with the controller's R into OUT, readable by the stand-in's nobody."""
    sh("Rscript", str(FIT_MODELS_R), str(REPO / "handler" / "model" / "binary.csv"), str(out),
       *MODEL_KINDS)
    out.chmod(0o755)
    for path in out.iterdir():
        path.chmod(0o644)


def model_kind_figures(container: str, python: str) -> dict[str, dict]:
    """Warm figures of each model kind predicted by the project's handler and R."""
    kinds: dict[str, dict] = {}
    for kind in MODEL_KINDS:
        try:
            warm = in_stand_in(container, python, "warm", "--handler", "handler",
                               "--python", python, "--model", f"/models/{kind}.rds")
        except StandInError as exc:
            kinds[kind] = {"error": str(exc)}
            continue
        kinds[kind] = {"method": warm["method"],
                       "warm_predict_ms": warm["single_call_median_ms"],
                       "batch_1000_ms": warm["batch_median_ms"],
                       "load_ms": warm["load_ms"]}
    return kinds


def measure_in_stand_ins(packages: dict[str, tuple[Path, str]], python_version: str,
                         memory: dict[str, str] | None = None,
                         probabilities: dict[str, float] | None = None) -> dict:
    """Each package (label -> zip, handler module) in its own Lambda stand-in, of MEMORY or
    of the memory given for its label, its cold start checked against the glm's probability
    or the one given for its label; the project's also predicts each of MODEL_KINDS (its
    figures under "model_kinds")."""
    if sh("podman", "image", "exists", TEST_IMAGE, check=False).returncode != 0:
        raise SystemExit(f"bench: no image {TEST_IMAGE}: a release builds it")
    containers: dict[str, str] = {}
    # Not under .state/tmp, which a release's teardown removes.
    with tempfile.TemporaryDirectory(prefix="r-lambda-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tools, runtime = tmp / "tools", tmp / "runtime"
        tools.mkdir()
        for path in STAND_IN_TOOLS:
            shutil.copyfile(path, tools / path.name)
        (tools / "lambda_invoke.pyz").write_bytes(pack([LAMBDA_INVOKE], "lambda_invoke.cli:main"))
        tools.chmod(0o755)
        runtime.mkdir()
        for wheel in awslambdaric_wheels(python_version):
            unpack(wheel, runtime)
        models = tmp / "models"
        models.mkdir()
        fit_models(models)
        try:
            for label, (zip_path, _) in packages.items():
                task = tmp / f"task-{label}"
                unpack(zip_path, task)
                name = f"r-lambda-bench-{label}-{os.getpid()}"
                sh(*stand_in_command(name, TEST_IMAGE, task, runtime, tools, models,
                                     (memory or {}).get(label, MEMORY)))
                containers[label] = name
            log(f"{COLD_STARTS} cold starts each through the runtime client, "
                f"{' and '.join(packages)} taking turns")
            python = f"python{python_version}"
            modules = {label: module for label, (_, module) in packages.items()}
            measured = measure(containers, modules, python, probabilities)
            log(f"warm latencies of {len(MODEL_KINDS)} kinds of admission model")
            measured["model_kinds"] = model_kind_figures(containers["project"], python)
            return measured
        finally:
            for name in containers.values():
                sh("podman", "rm", "-f", "-t", "0", name, check=False)


def send_series(port: int, bodies: list[bytes], concurrency: int) -> dict:
    """POST each body once, ``concurrency`` keep-alive connections at a time; an answer
    other than 200 with the expected JSON, or none, is an error."""
    latencies, errors, wall_s = send_load(port, bodies, concurrency, _answered)
    figures = endpoint_figures(latencies, wall_s, len(errors))
    if errors:
        figures["first_errors"] = errors[:3]
    return figures


def _answered(status: int, data: bytes) -> bool:
    """A 200 holding a prediction (one request's probability, or a batch's results)."""
    try:
        answer = json.loads(data)
    except ValueError:
        return False
    return status == 200 and ("probability" in answer or "results" in answer)


def predicted(status: int, data: bytes) -> bool:
    """A 200 whose JSON holds a probability: a well-formed request answered correctly."""
    try:
        return status == 200 and "probability" in json.loads(data)
    except ValueError:
        return False


def local_endpoint(zip_path: Path, version: str, python_version: str) -> dict:
    """The package behind the local endpoint (role local_function's front, started and
    stopped here in a state folder of its own): single requests, then batches."""
    with tempfile.TemporaryDirectory(prefix="r-lambda-bench-fn-") as state:
        wheels = awslambdaric_wheels(python_version)[0].parent
        tool = LOCAL_FUNCTION
        try:
            sh(*tool, "start", "--state-dir", state, "--port", str(LOCAL_PORT))
            sh(*tool, "deploy", "--state-dir", state, "--package", str(zip_path),
               "--version", version, "--environments", str(LOCAL_ENVIRONMENTS),
               "--image", TEST_IMAGE, "--python", f"python{python_version}",
               "--memory", MEMORY, "--wheels", str(wheels))
            applicants = [{"gre": 200 + (i * 7) % 601, "gpa": round((i % 41) / 10, 1),
                           "rank": 1 + i % 4} for i in range(SINGLE_REQUESTS)]
            singles = [json.dumps(a).encode() for a in applicants]
            batches = [json.dumps({"applicants": [applicants[(b * BATCH_SIZE + i) % len(applicants)]
                                                  for i in range(BATCH_SIZE)]}).encode()
                       for b in range(BATCHES)]
            send_series(LOCAL_PORT, singles[:20], LOCAL_ENVIRONMENTS)  # every environment warm
            log(f"local endpoint: {SINGLE_REQUESTS} single requests, {BATCHES} batches of "
                f"{BATCH_SIZE}, {LOCAL_ENVIRONMENTS} at a time")
            figures = {
                "environments": LOCAL_ENVIRONMENTS,
                "concurrency": LOCAL_ENVIRONMENTS,
                "memory": MEMORY,
                "single": send_series(LOCAL_PORT, singles, LOCAL_ENVIRONMENTS),
                f"batch_{BATCH_SIZE}": send_series(LOCAL_PORT, batches, LOCAL_ENVIRONMENTS),
            }
            # The same front, its read timeout shortened so that idle sockets close soon.
            sh(*tool, "start", "--state-dir", state, "--port", str(LOCAL_PORT),
               "--read-timeout", f"{ABUSE_READ_TIMEOUT:g}")
            log(f"local endpoint under abuse: {ABUSE_REQUESTS} requests over "
                f"{ABUSE_CONCURRENCY} connections, {ABUSE_IDLE} idle sockets")
            figures["abuse"] = abuse(
                LOCAL_PORT, bodies=[singles[i % len(singles)] for i in range(ABUSE_REQUESTS)],
                concurrency=ABUSE_CONCURRENCY, idle=ABUSE_IDLE, read_timeout=ABUSE_READ_TIMEOUT,
                check=predicted, pid=json.loads((Path(state) / "state.json").read_text())["pid"])
            return figures
        finally:
            sh(*tool, "stop", "--state-dir", state, "--id", f"r-lambda-fn-{LOCAL_PORT}",
               check=False)


def local_endpoint_table(figures: dict) -> str:
    lines = [f"{'local endpoint':<18} {'rps':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}"]
    for key in ("single", f"batch_{BATCH_SIZE}", "abuse"):
        row = figures.get(key) or {}
        lines.append(f"{key:<18} {row.get('rps')!s:>8} {row.get('p50_ms')!s:>9} "
                     f"{row.get('p99_ms')!s:>9} {row.get('errors')!s:>7}")
    abused = figures.get("abuse")
    if abused:
        lines.append(f"under abuse: malformed not answered as expected "
                     f"{abused['malformed_not_as_expected'] or 'none'}; idle sockets still open "
                     f"{abused['idle_still_open']} of {abused['idle_sockets']} "
                     f"(last closed after {abused['idle_closed_max_s']} s, read timeout "
                     f"{abused['read_timeout_s']:g} s); front RSS {abused['front_rss_mb_start']} "
                     f"-> max {abused['front_rss_mb_max']} MB")
    return "\n".join(lines)


def local_endpoint_only() -> int:
    """Measure the local endpoint for the latest release's zip; merge into dist/bench.json."""
    manifest = json.loads((DIST / "release.json").read_text())
    zip_path = next((p for p in (DIST / "latest" / "admission.zip", DIST / "admission.zip")
                     if p.is_file()), None)
    if zip_path is None:
        raise SystemExit("bench: no dist/latest/admission.zip: run `make release` first")
    bench = DIST / "bench.json"
    figures = json.loads(bench.read_text()) if bench.exists() else {}
    figures["local_endpoint"] = local_endpoint(zip_path, manifest["version"],
                                               manifest["python_version"])
    bench.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(local_endpoint_table(figures["local_endpoint"]))
    return 0


def target_bound(key: str, figures: dict) -> float | None:
    """The largest value of the figure that meets its target; None when a figure it
    depends on (the baseline's) was not measured."""
    try:
        return TARGETS[key].bound(figures)
    except (KeyError, TypeError):
        return None


def target_met(key: str, figures: dict) -> bool | None:
    """None when the figure, or one its target depends on, was not measured."""
    value, bound = figures.get(key), target_bound(key, figures)
    return None if value is None or bound is None else value <= bound


def table(figures: dict) -> str:
    rows = [f"{'figure':<18} {'value':>14} {'baseline':>14}  {'target':<40} met"]
    for key, target in TARGETS.items():
        met = {None: "n/a", True: "yes", False: "NO"}[target_met(key, figures)]
        rows.append(f"{key:<18} {figures.get(key)!s:>14} {figures.get(f'baseline_{key}')!s:>14}"
                    f"  {target.text:<40} {met}")
    for key in RECORDED:
        rows.append(f"{key:<18} {figures.get(key)!s:>14} {figures.get(f'baseline_{key}')!s:>14}"
                    f"  {'(recorded)':<40}")
    return "\n".join(rows)


def model_kinds_table(kinds: dict[str, dict]) -> str:
    """One line per model kind: its path, warm single call and batch of 1,000."""
    lines = [f"{'model kind':<20} {'path':<8} {'warm call':>10} {'batch 1000':>11}"]
    for kind, figures in kinds.items():
        if "error" in figures:
            lines.append(f"{kind:<20} failed: {figures['error'][:200]}")
            continue
        lines.append(f"{kind:<20} {figures['method']:<8} {figures['warm_predict_ms']:>7.4f} ms "
                     f"{figures['batch_1000_ms']:>8.3f} ms")
    return "\n".join(lines)


def stand_in_figures(measured: dict[str, dict]) -> dict:
    """bench.json's names for what the stand-ins measured; None where a package failed."""
    names = {"cold_start_s": "cold_start_s", "cold_start_max_s": "cold_start_max_s",
             "cold_starts_s": "cold_starts_s", "init_s": "init_s",
             "first_invoke_s": "first_invoke_s", "peak_rss_mb": "peak_rss_mb",
             "target_python": "target_python", "warm_predict_ms": "single_call_median_ms",
             "batch_1000_ms": "batch_median_ms"}
    figures: dict = {}
    for prefix, label in (("", "project"), ("baseline_", "baseline")):
        for name, source in names.items():
            figures[f"{prefix}{name}"] = measured[label].get(source)
        if "error" in measured[label]:
            figures[f"{prefix}stand_in_error"] = measured[label]["error"]
    return figures


def release_package_models(bucket: str) -> tuple[dict, dict]:
    """One release per model that needs R packages (bench/package_models.py): kind -> (zip,
    manifest, release seconds, the probability its cold start must answer) of those released,
    and kind -> {"error": ...} of those whose release failed (reported, as a package failing
    in its stand-in is)."""
    released: dict = {}
    failed: dict[str, dict] = {}
    log(f"releases of models that need R packages: {', '.join(package_models.PACKAGE_MODELS)}")
    with tempfile.TemporaryDirectory(prefix="r-lambda-bench-models-") as tmp:
        for kind, model in package_models.fit(Path(tmp)).items():
            try:
                released[kind] = (*package_models.release(kind, model, bucket, playbook),
                                  package_models.probability(model))
            except SystemExit as error:
                log(str(error))
                failed[kind] = {"error": str(error)}
    return released, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cold", action="store_true",
                        help="keep cached images, wheels, R and Python builds "
                             "(no cold release figure)")
    parser.add_argument("--bucket", default="r-lambda-bench")
    parser.add_argument("--local-endpoint-only", action="store_true",
                        help="only measure the local endpoint, for the latest release's zip")
    parser.add_argument("--ci-plan", nargs=2, type=int, metavar=("LEFT_S", "MAKE_TEST_S"),
                        help="only print what .ci/run should run (full, no-cold or skip) "
                             "with LEFT_S seconds left and make test having taken MAKE_TEST_S")
    args = parser.parse_args()
    if args.ci_plan:
        print(ci_plan(*args.ci_plan, recorded=recorded_first_release() is not None))
        return 0
    if args.local_endpoint_only:
        return local_endpoint_only()

    started = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    figures: dict = releases(args.bucket, cold=not args.no_cold)
    manifest = json.loads((DIST / "release.json").read_text())
    project_zip = DIST / "bench-project.zip"
    shutil.copyfile(DIST / "latest" / "admission.zip", project_zip)

    log("baseline build (the 2017 way, for the target's Python)")
    figures["baseline_build_s"] = playbook("playbooks/bench_baseline.yml", log_name="baseline")
    baseline_zip = DIST / "baseline" / "admission.zip"
    baseline_report = json.loads((DIST / "baseline" / "report.json").read_text())

    figures.update(zip_figures(project_zip, ""))
    figures.update(zip_figures(baseline_zip, "baseline_"))
    figures.update(split_figures(project_zip))
    released, failed_models = release_package_models(args.bucket)
    # Each package with its own handler: the baseline's is the 2017 one (bench/handler_2017.py).
    measured = measure_in_stand_ins({"project": (project_zip, "handler"),
                                     "baseline": (baseline_zip, "handler_2017"),
                                     **{kind: (zip_path, "handler")
                                        for kind, (zip_path, *_) in released.items()}},
                                    manifest["python_version"],
                                    # Each model in the memory its release chose for it.
                                    {kind: package_models.memory(kind_manifest)
                                     for kind, (_, kind_manifest, *_) in released.items()},
                                    {kind: p for kind, (*_, p) in released.items()})
    figures.update(stand_in_figures(measured))
    figures["model_kinds"] = measured["model_kinds"]
    figures["package_models"] = {
        kind: package_models.figures(kind, kind_manifest, seconds, zip_figures(zip_path, ""),
                                     measured[kind])
        for kind, (zip_path, kind_manifest, seconds, _) in released.items()}
    figures["package_models"].update(failed_models)
    # .ci/run times the README's test command before the bench and says whether this
    # machine had released before (its machine-wide cache held a built R) when it began.
    figures["make_test_s"] = float(os.environ["R_LAMBDA_MAKE_TEST_SECONDS"]) if os.environ.get(
        "R_LAMBDA_MAKE_TEST_SECONDS") else None
    figures["machine_cache_warm_at_start"] = {"true": True, "false": False}.get(
        os.environ.get("R_LAMBDA_CACHE_WARM_AT_START", ""))
    figures["local_endpoint"] = local_endpoint(project_zip, manifest["version"],
                                               manifest["python_version"])
    figures["targets"] = {
        key: {"target": target.text, "bound": target_bound(key, figures),
              "met": target_met(key, figures)}
        for key, target in TARGETS.items()
    }
    figures["environment"] = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "controller_python": platform.python_version(),
        "r_version": manifest["r_version"],
        "rpy2_version": manifest["rpy2_version"],
        "package_python": manifest["python_version"],
        "target_runtime": manifest.get("target_runtime"),
        "baseline_r_version": baseline_report["r_version"],
        "baseline_rpy2_version": baseline_report["rpy2_version"],
        "baseline_package_python": baseline_report["python_version"],
        "build_image": manifest["build_image"],
        "stand_in": {
            "image": TEST_IMAGE,
            "image_id": sh("podman", "image", "inspect", "--format", "{{.Id}}",
                           TEST_IMAGE).stdout.strip(),
            "memory": MEMORY,
            "swap": "none",
            "network": "none",
            "read_only": "root and /var/task; /tmp is a tmpfs",
            "user": "nobody",
            "cold_starts": COLD_STARTS,
        },
        "podman": sh("podman", "--version").stdout.strip(),
        "bench_wall_s": round(time.monotonic() - clock, 1),
    }
    (DIST / "bench.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(table(figures))
    print(model_kinds_table(figures["model_kinds"]))
    print(package_models.table(figures["package_models"]))
    print(local_endpoint_table(figures["local_endpoint"]))
    for prefix, label in (("", "project"), ("baseline_", "baseline")):
        error = figures.get(f"{prefix}stand_in_error")
        if error:
            print(f"bench: the {label} failed in its stand-in: {error}")
    print(f"bench: figures written to {DIST / 'bench.json'} "
          f"(bench took {figures['environment']['bench_wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
