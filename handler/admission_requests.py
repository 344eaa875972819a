"""The requests the handler answers: one applicant or a batch, validated field by field.

Each applicant has gre (200-800), gpa (0-4) and rank (1, 2, 3 or 4), as JSON numbers or
numeric strings; a BadRequest names the offending field and says what was expected.
"""

import json
import math
import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

from admission_errors import BadRequest, InternalServerError

# Most applicants per batch request, unless the environment variable MAX_BATCH says.
MAX_BATCH = 1000

GRE_RANGE = (200.0, 800.0)
GPA_RANGE = (0.0, 4.0)
RANKS = (1, 2, 3, 4)
FIELD_EXPECTATIONS = {
    "gre": "a number between 200 and 800",
    "gpa": "a number between 0 and 4",
    "rank": "one of 1, 2, 3, 4",
}

# Plain decimal notation only: float() would also take "nan", "1_000" or "٨٠٠".
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


# Named tuples, not dataclasses: importing dataclasses imports inspect, ast, dis and
# tokenize, about 9 ms of every cold start (see admission_r_session.DEFERRED_MODULES).
class Applicant(NamedTuple):
    gre: float
    gpa: float
    rank: int


class Request(NamedTuple):
    applicants: list[Applicant]
    batch: bool


def describe_value(value: Any) -> str:
    """A short rendering of a client value for an error message."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_number(value: Any) -> Optional[float]:
    """The finite number ``value`` denotes (a number or a numeric string), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:
            return None
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        return None
    return number if math.isfinite(number) else None


def _field_value(data: Mapping[str, Any], name: str, prefix: str) -> float:
    field = prefix + name
    expected = FIELD_EXPECTATIONS[name]
    if name not in data:
        raise BadRequest(f"{field} is required: {expected}", field)
    value = data[name]
    number = _to_number(value)
    if number is None:
        raise BadRequest(f"{field} must be {expected}, got {describe_value(value)}", field)
    return number


def _check_range(number: float, bounds: tuple[float, float], name: str, prefix: str) -> float:
    low, high = bounds
    if not low <= number <= high:
        field = prefix + name
        raise BadRequest(f"{field} must be {FIELD_EXPECTATIONS[name]}, got {number:g}", field)
    return number


def _check_rank(number: float, prefix: str) -> int:
    if number not in RANKS:  # 1.0 == 1; 1.5 and 5 are not ranks
        field = prefix + "rank"
        raise BadRequest(f"{field} must be {FIELD_EXPECTATIONS['rank']}, got {number:g}", field)
    return int(number)


def parse_applicant(data: Any, where: str = "") -> Applicant:
    """Validate one applicant; ``where`` (e.g. ``applicants[3]``) prefixes field names."""
    prefix = f"{where}." if where else ""
    if not isinstance(data, Mapping):
        name = where or "event"
        raise BadRequest(f"{name} must be an object with gre, gpa and rank", name)
    return Applicant(
        gre=_check_range(_field_value(data, "gre", prefix), GRE_RANGE, "gre", prefix),
        gpa=_check_range(_field_value(data, "gpa", prefix), GPA_RANGE, "gpa", prefix),
        rank=_check_rank(_field_value(data, "rank", prefix), prefix),
    )


def parse_applicants(items: Any, limit: Optional[int] = None) -> list[Applicant]:
    """Validate a batch: a non-empty list of at most ``limit`` applicants."""
    if not isinstance(items, (list, tuple)):
        raise BadRequest(
            "applicants must be a list of objects with gre, gpa and rank, "
            f"got {describe_value(items)}",
            "applicants",
        )
    if not items:
        raise BadRequest("applicants must contain at least one applicant", "applicants")
    if limit is not None and len(items) > limit:
        raise BadRequest(
            f"applicants has {len(items)} entries; at most {limit} are allowed per request",
            "applicants",
        )
    return [parse_applicant(item, f"applicants[{index}]") for index, item in enumerate(items)]


def max_batch() -> int:
    """The batch limit: env MAX_BATCH if set, else ``MAX_BATCH``."""
    raw = os.environ.get("MAX_BATCH", "").strip()
    if not raw:
        return MAX_BATCH
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InternalServerError(
            f"environment variable MAX_BATCH={raw!r} is not a positive integer"
        )
    return value


def parse_request(payload: Any, name: str) -> Request:
    """A single applicant ``{gre, gpa, rank}`` or a batch ``{"applicants": [...]}``."""
    if not isinstance(payload, Mapping):
        raise BadRequest(
            f"{name} must be a JSON object with gre, gpa and rank, or with applicants, "
            f"got {describe_value(payload)}",
            name,
        )
    if "applicants" in payload:
        return Request(parse_applicants(payload["applicants"], max_batch()), batch=True)
    return Request([parse_applicant(payload)], batch=False)
