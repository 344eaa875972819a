"""Process-level behaviour, each in a fresh interpreter: lazy imports, no R subprocesses,
the packaged R_HOME, the packaged-check runner, and the tools that measure the handler
(bench/bench_predict.py, tools/report_runtime_deps.py)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Optional

import pytest
from handler_support import HANDLER_DIR, REPO, TrainedModel, r_eval, shipped_handler_files

AUDIT_CHILD = textwrap.dedent(
    """
    import json, os, sys
    spawned = []
    def audit(event, args):
        if event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
            spawned.append([event, repr(args)[:200]])
    sys.addaudithook(audit)
    ld_before = os.environ.get("LD_LIBRARY_PATH")
    startup_env = ("R_DEFAULT_PACKAGES", "R_ENABLE_JIT", "R_REPOSITORIES", "LANG", "LC_ALL")
    startup_before = {name: os.environ.get(name) for name in startup_env}
    import handler
    lazy = ("rpy2", "boto3", "hashlib", "shutil", "tempfile", "glob")
    imported = {name: name in sys.modules for name in lazy}
    probability = handler.admit_probability(800, 4, 1)
    import admission_r_session
    ri = admission_r_session.start_r()  # the R that prediction started
    print(json.dumps({
        "imported_before_first_use": imported,
        "spawned": spawned,
        "probability": probability,
        "R_HOME": os.environ.get("R_HOME"),
        "R.home()": ri.baseenv["R.home"]()[0],
        "ld_library_path_unchanged": os.environ.get("LD_LIBRARY_PATH") == ld_before,
        "startup_env_unchanged": {n: os.environ.get(n) for n in startup_env} == startup_before,
        "r_namespaces": sorted(ri.baseenv["loadedNamespaces"]()),
        "r_attached": list(ri.baseenv["search"]()),
        "r_lc_collate": ri.baseenv["Sys.getlocale"]("LC_COLLATE")[0],
        "r_sys_which_sh": ri.baseenv["Sys.which"]("sh")[0],
        "r_sys_which_locked": ri.baseenv["bindingIsLocked"]("Sys.which", ri.baseenv)[0],
        "deferred_modules_run": [
            name for name in admission_r_session.DEFERRED_MODULES
            if type(sys.modules.get(name)).__name__ != "_DeferredModule"
        ],
    }))
    """
)


@pytest.fixture(scope="module")
def r_home() -> str:
    return str(r_eval("R.home()")[0])


# What one prediction needs in R: stats and the namespaces it imports, nothing attached.
PREDICTION_NAMESPACES = ["base", "grDevices", "graphics", "stats", "utils"]
STARTUP_ENV = ("R_DEFAULT_PACKAGES", "R_ENABLE_JIT")


def _child_env(model: Path, **changes: Optional[str]) -> dict[str, str]:
    unset = ("R_HOME", "MODEL_PATH", *STARTUP_ENV)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env["MODEL_PATH"] = str(model)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _run_audited(cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", AUDIT_CHILD],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {**json.loads(done.stdout.splitlines()[-1]), "stderr": done.stderr}


def test_importing_the_handler_loads_neither_rpy2_nor_boto3_nor_the_s3_cache_modules(
    trained_model: TrainedModel, r_home: str
) -> None:
    report = _run_audited(HANDLER_DIR, _child_env(trained_model.trimmed, R_HOME=r_home))
    assert report["imported_before_first_use"] == {
        "rpy2": False,
        "boto3": False,
        "hashlib": False,
        "shutil": False,
        "tempfile": False,
        "glob": False,
    }


def test_with_r_home_set_r_starts_without_any_subprocess(
    trained_model: TrainedModel, r_home: str
) -> None:
    report = _run_audited(HANDLER_DIR, _child_env(trained_model.trimmed, R_HOME=r_home))
    assert report["spawned"] == []
    assert round(report["probability"], 4) == 0.7384
    assert report["ld_library_path_unchanged"] is True


def test_r_starts_with_only_what_prediction_needs_and_the_environment_is_restored(
    trained_model: TrainedModel, r_home: str
) -> None:
    report = _run_audited(HANDLER_DIR, _child_env(trained_model.trimmed, R_HOME=r_home))
    assert report["r_namespaces"] == PREDICTION_NAMESPACES  # no methods, datasets, compiler
    assert report["r_attached"] == [".GlobalEnv", "Autoloads", "package:base"]
    assert report["startup_env_unchanged"] is True


def test_r_startup_settings_from_the_environment_are_honoured(
    trained_model: TrainedModel, r_home: str
) -> None:
    env = _child_env(
        trained_model.trimmed, R_HOME=r_home, R_DEFAULT_PACKAGES="datasets", R_ENABLE_JIT="3"
    )
    report = _run_audited(HANDLER_DIR, env)
    assert report["r_namespaces"] == sorted([*PREDICTION_NAMESPACES, "compiler", "datasets"])
    assert "package:datasets" in report["r_attached"]
    assert report["startup_env_unchanged"] is True
    assert round(report["probability"], 4) == 0.7384


def test_a_prediction_runs_no_standard_module_that_rpy2_imports_but_never_uses(
    trained_model: TrainedModel, r_home: str
) -> None:
    report = _run_audited(HANDLER_DIR, _child_env(trained_model.trimmed, R_HOME=r_home))
    assert report["deferred_modules_run"] == []
    assert round(report["probability"], 4) == 0.7384


def test_loading_the_model_runs_no_program_not_even_from_r(
    trained_model: TrainedModel, r_home: str, tmp_path: Path
) -> None:
    """utils' .onLoad (stats imports utils) would run `which uname` and `uname -a` through
    /bin/sh to record the OS: a `uname` first on PATH would run. Sys.which is whole again
    afterwards."""
    bin_dir, ran = tmp_path / "bin", tmp_path / "uname-ran"
    bin_dir.mkdir()
    uname = bin_dir / "uname"
    uname.write_text(f'#!/bin/sh\necho "uname $*" >> {ran}\necho Linux\n')
    uname.chmod(0o755)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    report = _run_audited(HANDLER_DIR, _child_env(trained_model.trimmed, R_HOME=r_home, PATH=path))
    assert round(report["probability"], 4) == 0.7384
    assert not ran.exists(), ran.read_text()
    assert report["r_sys_which_sh"].endswith("/sh")
    assert report["r_sys_which_locked"] is True
    assert report["startup_env_unchanged"] is True


def test_a_locale_the_system_lacks_is_c_for_r_and_r_does_not_warn_about_it(
    trained_model: TrainedModel, r_home: str
) -> None:
    """Lambda sets LANG=en_US.UTF-8 and its Amazon Linux 2023 runtimes lack that locale: R
    falls back to C, and used to say so on stderr at every cold start."""
    env = _child_env(trained_model.trimmed, R_HOME=r_home, LANG="xx_XX.UTF-8", LC_ALL=None)
    report = _run_audited(HANDLER_DIR, env)
    assert report["r_lc_collate"] == "C"
    assert "Setting LC_" not in report["stderr"]
    assert report["stderr"] == ""
    assert report["startup_env_unchanged"] is True
    assert round(report["probability"], 4) == 0.7384


R_ERROR_CHILD = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(stream=sys.stdout)  # as Lambda's runtime client: log records to stdout
    import handler
    try:
        handler.lambda_handler({"gre": 800, "gpa": 4, "rank": 1})
    except handler.ModelUnavailable:
        pass
    """
)


def test_r_errors_go_to_stderr_and_stdout_keeps_only_the_log_lines(
    r_home: str, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.rds"
    corrupt.write_bytes(b"not an rds file")
    done = subprocess.run(
        [sys.executable, "-c", R_ERROR_CHILD],
        cwd=HANDLER_DIR,
        env=_child_env(corrupt, R_HOME=r_home),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    assert json.loads(line)["error_type"] == "ModelUnavailable"
    assert "Error in" in done.stderr and "unknown input format" in done.stderr


def test_without_r_home_rpy2_asks_r_once_for_it(trained_model: TrainedModel) -> None:
    """Development hosts only: a package sets R_HOME from its bundled R/ directory."""
    report = _run_audited(HANDLER_DIR, _child_env(trained_model.trimmed, R_HOME=None))
    assert [event for event, _ in report["spawned"]] == ["subprocess.Popen"]
    assert "RHOME" in report["spawned"][0][1]


def _copy_shipped_handler_files(task_root: Path) -> None:
    """The handler's files as a package holds them: flat, in its root."""
    for name in shipped_handler_files():
        shutil.copy(HANDLER_DIR / name, task_root / name)


def test_packaged_r_next_to_the_handler_becomes_r_home(
    trained_model: TrainedModel, r_home: str, tmp_path: Path
) -> None:
    package = tmp_path / "package"
    package.mkdir()
    _copy_shipped_handler_files(package)
    (package / "R").symlink_to(r_home, target_is_directory=True)
    report = _run_audited(package, _child_env(trained_model.trimmed, R_HOME=None))
    assert report["R_HOME"] == str(package / "R")
    assert report["R.home()"] == str(package / "R")
    assert report["spawned"] == []
    assert round(report["probability"], 4) == 0.7384


def test_model_bundled_next_to_the_handler_is_used(
    trained_model: TrainedModel, r_home: str, tmp_path: Path
) -> None:
    _copy_shipped_handler_files(tmp_path)
    shutil.copy(trained_model.trimmed, tmp_path / "admission.rds")
    env = _child_env(trained_model.trimmed, R_HOME=r_home, MODEL_PATH=None)
    env["MODEL_BUCKET"] = "must-not-be-used"
    report = _run_audited(tmp_path, env)
    assert round(report["probability"], 4) == 0.7384


def test_wrong_r_home_is_a_clear_500_not_a_process_exit(
    trained_model: TrainedModel, tmp_path: Path
) -> None:
    child = (
        "import handler\n"
        "try:\n    handler.admit_probability(800, 4, 1)\n"
        "except handler.ModelUnavailable as e:\n    print(e.message)\n"
    )
    env = _child_env(trained_model.trimmed, R_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", child], cwd=HANDLER_DIR, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"R_HOME={str(tmp_path)!r} is not an R installation")


# ------------------------------------------------------------------- packaged checks


def _run_checks(
    directory: Path, junit: Path, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, ET.Element]:
    done = subprocess.run(
        [sys.executable, str(directory / "run_checks.py"), "--junit", str(junit)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    return done, suite


def _counts(suite: ET.Element) -> dict[str, str]:
    return {k: suite.attrib[k] for k in ("tests", "failures", "errors", "skipped")}


def test_run_checks_passes_in_the_repository_and_writes_junit(
    trained_model: TrainedModel, r_home: str, tmp_path: Path
) -> None:
    libr_dir = os.path.dirname(os.path.realpath(os.path.join(r_home, "lib", "libR.so")))
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    env = _child_env(
        trained_model.trimmed, R_HOME=r_home, EXPECT_LIBR_UNDER=libr_dir, EXPECT_PYTHON=python
    )
    done, suite = _run_checks(HANDLER_DIR, tmp_path / "junit.xml", env)
    assert done.returncode == 0, done.stdout + done.stderr
    # Skipped: the read-only check, which needs an unprivileged user (the clean host runs it).
    assert done.stdout.splitlines()[-1] == "10 passed, 0 failed, 1 skipped"
    assert _counts(suite) == {"tests": "11", "failures": "0", "errors": "0", "skipped": "1"}
    cases = suite.findall("testcase")
    assert {c.attrib["classname"] for c in cases} == {
        "test_fresh_process.FreshProcessTest",
        "test_handler.HandlerTest",
        "test_package.PackageTest",
    }
    assert all(float(c.attrib["time"]) >= 0 for c in cases)


def test_libr_check_fails_when_libr_is_not_under_the_expected_directory(
    trained_model: TrainedModel, r_home: str, tmp_path: Path
) -> None:
    env = _child_env(trained_model.trimmed, R_HOME=r_home, EXPECT_LIBR_UNDER=str(tmp_path))
    done, suite = _run_checks(HANDLER_DIR, tmp_path / "junit.xml", env)
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "8 passed, 1 failed, 2 skipped"
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.attrib["name"] for c in failed] == ["test_libr_is_loaded_from_the_expected_directory"]
    assert f"is not under {tmp_path}" in failed[0].find("failure").attrib["message"]


DEMO_CHECKS = """
import unittest

class Demo(unittest.TestCase):
    def test_passes(self):
        pass

    def test_fails(self):
        self.assertEqual(1, 2)

    def test_errors(self):
        raise RuntimeError("boom")

    @unittest.skip("not here")
    def test_skipped(self):
        pass
"""


def test_run_checks_counts_failures_errors_and_skips_and_ignores_subdirectories(
    tmp_path: Path,
) -> None:
    shutil.copy(HANDLER_DIR / "run_checks.py", tmp_path / "run_checks.py")
    (tmp_path / "test_demo.py").write_text(DEMO_CHECKS)
    dependency_tests = tmp_path / "somedependency" / "tests"
    dependency_tests.mkdir(parents=True)
    (tmp_path / "somedependency" / "__init__.py").write_text("")
    (dependency_tests / "__init__.py").write_text("")
    (dependency_tests / "test_dependency.py").write_text("raise SystemExit('must not run')\n")
    done, suite = _run_checks(tmp_path, tmp_path / "junit.xml", dict(os.environ))
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "1 passed, 2 failed, 1 skipped"
    assert _counts(suite) == {"tests": "4", "failures": "1", "errors": "1", "skipped": "1"}
    outcomes = {c.attrib["name"]: [child.tag for child in c] for c in suite.findall("testcase")}
    assert outcomes == {
        "test_passes": [],
        "test_fails": ["failure"],
        "test_errors": ["error"],
        "test_skipped": ["skipped"],
    }
    error = suite.find("testcase[@name='test_errors']/error")
    assert error is not None
    assert error.attrib["message"] == "RuntimeError: boom"


def test_run_checks_fails_when_there_is_nothing_to_run(tmp_path: Path) -> None:
    shutil.copy(HANDLER_DIR / "run_checks.py", tmp_path / "run_checks.py")
    done, suite = _run_checks(tmp_path, tmp_path / "junit.xml", dict(os.environ))
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == f"no checks found: no test_*.py in {tmp_path}"
    assert _counts(suite) == {"tests": "0", "failures": "0", "errors": "0", "skipped": "0"}


def _run_tool(trained_model: TrainedModel, r_home: str, *argv: object) -> dict[str, Any]:
    """Run a tool that never ships (bench/, tools/) beside the handler; its JSON report."""
    done = subprocess.run(
        [sys.executable, *map(str, argv)],
        env=_child_env(trained_model.trimmed, R_HOME=r_home, PYTHONPATH=str(HANDLER_DIR)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_bench_predict_prints_one_json_object(trained_model: TrainedModel, r_home: str) -> None:
    bench = [REPO / "bench" / "bench_predict.py", "--calls", "5", "--batch-size", "10"]
    report = _run_tool(trained_model, r_home, *bench, "--batch-repeats", "2")
    assert set(report) == {
        "load_ms",
        "single_calls",
        "single_call_median_ms",
        "single_call_p90_ms",
        "batch_size",
        "batch_repeats",
        "batch_median_ms",
        "batch_per_applicant_ms",
        "python",
        "model",
        "method",
    }
    assert report["method"] == "direct"
    assert (report["single_calls"], report["batch_size"], report["batch_repeats"]) == (5, 10, 2)


def test_report_runtime_deps_lists_what_one_prediction_loads(
    trained_model: TrainedModel, r_home: str
) -> None:
    report = _run_tool(trained_model, r_home, REPO / "tools" / "report_runtime_deps.py")
    assert set(report) == {"python_modules", "r_namespaces"}
    assert report["r_namespaces"] == PREDICTION_NAMESPACES
    modules = report["python_modules"]
    assert {"rpy2.rinterface", "_cffi_backend", "_rinterface_cffi_api"} <= set(modules)
    assert modules == sorted(modules)
    assert [m for m in modules if m == "handler" or m.startswith("admission_")] == []
    unused = ("rpy2.robjects", "rpy2.ipython", "cffi", "jinja2", "markupsafe", "pycparser")
    unused += ("tzlocal", "boto3", "botocore")
    for name in modules:
        assert not name.startswith(unused), name


def test_python_check_fails_when_the_package_runs_on_another_python(
    trained_model: TrainedModel, r_home: str, tmp_path: Path
) -> None:
    """A package built for 3.13 run by any other Python fails its own check, by name."""
    other = "3.99"
    env = _child_env(trained_model.trimmed, R_HOME=r_home, EXPECT_PYTHON=other)
    done, suite = _run_checks(HANDLER_DIR, tmp_path / "junit.xml", env)
    assert done.returncode == 1
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.attrib["name"] for c in failed] == ["test_runs_on_the_target_runtimes_python"]
    assert other in failed[0].find("failure").attrib["message"]
