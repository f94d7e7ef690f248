"""Observability without any server: the invocation scope puts correlation ids on every record
whatever logger emits it (and only within that invocation, across tasks and threads), keeps
values that are not ids out, logs a failure by type and place only; the export handler's
levels and its copies without exception text; and each metric recorded where the workers know
the fact, read back through OpenTelemetry's in-memory reader."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from shared import observability
from shared.exchange.port import RetryAfter
from shared.observability import export, metrics
from shared.queues import MailboxSyncRequested
from shared.store.memory import memory_repositories
from shared.store.records import DeadLetterRecord
from shared.store.threads import in_storage_thread
from shared.webhooks.delivery import DeliveryOutcome
from tests.unit import test_apply_worker, test_mailbox_sync, test_webhook_delivery

TRACE_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@dataclass
class Trace:
    trace_parent: str = TRACE_PARENT


@dataclass
class Context:
    """What the host passes as ``context``."""

    function_name: str = "apply_appointment_change"
    invocation_id: str = "5f0c2c1e-8a3b-4c9d-9e1f-2a3b4c5d6e7f"
    trace_context: Trace = field(default_factory=Trace)


@dataclass
class Message:
    """A queue trigger's message."""

    body: bytes
    id: str | None = "b7c1a2d3-0000-4000-8000-000000000001"
    dequeue_count: int | None = 2

    def get_body(self) -> bytes:
        return self.body


@dataclass
class Request:
    """An HTTP trigger's request."""

    route_params: Mapping[str, str]
    method: str = "PUT"


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[Captured]:
    """A root handler at DEBUG with the correlation filter, as every exporting handler has."""
    handler = Captured()
    handler.addFilter(observability.CorrelationFilter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def appointment_message(org: str = "acme", appointment_id: str = "apt-1") -> Message:
    return Message(json.dumps({"org": org, "appointmentId": appointment_id, "version": 3}).encode())


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in observability.FIELDS if hasattr(record, name)}


def test_every_record_of_a_queue_invocation_carries_its_ids_whatever_logger_emits_it(
    captured: Captured,
) -> None:
    logging.getLogger("shared.apply.service").info("before")
    with observability.queue_invocation(Context(), appointment_message()):
        logging.getLogger("shared.apply.service").info("applied")
        logging.getLogger("exchangelib.protocol").info("a request")  # exchangelib is capped at INFO
        logging.getLogger("azure.core.pipeline").warning("a retry")
    outside, *inside = captured.records
    expected = {
        "org": "acme",
        "appointment": "apt-1",
        "message_id": "b7c1a2d3-0000-4000-8000-000000000001",
        "dequeue_count": "2",
        "invocation_id": "5f0c2c1e-8a3b-4c9d-9e1f-2a3b4c5d6e7f",
        "function": "apply_appointment_change",
        "trigger": "queue",
    }
    assert [fields_of(record) for record in inside] == [expected] * 3
    assert fields_of(outside) == {}
    assert inside[0].correlation == (  # type: ignore[attr-defined]
        "org=acme appointment=apt-1 message_id=b7c1a2d3-0000-4000-8000-000000000001 "
        "dequeue_count=2 invocation_id=5f0c2c1e-8a3b-4c9d-9e1f-2a3b4c5d6e7f "
        "function=apply_appointment_change trigger=queue"
    )
    assert outside.correlation == ""  # type: ignore[attr-defined]
    assert observability.correlation() == {}


def test_http_and_timer_invocations_name_what_their_route_names(captured: Captured) -> None:
    route = {"org": "acme", "staffId": "ann", "connectionId": "onprem", "eventId": "evt-9"}
    with observability.http_invocation(Context("put_staff"), Request(route)):
        logging.getLogger("shared.admin.service").info("staff stored")
    with observability.timer_invocation(Context("poll_mailboxes")):
        logging.getLogger("shared.mailbox_sync.fanout").info("polled")
    http, timer = (fields_of(record) for record in captured.records)
    assert {name: http[name] for name in ("org", "staff", "connection", "event", "trigger")} == {
        "org": "acme",
        "staff": "ann",
        "connection": "onprem",
        "event": "evt-9",
        "trigger": "http",
    }
    assert timer["trigger"] == "timer"
    assert timer["function"] == "poll_mailboxes"
    assert "org" not in timer


def test_values_that_are_not_ids_stay_out_of_the_records(captured: Captured) -> None:
    route = {
        "org": "acme corp",
        "appointmentId": "Grace Hopper <grace@client.test>",
        "staffId": "ann\nFAKE LINE",
        "connectionId": "x" * 200,
        "eventId": "evt-1",
    }
    with observability.http_invocation(Context("put_appointment"), Request(route)):
        logging.getLogger("shared.booking.intake").info("refused")
    [record] = captured.records
    assert {
        name: value for name, value in fields_of(record).items() if name != "invocation_id"
    } == {
        "event": "evt-1",
        "function": "put_appointment",
        "trigger": "http",
    }


def test_a_message_that_is_not_json_still_names_its_message(captured: Captured) -> None:
    with observability.queue_invocation(Context(), Message(b"\xff not json", dequeue_count=None)):
        logging.getLogger("shared.queues").warning("unreadable")
    [record] = captured.records
    assert record.message_id == "b7c1a2d3-0000-4000-8000-000000000001"  # type: ignore[attr-defined]
    assert not hasattr(record, "org")
    assert not hasattr(record, "dequeue_count")


def test_what_a_log_call_names_itself_wins(captured: Captured) -> None:
    with observability.queue_invocation(Context(), appointment_message()):
        logging.getLogger("shared.webhooks.delivery").info("sent", extra={"org": "other"})
    [record] = captured.records
    assert record.org == "other"  # type: ignore[attr-defined]
    assert record.appointment == "apt-1"  # type: ignore[attr-defined]


def test_ids_follow_their_invocation_into_tasks_and_threads_and_no_further(
    captured: Captured,
) -> None:
    async def invocation(org: str) -> None:
        with observability.queue_invocation(Context(), appointment_message(org, f"apt-{org}")):
            for _ in range(3):
                logging.getLogger("shared.apply.service").info("step in the loop")
                await asyncio.sleep(0)
                await asyncio.to_thread(
                    logging.getLogger("shared.store").info, "step in a storage thread"
                )

    async def both() -> None:
        await asyncio.gather(invocation("one"), invocation("two"))

    asyncio.run(both())
    steps = [record for record in captured.records if record.name.startswith("shared.")]
    assert len(steps) == 12
    for record in steps:
        assert record.appointment == f"apt-{record.org}"  # type: ignore[attr-defined]
    assert {record.org for record in steps} == {"one", "two"}  # type: ignore[attr-defined]


def test_ids_reach_the_threads_storage_and_exchange_calls_run_on(captured: Captured) -> None:
    pool = ThreadPoolExecutor(max_workers=1)  # a pool that knows nothing of the invocation

    async def invocation() -> None:
        with observability.queue_invocation(Context(), appointment_message()):
            await in_storage_thread(logging.getLogger("azure.core").info, "a storage call")
            await asyncio.get_running_loop().run_in_executor(
                pool, observability.carried(logging.getLogger("exchangelib").info, "an EWS call")
            )

    asyncio.run(invocation())
    pool.shutdown()
    calls = [r for r in captured.records if r.getMessage() in ("a storage call", "an EWS call")]
    assert [getattr(record, "appointment", None) for record in calls] == ["apt-1", "apt-1"]


def test_a_failed_invocation_is_logged_by_type_and_place_never_its_message(
    captured: Captured,
) -> None:
    secret = "Grace Hopper grace@client.test"
    with (
        pytest.raises(ValueError, match="Grace"),
        observability.queue_invocation(Context(), appointment_message()),
    ):
        raise ValueError(secret)
    [record] = captured.records
    assert record.levelno == logging.ERROR
    text = record.getMessage()
    assert text.startswith("invocation failed: ValueError at test_observability.py:")
    assert secret not in text
    assert record.exc_info is None
    assert record.appointment == "apt-1"  # type: ignore[attr-defined]


class Inner(logging.Handler):
    """Stands in for the exporter's handler."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_export_handler_takes_calbridge_from_info_libraries_from_warning_never_itself() -> None:
    inner = Inner()
    handler = export.ExportHandler(inner)
    for name, level in [
        ("shared.apply.service", logging.DEBUG),
        ("shared.apply.service", logging.INFO),
        ("functions.booking_api", logging.INFO),
        ("azure.core.pipeline.policies.http_logging_policy", logging.INFO),
        ("exchangelib.protocol", logging.WARNING),
        ("azure.monitor.opentelemetry.exporter", logging.ERROR),
        ("opentelemetry.sdk", logging.WARNING),
    ]:
        record = logging.LogRecord(name, level, __file__, 1, "line", None, None)
        handler.handle(record)
    assert [(r.name, r.levelno) for r in inner.records] == [
        ("shared.apply.service", logging.INFO),
        ("functions.booking_api", logging.INFO),
        ("exchangelib.protocol", logging.WARNING),
    ]


def test_the_export_handler_sends_an_exception_as_type_and_place_and_leaves_the_record_alone() -> (
    None
):
    inner = Inner()
    handler = export.ExportHandler(inner)
    try:
        raise KeyError("grace@client.test")
    except KeyError:
        record = logging.LogRecord(
            "shared.apply.service", logging.ERROR, __file__, 1, "it failed", None, sys.exc_info()
        )
    handler.handle(record)
    [exported] = inner.records
    assert exported is not record
    assert exported.exc_info is None
    assert exported.exc_text is None
    assert exported.failure.startswith("KeyError at test_observability.py:")  # type: ignore[attr-defined]
    assert "grace" not in exported.failure  # type: ignore[attr-defined]
    assert record.exc_info is not None  # other handlers still see the original


def test_without_a_connection_string_nothing_is_exported_and_nothing_imported() -> None:
    export.reset_for_tests()
    try:
        assert export.ensure_configured({}) is False
        assert export.exporting() is False
        with export.invocation_span("f", "queue", {}, TRACE_PARENT) as span:
            span.failed("ValueError", "ValueError at here")  # a no-op
    finally:
        export.reset_for_tests()


def test_a_broken_exporter_leaves_telemetry_off_and_the_invocation_running(
    monkeypatch: pytest.MonkeyPatch, captured: Captured
) -> None:
    def broken(connection_string: str) -> Any:
        raise ValueError(f"bad {connection_string}")

    monkeypatch.setattr(export, "_configure", broken)
    export.reset_for_tests()
    try:
        secret = "InstrumentationKey=00000000-0000-0000-0000-000000000000"
        assert export.ensure_configured({export.CONNECTION_STRING_SETTING: secret}) is False
        [warning] = captured.records
        assert warning.getMessage() == "telemetry export is off: configuring it failed (ValueError)"
    finally:
        export.reset_for_tests()


# --- metrics ----------------------------------------------------------------------------------


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with metrics.recorded_by(provider):
        yield reader
    provider.shutdown()


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Metric name → (attributes, value) per data point: a counter's sum, a histogram's
    (count, sum)."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = (
                        (point.count, point.sum) if hasattr(point, "count") else point.value  # type: ignore[union-attr]
                    )
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


def test_each_metric_has_its_documented_name_and_attributes(
    reader: InMemoryMetricReader,
) -> None:
    now = datetime(2031, 1, 1, 12, tzinfo=UTC)
    metrics.mailbox_sync_started("acme", "ann", now - timedelta(seconds=75), now)
    metrics.mailbox_sync_started("acme", "bob", None, now)  # never synced: nothing to measure
    metrics.exchange_throttled("acme", "apply")
    metrics.dead_lettered("acme", "appointment-changes")
    metrics.webhook_delivery("acme", "busy_time.changed", "retrying", 0.25, None)
    metrics.appointment_applied("acme", "done")
    assert points(reader) == {
        metrics.SYNC_LAG: [({"org": "acme", "staff": "ann"}, (1, 75.0))],
        metrics.THROTTLED: [({"org": "acme", "worker": "apply"}, 1)],
        metrics.DEAD_LETTERS: [({"org": "acme", "queue": "appointment-changes"}, 1)],
        metrics.WEBHOOK_DELIVERY: [
            (
                {
                    "org": "acme",
                    "type": "busy_time.changed",
                    "outcome": "retrying",
                    "status": "none",
                },
                (1, 0.25),
            )
        ],
        metrics.APPLY_OUTCOMES: [({"org": "acme", "outcome": "done"}, 1)],
    }
    assert set(points(reader)) == set(metrics.NAMES)


def test_without_a_meter_provider_recording_is_a_no_op() -> None:
    metrics.appointment_applied("acme", "done")  # the global provider: nothing is set up


def test_the_apply_worker_counts_its_outcomes_and_throttling(
    reader: InMemoryMetricReader,
) -> None:
    setup = test_apply_worker.Setup()
    message = setup.store(1)
    setup.exchange.fail_next("create_event", RetryAfter(7.5))
    setup.apply(message)  # throttled: re-queued
    setup.apply(message)  # done
    found = points(reader)
    assert sorted(
        (attributes["outcome"], value) for attributes, value in found[metrics.APPLY_OUTCOMES]
    ) == [("done", 1), ("requeued", 1)]
    assert found[metrics.THROTTLED] == [({"org": "acme", "worker": "apply"}, 1)]


def test_the_apply_worker_counts_a_failure_and_its_dead_letter(
    reader: InMemoryMetricReader,
) -> None:
    setup = test_apply_worker.Setup()
    message = setup.store(1)
    setup.exchange.fail_next("create_event", RuntimeError("boom"), times=1)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        setup.apply(message, dequeue_count=3)  # the last try (max_dequeue_count=3)
    found = points(reader)
    assert found[metrics.APPLY_OUTCOMES] == [({"org": "acme", "outcome": "failed"}, 1)]
    assert found[metrics.DEAD_LETTERS] == [({"org": "acme", "queue": "appointment-changes"}, 1)]


def test_a_mailbox_sync_measures_how_far_behind_the_mailbox_was_and_counts_throttling(
    reader: InMemoryMetricReader,
) -> None:
    world = test_mailbox_sync.World()
    world.sync()  # the first sync: nothing to measure yet
    world.clock[0] += timedelta(seconds=90)
    world.sync()
    world.clock[0] += timedelta(seconds=30)
    world.exchange.fail_next("changes_since", RetryAfter(42))
    asyncio.run(world.syncer.sync(MailboxSyncRequested(org="acme", staff_id="ann", reason="poll")))
    found = points(reader)
    assert found[metrics.SYNC_LAG] == [({"org": "acme", "staff": "ann"}, (2, 120.0))]
    assert found[metrics.THROTTLED] == [({"org": "acme", "worker": "mailbox-sync"}, 1)]


def test_a_webhook_try_is_timed_with_its_outcome_and_status(
    reader: InMemoryMetricReader,
) -> None:
    platform = test_webhook_delivery.Platform(503, 200)
    _, _, delivery, message = test_webhook_delivery.setup(platform)
    assert test_webhook_delivery.deliver(delivery, message).outcome is DeliveryOutcome.RETRYING
    assert test_webhook_delivery.deliver(delivery, message).outcome is DeliveryOutcome.DELIVERED
    tries = sorted(
        (attributes["outcome"], attributes["status"], attributes["type"], value[0])
        for attributes, value in points(reader)[metrics.WEBHOOK_DELIVERY]
    )
    assert tries == [
        ("delivered", "200", "busy_time.changed", 1),
        ("retrying", "503", "busy_time.changed", 1),
    ]


def test_every_dead_letter_recorded_is_counted_by_its_queue(
    reader: InMemoryMetricReader,
) -> None:
    repos = memory_repositories()
    repos.dead_letters.record(
        "acme",
        DeadLetterRecord(
            queue="webhook-deliveries",
            subject_id="evt-1",
            message={"org": "acme", "eventId": "evt-1"},
            reason="the booking platform answered HTTP 500",
            dequeue_count=8,
            failed_at=datetime(2031, 1, 1, tzinfo=UTC),
        ),
    )
    assert points(reader)[metrics.DEAD_LETTERS] == [
        ({"org": "acme", "queue": "webhook-deliveries"}, 1)
    ]
