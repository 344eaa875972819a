"""Tests for the pure parts of the benchmark: bench/run.py and bench/in_host.py."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
from module_loading import load as _load

import lambda_invoke as invoke

REPO = Path(__file__).resolve().parents[2]


run = _load("bench_run", REPO / "bench" / "run.py")
in_host = _load("bench_in_host", REPO / "bench" / "in_host.py")
endpoint_abuse = _load("bench_endpoint_abuse", REPO / "bench" / "endpoint_abuse.py")


def _cold(seconds: float, init: float, rss: float, python: str = "3.13.5") -> dict:
    return {
        "python": python,
        "init_s": init,
        "first_invoke_s": round(seconds - init, 6),
        "first_prediction_s": seconds,
        "peak_rss_mb": rss,
    }


# ------------------------------------------------------------------------ run.py


def test_cold_figures_are_median_and_max_of_the_starts_and_the_highest_peak_rss() -> None:
    runs = [
        _cold(0.9, 0.5, 40.0),
        _cold(0.3, 0.2, 41.5),
        _cold(0.5, 0.4, 40.2),
        _cold(0.4, 0.3, 40.0),
        _cold(0.6, 0.5, 39.9),
    ]
    figures = run.cold_figures(runs)
    assert figures == {
        "cold_start_s": 0.5,
        "cold_start_max_s": 0.9,
        "cold_starts_s": [0.9, 0.3, 0.5, 0.4, 0.6],
        "init_s": 0.4,
        "first_invoke_s": 0.1,
        "peak_rss_mb": 41.5,
        "target_python": "3.13.5",
    }


def test_cold_figures_name_every_python_that_ran() -> None:
    figures = run.cold_figures([_cold(0.3, 0.2, 40.0), _cold(0.3, 0.2, 40.0, python="3.13.7")])
    assert figures["target_python"] == "3.13.5, 3.13.7"


@pytest.mark.parametrize(
    ("zip_bytes", "baseline", "met"),
    [
        (10_000_000, 40_000_000, True),  # both bounds met exactly
        (10_000_001, 80_000_000, False),  # over 10^7 bytes (10 MB, not MiB)
        (9_000_000, 35_999_996, False),  # over a quarter of the baseline
        (8_999_999, 35_999_996, True),
    ],
)
def test_zip_target_is_ten_million_bytes_and_a_quarter_of_the_baseline(
    zip_bytes: int, baseline: int, met: bool
) -> None:
    figures = {"zip_bytes": zip_bytes, "baseline_zip_bytes": baseline}
    assert run.target_met("zip_bytes", figures) is met


def test_cold_start_target_is_half_the_baseline() -> None:
    assert run.target_met("cold_start_s", {"cold_start_s": 0.5, "baseline_cold_start_s": 1.0})
    assert not run.target_met("cold_start_s", {"cold_start_s": 0.51, "baseline_cold_start_s": 1.0})


@pytest.mark.parametrize(
    ("key", "bound"),
    [
        ("peak_rss_mb", 64),
        ("warm_predict_ms", 0.05),
        ("batch_1000_ms", 5),
        ("release_cold_s", 480),
        ("release_second_checkout_s", 120),
        ("release_warm_s", 45),
        ("make_test_s", 2100),
        ("unzipped_bytes", 40 * 1024 * 1024),
    ],
)
def test_fixed_targets_are_met_up_to_their_bound(key: str, bound: float) -> None:
    assert run.target_met(key, {key: bound}) is True
    assert run.target_met(key, {key: bound * 1.01}) is False


def test_a_target_is_not_judged_without_its_figure_or_the_baseline_it_needs() -> None:
    assert run.target_met("release_cold_s", {"release_cold_s": None}) is None
    assert run.target_met("cold_start_s", {"cold_start_s": 0.2}) is None
    no_baseline = {"cold_start_s": 0.2, "baseline_cold_start_s": None}
    assert run.target_met("cold_start_s", no_baseline) is None


def test_table_marks_met_missed_and_unmeasured_targets() -> None:
    text = run.table(
        {
            "peak_rss_mb": 30.0,
            "baseline_peak_rss_mb": 80.0,
            "warm_predict_ms": 0.1,
            "target_python": "3.13.5",
        }
    )
    rows = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert set(rows) == {*run.TARGETS, *run.RECORDED}
    assert rows["peak_rss_mb"].split()[1:3] == ["30.0", "80.0"]
    assert rows["peak_rss_mb"].endswith(" yes")
    assert rows["warm_predict_ms"].endswith(" NO")
    assert rows["release_cold_s"].endswith(" n/a")
    assert "3.13.5" in rows["target_python"]


def test_stand_in_runs_like_a_lambda_sandbox() -> None:
    command = run.stand_in_command("c1", "img", Path("/t/task"), Path("/t/rt"), Path("/t/tools"))
    assert command[:3] == ["podman", "run", "-d"]
    assert command[-3:] == ["img", "sleep", "infinity"]
    for flag in ("--read-only", "--read-only-tmpfs=false", "--memory=128m", "--memory-swap=128m"):
        assert flag in command
    assert command[command.index("--network") + 1] == "none"
    assert command[command.index("--tmpfs") + 1].startswith("/tmp:rw,mode=1777")
    mounts = [command[i + 1] for i, arg in enumerate(command) if arg == "-v"]
    assert mounts == ["/t/task:/var/task:ro", "/t/rt:/var/runtime:ro", "/t/tools:/bench:ro"]
    assert command[command.index("--label") + 1] == "r-lambda.run_id=c1"


def test_unpack_keeps_the_modes_the_zip_records(tmp_path: Path) -> None:
    archive = tmp_path / "p.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name, mode in (("R/bin/exec/R", 0o755), ("handler.py", 0o644)):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o100000 | mode) << 16
            out.writestr(info, b"x")
        out.writestr("plain.txt", b"y")  # no mode recorded: the default one
    dest = tmp_path / "task"
    run.unpack(archive, dest)
    assert stat.S_IMODE((dest / "R/bin/exec/R").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "handler.py").stat().st_mode) == 0o644
    assert (dest / "plain.txt").read_bytes() == b"y"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755  # readable by nobody once mounted


def test_stand_in_figures_use_bench_names_and_keep_a_failure() -> None:
    project = {
        **run.cold_figures([_cold(0.3, 0.2, 30.0)]),
        "single_call_median_ms": 0.04,
        "batch_median_ms": 3.0,
    }
    baseline = {"error": "cold start 1: killed"}
    figures = run.stand_in_figures({"project": project, "baseline": baseline})
    assert figures["cold_start_s"] == 0.3
    assert figures["init_s"] == 0.2
    assert figures["peak_rss_mb"] == 30.0
    assert figures["target_python"] == "3.13.5"
    assert figures["warm_predict_ms"] == 0.04
    assert figures["batch_1000_ms"] == 3.0
    assert "stand_in_error" not in figures
    assert figures["baseline_cold_start_s"] is None
    assert figures["baseline_stand_in_error"] == "cold start 1: killed"


# ---------------------------------------------------------------------- in_host.py


def test_lambda_env_is_lambdas_library_path_without_r_home() -> None:
    env = in_host.lambda_env("handler_2017", "3.13", "/usr/bin:/bin")
    assert env["LD_LIBRARY_PATH"] == (
        "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:"
        "/var/task:/var/task/lib:/opt/lib"
    )
    assert env["PYTHONPATH"].split(":")[0] == "/var/task"
    assert "/opt/python/lib/python3.13/site-packages" in env["PYTHONPATH"].split(":")
    assert env["BENCH_HANDLER"] == "handler_2017"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert not any(name.startswith("R_") for name in env)


def test_cold_summary_adds_init_and_first_invocation() -> None:
    report = {
        "python": "3.13.5",
        "init_s": 0.25,
        "first_invoke_s": 0.0125,
        "peak_rss_mb": 42.0,
        "passed": 1,
        "failed": 0,
        "error": None,
        "cases": [{"passed": True}],
    }
    assert in_host.cold_summary(report) == {
        "python": "3.13.5",
        "init_s": 0.25,
        "first_invoke_s": 0.0125,
        "first_prediction_s": 0.2625,
        "peak_rss_mb": 42.0,
    }


def test_cold_summary_fails_with_the_reason_of_a_wrong_answer_or_a_dead_client() -> None:
    wrong = {
        "passed": 0,
        "failed": 1,
        "error": None,
        "cases": [{"passed": False, "message": "expected a response, got an error"}],
    }
    with pytest.raises(SystemExit, match="expected a response, got an error"):
        in_host.cold_summary(wrong)
    dead = {
        "passed": 0,
        "failed": 1,
        "error": "the runtime client was killed by SIGKILL",
        "cases": [{"passed": False, "message": "not run"}],
    }
    with pytest.raises(SystemExit, match="killed by SIGKILL"):
        in_host.cold_summary(dead)


def test_the_cold_start_event_is_one_direct_call_checked_for_its_answer() -> None:
    (case,) = in_host.FIRST_EVENT
    assert case["event"] == {"gre": 800, "gpa": 4, "rank": 1}
    assert case["expect"]["kind"] == "response"
    assert case["expect"]["json_subset"]["result"] is True


def test_the_cold_start_event_is_one_lambda_invoke_accepts() -> None:
    (case,) = invoke.parse_cases(in_host.FIRST_EVENT)
    posted = b'{"result": true, "probability": 0.73842}'
    assert invoke.judge(case.expect, "response", posted) is None


def test_the_zip_bound_is_the_smaller_of_its_two_limits() -> None:
    assert run.target_bound("zip_bytes", {"baseline_zip_bytes": 50_000_000}) == 10_000_000
    assert run.target_bound("zip_bytes", {"baseline_zip_bytes": 30_000_000}) == 7_500_000
    assert run.target_bound("zip_bytes", {}) is None


def test_local_endpoint_figures_are_nearest_rank_percentiles_and_rps() -> None:
    latencies = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    figures = run.endpoint_figures(latencies, wall_s=2.0, errors=1)
    assert figures == {"requests": 101, "errors": 1, "rps": 50.0, "p50_ms": 50.0,
                       "p99_ms": 99.0, "wall_s": 2.0}
    assert endpoint_abuse.percentile([0.3], 0.99) == 0.3


def test_the_cold_start_event_of_another_model_expects_that_models_answer() -> None:
    (case,) = invoke.parse_cases(in_host.first_event(0.4321))
    right = b'{"result": false, "probability": 0.43212}'
    glms = b'{"result": true, "probability": 0.7384}'
    assert invoke.judge(case.expect, "response", right) is None
    assert invoke.judge(case.expect, "response", glms)


def _record(cache: Path, commit: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "first-release.json").write_text(json.dumps({
        "seconds": 401.5, "commit": commit, "finished_at": "2026-12-07T20:00:00+00:00",
        "version": "v1", "phase_seconds": {"build": 250.0}}))


def test_the_first_release_recorded_for_this_commit_is_the_cold_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("R_LAMBDA_CACHE_DIR", str(tmp_path))
    head = run.sh("git", "-C", str(REPO), "rev-parse", "HEAD").stdout.strip()
    monkeypatch.setattr(run, "sh", lambda *argv, **kw: type(
        "P", (), {"stdout": head + "\n" if "rev-parse" in argv else ""})())
    _record(tmp_path, head)
    assert run.recorded_first_release()["seconds"] == 401.5


@pytest.mark.parametrize("case", ["other commit", "dirty checkout", "no record", "bad json"])
def test_a_first_release_of_other_sources_is_not_the_cold_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    monkeypatch.setenv("R_LAMBDA_CACHE_DIR", str(tmp_path))
    head = "a" * 40
    dirty = " M bench/run.py" if case == "dirty checkout" else ""
    monkeypatch.setattr(run, "sh", lambda *argv, **kw: type(
        "P", (), {"stdout": head if "rev-parse" in argv else dirty})())
    if case == "other commit":
        _record(tmp_path, "b" * 40)
    elif case == "dirty checkout":
        _record(tmp_path, head)
    elif case == "bad json":
        (tmp_path / "first-release.json").write_text("{half")
    assert run.recorded_first_release() is None


@pytest.mark.parametrize(
    ("left_s", "recorded", "plan"),
    [
        (900, True, "full"),  # 0.35 x 2,400 s = 840 s fits
        (900, False, "no-cold"),  # its own cold release: 0.55 x 2,400 = 1,320 s does not
        (1400, False, "full"),
        (800, True, "skip"),  # even 840 s does not fit
        (-60, True, "skip"),  # past the limit already
    ],
)
def test_ci_runs_only_the_bench_that_fits_before_cis_limit(
    left_s: int, recorded: bool, plan: str
) -> None:
    assert run.ci_plan(left_s, 2400, recorded=recorded) == plan
