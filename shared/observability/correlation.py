"""Correlation ids: what an invocation is about, on every log record emitted while it runs.

The trigger layer opens one scope per invocation (:func:`http_invocation`,
:func:`queue_invocation`, :func:`timer_invocation`); the ids go into a ``ContextVar``, so they
follow the invocation into coroutines and ``asyncio.to_thread`` (which copy the context) and,
through :func:`carried`, onto the threads that storage, EWS and webhook calls run on; they
never leak into another invocation. :class:`CorrelationFilter` copies them onto each record a
handler sees, whichever logger emitted it (calbridge's, exchangelib's, azure's): log calls
themselves name no ids.

The fields (and the record attributes, log dimensions and span attributes they become):

``org``, ``appointment``, ``staff``, ``connection``, ``event``
    from the HTTP route (``org``, ``appointmentId``, ``staffId``, ``connectionId``,
    ``eventId``) or the queue message's JSON (ids only, by design);
``message_id``, ``dequeue_count``
    the queue message's id and how often it has been delivered;
``invocation_id``, ``function``, ``trigger``
    the host's invocation id, the function's name, ``http`` / ``queue`` / ``timer``.

Only values shaped like identifiers are taken (``shared.models.ID_PATTERN``): route parameters
come from the caller, and text that could carry anything else stays out of the logs.

A failed invocation is logged once here, by exception type and place only, never its message
(a library's message may quote the input): :func:`failure_summary`.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import re
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, ParamSpec, Protocol, TypeVar

from shared.models import ID_PATTERN
from shared.observability import export, heap

log = logging.getLogger("shared.observability")

P = ParamSpec("P")
T = TypeVar("T")

# Every correlation field, in the order they are shown.
FIELDS: Final = (
    "org",
    "appointment",
    "staff",
    "connection",
    "event",
    "message_id",
    "dequeue_count",
    "invocation_id",
    "function",
    "trigger",
)
# Route parameters and queue-message fields that name what an invocation is about.
ID_FIELDS: Final = {
    "org": "org",
    "appointmentId": "appointment",
    "staffId": "staff",
    "connectionId": "connection",
    "eventId": "event",
}
# The record attribute a formatter can show all of them with (``%(correlation)s``).
SUMMARY_ATTRIBUTE: Final = "correlation"

_IDENTIFIER = re.compile(ID_PATTERN)
_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})
_current: ContextVar[Mapping[str, str]] = ContextVar("calbridge_correlation", default=_EMPTY)
# What the trigger layer enters: ``with observability.queue_invocation(context, message):``.
Scope = AbstractContextManager[None]


class TraceContext(Protocol):
    @property
    def trace_parent(self) -> str: ...


class FunctionContext(Protocol):
    """What the Functions host tells an invocation (``azure.functions.Context``)."""

    @property
    def invocation_id(self) -> str: ...

    @property
    def function_name(self) -> str: ...

    @property
    def trace_context(self) -> TraceContext: ...


class RoutedRequest(Protocol):
    """An HTTP trigger's request (``azure.functions.HttpRequest``): its method and route
    parameters."""

    @property
    def method(self) -> str: ...

    @property
    def route_params(self) -> Mapping[str, str]: ...


class QueueMessage(Protocol):
    """A queue trigger's message (``azure.functions.QueueMessage``)."""

    @property
    def id(self) -> str | None: ...

    def get_body(self) -> bytes: ...


def correlation() -> Mapping[str, str]:
    """The current invocation's correlation fields (empty outside an invocation)."""
    return _current.get()


def _identifier(value: object) -> str | None:
    text = str(value) if isinstance(value, str | int) else ""
    return text if _IDENTIFIER.fullmatch(text) else None


def _ids(source: Mapping[str, Any]) -> dict[str, str]:
    found = {}
    for name, field in ID_FIELDS.items():
        value = _identifier(source.get(name))
        if value is not None:
            found[field] = value
    return found


def http_invocation(
    context: FunctionContext, request: RoutedRequest
) -> AbstractContextManager[None]:
    """The scope of one HTTP invocation: ids from the route."""
    method = request.method.upper()
    return invocation(
        context,
        "http",
        _ids(request.route_params),
        span_attributes={"http.request.method": method} if method.isalpha() else {},
    )


def queue_invocation(
    context: FunctionContext, message: QueueMessage
) -> AbstractContextManager[None]:
    """The scope of one queue invocation: ids from the message (JSON carrying ids only), its id
    and how often it has been delivered."""
    try:
        body = json.loads(message.get_body())
    except ValueError:
        body = None
    fields = _ids(body) if isinstance(body, dict) else {}
    message_id = _identifier(message.id)
    if message_id is not None:
        fields["message_id"] = message_id
    dequeue_count = getattr(message, "dequeue_count", None)
    if isinstance(dequeue_count, int):
        fields["dequeue_count"] = str(dequeue_count)
    return invocation(context, "queue", fields)


def timer_invocation(context: FunctionContext) -> Scope:
    """The scope of one timer invocation."""
    return invocation(context, "timer", {})


@contextmanager
def invocation(
    context: FunctionContext,
    trigger: str,
    ids: Mapping[str, str],
    *,
    span_attributes: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Correlation fields for everything logged while the invocation runs and, when telemetry
    is exported, one span (a request in Application Insights) carrying the same fields."""
    fields = dict(ids)
    for name, value in (
        ("invocation_id", context.invocation_id),
        ("function", context.function_name),
        ("trigger", trigger),
    ):
        checked = _identifier(value)
        if checked is not None:
            fields[name] = checked
    token = _current.set(MappingProxyType(fields))
    try:
        with export.invocation_span(
            fields.get("function", "invocation"),
            trigger,
            {**fields, **(span_attributes or {})},
            _trace_parent(context),
        ) as span:
            try:
                yield
            except Exception as failure:
                summary = failure_summary(failure)
                log.error("invocation failed: %s", summary)
                span.failed(type(failure).__name__, summary)
                raise
    finally:
        _current.reset(token)
        heap.invocation_ended()


def carried(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Callable[[], T]:
    """``call`` bound to run within the current context (the invocation's ids and span) on
    another thread: ``loop.run_in_executor(pool, carried(work))``. The event loop's executors do
    not carry the context by themselves."""
    return functools.partial(contextvars.copy_context().run, call, *args, **kwargs)


def answered(status: int) -> None:
    """An HTTP invocation's answer, for its span (a request's result code; 5xx fails it)."""
    export.current_span_status(status)


def _trace_parent(context: FunctionContext) -> str | None:
    trace = getattr(context, "trace_context", None)
    parent = getattr(trace, "trace_parent", None)
    return parent if isinstance(parent, str) and parent else None


def failure_summary(error: BaseException) -> str:
    """``ValueError (from KeyError) at intake.py:42 in save <- booking_api.py:17 in put``.

    Exception types and where they were raised, never their messages: a library's message may
    quote the input (pydantic shows ``input_value``), and inputs must not reach a log line.
    """
    names = [type(error).__name__]
    cause = error.__cause__ or error.__context__
    while cause is not None and len(names) < 4:
        names.append(type(cause).__name__)
        cause = cause.__cause__ or cause.__context__
    frames = traceback.extract_tb(error.__traceback__)[-4:]
    where = " <- ".join(
        f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" for frame in reversed(frames)
    )
    described = names[0] + (f" (from {', '.join(names[1:])})" if len(names) > 1 else "")
    return f"{described} at {where}" if where else described


class CorrelationFilter(logging.Filter):
    """Puts the current invocation's correlation fields on every record the handler it is
    attached to sees (attributes a record already has, e.g. from ``extra=``, are kept), and
    ``correlation``, all of them as ``key=value`` text for a formatter. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _current.get()
        attributes = record.__dict__
        for name, value in fields.items():
            attributes.setdefault(name, value)
        attributes.setdefault(
            SUMMARY_ATTRIBUTE,
            " ".join(f"{name}={fields[name]}" for name in FIELDS if name in fields),
        )
        return True
