"""What a route answers: an ``HttpAnswer`` (status, JSON body, headers), and the refusals every
route shares, raised as ``Refusal`` by the checks and returned as its answer by the services.

Every refusal names the problem (``ApiError``: a stable ``error`` code and a message; a 422
lists each problem with its field) and never echoes a large input (``quoted``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

from shared.models import CamelModel

# How long a client should wait before retrying a 503.
RETRY_AFTER_SECONDS = "5"


class ApiError(CamelModel):
    """Every refusal: a stable machine-readable ``error`` code and a message naming the
    problem."""

    error: str
    message: str


class ValidationProblem(CamelModel):
    """One problem with a request body: ``field`` is the path of the offending field
    (``staff[1].role``; empty for the body as a whole)."""

    field: str
    message: str


class ValidationFailed(CamelModel):
    """422: the body is JSON but not valid; every problem is listed."""

    error: Literal["validation_failed"] = "validation_failed"
    message: str
    problems: list[ValidationProblem]


@dataclass(frozen=True)
class HttpAnswer:
    """What to answer: status, JSON body, extra headers. ``text``: a ``text/plain`` body instead
    of JSON (Graph's validation handshake, which must be echoed as plain text)."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    text: str | None = None
    # The media type of ``text`` when it is not plain text (the status page's files).
    text_type: str = "text/plain"

    @property
    def media_type(self) -> str:
        return "application/json" if self.text is None else self.text_type

    def json_text(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)

    def body_text(self) -> str:
        """The body as sent: the plain text, or the JSON."""
        return self.json_text() if self.text is None else self.text


# A plain-text answer echoes what a caller sent (Graph's validation token): a browser must
# neither sniff it as HTML nor run anything in it, should one be led to open it.
TEXT_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def text_answer(status: int, text: str) -> HttpAnswer:
    """A ``text/plain`` answer; never sniffed as anything else by a browser."""
    return HttpAnswer(status, None, TEXT_HEADERS, text=text)


def json_answer(
    status: int, model: BaseModel, headers: Mapping[str, str] | None = None
) -> HttpAnswer:
    return HttpAnswer(status, model.model_dump(mode="json", by_alias=True), headers or {})


class Refusal(Exception):
    """A request refused with a 4xx/5xx answer (raised by the checks, answered by the routes)."""

    def __init__(
        self,
        status: int,
        body: ApiError | ValidationFailed,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(body.message)
        self.answer = json_answer(status, body, headers)


def refuse(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Refusal:
    return Refusal(status, ApiError(error=code, message=message), headers)


def invalid(what: str, problems: list[ValidationProblem]) -> Refusal:
    """422 naming every problem of a body (``what``: "the snapshot", "the connection", ...)."""
    return Refusal(
        422,
        ValidationFailed(
            message=f"{what} is not valid ({len(problems)} problem(s))", problems=problems
        ),
    )


def unavailable(what: str) -> Refusal:
    """503 for a backing service that failed (storage, the work queue, the secret store): the
    request may be sent again as it is."""
    return refuse(
        503,
        "unavailable",
        f"{what} is unavailable; retry later",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


def quoted(value: str) -> str:
    """A client-supplied value for a message, cut short (never reflect big inputs)."""
    return repr(value if len(value) <= 80 else value[:80] + "…")
