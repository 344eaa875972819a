"""Event shapes, responses, logging and server errors of lambda_handler (with R)."""

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from handler_support import (
    CORS,
    CORS_FOR_ORIGIN,
    OK,
    Ctx,
    TrainedModel,
    admission_model_source,
    caller_error,
    handler,
    r_eval,
    r_string,
)


def _v1(method: str, body: Any = None, query: Any = None, b64: bool = False) -> dict[str, Any]:
    return {
        "resource": "/admit",
        "path": "/admit",
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueQueryStringParameters": None,
        "queryStringParameters": query,
        "requestContext": {"requestId": "apigw-1", "httpMethod": method, "stage": "prod"},
        "body": body,
        "isBase64Encoded": b64,
    }


def _v2(method: str, body: Any = None, query: Any = None, b64: bool = False) -> dict[str, Any]:
    event = {
        "version": "2.0",
        "routeKey": f"{method} /admit",
        "rawPath": "/admit",
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": method, "path": "/admit"}, "requestId": "r"},
        "isBase64Encoded": b64,
    }
    if body is not None:
        event["body"] = body
    if query is not None:
        event["queryStringParameters"] = query
    return event


def _b64(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def _ok(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": 200,
        "headers": CORS,
        "body": json.dumps(payload),
        "isBase64Encoded": False,
    }


@pytest.fixture(scope="module")
def expected(trained_model: TrainedModel) -> dict[str, Any]:
    """Answers computed by calling R's predict() directly on the model file."""
    path = r_string(str(trained_model.trimmed))
    p1, p4 = r_eval(
        f"predict(readRDS({path}), data.frame(gre = 800, gpa = 4, rank = c(1, 4)), "
        "type = 'response')"
    )
    return {
        "single": {"result": True, "probability": p1},
        "single rank 4": {"result": False, "probability": p4},
        "batch": {
            "results": [
                {"result": False, "probability": p4},
                {"result": True, "probability": p1},
                {"result": False, "probability": p4},
            ]
        },
    }


BATCH = {
    "applicants": [
        {"gre": 800, "gpa": 4, "rank": 4},
        {"gre": "800", "gpa": "4", "rank": "1"},
        {"gre": 800, "gpa": 4.0, "rank": 4.0},
    ]
}
QUERY = {"gre": "800", "gpa": "4", "rank": "1"}

PROXY_EVENTS = {
    "v1 POST body": (_v1("POST", json.dumps(OK)), "single"),
    "v1 POST base64 body": (_v1("POST", _b64(OK), b64=True), "single"),
    "v1 GET query string": (_v1("GET", query=QUERY), "single"),
    "v1 POST batch": (_v1("POST", json.dumps(BATCH)), "batch"),
    "v1 body wins over query string": (_v1("POST", json.dumps(OK), {"gre": "x"}), "single"),
    "v1 body already parsed": (_v1("POST", OK), "single"),
    "v2 POST body": (_v2("POST", json.dumps(OK)), "single"),
    "v2 POST base64 body": (_v2("POST", _b64(OK), b64=True), "single"),
    "v2 GET query string": (_v2("GET", query=QUERY), "single"),
    "v2 POST base64 batch": (_v2("POST", _b64(BATCH), b64=True), "batch"),
}


def test_direct_invocation_with_numbers_answers_result_and_probability(
    expected: dict[str, Any],
) -> None:
    assert handler.lambda_handler({"gre": 800, "gpa": 4, "rank": 1}, Ctx()) == expected["single"]


def test_direct_invocation_with_numeric_strings_answers_the_same(
    expected: dict[str, Any],
) -> None:
    assert handler.lambda_handler(QUERY, Ctx()) == expected["single"]
    rank4 = {"gre": "800", "gpa": "4", "rank": "4"}
    assert handler.lambda_handler(rank4, Ctx()) == expected["single rank 4"]


def test_published_probabilities_to_four_places() -> None:
    assert round(handler.admit_probability(800, 4.0, 1), 4) == 0.7384
    assert round(handler.admit_probability(800, 4.0, 4), 4) == 0.3743


def test_direct_batch_answers_in_order(expected: dict[str, Any]) -> None:
    assert handler.lambda_handler(BATCH, Ctx()) == expected["batch"]


@pytest.mark.parametrize("name", PROXY_EVENTS)
def test_proxy_event_answers_200_with_cors_headers(name: str, expected: dict[str, Any]) -> None:
    event, answer = PROXY_EVENTS[name]
    assert handler.lambda_handler(event, Ctx()) == _ok(expected[answer])


@pytest.mark.parametrize("shape", [_v1, _v2], ids=["v1", "v2"])
def test_options_preflight_answers_204_with_cors_headers(shape: Any) -> None:
    assert handler.lambda_handler(shape("OPTIONS"), Ctx()) == {
        "statusCode": 204,
        "headers": CORS,
        "body": "",
        "isBase64Encoded": False,
    }


def test_cors_headers_answer_only_the_origins_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    site, other = "https://admissions.example.org", "https://elsewhere.example.com"
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", f"{site}, *, https://second.example.org")
    for event in (_v1("OPTIONS"), _v2("POST", json.dumps(OK)), _v1("POST", "{}")):
        event["headers"] = {"Origin": site}
        allowed = handler.lambda_handler(event, Ctx())["headers"]
        assert allowed == {**CORS_FOR_ORIGIN, "Access-Control-Allow-Origin": site}
        event["headers"] = {"origin": other}
        assert handler.lambda_handler(event, Ctx())["headers"] == {**CORS, "Vary": "Origin"}
    monkeypatch.setenv("CORS_ALLOW_ORIGINS", "*")  # never answered: no CORS header at all
    assert handler.lambda_handler(_v2("OPTIONS"), Ctx())["headers"] == CORS


def test_batch_predictions_equal_single_predictions() -> None:
    applicants = [
        {"gre": gre, "gpa": gpa, "rank": rank}
        for gre in (200, 520, 800)
        for gpa in (0, 2.5, 4)
        for rank in (1, 2, 3, 4)
    ]
    singles = [handler.admit_probability(a["gre"], a["gpa"], a["rank"]) for a in applicants]
    assert handler.admit_probabilities(applicants) == singles


def test_original_pred_admit_contract() -> None:
    assert handler.pred_admit("800", "4", "1") is True
    assert handler.pred_admit("800", "4", "4") is False


def test_model_is_loaded_once_per_process(
    fresh_model_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = []
    read_model = admission_model_source.read_model

    def counting_read(rinterface: Any, path: str) -> Any:
        reads.append(path)
        return read_model(rinterface, path)

    monkeypatch.setattr(admission_model_source, "read_model", counting_read)
    for _ in range(3):
        handler.lambda_handler(OK, Ctx())
    handler.lambda_handler(BATCH, Ctx())
    assert len(reads) == 1
    assert handler.get_model() is handler.get_model()


# ---------------------------------------------------------------------------- logging


def _log_lines(capsys: pytest.CaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_one_json_log_line_per_invocation(capsys: pytest.CaptureFixture) -> None:
    handler.get_model()
    capsys.readouterr()
    handler.lambda_handler(OK, Ctx("a"))
    handler.lambda_handler(_v2("POST", json.dumps(BATCH)), Ctx("b"))
    handler.lambda_handler(_v1("POST", json.dumps({"gre": 900, "gpa": 4, "rank": 1})), Ctx("c"))
    handler.lambda_handler(_v1("OPTIONS"), None)
    lines = _log_lines(capsys)
    for line in lines:
        assert line.pop("latency_ms") >= 0
    assert lines == [
        {
            "request_id": "a",
            "transport": "direct",
            "kind": "direct",
            "count": 1,
            "outcome": "ok",
            "status": 200,
        },
        {
            "request_id": "b",
            "transport": "proxy",
            "kind": "batch",
            "count": 3,
            "outcome": "ok",
            "status": 200,
        },
        {
            "request_id": "c",
            "transport": "proxy",
            "kind": "proxy",
            "count": 0,
            "outcome": "client_error",
            "status": 400,
            "error_type": "BadRequest",
            "field": "gre",
        },
        {
            "request_id": None,
            "transport": "proxy",
            "kind": "proxy",
            "count": 0,
            "outcome": "ok",
            "status": 204,
        },
    ]


def test_log_lines_carry_no_event_body(capsys: pytest.CaptureFixture) -> None:
    secret = "hunter2-do-not-log"
    handler.lambda_handler({**OK, "password": secret}, Ctx())
    handler.lambda_handler(_v1("POST", json.dumps({**OK, "gre": secret})), Ctx())
    with pytest.raises(handler.BadRequest):
        handler.lambda_handler({**OK, "gpa": secret}, Ctx())
    out = capsys.readouterr().out
    assert secret not in out
    assert len(out.splitlines()) == 3


# ------------------------------------------------------------------------ server errors


def _use_model_file(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    monkeypatch.setenv("MODEL_PATH", str(path))


def _server_error(event: Any, request_id: str) -> dict[str, Any]:
    response = handler.lambda_handler(event, Ctx(request_id))
    assert response["statusCode"] == 500
    assert response["headers"] == CORS
    return json.loads(response["body"])


def test_missing_model_file_is_a_500_with_a_clear_message(
    fresh_model_cache: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    missing = tmp_path / "missing.rds"
    _use_model_file(monkeypatch, missing)
    message = f"model file {missing} (MODEL_PATH) does not exist"
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.lambda_handler(OK, Ctx("req-1"))
    # The caller (Lambda's errorMessage) learns the request id; the log has the path.
    assert json.loads(str(caught.value)) == caller_error("ModelUnavailable", "req-1")
    assert str(tmp_path) not in str(caught.value)
    assert caught.value.message == message
    assert _server_error(_v1("POST", json.dumps(OK)), "req-2") == {
        "error": "ModelUnavailable",
        "message": "the service could not answer; the function log has the cause "
        "under request_id req-2",
        "request_id": "req-2",
    }
    logged = _log_lines(capsys)
    assert [(line["outcome"], line["status"], line["error"]) for line in logged] == [
        ("server_error", 500, message),
        ("server_error", 500, message),
    ]


def test_client_errors_stay_400_while_the_model_is_unavailable(
    fresh_model_cache: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _use_model_file(monkeypatch, tmp_path / "missing.rds")
    response = handler.lambda_handler(_v1("POST", json.dumps({"gre": 800})), Ctx())
    assert response["statusCode"] == 400
    with pytest.raises(handler.BadRequest):
        handler.lambda_handler({"gre": 800}, Ctx())


def test_a_failed_load_is_retried_at_the_next_invocation(
    fresh_model_cache: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    expected: dict[str, Any],
) -> None:
    trained = admission_model_source.model_source().path
    _use_model_file(monkeypatch, tmp_path / "missing.rds")
    assert handler.lambda_handler(_v1("POST", json.dumps(OK)), Ctx())["statusCode"] == 500
    monkeypatch.setenv("MODEL_PATH", str(trained))
    assert handler.lambda_handler(_v1("POST", json.dumps(OK)), Ctx()) == _ok(expected["single"])


def _save_rds(expression: str, path: Path) -> None:
    r_eval(f"saveRDS({expression}, {r_string(str(path))})")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not an rds file", "R cannot read the model file {path}: "),
        (b"", "R cannot read the model file {path}: "),
        ("1:3", "the model in {path} cannot be served: the model is of class 'integer'"),
        (
            "glm(am ~ wt, data = mtcars, family = binomial)",
            "the model in {path} cannot be served: the model uses variable 'wt'",
        ),
    ],
    ids=["garbage", "empty", "not a glm", "another glm"],
)
def test_unusable_model_file_is_a_500_naming_the_problem(
    fresh_model_cache: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: Any,
    message: str,
) -> None:
    path = tmp_path / "model.rds"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _save_rds(content, path)
    _use_model_file(monkeypatch, path)
    with pytest.raises(handler.ModelUnavailable) as caught:
        handler.lambda_handler(OK, Ctx())
    assert caught.value.message.startswith(message.format(path=path))
    assert caught.value.http_status == 500


def test_unexpected_exception_is_a_500_with_traceback_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def broken() -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(handler, "get_model", broken)
    body = _server_error(_v2("POST", json.dumps(OK)), "req-3")
    assert body["error"] == "InternalServerError"
    with pytest.raises(handler.InternalServerError) as caught:
        handler.lambda_handler(OK, Ctx("req-4"))
    assert json.loads(str(caught.value)) == caller_error("InternalServerError", "req-4")
    assert caught.value.message == "unexpected RuntimeError: disk on fire"
    assert isinstance(caught.value.__cause__, RuntimeError)
    captured = capsys.readouterr()
    assert captured.err.count("RuntimeError: disk on fire") == 2
    assert [json.loads(line)["outcome"] for line in captured.out.splitlines()] == [
        "server_error",
        "server_error",
    ]
