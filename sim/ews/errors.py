"""The two ways EWS says no.

``EwsError``: one item (one response message) failed; the response says ResponseClass="Error"
with its ResponseCode and MessageText, and the other items of the request still succeed.
``EwsFault``: the whole request failed (bad envelope, impersonation refused, server busy); the
answer is HTTP 500 with a SOAP Fault whose detail carries the EWS response code.
"""

from __future__ import annotations


class EwsError(Exception):
    """A per-response-message error (ResponseCode / MessageText)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class EwsFault(Exception):
    """A request-level SOAP fault; ``message_values`` become MessageXml/Value elements."""

    def __init__(
        self, code: str, message: str, *, message_values: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.message_values = message_values or {}
