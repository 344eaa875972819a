"""Property-based tests: garbage never crashes the handler, valid input matches the math."""

import base64
import json
import math
from typing import Any

import pytest
from handler_support import PUBLISHED_COEFFICIENTS, Ctx, handler
from hypothesis import HealthCheck, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

# Rounded as published; each coefficient is off by at most 5e-7, so the linear predictor
# by at most 5e-7 * (1 + 800 + 4 + 1) and the probability by a quarter of that.
PUBLISHED_TOLERANCE = 0.25 * 5e-7 * (1 + 800 + 4 + 1)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Values that are sometimes valid, often nearly so.
field_values = (
    json_values
    | st.integers(min_value=-5, max_value=1000)
    | st.floats(min_value=-1, max_value=900)
    | st.sampled_from(["800", "4", "1", "1.0", " 3 ", "1e3", "nan", "-inf", "", "0x10", "4.5"])
)
applicant_like = st.dictionaries(
    st.sampled_from(["gre", "gpa", "rank", "name"]), field_values, max_size=4
)
valid_applicants = st.fixed_dictionaries(
    {
        "gre": st.floats(min_value=200, max_value=800),
        "gpa": st.floats(min_value=0, max_value=4),
        "rank": st.sampled_from([1, 2, 3, 4]),
    }
)
near_valid_applicants = st.fixed_dictionaries(
    {
        "gre": st.integers(min_value=150, max_value=850) | st.just("700"),
        "gpa": st.floats(min_value=-0.5, max_value=4.5) | st.just("3.5"),
        "rank": st.sampled_from([0, 1, 2, 3, 4, 5, 2.5, "3", "4.0"]),
    }
)
events = (
    json_values
    | valid_applicants
    | near_valid_applicants
    | applicant_like
    | st.fixed_dictionaries(
        {"applicants": st.lists(valid_applicants | near_valid_applicants | json_values, max_size=5)}
    )
    | st.fixed_dictionaries({"applicants": json_values})
)


def _body_text(payload: Any, encoding: str) -> Any:
    if encoding == "json":
        return json.dumps(payload)
    if encoding == "raw":
        return payload  # whatever type it is
    return base64.b64encode(json.dumps(payload).encode()).decode()


@st.composite
def proxy_events(draw: st.DrawFn) -> dict[str, Any]:
    method = draw(st.sampled_from(["GET", "POST", "OPTIONS", "PUT", "get", 7, None]))
    encoding = draw(st.sampled_from(["json", "raw", "base64"]))
    body = draw(st.none() | st.text(max_size=30) | events.map(lambda p: _body_text(p, encoding)))
    query = draw(
        st.none() | json_values | st.dictionaries(st.text(max_size=5), st.text(max_size=5))
    )
    flag = draw(st.sampled_from([True, False, None, "true"]))
    if draw(st.booleans()):
        event = {"httpMethod": method, "body": body, "isBase64Encoded": flag}
    else:
        context = draw(st.sampled_from([{"http": {"method": method}}, {"http": method}]))
        event = {"version": "2.0", "requestContext": context, "body": body, "isBase64Encoded": flag}
    event["queryStringParameters"] = query
    return event


@SETTINGS
@given(event=events)
def test_direct_garbage_raises_only_bad_request(event: Any) -> None:
    try:
        answer = handler.lambda_handler(event, Ctx())
    except handler.BadRequest as error:
        hypothesis_event("BadRequest")
        reported = json.loads(str(error))
        assert reported["httpStatus"] == 400
        assert reported["errorType"] == "BadRequest"
        assert isinstance(reported["field"], str)
        return
    hypothesis_event("answered")
    if "results" in answer:
        assert all(0 < r["probability"] < 1 for r in answer["results"])
    else:
        assert set(answer) == {"result", "probability"}


@SETTINGS
@given(event=proxy_events())
def test_proxy_garbage_never_answers_500(event: dict[str, Any]) -> None:
    response = handler.lambda_handler(event, Ctx())
    hypothesis_event(f"status {response['statusCode']}")
    assert response["statusCode"] in (200, 204, 400)
    if response["statusCode"] == 400:
        body = json.loads(response["body"])
        assert body["error"] == "BadRequest"
        assert isinstance(body["field"], str)
    elif response["statusCode"] == 200:
        json.loads(response["body"])


def _logistic(coefficients: dict[str, float], gre: float, gpa: float, rank: int) -> float:
    eta = coefficients["(Intercept)"] + coefficients["gre"] * gre + coefficients["gpa"] * gpa
    if rank > 1:
        eta += coefficients[f"rank{rank}"]
    return 1.0 / (1.0 + math.exp(-eta))


def _spelled(value: float, as_text: bool) -> Any:
    return repr(value) if as_text else value


@SETTINGS
@given(applicant=valid_applicants, as_text=st.booleans())
def test_probability_equals_the_logistic_of_the_coefficients(
    model_coefficients: dict[str, float], applicant: dict[str, Any], as_text: bool
) -> None:
    gre, gpa, rank = applicant["gre"], applicant["gpa"], applicant["rank"]
    probability = handler.admit_probability(
        _spelled(gre, as_text), _spelled(gpa, as_text), _spelled(rank, as_text)
    )
    assert 0 < probability < 1
    assert probability == pytest.approx(_logistic(model_coefficients, gre, gpa, rank), abs=1e-6)
    published = _logistic(PUBLISHED_COEFFICIENTS, gre, gpa, rank)
    assert probability == pytest.approx(published, abs=PUBLISHED_TOLERANCE)


@SETTINGS
@given(applicants=st.lists(valid_applicants, min_size=1, max_size=50))
def test_batch_equals_one_by_one(applicants: list[dict[str, Any]]) -> None:
    singles = [handler.admit_probability(a["gre"], a["gpa"], a["rank"]) for a in applicants]
    assert handler.admit_probabilities(applicants) == singles
    results = handler.lambda_handler({"applicants": applicants}, Ctx())["results"]
    assert results == [{"result": p > 0.5, "probability": p} for p in singles]
