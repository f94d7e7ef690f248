"""Telemetry export: azure-monitor-opentelemetry in this process, the one exporter.

Nothing is exported, and nothing of the exporter is imported, unless
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set: then the first invocation of the process
configures it (``configure_azure_monitor``; its import costs a few hundred milliseconds, paid
once, never by ``import function_app``). With Entra ID authentication (the templates disable
the resource's local auth), the exporter signs in as the identity that
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names.

What goes out:
- **requests**: one span per invocation (HTTP and timer: server spans, queue: consumer
  spans) with the correlation fields as attributes (``shared.observability.correlation``);
- **dependencies**: Exchange calls, EWS over ``requests`` and Graph over ``httpx``. Not the
  Azure SDK's storage and Key Vault calls: a few per invocation, thousands a minute while
  mailboxes are polled, and a failing one fails its invocation, which is recorded. Not
  ``urllib``: that is how webhooks reach the booking platform, whose URL may hold the
  platform's own token in its query string (the delivery metrics time those calls); not
  ``urllib3``: the same calls as ``requests``, a second span each;
- **traces**: log records through the root logger, behind :class:`ExportHandler`: calbridge's
  own from INFO, every library's from WARNING (below that they are the SDKs talking about
  themselves, the exporter's own requests included), never an exception's message or
  traceback (only its type and place);
- **customMetrics**: ``shared.observability.metrics``.

Why not the Functions host's OpenTelemetry mode (``"telemetryMode": "OpenTelemetry"`` in
host.json) instead: for Python it covers HTTP triggers and Azure-SDK-based triggers only, not
timers, and it would be a second exporter for the same invocations. host.json keeps the host's
own Application Insights output to the host's own categories; see docs/operations.md.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

CONNECTION_STRING_SETTING: Final = "APPLICATIONINSIGHTS_CONNECTION_STRING"
# The setting that makes the Python worker configure azure-monitor-opentelemetry itself: a
# second exporter of the same telemetry. The deployment must not set it (the infra tests check).
SECOND_EXPORTER_SETTINGS: Final = ("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",)
TRACER_NAME: Final = "calbridge"
RESOURCE_DETECTORS_SETTING: Final = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
# The operator's choice of trace sampler (e.g. ``microsoft.rate_limited``), when made.
SAMPLER_SETTING: Final = "OTEL_TRACES_SAMPLER"
# calbridge's own loggers, exported from INFO; everything else from WARNING.
CALBRIDGE_LOGGERS: Final = ("shared", "functions", "function_app")
# Never exported, at any level: the exporter's own logging (exporting it would feed itself).
SILENT_LOGGERS: Final = ("azure.monitor.opentelemetry", "opentelemetry")
INSTRUMENTATION_OPTIONS: Final = {
    "azure_sdk": {"enabled": False},
    "requests": {"enabled": True},
    "httpx": {"enabled": True},
    "urllib": {"enabled": False},
    "urllib3": {"enabled": False},
    "django": {"enabled": False},
    "fastapi": {"enabled": False},
    "flask": {"enabled": False},
    "psycopg2": {"enabled": False},
}
# configure_azure_monitor puts its logging handler on this logger, which nothing logs to; it is
# moved from there to the root logger, wrapped in ExportHandler.
HANDOVER_LOGGER: Final = "shared.observability.handover"
# OpenTelemetry's faas.trigger values.
FAAS_TRIGGER: Final = {"http": "http", "queue": "pubsub", "timer": "timer"}

log = logging.getLogger("shared.observability")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decided = False
        self.tracer: Any = None  # an OpenTelemetry Tracer once exporting


_state = _State()


def ensure_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Configure the exporter once per process if the connection string is set; whether
    telemetry is exported. A failure to configure is logged and leaves it off: telemetry never
    stops an invocation."""
    if _state.decided:
        return _state.tracer is not None
    with _state.lock:
        if not _state.decided:
            connection_string = (environ if environ is not None else os.environ).get(
                CONNECTION_STRING_SETTING, ""
            )
            if connection_string.strip():
                try:
                    _state.tracer = _configure(connection_string.strip())
                except Exception as failure:
                    log.warning(
                        "telemetry export is off: configuring it failed (%s)",
                        type(failure).__name__,
                    )
            _state.decided = True
    return _state.tracer is not None


def exporting() -> bool:
    """Whether this process exports telemetry (decided by the first invocation)."""
    return _state.tracer is not None


def _configure(connection_string: str) -> Any:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry import trace

    # calbridge runs on App Service's Functions platform, never on a VM: describe the resource
    # from App Service's settings and skip the distro's probe of the VM metadata endpoint.
    os.environ.setdefault(RESOURCE_DETECTORS_SETTING, "azure_app_service")
    options: dict[str, Any] = {}
    if not os.environ.get(SAMPLER_SETTING):
        # Every invocation, so failure counts are exact. The distro's default would be a rate
        # limit that starts from nothing and drops the first invocations of each new process.
        options["sampling_ratio"] = 1.0
    configure_azure_monitor(
        connection_string=connection_string,
        logger_name=HANDOVER_LOGGER,
        instrumentation_options=INSTRUMENTATION_OPTIONS,
        # Live metrics would be a second stream beside the host's own; the process counters
        # (CPU, memory) are the platform's to report, and cost a share of every cold start.
        enable_live_metrics=False,
        enable_performance_counters=False,
        **options,
    )
    install_export_handlers(logging.getLogger(HANDOVER_LOGGER))
    # calbridge's INFO lines must reach the handler whatever level the worker set on the root.
    for name in CALBRIDGE_LOGGERS:
        own = logging.getLogger(name)
        if own.level == logging.NOTSET or own.level > logging.INFO:
            own.setLevel(logging.INFO)
    return trace.get_tracer(TRACER_NAME)


def install_export_handlers(handover: logging.Logger) -> list[ExportHandler]:
    """Move the exporter's handlers from ``handover`` to the root logger, each wrapped in an
    :class:`ExportHandler`."""
    from shared.observability.correlation import CorrelationFilter

    handover.propagate = False
    installed = []
    for inner in list(handover.handlers):
        handover.removeHandler(inner)
        wrapper = ExportHandler(inner)
        wrapper.addFilter(CorrelationFilter())
        logging.getLogger().addHandler(wrapper)
        installed.append(wrapper)
    if not installed:
        log.warning("telemetry export: the exporter added no logging handler; logs stay local")
    return installed


def _is_calbridge(name: str) -> bool:
    return any(name == own or name.startswith(own + ".") for own in CALBRIDGE_LOGGERS)


def _is_silent(name: str) -> bool:
    return any(name == quiet or name.startswith(quiet + ".") for quiet in SILENT_LOGGERS)


class ExportHandler(logging.Handler):
    """Hands records to the exporter's handler: calbridge's from INFO, the rest from WARNING,
    none of the exporter's own; each as a copy without its exception's message and traceback
    (the record itself is shared with the other handlers and left alone)."""

    def __init__(self, inner: logging.Handler) -> None:
        super().__init__(logging.INFO)
        self.inner = inner

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level or _is_silent(record.name):
            return False
        if record.levelno < logging.WARNING and not _is_calbridge(record.name):
            return False
        return bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        self.inner.handle(exportable(record))

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.inner.close()
        super().close()


def exportable(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` whose exception is only its type and place (``failure``)."""
    from shared.observability.correlation import SUMMARY_ATTRIBUTE

    exported = copy.copy(record)
    # The ids are dimensions of their own; their one-line summary is for local formatters.
    exported.__dict__.pop(SUMMARY_ATTRIBUTE, None)
    if record.exc_info and record.exc_info[1] is not None:
        from shared.observability.correlation import failure_summary

        exported.__dict__.setdefault("failure", failure_summary(record.exc_info[1]))
    exported.exc_info = None
    exported.exc_text = None
    exported.stack_info = None
    return exported


class InvocationSpan:
    """One invocation's span (a request); without an exporter, nothing."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def failed(self, error_type: str, summary: str) -> None:
        if self._span is None:
            return
        from opentelemetry.trace import Status, StatusCode

        self._span.set_attribute("error.type", error_type)
        self._span.set_status(Status(StatusCode.ERROR, summary))


@contextmanager
def invocation_span(
    name: str, trigger: str, fields: Mapping[str, str], trace_parent: str | None
) -> Iterator[InvocationSpan]:
    """The invocation's span, a child of the host's trace when it names one (its
    ``traceparent``: the caller's trace for HTTP)."""
    if not ensure_configured():
        yield InvocationSpan()
        return
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = (
        TraceContextTextMapPropagator().extract({"traceparent": trace_parent})
        if trace_parent
        else None
    )
    attributes: dict[str, str] = {"faas.trigger": FAAS_TRIGGER.get(trigger, "other"), **fields}
    with _state.tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER if trigger == "queue" else SpanKind.SERVER,
        attributes=attributes,
        # Exceptions are recorded by type and place (InvocationSpan.failed), never with their
        # message and traceback.
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield InvocationSpan(span)


def current_span_status(status: int) -> None:
    """An HTTP invocation's answer on its span (the request's result code)."""
    if not exporting():
        return
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    span = trace.get_current_span()
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


def reset_for_tests() -> None:
    """Forget the decision (tests that configure an exporter of their own)."""
    with _state.lock:
        _state.decided = False
        _state.tracer = None
