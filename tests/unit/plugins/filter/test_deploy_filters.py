"""The deploy role's filters: the smoke events from the clean-host test's record, and the
comparison of a deployed function's answers with the recorded ones."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[4] / "plugins/filter/deploy_filters.py"
_spec = importlib.util.spec_from_file_location("deploy_filters", _PATH)
deploy_filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy_filters)

DIRECT = {"gre": 800, "gpa": 4, "rank": 1}
PROXY_ANSWER = {
    "statusCode": 200,
    "headers": {"Content-Type": "application/json"},
    "body": json.dumps({"result": False, "probability": 0.3743143996126536}),
    "isBase64Encoded": False,
}
REPORT_DIRECT_ANSWER = {"result": True, "probability": 0.7384082459801908}
REPORT = {
    "cases": [
        {
            "name": "direct",
            "passed": True,
            "kind": "response",
            "event": DIRECT,
            "body": json.dumps({"result": True, "probability": 0.7384082459801908}),
        },
        {
            "name": "http",
            "passed": True,
            "kind": "response",
            "event": {"version": "2.0", "body": "{}"},
            "body": json.dumps(PROXY_ANSWER),
        },
        {"name": "error", "passed": True, "kind": "error", "event": {}, "body": "{}"},
    ]
}


def test_recorded_cases_carry_the_event_and_the_answer_the_clean_host_got() -> None:
    [direct, http] = deploy_filters.deploy_recorded_cases(REPORT, ["direct", "http"])
    assert direct == {
        "name": "direct",
        "event": DIRECT,
        "answer": {"result": True, "probability": 0.7384082459801908},
    }
    assert http["answer"] == PROXY_ANSWER


def test_a_smoke_case_the_release_did_not_record_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'nope', which the release's clean-host test did not run"):
        deploy_filters.deploy_recorded_cases(REPORT, ["nope"])
    with pytest.raises(ValueError, match="no passed answer with its event for 'error'"):
        deploy_filters.deploy_recorded_cases(REPORT, ["error"])
    old = {"cases": [{k: v for k, v in REPORT["cases"][0].items() if k != "event"}]}
    with pytest.raises(ValueError, match="no passed answer"):
        deploy_filters.deploy_recorded_cases(old, ["direct"])


def test_answers_compare_as_data_within_the_tolerance() -> None:
    recorded = {"result": True, "probability": 0.7384082459801908}
    assert (
        deploy_filters.deploy_answer_problems(recorded, dict(recorded, probability=0.73840824598))
        == ""
    )
    assert deploy_filters.deploy_answer_problems(recorded, dict(recorded, probability=0.74)) == (
        "$.probability: expected 0.7384082459801908 (abs_tol 1e-09), got 0.74"
    )
    assert "$.result: expected true, got 1" in deploy_filters.deploy_answer_problems(
        recorded, dict(recorded, result=1)
    )
    assert deploy_filters.deploy_answer_problems(recorded, {"result": True}) == (
        "$.probability: missing"
    )
    # A proxy answer's body is JSON text: compared as data, so key order does not matter.
    reordered = dict(PROXY_ANSWER, body='{"probability": 0.3743143996126536, "result": false}')
    assert deploy_filters.deploy_answer_problems(PROXY_ANSWER, reordered) == ""
    assert (
        "$.statusCode: expected 200 (abs_tol 1e-09), got 500"
        in deploy_filters.deploy_answer_problems(PROXY_ANSWER, dict(PROXY_ANSWER, statusCode=500))
    )


def test_invocation_results_name_the_events_that_failed() -> None:
    """The shapes lambda_execute registers under failed_when: false (failed is False)."""
    cases = deploy_filters.deploy_recorded_cases(REPORT, ["direct", "http"])
    error = {"errorType": "ModelUnavailable", "errorMessage": "{}", "stackTrace": []}
    results = [
        {
            "item": cases[0],
            "failed": False,
            "changed": True,
            "result": {"output": cases[0]["answer"]},
        },
        {"item": cases[1], "failed": False, "changed": False, "msg": "AccessDeniedException"},
    ]
    assert deploy_filters.deploy_invoke_problems(results) == [
        {"name": "http", "problem": "the invocation failed: AccessDeniedException"}
    ]
    function_error = {
        "item": cases[0],
        "failed": False,
        "msg": "Function executed, but there was an error in the Lambda function.",
        "result": {"output": error},
    }
    [problem] = deploy_filters.deploy_invoke_problems([function_error])
    assert problem["problem"].startswith("the invocation failed: Function executed")


def test_headers_are_not_compared_and_added_keys_are_allowed() -> None:
    """As the stand-in's json_subset does: CORS_ALLOW_ORIGINS changes a header by design."""
    other_origin = dict(PROXY_ANSWER, headers={"Access-Control-Allow-Origin": "https://x"})
    assert deploy_filters.deploy_answer_problems(PROXY_ANSWER, other_origin) == ""
    more = {"result": True, "probability": 0.7384082459801908, "model": "v2"}
    assert deploy_filters.deploy_answer_problems(REPORT_DIRECT_ANSWER, more) == ""


def test_the_stand_in_events_expect_the_recorded_answers() -> None:
    cases = deploy_filters.deploy_recorded_cases(REPORT, ["direct", "http"])
    direct, http = deploy_filters.deploy_invoke_events(cases, 1e-9)
    assert direct["expect"] == {
        "kind": "response",
        "json_subset": {"result": True, "probability": 0.7384082459801908},
        "abs_tol": 1e-9,
    }
    assert http["expect"]["status_code"] == 200
    assert http["expect"]["body_json_subset"] == json.loads(PROXY_ANSWER["body"])
    assert http["event"] == {"version": "2.0", "body": "{}"}


def test_code_sha256_is_lambdas_base64_digest_and_env_args_are_pairs() -> None:
    digest = hashlib.sha256(b"zip").hexdigest()
    assert (
        deploy_filters.deploy_code_sha256(digest)
        == base64.b64encode(hashlib.sha256(b"zip").digest()).decode()
    )
    assert deploy_filters.deploy_env_args({"B": "2", "A": "x=y"}) == [
        "--env",
        "A=x=y",
        "--env",
        "B=2",
    ]
    failed = [{"name": "a", "passed": True}, {"name": "b", "passed": False, "message": "why"}]
    assert deploy_filters.deploy_report_problems(failed) == [{"name": "b", "problem": "why"}]


def test_only_objects_whose_bytes_are_not_the_manifests_are_mismatches() -> None:
    results = [
        {"item": {"key": "a.zip", "sha256": "1" * 64}, "stat": {"checksum": "1" * 64}},
        {"item": {"key": "b.zip", "sha256": "1" * 64}, "stat": {"checksum": "2" * 64}},
        {"item": {"key": "c.zip", "sha256": "1" * 64}, "stat": {}},
    ]
    assert deploy_filters.deploy_sha256_mismatches(results) == [
        {"key": "b.zip", "actual": "2" * 64, "expected": "1" * 64},
        {"key": "c.zip", "actual": None, "expected": "1" * 64},
    ]
