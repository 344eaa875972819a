"""API Gateway proxy events: REST API (v1, ``httpMethod``) and HTTP API (v2,
``requestContext.http``). The request is the JSON body (base64 when
``isBase64Encoded``) or, without a body, the query string; the answer is an HTTP
response whose body is JSON, with CORS headers only for a request from one of the
origins CORS_ALLOW_ORIGINS names (comma-separated; none by default, ``*`` never).
"""

import json
import os
from collections.abc import Mapping
from typing import Any, Optional

from admission_errors import BadRequest, HandlerError
from admission_requests import describe_value

CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_ALLOW_HEADERS = "Content-Type, Authorization, X-Api-Key, X-Amz-Date, X-Amz-Security-Token"


def is_proxy_event(event: Any) -> bool:
    """API Gateway REST (v1, ``httpMethod``) or HTTP API (v2, ``requestContext.http``)."""
    if not isinstance(event, Mapping):
        return False
    context = event.get("requestContext")
    return "httpMethod" in event or (isinstance(context, Mapping) and "http" in context)


def http_method(event: Mapping[str, Any]) -> str:
    """The request's HTTP method, upper case; empty when the event names none."""
    method = event.get("httpMethod")
    if method is None:
        context = event.get("requestContext")
        http = context.get("http") if isinstance(context, Mapping) else None
        method = http.get("method") if isinstance(http, Mapping) else None
    return method.upper() if isinstance(method, str) else ""


def _decode_body(body: str, base64_encoded: bool) -> Any:
    if base64_encoded:
        import base64  # here, not at the top: most events are not base64 (cold start)

        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise BadRequest(
                "body is marked isBase64Encoded but is not base64 UTF-8", "body"
            ) from exc
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        # The braces are the JSON example, not a format string.
        raise BadRequest(  # pylint: disable=raising-format-tuple
            'body must be JSON, e.g. {"gre": 800, "gpa": 4, "rank": 1}', "body"
        ) from exc


def proxy_payload(event: Mapping[str, Any]) -> Any:
    """The request from the body, or from the query string when there is no body."""
    body = event.get("body")
    if body is None or body == "":
        params = event.get("queryStringParameters")
        if params is None:
            return {}
        if not isinstance(params, Mapping):
            raise BadRequest("queryStringParameters must be an object", "queryStringParameters")
        return params
    if isinstance(body, Mapping):  # test consoles sometimes pass the body parsed
        return body
    if not isinstance(body, str):
        raise BadRequest(f"body must be a JSON string, got {describe_value(body)}", "body")
    return _decode_body(body, event.get("isBase64Encoded") is True)


def request_origin(event: Mapping[str, Any]) -> Optional[str]:
    """The request's Origin header (any case), or None."""
    headers = event.get("headers")
    if not isinstance(headers, Mapping):
        return None
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "origin" and isinstance(value, str):
            return value
    return None


def allowed_origins() -> list[str]:
    """CORS_ALLOW_ORIGINS: the origins whose pages may call the function (``*`` is ignored:
    the deploy refuses it for a function URL, and the handler never answers it)."""
    raw = os.environ.get("CORS_ALLOW_ORIGINS", "")
    origins = (part.strip() for part in raw.split(","))
    return [origin for origin in origins if origin not in ("", "*")]


def cors_headers(origin: Optional[str] = None) -> dict[str, str]:
    """The answer's headers: CORS ones when ``origin`` is an allowed origin."""
    headers = {"Content-Type": "application/json"}
    allowed = allowed_origins()
    if allowed:
        headers["Vary"] = "Origin"  # the answer differs by origin: caches must know
    if origin is not None and origin in allowed:
        headers.update({
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
            "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        })
    return headers


def http_response(
    status: int, payload: Optional[Mapping[str, Any]], origin: Optional[str] = None
) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": cors_headers(origin),
        "body": "" if payload is None else json.dumps(payload, allow_nan=False),
        "isBase64Encoded": False,
    }


def error_body(err: HandlerError) -> dict[str, Any]:
    """A client error in full; a server error by its request id only (the log has the cause)."""
    if err.http_status < 500:
        return {"error": err.error_type, "message": err.message, "field": err.field}
    return {"error": err.error_type, "message": err.public_message, "request_id": err.request_id}
