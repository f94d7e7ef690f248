"""Graph's error responses: the ``GraphError`` a route raises and the JSON body Graph sends.

Every refusal has the shape ``{"error": {"code", "message", "innerError": {date, request-id,
client-request-id}}}``; store refusals (``SimError`` with an EWS response code) are translated
here so the routes never spell HTTP statuses for them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sim.store import SimError

# EWS response code (what the store raises) → (HTTP status, Graph error code).
_STORE_CODES: dict[str, tuple[int, str]] = {
    "ErrorItemNotFound": (404, "ErrorItemNotFound"),
    "ErrorNonExistentMailbox": (404, "ResourceNotFound"),
    "ErrorInvalidOperation": (400, "ErrorInvalidRequest"),
    "ErrorIrresolvableConflict": (409, "ErrorIrresolvableConflict"),
    "ErrorAccessDenied": (403, "ErrorAccessDenied"),
    "ErrorInvalidSyncStateData": (410, "syncStateNotFound"),
    "ErrorInvalidIdMalformed": (400, "ErrorInvalidIdMalformed"),
    "ErrorCalendarIsCancelledForAccept": (400, "ErrorCalendarIsCancelledForAccept"),
    "ErrorCalendarIsCancelledForDecline": (400, "ErrorCalendarIsCancelledForDecline"),
}


class GraphError(Exception):
    """A request Graph refuses: HTTP status, Graph error code, human message, extra headers."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @classmethod
    def from_store(cls, error: SimError) -> GraphError:
        status, code = _STORE_CODES.get(error.code, (400, error.code))
        return cls(status, code, error.message)


def bad_request(message: str, code: str = "BadRequest") -> GraphError:
    return GraphError(400, code, message)


def error_body(error: GraphError, request_id: str, client_request_id: str) -> bytes:
    """The JSON Graph sends with an error status."""
    payload = {
        "error": {
            "code": error.code,
            "message": error.message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
            },
        }
    }
    return json.dumps(payload).encode()
