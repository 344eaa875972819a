"""The event mapping: an HTTP request as an API Gateway HTTP API (payload format 2.0)
event, and the function's proxy answer as the HTTP answer API Gateway makes of it."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .common import li

TEXT_TYPES = re.compile(r"^(text/|application/(json|.*\+json|xml|.*\+xml|x-www-form-urlencoded))")


def http_api_event(
    method: str,
    target: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    source_ip: str,
    request_id: str,
    domain: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload format 2.0) event of one request, route $default.

    Header names are lower-cased and repeated headers joined with commas; cookies move to
    ``cookies``; repeated query parameters are joined with commas; a body that is not
    UTF-8 text of a text type is base64-encoded (``isBase64Encoded``); no body, no key.
    """
    now = time.time() if now is None else now
    parts = urlsplit(target)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [c.strip() for c in value.split(";") if c.strip()]
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    query: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        query[key] = f"{query[key]},{value}" if key in query else value
    path = parts.path or "/"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.query,
        "headers": joined,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": li.ACCOUNT_ID,
        "apiId": "local",
        "domainName": domain,
        "domainPrefix": domain.split(".")[0],
        "http": {
            "method": method.upper(),
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if body:
        text = _as_text(body, joined.get("content-type", ""))
        event["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def _as_text(body: bytes, content_type: str) -> str | None:
    if content_type and not TEXT_TYPES.match(content_type.lower()):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json_answer(status: int, payload: dict[str, Any]) -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Answer(status, [("Content-Type", "application/json")], body)


def proxy_answer(kind: str, posted: bytes, request_id: str) -> Answer:
    """The HTTP answer API Gateway (payload 2.0) makes of what the function posted.

    An error posted to ``/error`` answers 502 naming only its errorType. A JSON object with
    ``statusCode`` is a proxy answer (headers, multiValueHeaders, cookies, body,
    isBase64Encoded); any other JSON is the body of a 200 application/json answer.
    """
    try:
        result = json.loads(posted)
    except ValueError:
        result = None
        if kind == "response":
            return _json_answer(502, {"message": "the function's answer is not JSON",
                                      "request_id": request_id})
    if kind == "error":
        error_type = result.get("errorType") if isinstance(result, dict) else None
        return _json_answer(502, {"message": "the function failed", "error_type": error_type,
                                  "request_id": request_id})
    if not (isinstance(result, dict) and "statusCode" in result):
        return Answer(200, [("Content-Type", "application/json")], posted)
    status = result.get("statusCode")
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return _json_answer(502, {"message": f"the function answered statusCode {status!r}",
                                  "request_id": request_id})
    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(str(name), str(value)) for value in values]
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), str(value)))
    headers += [("Set-Cookie", str(cookie)) for cookie in result.get("cookies") or []]
    body = result.get("body")
    if body is None:
        data = b""
    elif result.get("isBase64Encoded") is True:
        try:
            data = base64.b64decode(str(body), validate=True)
        except ValueError:
            return _json_answer(502, {"message": "the function's body is not base64",
                                      "request_id": request_id})
    else:
        data = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
    return Answer(status, headers, data)
