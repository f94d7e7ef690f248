"""Observability: correlation ids on every log record, one span per invocation, metrics, and
the one exporter to Application Insights.

- :mod:`correlation` — the invocation scope the triggers open (``http_invocation``,
  ``queue_invocation``, ``timer_invocation``): org, appointment, staff, connection, event,
  queue message id and invocation id in a ``ContextVar``, put on each record by
  :class:`CorrelationFilter`; a failed invocation logged by exception type and place;
- :mod:`metrics` — sync lag, throttling, dead letters, webhook deliveries, apply outcomes;
- :mod:`export` — azure-monitor-opentelemetry, configured on the first invocation when
  ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and imported only then;
- :mod:`heap` — the objects a settled process holds moved out of the garbage collector's way
  after its first invocations (no 60 ms full collection inside a later one).

Triggers use it as ``with observability.queue_invocation(context, message): ...``; services
record metrics with one call (``metrics.dead_lettered(org, queue)``). Nothing here reads an
event's content: fields are ids, checked to look like ids.
"""

from shared.observability.correlation import (
    FIELDS,
    CorrelationFilter,
    answered,
    carried,
    correlation,
    failure_summary,
    http_invocation,
    queue_invocation,
    timer_invocation,
)

__all__ = [
    "FIELDS",
    "CorrelationFilter",
    "answered",
    "carried",
    "correlation",
    "failure_summary",
    "http_invocation",
    "queue_invocation",
    "timer_invocation",
]
