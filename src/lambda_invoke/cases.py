"""The cases of an events file (checked when read) and the judging of what the client posted.

Events file: a JSON list of ``{"name": ..., "event": ..., "expect": ...}`` where expect is
    {"kind": "response", "status_code": 200, "body_json_subset": {...}, "abs_tol": 1e-4}
    {"kind": "response", "json_subset": {...}, "abs_tol": 1e-4}
    {"kind": "error", "error_type": "BadRequest", "no_stack_trace": true}
``status_code`` and ``body_json_subset`` read an API Gateway proxy answer (its body is a
JSON string); ``json_subset`` reads the answer itself; numbers match within ``abs_tol``
(default 0: exactly); a subset's objects may hold more keys, its lists match item by item.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

RESPONSE_CHECKS = ("status_code", "body_json_subset", "json_subset")
EXPECT_KEYS = {
    "response": {"kind", "abs_tol", *RESPONSE_CHECKS},
    "error": {"kind", "error_type", "no_stack_trace"},
}


# ------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    name: str
    event: Any
    expect: dict[str, Any]


def _check_expect(name: str, expect: Any) -> dict[str, Any]:
    if not isinstance(expect, dict) or expect.get("kind") not in EXPECT_KEYS:
        raise UsageError(f"case {name!r}: expect must be an object with kind response or error")
    kind = expect["kind"]
    unknown = sorted(set(expect) - EXPECT_KEYS[kind])
    if unknown:
        raise UsageError(f"case {name!r}: unknown key(s) for kind {kind}: {', '.join(unknown)}")
    if kind == "error" and not isinstance(expect.get("error_type"), str):
        raise UsageError(f"case {name!r}: an error expectation needs error_type (a string)")
    if kind == "response" and not any(check in expect for check in RESPONSE_CHECKS):
        raise UsageError(f"case {name!r}: a response expectation needs one of {RESPONSE_CHECKS}")
    status = expect.get("status_code")
    if status is not None and (isinstance(status, bool) or not isinstance(status, int)):
        raise UsageError(f"case {name!r}: status_code must be an integer")
    tol = expect.get("abs_tol", 0)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise UsageError(f"case {name!r}: abs_tol must be a number >= 0")
    return expect


def parse_cases(data: Any) -> list[Case]:
    """The cases of an events file's JSON, checked; UsageError names the bad case."""
    if not isinstance(data, list) or not data:
        raise UsageError("the events file must hold a non-empty JSON list of cases")
    cases: list[Case] = []
    for index, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise UsageError(f"case #{index}: each case needs a name (a non-empty string)")
        name = item["name"]
        if any(case.name == name for case in cases):
            raise UsageError(f"case {name!r}: the name is used twice")
        unknown = sorted(set(item) - {"name", "event", "expect"})
        if unknown or "event" not in item:
            raise UsageError(f"case {name!r}: a case has exactly name, event and expect")
        cases.append(Case(name, item["event"], _check_expect(name, item.get("expect"))))
    return cases


def without_keys(expected: Any, keys: frozenset[str]) -> Any:
    """``expected`` with every object key in ``keys`` dropped, at any depth."""
    if isinstance(expected, dict):
        return {k: without_keys(v, keys) for k, v in expected.items() if k not in keys}
    if isinstance(expected, list):
        return [without_keys(item, keys) for item in expected]
    return expected


def ignoring(cases: list[Case], keys: Sequence[str]) -> list[Case]:
    """The cases with ``keys`` left out of what their answers are compared with (e.g. the
    probabilities one model gives, when another model is served)."""
    if not keys:
        return cases
    drop = frozenset(keys)
    return [
        Case(
            case.name,
            case.event,
            {
                **case.expect,
                **{
                    check: without_keys(case.expect[check], drop)
                    for check in ("json_subset", "body_json_subset")
                    if check in case.expect
                },
            },
        )
        for case in cases
    ]


def load_cases(path: str) -> list[Case]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as exc:
        raise UsageError(f"cannot read the events file: {exc}") from exc
    except ValueError as exc:
        raise UsageError(f"the events file {path} is not JSON: {exc}") from exc
    return parse_cases(data)


# --------------------------------------------------------------------- expectations


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 200 else text[:197] + "..."


def subset_mismatches(expected: Any, actual: Any, where: str, tol: float) -> list[str]:
    """How ``actual`` fails to contain ``expected`` (numbers within ``tol``); [] if it does."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {_show(actual)}"]
        problems: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}.{key}: missing")
            else:
                problems += subset_mismatches(value, actual[key], f"{where}.{key}", tol)
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected a list of {len(expected)}, got {_show(actual)}"]
        problems = []
        for index, (want, got) in enumerate(zip(expected, actual)):
            problems += subset_mismatches(want, got, f"{where}[{index}]", tol)
        return problems
    if _is_number(expected):
        if _is_number(actual) and math.isclose(actual, expected, rel_tol=0.0, abs_tol=tol):
            return []
        within = f" (abs_tol {tol:g})" if tol else ""
        return [f"{where}: expected {_show(expected)}{within}, got {_show(actual)}"]
    if type(actual) is type(expected) and actual == expected:
        return []
    return [f"{where}: expected {_show(expected)}, got {_show(actual)}"]


def _error_summary(posted: Any) -> str:
    if isinstance(posted, dict):
        return f"{posted.get('errorType')}: {posted.get('errorMessage')}"
    return _show(posted)


def _response_problems(expect: dict[str, Any], posted: Any) -> list[str]:
    tol = float(expect.get("abs_tol", 0))
    problems: list[str] = []
    if "status_code" in expect:
        status = posted.get("statusCode") if isinstance(posted, dict) else None
        if not _is_number(status) or status != expect["status_code"]:
            problems.append(f"statusCode: expected {expect['status_code']}, got {_show(status)}")
    if "json_subset" in expect:
        problems += subset_mismatches(expect["json_subset"], posted, "$", tol)
    if "body_json_subset" in expect:
        body = posted.get("body") if isinstance(posted, dict) else None
        try:
            parsed = json.loads(body) if isinstance(body, str) else None
        except ValueError:
            body = None
        if not isinstance(body, str):
            problems.append(f"body: expected a string of JSON, got {_show(posted)}")
        else:
            problems += subset_mismatches(expect["body_json_subset"], parsed, "body", tol)
    return problems


def judge(expect: dict[str, Any], kind: str, body: bytes) -> str | None:
    """Why a posted ``kind`` ("response"/"error") and ``body`` fail ``expect``; None if not."""
    try:
        posted = json.loads(body)
    except ValueError:
        return f"the client posted a {kind} that is not JSON: {body[:200]!r}"
    if kind != expect["kind"]:
        if kind == "error":
            return f"expected a response, the client posted an error: {_error_summary(posted)}"
        want = expect["error_type"]
        return f"expected error {want}, the client posted a response: {_show(posted)}"
    if kind == "error":
        got = posted.get("errorType") if isinstance(posted, dict) else None
        if got != expect["error_type"]:
            return f"expected error {expect['error_type']}, got {_error_summary(posted)}"
        if expect.get("no_stack_trace") and posted.get("stackTrace"):
            frames = posted["stackTrace"]
            return f"expected no stack frames, the caller is shown {len(frames)}: {_show(frames)}"
        return None
    problems = _response_problems(expect, posted)
    return "; ".join(problems) if problems else None
