#!/usr/bin/env python3
"""`make bench`: measure the project's package against a 2017-style baseline.

Runs, on the local platform:
1. a cold release (no cached base image, wheels or R build) and a warm one (nothing
   changed), timing each and keeping the phase timings of the cold one;
2. the baseline build (playbooks/bench_baseline.yml: no pruning, no stripping, whole
   closure, and the 2017 handler, bench/handler_2017.py: rpy2.robjects, R's default
   packages, predict() on a data frame);
3. in one fresh clean container (no R, no network), both packages unzipped side by
   side: cold starts (fresh processes to first prediction) and warm latencies.
Writes dist/bench.json and prints a table of each figure against its target. Figures
are recorded, never asserted: a missed target is reported, not failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "dist"
BIN = Path(sys.executable).parent
IMAGE_REPOSITORY = "localhost/r-lambda-base"
PKGTOOL = REPO / "roles" / "lambda_package" / "files" / "lambda_pkgtool.py"
MB = 1024 * 1024

# name -> (target description, check(value, figures) -> bool)
TARGETS = {
    "zip_bytes": ("<= 10 MB and <= 0.25 x baseline",
                  lambda v, f: v <= 10 * MB and v <= 0.25 * f["baseline_zip_bytes"]),
    "unzipped_bytes": ("<= 40 MB", lambda v, f: v <= 40 * MB),
    "cold_start_s": ("<= 0.6 x baseline", lambda v, f: v <= 0.6 * f["baseline_cold_start_s"]),
    "warm_predict_ms": ("<= 0.2 ms", lambda v, f: v <= 0.2),
    "batch_1000_ms": ("<= 10 ms", lambda v, f: v <= 10),
    "release_warm_s": ("<= 45 s", lambda v, f: v <= 45),
    "release_cold_s": ("<= 300 s", lambda v, f: v <= 300),
}


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, capture_output=capture, text=True)


def playbook(name: str, *extra: str, log_name: str) -> float:
    """Run a playbook, keep its output in dist/bench-logs, return its wall time."""
    logs = DIST / "bench-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               PATH=f"{BIN}:{os.environ['PATH']}")
    started = time.monotonic()
    with open(logs / f"{log_name}.log", "w") as out:
        proc = subprocess.run([str(BIN / "ansible-playbook"), name, *extra], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {name} failed (exit {proc.returncode}): {logs}/{log_name}.log")
    return round(elapsed, 1)


def forget_caches() -> None:
    """What a cold release must rebuild: base images, downloaded wheels, cached R builds."""
    images = sh("podman", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPOSITORY).stdout
    for image in set(images.split()):
        sh("podman", "rmi", image, check=False)
    for cache in ("wheelhouse", "cache"):
        shutil.rmtree(REPO / ".state" / cache, ignore_errors=True)


def releases(bucket: str, cold: bool) -> dict:
    figures: dict = {}
    if cold:
        log("cold release (caches removed first; several minutes)")
        forget_caches()
        figures["release_cold_s"] = playbook(
            "playbooks/release.yml", "-e", f"release_bucket={bucket}", "-e", "release_force=true",
            log_name="release-cold")
    else:
        log("release (caches kept: --no-cold)")
        figures["release_cold_s"] = None
        playbook("playbooks/release.yml", "-e", f"release_bucket={bucket}",
                 "-e", "release_force=true", log_name="release")
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
    tree as lambda_pkgtool.py splits it, so a model update's size is known."""
    defaults = yaml.safe_load((REPO / "roles/lambda_package/defaults/main.yml").read_text())
    function = [*defaults["lambda_package_handler_files"], "admission.rds"]
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        root, out = Path(tmp) / "root", Path(tmp)
        with zipfile.ZipFile(path) as archive:
            archive.extractall(root)
        made = json.loads(sh(sys.executable, str(PKGTOOL), "split", "--root", str(root),
                             "--layer-out", str(out / "layer.zip"),
                             "--function-out", str(out / "function.zip"),
                             "--function", *function).stdout)
    return {
        "layer_zip_bytes": made["layer"]["zip_bytes"],
        "layer_unzipped_bytes": made["layer"]["unzipped_bytes"],
        "function_zip_bytes": made["function"]["zip_bytes"],
        "function_unzipped_bytes": made["function"]["unzipped_bytes"],
    }


def measure_in_clean_host(packages: dict[str, tuple[Path, str]]) -> dict[str, dict]:
    """Unzip each package (label -> zip, handler module) in one fresh container without R
    or network, and measure."""
    # The release's own test-host image (another suite's image may be present too).
    image = json.loads((DIST / "release.json").read_text())["ami"]["name"]
    name = f"r-lambda-bench-{os.getpid()}"
    sh("podman", "run", "-d", "--init", "--network", "none", "--name", name,
       "--label", f"r-lambda.run_id={name}", image, "sleep", "infinity")
    try:
        sh("podman", "exec", name, "mkdir", "-p", "/bench")
        for path in (REPO / "bench" / "in_host.py", REPO / "handler" / "bench_predict.py"):
            sh("podman", "cp", str(path), f"{name}:/bench/{path.name}")
        roots = {label: f"/var/task-{label}" for label in packages}
        specs = {label: f"{roots[label]}:{module}" for label, (_, module) in packages.items()}
        for label, (zip_path, _) in packages.items():
            sh("podman", "cp", str(zip_path), f"{name}:/bench/{label}.zip")
            sh("podman", "exec", name, "unzip", "-q", f"/bench/{label}.zip", "-d", roots[label])
        log(f"measuring {', '.join(packages)} in the clean host, taking turns")
        out = sh("podman", "exec", name, "python3", "/bench/in_host.py", *specs.values())
        measured = json.loads(out.stdout)
        return {label: measured[spec] for label, spec in specs.items()}
    finally:
        sh("podman", "rm", "-f", "-t", "0", name, check=False)


def table(figures: dict) -> str:
    rows = [f"{'figure':<18} {'value':>14} {'baseline':>14}  target                          met"]
    for key, (target, check) in TARGETS.items():
        value = figures.get(key)
        base = figures.get(f"baseline_{key}")
        met = "n/a" if value is None else ("yes" if check(value, figures) else "NO")
        rows.append(f"{key:<18} {value!s:>14} {base!s:>14}  {target:<31} {met}")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cold", action="store_true",
                        help="keep cached images, wheels and R builds (no cold release figure)")
    parser.add_argument("--bucket", default="r-lambda-bench")
    args = parser.parse_args()

    started = dt.datetime.now(dt.timezone.utc)
    figures: dict = releases(args.bucket, cold=not args.no_cold)
    project_zip = DIST / "bench-project.zip"
    shutil.copyfile(DIST / "admission.zip", project_zip)

    log("baseline build (the 2017 way)")
    figures["baseline_build_s"] = playbook("playbooks/bench_baseline.yml", log_name="baseline")
    baseline_zip = DIST / "baseline" / "admission.zip"

    figures.update(zip_figures(project_zip, ""))
    figures.update(zip_figures(baseline_zip, "baseline_"))
    figures.update(split_figures(project_zip))
    # Each package with its own handler: the baseline's is the 2017 one (bench/handler_2017.py).
    measured = measure_in_clean_host({"project": (project_zip, "handler"),
                                      "baseline": (baseline_zip, "handler_2017")})
    for prefix, label in (("", "project"), ("baseline_", "baseline")):
        m = measured[label]
        figures[f"{prefix}cold_start_s"] = m["cold_start_s"]
        figures[f"{prefix}cold_start_max_s"] = m["cold_start_max_s"]
        figures[f"{prefix}warm_predict_ms"] = m["single_call_median_ms"]
        figures[f"{prefix}batch_1000_ms"] = m["batch_median_ms"]

    figures["targets"] = {
        key: {"target": target,
              "met": None if figures.get(key) is None else bool(check(figures[key], figures))}
        for key, (target, check) in TARGETS.items()
    }
    manifest = json.loads((DIST / "release.json").read_text())
    figures["environment"] = {
        "started_at": started.isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "controller_python": platform.python_version(),
        "r_version": manifest["r_version"],
        "rpy2_version": manifest["rpy2_version"],
        "package_python": manifest["python_version"],
        "build_image": manifest["build_image"],
        "podman": sh("podman", "--version").stdout.strip(),
    }
    (DIST / "bench.json").write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(table(figures))
    print(f"bench: figures written to {DIST / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
