"""calbridge's metrics, recorded where the workers already know the fact: one call each.

Through the OpenTelemetry metrics API: without an exporter every call is a no-op; with one
(``shared.observability.export``) they reach Application Insights as ``customMetrics`` under
these names, the attributes as ``customDimensions``:

``calbridge.mailbox.sync_lag`` (histogram, s; ``org``, ``staff``)
    when a sync of a mailbox begins, how long ago its last sync completed: how far behind
    Exchange calbridge's view of that calendar was. It grows while a mailbox is throttled,
    held, refused or not reached at all.
``calbridge.exchange.throttled`` (counter; ``org``, ``worker``)
    Exchange asked a worker (``apply``, ``mailbox-sync``) to come back later (EWS
    ErrorServerBusy, Graph 429); the message was re-queued with that delay.
``calbridge.dead_letters`` (counter; ``org``, ``queue``)
    work given up after its last try, recorded in ``DeadLetters``.
``calbridge.webhook.delivery`` (histogram, s; ``org``, ``type``, ``outcome``, ``status``)
    one try to deliver a webhook: how long until the booking platform answered (or did not),
    ``outcome`` ``delivered`` / ``refused`` / ``retrying`` / ``dead_lettered``, ``status`` the
    HTTP status or ``none``.
``calbridge.apply.outcomes`` (counter; ``org``, ``outcome``)
    what one delivery of an ``appointment-changes`` message came to: ``done``, ``requeued``,
    ``parked``, ``problem``, ``missing``, or ``failed`` (raised for the host's retry).

Attributes are ids and fixed words only, never content. The OpenTelemetry API is imported on
the first recording, not with the function app.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

METER_NAME: Final = "calbridge"
SYNC_LAG: Final = "calbridge.mailbox.sync_lag"
THROTTLED: Final = "calbridge.exchange.throttled"
DEAD_LETTERS: Final = "calbridge.dead_letters"
WEBHOOK_DELIVERY: Final = "calbridge.webhook.delivery"
APPLY_OUTCOMES: Final = "calbridge.apply.outcomes"
NAMES: Final = (SYNC_LAG, THROTTLED, DEAD_LETTERS, WEBHOOK_DELIVERY, APPLY_OUTCOMES)


class _Instruments:
    def __init__(self, meter_provider: Any = None) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter(METER_NAME, meter_provider=meter_provider)
        self.sync_lag = meter.create_histogram(
            SYNC_LAG, unit="s", description="Time since the mailbox's last completed sync"
        )
        self.throttled = meter.create_counter(
            THROTTLED, description="Exchange throttled a worker; the message was re-queued"
        )
        self.dead_letters = meter.create_counter(
            DEAD_LETTERS, description="Work given up after its last try"
        )
        self.webhook_delivery = meter.create_histogram(
            WEBHOOK_DELIVERY, unit="s", description="One try to deliver a webhook"
        )
        self.apply_outcomes = meter.create_counter(
            APPLY_OUTCOMES, description="What one appointment-changes delivery came to"
        )


_lock = threading.Lock()
_instruments: _Instruments | None = None


def _recorder() -> _Instruments:
    global _instruments
    if _instruments is None:
        with _lock:
            if _instruments is None:
                # The global provider: a no-op until the exporter sets one (the API's proxy
                # instruments follow it when it does).
                _instruments = _Instruments()
    return _instruments


@contextmanager
def recorded_by(meter_provider: Any) -> Iterator[None]:
    """Record into ``meter_provider`` meanwhile (tests, with an in-memory reader)."""
    global _instruments
    with _lock:
        saved, _instruments = _instruments, _Instruments(meter_provider)
    try:
        yield
    finally:
        with _lock:
            _instruments = saved


def mailbox_sync_started(
    org: str, staff_id: str, last_sync_at: datetime | None, now: datetime | None = None
) -> None:
    """A sync of the mailbox begins; ``last_sync_at`` is when its last one completed (None:
    never, nothing to measure)."""
    if last_sync_at is None:
        return
    lag = ((now or datetime.now(UTC)) - last_sync_at).total_seconds()
    _recorder().sync_lag.record(max(0.0, lag), {"org": org, "staff": staff_id})


def exchange_throttled(org: str, worker: str) -> None:
    """Exchange throttled ``worker`` (``apply``, ``mailbox-sync``); the message is re-queued."""
    _recorder().throttled.add(1, {"org": org, "worker": worker})


def dead_lettered(org: str, queue: str) -> None:
    """Work from ``queue`` was given up after its last try."""
    _recorder().dead_letters.add(1, {"org": org, "queue": queue})


def webhook_delivery(
    org: str, event_type: str, outcome: str, seconds: float, status: int | None
) -> None:
    """One try to deliver a webhook: how long it took and what came of it."""
    _recorder().webhook_delivery.record(
        max(0.0, seconds),
        {
            "org": org,
            "type": event_type,
            "outcome": str(outcome),
            "status": str(status) if status is not None else "none",
        },
    )


def appointment_applied(org: str, outcome: str) -> None:
    """What one delivery of an ``appointment-changes`` message came to."""
    _recorder().apply_outcomes.add(1, {"org": org, "outcome": str(outcome)})
