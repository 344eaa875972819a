"""API Gateway proxy events: REST API (v1, ``httpMethod``) and HTTP API (v2,
``requestContext.http``). The request is the JSON body (base64 when
``isBase64Encoded``) or, without a body, the query string; the answer is an HTTP
response with CORS headers whose body is JSON.
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
        raise BadRequest(
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


def cors_headers() -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": os.environ.get("CORS_ALLOW_ORIGIN") or "*",
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Access-Control-Allow-Headers": CORS_ALLOW_HEADERS,
        "Content-Type": "application/json",
    }


def http_response(status: int, payload: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": cors_headers(),
        "body": "" if payload is None else json.dumps(payload, allow_nan=False),
        "isBase64Encoded": False,
    }


def error_body(err: HandlerError) -> dict[str, Any]:
    """A client error in full; a server error by its request id only (the log has the cause)."""
    if err.http_status < 500:
        return {"error": err.error_type, "message": err.message, "field": err.field}
    return {"error": err.error_type, "message": err.public_message, "request_id": err.request_id}
