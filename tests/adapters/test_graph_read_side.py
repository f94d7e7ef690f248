"""The Graph adapter's read side against the simulator, beyond the reader contract: what a
calendarView delta page costs (one GET when idle; one $batch for the markers of organizer single
events), what it asks for (``$select`` without the body), occurrences and exceptions under their
own ids, expired and foreign cursors, throttling on either request, at most four requests per
mailbox in flight, and the subscription calls."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.exchange.graph import GraphCalendarGateway
from shared.exchange.port import (
    CalendarChanges,
    ExchangeEvent,
    ItemType,
    ReadWindow,
    RetryAfter,
    SubscriptionGone,
    SyncStateInvalid,
)
from sim.graph import DeliveryPolicy
from sim.graph.ids import internal_event_id
from sim.graph.receiver import NotificationReceiver
from sim.people import Outlook
from sim.server import RunningSimulator
from sim.store import Fault, Recurrence
from tests.adapters.test_graph_adapter import (
    ANN,
    BOB,
    Runner,
    counts,
    draft,
    gateway_for,
    new_marker,
)
from tests.adapters.test_graph_adapter import run as run
from tests.adapters.test_graph_adapter import simulator as simulator

DAY = datetime(2031, 9, 2, tzinfo=UTC)
WINDOW = ReadWindow(start=DAY - timedelta(days=7), end=DAY + timedelta(days=60))
BODY_FIELDS = {"body", "bodypreview", "uniquebody"}


@pytest.fixture
def gateway(simulator: RunningSimulator, run: Runner) -> Iterator[GraphCalendarGateway]:
    made = gateway_for(simulator)
    yield made
    run(made.aclose())


def read_round(
    gateway: GraphCalendarGateway, run: Runner, cursor: str | None, mailbox: str = ANN
) -> CalendarChanges:
    """Every page after ``cursor`` folded into one."""
    changed: dict[str, ExchangeEvent] = {}
    deleted: dict[str, None] = {}
    while True:
        page = run(gateway.changes_since(mailbox, cursor, window=WINDOW))
        for event in page.changed:
            changed[event.item_id] = event
        for item_id in page.deleted:
            deleted[item_id] = None
        cursor = page.cursor
        if page.complete:
            return CalendarChanges(
                changed=tuple(changed.values()),
                deleted=tuple(deleted),
                cursor=cursor,
                complete=True,
                windowed=page.windowed,
            )


def test_an_idle_round_is_one_get_and_a_change_one_get_and_one_batch(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    ann = Outlook(simulator.store, ANN)
    ann.create_event("Gym", DAY.replace(hour=7), DAY.replace(hour=8))
    first = read_round(gateway, run, None)
    assert first.windowed
    simulator.store.reset_counters()

    idle = run(gateway.changes_since(ANN, first.cursor, window=WINDOW))
    assert (idle.changed, idle.deleted, idle.complete) == ((), (), True)
    assert counts(simulator) == {"graph:delta": 1}

    simulator.store.reset_counters()
    ann.create_event("Dentist", DAY.replace(hour=14), DAY.replace(hour=15))
    changed = run(gateway.changes_since(ANN, idle.cursor, window=WINDOW))
    assert [e.subject for e in changed.changed] == ["Dentist"]
    # One delta GET and one $batch (carrying one marker read).
    assert counts(simulator) == {"graph:delta": 1, "graph:batch": 1, "graph:getEvent": 1}


def test_calbridges_events_carry_their_marker_and_no_read_asks_for_a_body(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker=marker, attendees=(BOB,)), "tx-read-marker"))
    simulator.store.requested_shapes.clear()

    organizer = read_round(gateway, run, None)
    attendee = read_round(gateway, run, None, mailbox=BOB)

    [mine] = [e for e in organizer.changed if e.item_id == ref.item_id]
    assert mine.marker == marker
    assert mine.shows_written  # the stamp comes with the marker in the same $batch read
    [copy] = attendee.changed
    assert (copy.marker, copy.uid) == (None, mine.uid)  # the copy is known by its UID
    shapes = simulator.store.requested_shapes
    assert {operation for operation, _, _ in shapes} >= {"graph:delta", "graph:getEvent"}
    for operation, base, properties in shapes:
        assert base != "AllProperties", operation
        assert not {p.lower() for p in properties} & BODY_FIELDS, operation


def test_a_series_comes_as_its_occurrences_and_exceptions_never_as_a_master(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    ann = Outlook(simulator.store, ANN)
    daily = Recurrence(pattern="daily", count=4)
    series = ann.create_series(
        "Standup",
        DAY.replace(hour=9, tzinfo=None),
        DAY.replace(hour=9, minute=15, tzinfo=None),
        daily,
    )
    first = read_round(gateway, run, None)
    standups = [e for e in first.changed if e.subject == "Standup"]
    assert [e.item_type for e in standups] == [ItemType.OCCURRENCE] * 4
    assert len({e.item_id for e in standups}) == 4

    ann.edit_occurrence(series.id, 2, subject="Standup (late)")
    ann.delete_occurrence(series.id, 3)
    later = read_round(gateway, run, first.cursor)
    assert ("Standup (late)", ItemType.EXCEPTION) in [
        (e.subject, e.item_type) for e in later.changed
    ]
    assert {e.item_type for e in later.changed} <= {ItemType.OCCURRENCE, ItemType.EXCEPTION}
    assert standups[2].item_id in later.deleted


def test_an_appointment_moved_past_the_window_is_reported_gone(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    ref = run(gateway.create_event(ANN, draft(), "tx-read-moved"))
    first = read_round(gateway, run, None)
    far = WINDOW.end + timedelta(days=3)
    Outlook(simulator.store, ANN).move(
        internal_event_id(ref.item_id), far, far + timedelta(minutes=30)
    )
    later = read_round(gateway, run, first.cursor)
    # The reader cannot tell a move past its window from a deletion; the sync looks again.
    assert later.deleted == (ref.item_id,)
    moved = run(gateway.get_event(ANN, ref.item_id))
    assert moved is not None
    assert moved.start == far


def test_expired_and_foreign_cursors_are_sync_state_invalid(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    first = read_round(gateway, run, None)
    simulator.store.invalidate_sync_states(ANN)
    with pytest.raises(SyncStateInvalid):
        run(gateway.changes_since(ANN, first.cursor, window=WINDOW))
    simulator.store.reset_counters()
    for foreign in (
        "H4sIAAAAAAAEAO29B2AcSZYlJi9tynt",  # an EWS sync state
        "https://graph.attacker.example/v1.0/users/x/calendarView/delta?$deltatoken=1",
    ):
        with pytest.raises(SyncStateInvalid):
            run(gateway.changes_since(ANN, foreign, window=WINDOW))
    assert counts(simulator) == {}  # never sent anywhere, with or without the token


def test_throttling_on_the_delta_or_inside_the_batch_is_retry_after(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    first = read_round(gateway, run, None)
    simulator.store.add_fault(
        Fault(kind="throttle", operation="graph:delta", mailbox=ANN, retry_after=7)
    )
    with pytest.raises(RetryAfter) as on_delta:
        run(gateway.changes_since(ANN, first.cursor, window=WINDOW))
    assert on_delta.value.seconds == 7
    Outlook(simulator.store, ANN).create_event("Late", DAY.replace(hour=18), DAY.replace(hour=19))
    simulator.store.add_fault(
        Fault(kind="throttle", operation="graph:getEvent", mailbox=ANN, retry_after=11)
    )
    with pytest.raises(RetryAfter) as in_batch:
        run(gateway.changes_since(ANN, first.cursor, window=WINDOW))
    assert in_batch.value.seconds == 11
    # Nothing was lost: the same cursor reads the change once the throttling is over.
    assert [e.subject for e in read_round(gateway, run, first.cursor).changed] == ["Late"]


def test_at_most_four_requests_per_mailbox_are_in_flight(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    ref = run(gateway.create_event(ANN, draft(), "tx-read-concurrent"))
    simulator.store.add_fault(
        Fault(kind="slow", operation="graph:getEvent", mailbox=ANN, remaining=None, delay_s=0.2)
    )
    peak = 0

    async def watch(done: asyncio.Event) -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, simulator.graph.in_flight(ANN))
            await asyncio.sleep(0.01)

    async def ten_reads() -> list[object]:
        done = asyncio.Event()
        watcher = asyncio.ensure_future(watch(done))
        try:
            return await asyncio.gather(
                *(gateway.get_event(ANN, ref.item_id) for _ in range(10)),
                return_exceptions=True,
            )
        finally:
            done.set()
            await watcher

    results = run(ten_reads())
    assert [type(r).__name__ for r in results] == ["ExchangeEvent"] * 10  # no 429
    assert peak == 4


def test_subscriptions_are_made_renewed_reauthorized_and_deleted(
    simulator: RunningSimulator,
    gateway: GraphCalendarGateway,
    run: Runner,
) -> None:
    simulator.graph.configure_delivery(
        DeliveryPolicy(retry_delays_s=(0.1,), timeout_s=2.0, validation_timeout_s=5.0)
    )
    with NotificationReceiver() as receiver:
        expires = datetime.now(UTC) + timedelta(days=2)
        ref = run(
            gateway.subscribe(
                ANN,
                notification_url=receiver.url,
                lifecycle_url=receiver.lifecycle_url,
                client_state="a-secret-state",
                expires_at=expires,
            )
        )
        assert len(receiver.validations) == 2  # both URLs validated
        assert abs(ref.expires_at - expires) < timedelta(seconds=1)
        Outlook(simulator.store, ANN).create_event("Ping", DAY, DAY + timedelta(hours=1))
        [notification] = receiver.wait_for(1)
        assert (notification["subscriptionId"], notification["clientState"]) == (
            ref.subscription_id,
            "a-secret-state",
        )
        later = datetime.now(UTC) + timedelta(days=6)
        renewed = run(gateway.renew_subscription(ref.subscription_id, later))
        assert abs(renewed.expires_at - later) < timedelta(seconds=1)
        run(gateway.reauthorize_subscription(ref.subscription_id))
        run(gateway.unsubscribe(ref.subscription_id))
        run(gateway.unsubscribe(ref.subscription_id))  # gone already: no error
        with pytest.raises(SubscriptionGone):
            run(gateway.renew_subscription(ref.subscription_id, later))
        with pytest.raises(SubscriptionGone):
            run(gateway.reauthorize_subscription(ref.subscription_id))
