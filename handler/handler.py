"""AWS Lambda handler: probability of graduate admission from an R logistic regression.

The model is any glm or lm on gre, gpa and rank: ``model/train.R``'s
``glm(admit ~ gre + gpa + rank, family = binomial)``, the 2017 procedure's model (rank a
factor in its data), ``factor(rank)`` in the formula, a numeric rank, interactions,
splines, other links. Predictions run in an embedded R through rpy2's low-level
``rpy2.rinterface`` API. R and the model are loaded once per process, at the first
prediction, so importing this module (e.g. to unit-test input validation) is cheap.
Predictions are bitwise those of R's ``predict(model, newdata, type = "response")`` for
newdata built the way the model expects.

This module is the entry point (``handler.lambda_handler``, ``python3 handler.py
check-model MODEL.rds``) and the Python functions ``pred_admit``, ``admit_probability``
and ``admit_probabilities``. Its sibling modules, shipped next to it:

- ``admission_errors``: the errors a caller sees, and the JSON log lines;
- ``admission_requests``: applicants and batches, validated;
- ``admission_events``: API Gateway proxy events and HTTP responses;
- ``admission_r_session``: the embedded R, started once per process;
- ``admission_predictor``: a model loaded into R and how it predicts (admission_model.R);
- ``admission_model_source``: where the model comes from (local, bundled, S3 cache).

A server error tells the caller only its request id: host paths, bucket names and causes
go to the log line of the invocation. See README.md for the accepted events, the
responses and the error contract.
"""

import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from admission_errors import (
    BadRequest,
    HandlerError,
    InternalServerError,
    ModelUnavailable,
    log_line,
)
from admission_events import (
    error_body,
    http_method,
    http_response,
    is_proxy_event,
    proxy_payload,
    request_origin,
)
from admission_model_source import get_model, reset_model_cache
from admission_requests import (
    Applicant,
    Request,
    parse_applicant,
    parse_applicants,
    parse_request,
)

# What callers use: the Lambda entry point, the Python functions, the errors they raise,
# and the model (loaded at the first call; reset_model_cache forgets it).
__all__ = [
    "BadRequest",
    "HandlerError",
    "InternalServerError",
    "ModelUnavailable",
    "admit_probabilities",
    "admit_probability",
    "check_model",
    "get_model",
    "lambda_handler",
    "main",
    "pred_admit",
    "reset_model_cache",
]


# ------------------------------------------------------------------------ predictions


def admit_probabilities(applicants: Sequence[Mapping[str, Any]]) -> list[float]:
    """P(admit) for each applicant (``{"gre", "gpa", "rank"}``), in one R call."""
    if isinstance(applicants, (list, tuple)) and not applicants:
        return []
    return get_model().probabilities(parse_applicants(applicants))


def admit_probability(gre: Any, gpa: Any, rank: Any) -> float:
    """P(admit) for one applicant; numbers or numeric strings."""
    applicant = parse_applicant({"gre": gre, "gpa": gpa, "rank": rank})
    return get_model().probabilities([applicant], batch=False)[0]


def pred_admit(gre: Any, gpa: Any, rank: Any) -> bool:
    """True when the applicant is more likely admitted than not (P > 0.5)."""
    return admit_probability(gre, gpa, rank) > 0.5


def _result(probability: float) -> dict[str, Any]:
    return {"result": probability > 0.5, "probability": probability}


def _answer(request: Request) -> dict[str, Any]:
    probabilities = get_model().probabilities(request.applicants, request.batch)
    if request.batch:
        return {"results": [_result(p) for p in probabilities]}
    return _result(probabilities[0])


# ---------------------------------------------------------------------- Lambda events


# The keys of an invocation's log line, in order.
_LOG_FIELDS = (
    "request_id",
    "transport",
    "kind",
    "count",
    "outcome",
    "status",
    "error_type",
    "field",
    "error",
)


class _Invocation:
    """What one invocation logs: no event bodies, no secrets. (A plain class, not a
    dataclass: importing dataclasses imports inspect, ast, dis and tokenize, about 9 ms
    of every cold start; see admission_r_session.DEFERRED_MODULES.)"""

    __slots__ = _LOG_FIELDS

    def __init__(self, request_id: Optional[str], transport: str) -> None:
        self.request_id = request_id
        self.transport = transport
        self.kind = ""
        self.count = 0
        self.outcome = "ok"
        self.status = 200
        self.error_type: Optional[str] = None
        self.field: Optional[str] = None
        self.error: Optional[str] = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _LOG_FIELDS}

    def record(self, request: Request) -> None:
        self.kind = "batch" if request.batch else self.transport
        self.count = len(request.applicants)

    def fail(self, err: HandlerError) -> None:
        self.outcome = "client_error" if err.http_status < 500 else "server_error"
        self.status = err.http_status
        self.error_type = err.error_type
        self.field = err.field
        if err.http_status >= 500:
            self.error = err.message


def _log_invocation(invocation: _Invocation, started: float) -> None:
    record = invocation.as_dict()
    record["kind"] = invocation.kind or invocation.transport
    record["latency_ms"] = round((time.perf_counter() - started) * 1000.0, 3)
    optional = ("error_type", "field", "error")
    log_line({k: v for k, v in record.items() if v is not None or k not in optional})


def _as_handler_error(exc: Exception) -> HandlerError:
    if isinstance(exc, HandlerError):
        return exc
    traceback.print_exc(file=sys.stderr)
    return InternalServerError(f"unexpected {type(exc).__name__}: {exc}")


def _handle_proxy(event: Mapping[str, Any], invocation: _Invocation) -> dict[str, Any]:
    origin = request_origin(event)
    if http_method(event) == "OPTIONS":
        invocation.status = 204
        return http_response(204, None, origin)
    try:
        request = parse_request(proxy_payload(event), "body")
        invocation.record(request)
        return http_response(200, _answer(request), origin)
    except Exception as exc:
        err = _as_handler_error(exc)
        err.request_id = invocation.request_id
        invocation.fail(err)
        return http_response(err.http_status, error_body(err), origin)


def _public_fault(err: HandlerError) -> Exception:
    """What a direct invocation raises to Lambda's runtime client: its FaultException when
    the handler runs under it (the managed Python runtimes and the clean-host test load
    awslambdaric before the handler), which reports errorType and errorMessage with an empty
    stackTrace; a caller sees no frame, path or line of the handler. Elsewhere the error."""
    ric = sys.modules.get("awslambdaric.lambda_runtime_exception")
    fault = getattr(ric, "FaultException", None)
    if fault is None:
        return err
    return fault(err.error_type, str(err), [])


def _handle_direct(event: Any, invocation: _Invocation) -> dict[str, Any]:
    try:
        request = parse_request(event, "event")
        invocation.record(request)
        return _answer(request)
    except Exception as exc:
        err = _as_handler_error(exc)
        err.request_id = invocation.request_id
        invocation.fail(err)
        public = _public_fault(err)
        if public is exc:
            raise
        if public is err:
            raise err from exc
        raise public from None  # the runtime client's fault: no frames; the log has the cause


def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """Answer a direct invocation, a batch, or an API Gateway (v1/v2) proxy event."""
    started = time.perf_counter()
    request_id = getattr(context, "aws_request_id", None)
    proxy = is_proxy_event(event)
    invocation = _Invocation(
        request_id=request_id if isinstance(request_id, str) else None,
        transport="proxy" if proxy else "direct",
    )
    try:
        if proxy:
            return _handle_proxy(event, invocation)
        return _handle_direct(event, invocation)
    finally:
        _log_invocation(invocation, started)


# ----------------------------------------------------------------------- command line


def check_model(path: str) -> dict[str, Any]:
    """Load the model at ``path`` as a request would, and say how it predicts."""
    os.environ["MODEL_PATH"] = path
    reset_model_cache()
    model = get_model()
    started = time.perf_counter()
    model.probabilities([Applicant(gre=800.0, gpa=4.0, rank=model.ranks[0])])
    warm_ms = (time.perf_counter() - started) * 1000.0
    return {"path": path, **model.describe(), "warm_call_ms": round(warm_ms, 4)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python3 handler.py check-model PATH``: what a release's build host runs before
    publishing. Prints how the model predicts as JSON, or the load-time error (exit 1)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "check-model":
        sys.stderr.write("usage: python3 handler.py check-model MODEL.rds\n")
        return 2
    try:
        with contextlib.redirect_stdout(sys.stderr):  # log lines; stdout is the report
            report = check_model(args[1])
    except HandlerError as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
