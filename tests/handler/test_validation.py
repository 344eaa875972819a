"""Input validation: every bad input is a 400 naming the field and what was expected.

Validation runs before the model is loaded, so none of these tests needs R.
"""

import base64
import json
import sys
import types
from typing import Any, Callable

import pytest
from handler_support import CORS, OK, Ctx, admission_requests, caller_error, handler

GRE = "a number between 200 and 800"
GPA = "a number between 0 and 4"
RANK = "one of 1, 2, 3, 4"


def applicant(**changes: Any) -> dict[str, Any]:
    return {**OK, **changes}


def without(name: str) -> dict[str, Any]:
    return {k: v for k, v in OK.items() if k != name}


BAD_APPLICANTS = [
    ("missing gre", without("gre"), "gre", f"gre is required: {GRE}"),
    ("missing gpa", without("gpa"), "gpa", f"gpa is required: {GPA}"),
    ("missing rank", without("rank"), "rank", f"rank is required: {RANK}"),
    ("empty object", {}, "gre", f"gre is required: {GRE}"),
    ("non-numeric string", applicant(gre="abc"), "gre", f"gre must be {GRE}, got 'abc'"),
    ("empty string", applicant(gpa=""), "gpa", f"gpa must be {GPA}, got ''"),
    ("underscored digits", applicant(gre="8_00"), "gre", f"gre must be {GRE}, got '8_00'"),
    ("non-ASCII digits", applicant(gre="٨٠٠"), "gre", f"gre must be {GRE}, got '٨٠٠'"),
    ("NaN number", applicant(gpa=float("nan")), "gpa", f"gpa must be {GPA}, got nan"),
    ("NaN string", applicant(gpa="nan"), "gpa", f"gpa must be {GPA}, got 'nan'"),
    ("infinity", applicant(gre=float("inf")), "gre", f"gre must be {GRE}, got inf"),
    ("-Infinity string", applicant(gre="-Infinity"), "gre", f"gre must be {GRE}, got '-Infinity'"),
    ("overflowing string", applicant(gre="1e999"), "gre", f"gre must be {GRE}, got '1e999'"),
    (
        "overflowing integer",
        applicant(gre=10**400),
        "gre",
        f"gre must be {GRE}, got 1000000000000000000000000000000000000...",
    ),
    ("boolean true", applicant(gre=True), "gre", f"gre must be {GRE}, got true"),
    ("boolean false", applicant(rank=False), "rank", f"rank must be {RANK}, got false"),
    ("null", applicant(gpa=None), "gpa", f"gpa must be {GPA}, got null"),
    ("object", applicant(gre={"value": 800}), "gre", f"gre must be {GRE}, got an object"),
    ("list", applicant(gpa=[4]), "gpa", f"gpa must be {GPA}, got a list"),
    ("gre too low", applicant(gre=199.9), "gre", f"gre must be {GRE}, got 199.9"),
    ("gre too high", applicant(gre="800.5"), "gre", f"gre must be {GRE}, got 800.5"),
    ("gpa negative", applicant(gpa=-0.1), "gpa", f"gpa must be {GPA}, got -0.1"),
    ("gpa too high", applicant(gpa=4.01), "gpa", f"gpa must be {GPA}, got 4.01"),
    ("rank fractional", applicant(rank=1.5), "rank", f"rank must be {RANK}, got 1.5"),
    ("rank fractional string", applicant(rank="2.5"), "rank", f"rank must be {RANK}, got 2.5"),
    ("rank zero", applicant(rank=0), "rank", f"rank must be {RANK}, got 0"),
    ("rank five", applicant(rank="5"), "rank", f"rank must be {RANK}, got 5"),
    ("rank word", applicant(rank="one"), "rank", f"rank must be {RANK}, got 'one'"),
]

BAD_BATCHES = [
    (
        "applicants is an object",
        {"applicants": OK},
        "applicants",
        "applicants must be a list of objects with gre, gpa and rank, got an object",
    ),
    (
        "applicants is a string",
        {"applicants": "all"},
        "applicants",
        "applicants must be a list of objects with gre, gpa and rank, got 'all'",
    ),
    (
        "applicants is null",
        {"applicants": None},
        "applicants",
        "applicants must be a list of objects with gre, gpa and rank, got null",
    ),
    (
        "empty batch",
        {"applicants": []},
        "applicants",
        "applicants must contain at least one applicant",
    ),
    (
        "entry is not an object",
        {"applicants": [OK, 5]},
        "applicants[1]",
        "applicants[1] must be an object with gre, gpa and rank",
    ),
    (
        "entry has a bad field",
        {"applicants": [OK, OK, OK, applicant(gpa=9)]},
        "applicants[3].gpa",
        f"applicants[3].gpa must be {GPA}, got 9",
    ),
    (
        "entry misses a field",
        {"applicants": [without("rank")]},
        "applicants[0].rank",
        f"applicants[0].rank is required: {RANK}",
    ),
    (
        "oversized batch",
        {"applicants": [OK] * 1001},
        "applicants",
        "applicants has 1001 entries; at most 1000 are allowed per request",
    ),
]

BAD_REQUESTS = BAD_APPLICANTS + BAD_BATCHES


def _ids(cases: list) -> list[str]:
    return [case[0] for case in cases]


def _v1(body: str, base64_encoded: bool = False) -> dict[str, Any]:
    return {
        "resource": "/admit",
        "path": "/admit",
        "httpMethod": "POST",
        "headers": {"Content-Type": "application/json"},
        "queryStringParameters": None,
        "requestContext": {"requestId": "apigw-1", "stage": "prod"},
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def _v2(body: str, base64_encoded: bool = False) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /admit",
        "rawPath": "/admit",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/admit"}, "requestId": "r"},
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PROXY_SHAPES: dict[str, Callable[[Any], dict[str, Any]]] = {
    "REST v1 body": lambda payload: _v1(json.dumps(payload)),
    "REST v1 base64 body": lambda payload: _v1(_b64(json.dumps(payload)), True),
    "HTTP API v2 body": lambda payload: _v2(json.dumps(payload)),
    "HTTP API v2 base64 body": lambda payload: _v2(_b64(json.dumps(payload)), True),
}


def _direct_error(event: Any, context: Any = None) -> dict[str, Any]:
    with pytest.raises(handler.BadRequest) as caught:
        handler.lambda_handler(event, context)
    return json.loads(str(caught.value))


def _assert_400(response: dict[str, Any], field: str, message: str) -> None:
    assert response == {
        "statusCode": 400,
        "headers": CORS,
        "body": response["body"],
        "isBase64Encoded": False,
    }
    assert json.loads(response["body"]) == {
        "error": "BadRequest",
        "message": message,
        "field": field,
    }


@pytest.mark.parametrize(
    ("name", "payload", "field", "message"), BAD_REQUESTS, ids=_ids(BAD_REQUESTS)
)
def test_direct_invocation_raises_bad_request_json(
    name: str, payload: Any, field: str, message: str
) -> None:
    assert _direct_error(payload, Ctx("req-42")) == {
        "errorType": "BadRequest",
        "httpStatus": 400,
        "request_id": "req-42",
        "message": message,
        "field": field,
    }


@pytest.mark.parametrize("shape", PROXY_SHAPES)
@pytest.mark.parametrize(
    ("name", "payload", "field", "message"), BAD_REQUESTS, ids=_ids(BAD_REQUESTS)
)
def test_proxy_event_answers_400_naming_the_field(
    shape: str, name: str, payload: Any, field: str, message: str
) -> None:
    _assert_400(handler.lambda_handler(PROXY_SHAPES[shape](payload), Ctx()), field, message)


NOT_AN_OBJECT = "must be a JSON object with gre, gpa and rank, or with applicants, got"


@pytest.mark.parametrize(
    ("event", "shown"),
    [([OK], "a list"), ("gre=800", "'gre=800'"), (None, "null"), (800, "800"), (True, "true")],
    ids=["list", "string", "null", "number", "boolean"],
)
def test_direct_event_that_is_not_an_object_is_a_bad_request(event: Any, shown: str) -> None:
    assert _direct_error(event) == {
        "errorType": "BadRequest",
        "httpStatus": 400,
        "request_id": None,
        "message": f"event {NOT_AN_OBJECT} {shown}",
        "field": "event",
    }


BAD_PROXY_BODIES = [
    (
        "not JSON",
        _v1("gre=800"),
        "body",
        'body must be JSON, e.g. {"gre": 800, "gpa": 4, "rank": 1}',
    ),
    (
        "truncated JSON",
        _v2('{"gre": 800'),
        "body",
        'body must be JSON, e.g. {"gre": 800, "gpa": 4, "rank": 1}',
    ),
    (
        "deeply nested JSON",
        _v1("[" * 100_000 + "]" * 100_000),
        "body",
        'body must be JSON, e.g. {"gre": 800, "gpa": 4, "rank": 1}',
    ),
    ("JSON list", _v1("[800, 4, 1]"), "body", f"body {NOT_AN_OBJECT} a list"),
    ("JSON NaN", _v1("NaN"), "body", f"body {NOT_AN_OBJECT} nan"),
    ("JSON null", _v2("null"), "body", f"body {NOT_AN_OBJECT} null"),
    (
        "invalid base64",
        _v1("not base64!", True),
        "body",
        "body is marked isBase64Encoded but is not base64 UTF-8",
    ),
    (
        "base64 of non-UTF-8 bytes",
        _v2(base64.b64encode(b"\xff\xfe").decode(), True),
        "body",
        "body is marked isBase64Encoded but is not base64 UTF-8",
    ),
    ("body is a number", {**_v1(""), "body": 5}, "body", "body must be a JSON string, got 5"),
    (
        "query string is not an object",
        {**_v1(""), "body": None, "queryStringParameters": "gre=800"},
        "queryStringParameters",
        "queryStringParameters must be an object",
    ),
    ("no body and no query", {**_v1(""), "body": None}, "gre", f"gre is required: {GRE}"),
    (
        "query string with a bad value",
        {
            **_v2(""),
            "requestContext": {"http": {"method": "GET"}},
            "body": None,
            "queryStringParameters": {"gre": "800", "gpa": "4", "rank": "x"},
        },
        "rank",
        f"rank must be {RANK}, got 'x'",
    ),
]


@pytest.mark.parametrize(
    ("name", "event", "field", "message"), BAD_PROXY_BODIES, ids=_ids(BAD_PROXY_BODIES)
)
def test_bad_proxy_body_answers_400(name: str, event: dict, field: str, message: str) -> None:
    _assert_400(handler.lambda_handler(event, Ctx()), field, message)


GOOD_VALUES = [
    ({"gre": 800, "gpa": 4, "rank": 1}, admission_requests.Applicant(800.0, 4.0, 1)),
    ({"gre": "800", "gpa": "4", "rank": "1"}, admission_requests.Applicant(800.0, 4.0, 1)),
    ({"gre": " 800 ", "gpa": "4.0", "rank": "1.0"}, admission_requests.Applicant(800.0, 4.0, 1)),
    ({"gre": "8e2", "gpa": ".5", "rank": 1.0}, admission_requests.Applicant(800.0, 0.5, 1)),
    ({"gre": "+200", "gpa": 0, "rank": "4"}, admission_requests.Applicant(200.0, 0.0, 4)),
    (
        {"gre": 650.5, "gpa": 3.25, "rank": 3, "name": "ignored"},
        admission_requests.Applicant(650.5, 3.25, 3),
    ),
]


@pytest.mark.parametrize(("payload", "expected"), GOOD_VALUES)
def test_numbers_and_numeric_strings_are_accepted(
    payload: dict[str, Any], expected: admission_requests.Applicant
) -> None:
    assert admission_requests.parse_request(payload, "event") == admission_requests.Request(
        [expected], batch=False
    )


def test_batch_at_the_default_limit_is_accepted() -> None:
    request = admission_requests.parse_request({"applicants": [OK] * 1000}, "event")
    assert request.batch is True
    assert len(request.applicants) == 1000


def test_max_batch_environment_variable_lowers_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_BATCH", "3")
    assert len(admission_requests.parse_request({"applicants": [OK] * 3}, "event").applicants) == 3
    assert _direct_error({"applicants": [OK] * 4}) == {
        "errorType": "BadRequest",
        "httpStatus": 400,
        "request_id": None,
        "message": "applicants has 4 entries; at most 3 are allowed per request",
        "field": "applicants",
    }


@pytest.mark.parametrize("value", ["many", "0", "-5", "2.5"])
def test_invalid_max_batch_is_a_server_error_not_a_client_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MAX_BATCH", value)
    message = f"environment variable MAX_BATCH={value!r} is not a positive integer"
    with pytest.raises(handler.InternalServerError) as caught:
        handler.lambda_handler({"applicants": [OK]}, Ctx("req-7"))
    assert json.loads(str(caught.value)) == caller_error("InternalServerError", "req-7")
    assert caught.value.message == message
    response = handler.lambda_handler(_v1(json.dumps({"applicants": [OK]})), Ctx("req-8"))
    assert response["statusCode"] == 500
    assert json.loads(response["body"])["error"] == "InternalServerError"


def test_request_id_is_null_without_a_context_and_with_a_context_lacking_it() -> None:
    assert _direct_error({})["request_id"] is None
    assert _direct_error({}, object())["request_id"] is None


def test_library_functions_validate_like_the_handler() -> None:
    with pytest.raises(handler.BadRequest) as caught:
        handler.pred_admit("800", "4", "1.5")
    assert (caught.value.field, caught.value.message) == ("rank", f"rank must be {RANK}, got 1.5")
    with pytest.raises(handler.BadRequest) as caught:
        handler.admit_probabilities([OK, {"gre": 800, "gpa": 5, "rank": 1}])
    assert caught.value.field == "applicants[1].gpa"
    with pytest.raises(handler.BadRequest) as caught:
        handler.admit_probabilities("gre=800")  # type: ignore[arg-type]
    assert caught.value.field == "applicants"
    assert handler.admit_probabilities([]) == []


def test_bad_request_is_valid_json_for_lambda_error_output() -> None:
    error = handler.BadRequest("gre is required", "gre", request_id="abc")
    assert str(error) == (
        '{"errorType": "BadRequest", "httpStatus": 400, "request_id": "abc", '
        '"message": "gre is required", "field": "gre"}'
    )
    assert error.message == "gre is required"


class _Fault(Exception):
    """awslambdaric's FaultException, as its runtime client reads it: type, message, trace."""

    def __init__(self, exception_type: str, msg: str, trace: Any = None) -> None:
        super().__init__(msg)
        self.exception_type, self.msg, self.trace = exception_type, msg, trace


def test_under_lambdas_runtime_client_a_direct_error_shows_no_stack_frame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The runtime client reports a FaultException's own trace (here none) where it reports
    the frames of any other exception (awslambdaric's bootstrap.handle_event_request); the
    clean-host test checks the real client's report (lambda_events.json, no_stack_trace)."""
    ric = types.ModuleType("awslambdaric.lambda_runtime_exception")
    ric.FaultException = _Fault  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, ric.__name__, ric)
    with pytest.raises(_Fault) as caught:
        handler.lambda_handler(without("rank"), Ctx("req-9"))
    assert caught.value.exception_type == "BadRequest"
    assert caught.value.trace == []
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert json.loads(caught.value.msg)["field"] == "rank"
    monkeypatch.setenv("MAX_BATCH", "many")  # a server error: its cause stays in the log
    with pytest.raises(_Fault) as caught:
        handler.lambda_handler({"applicants": [OK]}, Ctx("req-10"))
    assert caught.value.exception_type == "InternalServerError"
    assert "MAX_BATCH" not in caught.value.msg and caught.value.trace == []
