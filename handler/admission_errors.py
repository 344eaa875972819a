"""What the handler reports: errors for its callers, JSON lines for its log.

A HandlerError's str() is the JSON Lambda returns as ``errorMessage``; a server error
tells the caller only its request id (README.md, "Error contract").
"""

import json
import sys
from collections.abc import Mapping
from typing import Any, Optional


class HandlerError(Exception):
    """An error the handler reports to its caller; str() is the JSON Lambda returns."""

    error_type = "InternalServerError"
    http_status = 500

    def __init__(
        self, message: str, field: Optional[str] = None, request_id: Optional[str] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.request_id = request_id

    @property
    def public_message(self) -> str:
        """What the caller is told: a client error in full; for a server error, no host
        path, bucket or cause (the log line of the invocation has them)."""
        if self.http_status < 500:
            return self.message
        return (
            "the service could not answer; the function log has the cause "
            f"under request_id {self.request_id}"
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "errorType": self.error_type,
            "httpStatus": self.http_status,
            "request_id": self.request_id,
            "message": self.public_message,
        }
        if self.field is not None:
            data["field"] = self.field
        return data

    def __str__(self) -> str:
        return json.dumps(self.to_dict())


class BadRequest(HandlerError):
    """The input is invalid; ``field`` names the offending input."""

    error_type = "BadRequest"
    http_status = 400


class InternalServerError(HandlerError):
    """The handler could not answer a valid request (configuration, R, a bug)."""


class ModelUnavailable(InternalServerError):
    """The model (or R) could not be loaded."""

    error_type = "ModelUnavailable"


def log_line(record: Mapping[str, Any]) -> None:
    """Write ``record`` as one JSON line to stdout, the function's log (R's console output
    goes to stderr)."""
    sys.stdout.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()
