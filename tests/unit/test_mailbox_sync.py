"""The mailbox-sync service and the poll fan-out on in-memory storage and the in-memory Exchange:
what each situation leaves in the tables and the outbox — busy time, a lost cursor, the
mass-cancellation guard, throttling, refused credentials, re-processing after a crash — and when
a mailbox is polled."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.apply.service import AppointmentApplier, AppointmentApplyFailed
from shared.config import connection_secret_name
from shared.connections import AUTH_RETRY, AUTH_RETRY_EVERY
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import (
    AuthenticationFailed,
    CalendarError,
    CalendarGateway,
    ExchangeUnavailable,
    RetryAfter,
    Sensitivity,
    SyncStateInvalid,
)
from shared.mailbox_sync.fanout import LISTED_MESSAGE_LIMIT, PENDING_EXPIRY, PollFanOut
from shared.mailbox_sync.pending import claim_many, claim_sync
from shared.mailbox_sync.service import (
    FULL_READ,
    LISTED_ROW_TRUSTED_FOR,
    SYNCED_MEANWHILE,
    MailboxSyncer,
    SyncOutcome,
)
from shared.models import ConnectionConfig, Health, OrgSettings
from shared.queues import (
    MAILBOX_SYNC,
    AppointmentChanged,
    MailboxSyncRequested,
    MemoryQueueSender,
    parse_message,
)
from shared.store.memory import memory_repositories
from shared.store.records import ConnectionRecord, MailboxItemKind, MailboxRecord
from tests.builders import snapshot

ORG = "acme"
ANN, BOB = "ann@bank.test", "bob@bank.test"
DAY = datetime(2031, 3, 3, tzinfo=UTC)


class Secrets:
    def __init__(self) -> None:
        self.values = {connection_secret_name(ORG, "svc"): "first-password"}

    def resolve(self, reference: str) -> str:
        return self.values[reference]


class Gateways:
    def __init__(self, exchange: FakeExchange) -> None:
        self.exchange = exchange

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        return FakeCalendarGateway(self.exchange, connection_id=connection.connection_id)


class World:
    def __init__(self) -> None:
        self.clock = [DAY + timedelta(hours=8)]
        self.repos = memory_repositories()
        self.queue = MemoryQueueSender()
        self.exchange = FakeExchange([ANN, BOB])
        self.secrets = Secrets()
        gateways = Gateways(self.exchange)
        self.syncer = MailboxSyncer(
            self.repos, self.queue, gateways, self.secrets, now=lambda: self.clock[0]
        )
        self.applier = AppointmentApplier(self.repos, self.queue, gateways)
        self.fanout = PollFanOut(self.repos, self.queue, self.secrets, now=lambda: self.clock[0])
        config = ConnectionConfig(
            kind="ews",
            ews_url="https://mail.bank.test/EWS/Exchange.asmx",
            auth_type="ntlm",
            username="svc@bank.test",
            secret_reference="svc",
        )
        self.repos.connections.put(
            ORG, "onprem", ConnectionRecord(connection_id="onprem", **config.model_dump()), None
        )
        for staff_id, address in (("ann", ANN), ("bob", BOB)):
            self.repos.mailboxes.put(
                ORG,
                staff_id,
                MailboxRecord(
                    staff_id=staff_id,
                    connection_id="onprem",
                    address=address,
                    time_zone="Europe/Berlin",
                ),
                None,
            )

    def sync(self, staff_id: str = "ann", reason: str = "poll") -> Any:
        message = MailboxSyncRequested(org=ORG, staff_id=staff_id, reason=reason)
        return asyncio.run(self.syncer.sync(message))

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        rows = [
            json.loads(row.value.payload) for row in self.repos.outbox.list_by_org(ORG).values()
        ]
        return [row for row in rows if event_type is None or row["type"] == event_type]

    def blocks(self, staff_id: str = "ann") -> list[Any]:
        return [row.value for row in self.repos.busy_blocks.blocks_of(ORG, staff_id)]

    def mailbox(self, staff_id: str = "ann") -> MailboxRecord:
        found = self.repos.mailboxes.get(ORG, staff_id)
        assert found is not None
        return found.value

    def item_of(self, appointment_id: str) -> str:
        mapping = self.repos.event_map.get(ORG, appointment_id)
        assert mapping is not None
        assert mapping.value.item_id is not None
        return mapping.value.item_id

    def book(
        self, appointment_id: str, hour: int, *, version: int = 1, status: str = "booked"
    ) -> None:
        """The platform's snapshot (ann organizes, bob attends), stored and applied."""
        body = booked_at(version, hour, status=status)
        self.repos.appointments.save_snapshot(ORG, appointment_id, body)
        message = AppointmentChanged(org=ORG, appointment_id=appointment_id, version=version)
        asyncio.run(self.applier.apply(message))


def booked_at(version: int, hour: int, *, status: str = "booked") -> Any:
    """The platform's snapshot: ann organizes, bob attends, tomorrow at ``hour``."""
    return snapshot(
        version,
        status=status,
        organizer="ann",
        secondaries=("bob",),
        start=DAY + timedelta(days=1, hours=hour),
        time_zone="Europe/Berlin",
    )


def _dies_before_its_cursor(
    world: World, monkeypatch: pytest.MonkeyPatch, reason: str = "poll"
) -> None:
    """A sync of ann's mailbox writes its page's rows and dies before storing its cursor (here:
    the write of the mailbox row that would store it fails)."""
    put = world.repos.mailboxes.put

    def dies_at_the_cursor(org: str, staff_id: str, record: MailboxRecord, etag: Any) -> Any:
        if record.sync_state != world.mailbox().sync_state:
            raise RuntimeError("the worker died")
        return put(org, staff_id, record, etag)

    monkeypatch.setattr(world.repos.mailboxes, "put", dies_at_the_cursor)
    with pytest.raises(RuntimeError):
        world.sync(reason=reason)
    monkeypatch.undo()


@pytest.fixture
def world() -> World:
    return World()


def test_own_events_become_busy_blocks_private_ones_without_subject(world: World) -> None:
    world.exchange.add_personal_event(ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10))
    world.exchange.add_personal_event(
        ANN,
        "Therapy",
        DAY.replace(hour=11),
        DAY.replace(hour=12),
        sensitivity=Sensitivity.PRIVATE,
    )
    report = world.sync()
    assert report.outcome is SyncOutcome.SYNCED
    subjects = sorted((b.subject or "", b.private) for b in world.blocks())
    assert subjects == [("", True), ("Dentist", False)]
    [changed] = world.events("busy_time.changed")
    assert changed["data"]["staffId"] == "ann"
    assert "Therapy" not in json.dumps(world.events())
    assert world.mailbox().sync_state is not None
    assert world.mailbox().last_full_read_at is not None  # the first sync reads it all


def test_an_idle_mailbox_tells_nothing_and_a_re_read_page_tells_nothing_twice(
    world: World,
) -> None:
    world.exchange.add_personal_event(ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10))
    world.sync()
    told = len(world.events())
    world.sync()
    assert len(world.events()) == told
    # A worker died after its effects but before the cursor: the same page comes again.
    mailbox = world.repos.mailboxes.get(ORG, "ann")
    assert mailbox is not None
    world.repos.mailboxes.put(
        ORG, "ann", mailbox.value.model_copy(update={"sync_state": "0"}), mailbox.etag
    )
    world.sync()
    assert len(world.events()) == told
    assert len(world.blocks()) == 1


@pytest.mark.parametrize("reason", ["poll", FULL_READ])
def test_an_item_read_by_a_sync_that_died_before_its_cursor_and_deleted_since_is_forgotten(
    world: World, monkeypatch: pytest.MonkeyPatch, reason: str
) -> None:
    """A sync (an incremental one, or the daily full read) writes a new item's busy block, row
    and event, then dies before storing its cursor; the item is deleted before the message
    comes back, and a sync from the stored cursor (the message, a notification, a poll) reports
    nothing of an item made and deleted since: the rows say they were written past it."""
    world.sync()  # the first (full) read
    item = world.exchange.add_personal_event(
        ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10)
    )
    _dies_before_its_cursor(world, monkeypatch, reason)
    assert len(world.blocks()) == 1
    world.exchange.delete_as_owner(ANN, item.item_id)
    assert world.sync().outcome is SyncOutcome.SYNCED
    assert world.blocks() == []
    assert world.repos.mailbox_items.items_of(ORG, "ann") == {}
    assert world.mailbox().written_past is None
    # The next sync has nothing left to look up.
    assert world.sync().outcome is SyncOutcome.SYNCED


def test_a_lost_cursor_reads_everything_again_without_duplicates_or_new_events(
    world: World,
) -> None:
    world.exchange.add_personal_event(ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10))
    world.sync()
    told = len(world.events())
    mailbox = world.repos.mailboxes.get(ORG, "ann")
    assert mailbox is not None
    world.repos.mailboxes.put(
        ORG, "ann", mailbox.value.model_copy(update={"sync_state": "999999"}), mailbox.etag
    )
    assert world.sync().outcome is SyncOutcome.SYNCED
    assert len(world.blocks()) == 1
    assert len(world.events()) == told


def test_an_outlook_deletion_cancels_once_and_the_guard_holds_a_mass_cancellation(
    world: World,
) -> None:
    for n in range(4):
        world.book(f"apt-{n}", hour=9 + n)
    world.sync()
    ids = [world.item_of(f"apt-{n}") for n in range(4)]
    world.exchange.delete_as_owner(ANN, ids[0])
    world.sync()
    assert [e["data"]["appointmentId"] for e in world.events("appointment.cancelled")] == ["apt-0"]
    # Three of the remaining three vanish at once: held, nothing told or written.
    for item_id in ids[1:]:
        world.exchange.delete_as_owner(ANN, item_id)
    report = world.sync()
    assert report.outcome is SyncOutcome.HELD
    assert "held" in (world.mailbox().held or "")
    assert len(world.events("appointment.cancelled")) == 1
    for n in range(1, 4):
        mapping = world.repos.event_map.get(ORG, f"apt-{n}")
        assert mapping is not None
        assert not mapping.value.cancelled


def test_throttling_re_queues_the_sync_after_exchanges_delay(world: World) -> None:
    world.exchange.fail_next("changes_since", RetryAfter(42))
    report = world.sync()
    assert report.outcome is SyncOutcome.REQUEUED
    [sent] = [s for s in world.queue.sent if s.queue == MAILBOX_SYNC]
    assert sent.visibility_delay == timedelta(seconds=42)


def test_throttling_on_a_look_up_after_the_page_re_queues_the_sync_too(world: World) -> None:
    """Found by the load run: ErrorServerBusy on the item read again before an Outlook move is
    told (not on the page itself) raised for the host's redelivery, and five of them in a row
    poisoned the message; it comes back after Exchange's delay like a throttled page."""
    world.book("apt-busy", hour=9)
    world.sync("ann", FULL_READ)
    start = DAY + timedelta(days=1, hours=13)
    world.exchange.move_as_organizer(
        ANN, world.item_of("apt-busy"), start, start + timedelta(minutes=30)
    )
    world.queue.sent.clear()
    world.exchange.fail_next("get_event", RetryAfter(9))
    report = world.sync()
    assert report.outcome is SyncOutcome.REQUEUED
    [sent] = [s for s in world.queue.sent if s.queue == MAILBOX_SYNC]
    assert sent.visibility_delay == timedelta(seconds=9)
    assert world.events("appointment.rescheduled") == []
    world.sync()  # the message back: the move is told once
    assert len(world.events("appointment.rescheduled")) == 1


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        (AuthenticationFailed("HTTP 401"), SyncOutcome.AUTH_FAILED),
        (RetryAfter(7), SyncOutcome.REQUEUED),
    ],
)
def test_a_fault_of_the_full_read_that_replaces_a_lost_sync_state_is_handled_as_any_other(
    world: World, fault: CalendarError, outcome: SyncOutcome
) -> None:
    """Found by the convergence machine: Exchange forgot the mailbox's sync state and refused
    the credentials of the full read that takes its place; that refusal escaped the sync (the
    message failed five times and was poisoned) instead of marking the connection."""
    world.sync("ann", FULL_READ)
    world.exchange.fail_next("changes_since", SyncStateInvalid("forgotten", mailbox=ANN))
    world.exchange.fail_next("changes_since", fault)
    assert world.sync().outcome is outcome


def test_refused_credentials_mark_the_connection_and_stop_its_polling_until_the_secret_changes(
    world: World,
) -> None:
    world.exchange.fail_next("changes_since", AuthenticationFailed("HTTP 401"))
    assert world.sync().outcome is SyncOutcome.AUTH_FAILED
    connection = world.repos.connections.get(ORG, "onprem")
    assert connection is not None
    assert connection.value.health is Health.AUTH_FAILED
    [health] = world.events("connection.health_changed")
    assert health["data"] == {
        "connectionId": "onprem",
        "health": "auth_failed",
        "detail": "Exchange refused the connection's credentials",
    }
    assert "first-password" not in json.dumps(world.events())
    world.clock[0] += timedelta(minutes=5)
    assert world.fanout.run().queued == 0
    world.secrets.values[connection_secret_name(ORG, "svc")] = "rotated-password"
    assert world.fanout.run().queued == 2


def test_the_fan_out_queues_due_mailboxes_once_until_they_sync_or_the_mark_expires(
    world: World,
) -> None:
    assert world.fanout.run().queued == 2
    first = [json.loads(s.body) for s in world.queue.sent if s.queue == MAILBOX_SYNC]
    assert {m["reason"] for m in first} == {FULL_READ}  # never read: a full read
    assert world.fanout.run().queued == 0  # still pending
    world.sync("ann", FULL_READ)
    world.clock[0] += timedelta(seconds=30)
    assert world.fanout.run().queued == 0  # ann synced 30 s ago; bob still pending
    world.clock[0] += timedelta(seconds=31)
    assert world.fanout.run().queued == 1  # ann is due again (interval 60 s)
    world.clock[0] += PENDING_EXPIRY
    assert world.fanout.run().queued == 2  # bob's mark expired: a lost message stalls nothing


def test_a_mailbox_claimed_between_the_fan_outs_listing_and_its_claim_is_not_queued_again(
    world: World,
) -> None:
    """The fan-out claims the mailboxes it listed under the ETags it listed them with, many in
    one transaction: one claimed meanwhile (a notification's claim_sync) is left to that claim,
    and the others of its batch are still claimed and queued."""
    listed = world.repos.mailboxes.list_by_org(ORG)
    assert claim_sync(world.repos, ORG, "ann", world.clock[0])  # a racing claim wins ann
    claimed = claim_many(world.repos, ORG, listed, world.clock[0])
    assert set(claimed) == {"bob"}
    stored = world.repos.mailboxes.get(ORG, "bob")
    assert claimed["bob"] == stored  # the row as written, under its new ETag
    assert world.mailbox("bob").sync_pending_since == world.clock[0]
    assert world.fanout.run().queued == 0  # both pending now


def test_the_fan_out_skips_disabled_connections_and_follows_the_poll_interval(
    world: World,
) -> None:
    world.repos.settings.put(ORG, OrgSettings(poll_interval_seconds=600), None)
    world.sync("ann", FULL_READ)
    world.sync("bob", FULL_READ)
    world.clock[0] += timedelta(minutes=5)
    assert world.fanout.run().queued == 0
    world.clock[0] += timedelta(minutes=5)
    assert world.fanout.run().queued == 2
    connection = world.repos.connections.get(ORG, "onprem")
    assert connection is not None
    world.repos.connections.put(
        ORG, "onprem", connection.value.model_copy(update={"enabled": False}), connection.etag
    )
    world.clock[0] += PENDING_EXPIRY + timedelta(minutes=10)
    assert world.fanout.run().queued == 0


def test_an_attendee_copy_read_as_busy_before_its_uid_was_known_stops_blocking_once_known(
    world: World,
) -> None:
    """Found by the convergence machine: the worker that created a meeting died before storing
    its mapping and UID, the secondary's sync read their copy meanwhile as busy time of their
    own, and when the copy changed again (the meeting moved) and was known by its UID the
    busy block stayed. Now the block goes, and the booking platform is told."""
    world.book("apt-1", 10)
    uid = world.repos.event_map.get(ORG, "apt-1")
    assert uid is not None
    assert uid.value.uid is not None
    world.repos.appointment_uids.delete(ORG, uid.value.uid)  # as if never stored
    world.sync("bob", FULL_READ)
    assert [b.subject for b in world.blocks("bob")] != []
    world.repos.appointment_uids.remember(ORG, uid.value.uid, "apt-1")  # the retry stored it
    world.book("apt-1", 12, version=2)  # moved by the platform
    told = len(world.events("busy_time.changed"))
    world.sync("bob")
    assert world.blocks("bob") == []
    item = world.repos.mailbox_items.items_of(ORG, "bob")
    assert [row.kind for row in item.values()] == [MailboxItemKind.COPY]
    assert len(world.events("busy_time.changed")) == told + 1


def test_a_copy_read_as_busy_while_a_create_was_unrecorded_stops_blocking_when_adopted(
    world: World,
) -> None:
    """Found by the convergence machine: the worker created the meeting and died (its answer
    lost) before storing the mapping and UID; the secondary's sync read the copy meanwhile as
    busy time of their own; the retry adopted the meeting, and nothing ever changed the copy
    again: the busy block stayed for good. Now adopting a meeting whose UID was not known
    marks the copies read as busy for the next sync, which asks for it, to look at again."""
    world.exchange.fail_next(
        "create_event", ExchangeUnavailable("worker killed"), after_effect=True
    )
    with pytest.raises(AppointmentApplyFailed):
        world.book("apt-1", 10)
    pending = world.repos.event_map.get(ORG, "apt-1")
    assert pending is not None
    assert pending.value.item_id is None
    world.sync("bob", FULL_READ)
    assert world.blocks("bob") != []  # the copy, taken for bob's own time
    world.queue.sent.clear()
    told = len(world.events("busy_time.changed"))

    asyncio.run(world.applier.apply(AppointmentChanged(org=ORG, appointment_id="apt-1", version=1)))

    mapping = world.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert mapping.value.item_id is not None
    assert [body["staffId"] for body in world.queue.bodies(MAILBOX_SYNC)] == ["bob"]
    world.sync("bob")
    assert world.blocks("bob") == []
    items = world.repos.mailbox_items.items_of(ORG, "bob")
    assert [row.kind for row in items.values()] == [MailboxItemKind.COPY]
    assert len(world.events("busy_time.changed")) == told + 1


def test_a_copy_whose_uid_is_indexed_while_its_sync_writes_it_as_busy_is_read_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply worker indexes a new meeting's UID once the create has answered when the
    protocol chooses it (Graph), then marks the copies a sync read as busy meanwhile. A sync
    that looked the UID up just before it was indexed, and writes its rows just after that
    mark, was missed by it: its busy block stayed for good. Now the sync looks such UIDs up
    again once its rows are written, and a UID that names an appointment by then marks the
    copy for the next sync, which is asked for."""
    world.book("apt-1", 10)
    mapping = world.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    uid = mapping.value.uid
    assert uid is not None
    world.repos.appointment_uids.delete(ORG, uid)  # not indexed yet when bob's sync reads it
    put_items = world.repos.mailbox_items.put_items

    def indexed_meanwhile(org: str, staff_id: str, items: Any) -> None:
        # The worker indexes the UID and marks the copies read as busy: none written yet.
        if world.repos.appointment_uids.appointment_of(ORG, uid) is None:
            world.repos.appointment_uids.remember(ORG, uid, "apt-1")
            assert not world.repos.mailbox_items.recheck(ORG, "bob", uid, MailboxItemKind.BUSY)
        put_items(org, staff_id, items)

    monkeypatch.setattr(world.repos.mailbox_items, "put_items", indexed_meanwhile)
    world.sync("bob", FULL_READ)
    monkeypatch.undo()
    assert world.blocks("bob") != []  # read as bob's own time, before the UID was indexed
    assert [body["staffId"] for body in world.queue.bodies(MAILBOX_SYNC)] == ["bob"]

    world.sync("bob")

    assert world.blocks("bob") == []
    items = world.repos.mailbox_items.items_of(ORG, "bob")
    assert [row.kind for row in items.values()] == [MailboxItemKind.COPY]


def test_copies_of_a_meeting_deleted_without_cancellations_then_cancelled_are_cancelled(
    world: World,
) -> None:
    """Found by the convergence machine: the organizer deleted the meeting in Outlook without
    sending cancellations, and the booking platform cancelled the appointment before the
    organizer's mailbox was read. calbridge's cancellation found nothing left to cancel, and
    the sync then took the deletion for calbridge's own: the secondary's copy stayed on their
    calendar. Now the cancellation that finds the meeting gone cancels the copies itself (and
    the sync makes sure of them too); nothing is told (the platform cancelled it)."""
    world.book("apt-1", 10)
    world.sync("ann", FULL_READ)
    item_id = world.item_of("apt-1")
    mapping = world.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert mapping.value.uid is not None
    world.exchange.delete_permanently(ANN, item_id)  # deleted, no cancellation sent
    copy = world.exchange.find_by_uid(BOB, mapping.value.uid)
    assert copy is not None
    assert copy.is_live
    world.book("apt-1", 10, version=2, status="cancelled")
    copy = world.exchange.find_by_uid(BOB, mapping.value.uid)
    assert copy is None or not copy.is_live  # no cancellation was sent: calbridge's own
    assert world.sync("ann").outcome is SyncOutcome.SYNCED
    copy = world.exchange.find_by_uid(BOB, mapping.value.uid)
    assert copy is None or not copy.is_live
    assert world.events("appointment.cancelled") == []
    assert world.mailbox("ann").held is None


def test_a_meeting_deleted_in_outlook_before_the_first_read_after_a_move_is_reported(
    world: World,
) -> None:
    """Found by the convergence machine: the organizer deleted a meeting in Outlook and the
    mailbox moved to another connection before that was read. The new baseline forgot what it
    did not see under the old ids, so the cancellation was never told. Now an appointment the
    read did not see is looked up by its marker; one found nowhere is told as deleted, and one
    found is adopted without a word."""
    world.book("apt-kept", 10)
    world.book("apt-deleted", 12)
    world.sync("ann", FULL_READ)
    world.exchange.delete_as_owner(ANN, world.item_of("apt-deleted"))
    cloud = world.repos.connections.get(ORG, "onprem")
    assert cloud is not None
    world.repos.connections.put(
        ORG, "cloud", cloud.value.model_copy(update={"connection_id": "cloud"}), None
    )
    row = world.repos.mailboxes.get(ORG, "ann")
    assert row is not None
    world.repos.mailboxes.put(
        ORG,
        "ann",
        row.value.model_copy(
            update={"connection_id": "cloud", "rebaseline": True, "sync_state": None}
        ),
        row.etag,
    )
    assert world.sync("ann", FULL_READ).outcome is SyncOutcome.SYNCED
    [cancelled] = world.events("appointment.cancelled")
    assert cancelled["data"] == {"appointmentId": "apt-deleted", "by": "ann"}
    kept = world.repos.event_map.get(ORG, "apt-kept")
    assert kept is not None
    assert not kept.value.cancelled
    assert world.mailbox("ann").rebaseline is False
    world.sync("ann")
    assert len(world.events("appointment.cancelled")) == 1


def test_a_meeting_created_while_a_full_read_pages_is_not_taken_for_deleted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the convergence machine: a full read paged through the calendar, the apply
    worker created a meeting and recorded it meanwhile, and the read, comparing what it saw
    with what calbridge knew at its end, took the new meeting for one deleted in Outlook: a
    cancellation nobody made was told and the attendees' copies were removed."""
    world.sync("ann", FULL_READ)
    read = world.exchange.changes_since
    booked: list[str] = []

    def read_then_book(*args: Any, **kwargs: Any) -> Any:
        changes = read(*args, **kwargs)
        if not booked:
            booked.append("apt-1")
            worker = threading.Thread(target=world.book, args=("apt-1", 10))
            worker.start()
            worker.join()
        return changes

    monkeypatch.setattr(world.exchange, "changes_since", read_then_book)
    assert world.sync("ann", FULL_READ).outcome is SyncOutcome.SYNCED
    assert booked == ["apt-1"]
    assert world.events("appointment.cancelled") == []
    mapping = world.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert not mapping.value.cancelled
    monkeypatch.undo()
    world.sync("ann")
    assert world.events("appointment.cancelled") == []
    assert [e.is_live for e in world.exchange.calendar(BOB)] == [True]


def _fanned_out(world: World) -> dict[str, MailboxSyncRequested]:
    """The messages of one poll fan-out, by staff id."""
    world.queue.sent.clear()
    world.fanout.run()
    return {message.staff_id: message for message in _syncs_queued(world)}


def _syncs_queued(world: World) -> list[MailboxSyncRequested]:
    return [
        parse_message(MailboxSyncRequested, sent.body)
        for sent in world.queue.sent
        if sent.queue == MAILBOX_SYNC
    ]


class _Reads:
    """Counts the reads of the mailbox and connection rows."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.counts = {"mailbox": 0, "connection": 0}
        for name, repository in (
            ("mailbox", world.repos.mailboxes),
            ("connection", world.repos.connections),
        ):
            monkeypatch.setattr(repository, "get", self._counted(name, repository.get))

    def _counted(self, name: str, read: Any) -> Any:
        def get(*args: Any) -> Any:
            self.counts[name] += 1
            return read(*args)

        return get


def test_a_polled_idle_mailbox_is_synced_from_the_row_its_message_carries(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fan-out's message carries the row as the claim wrote it (and the listed connection
    row's ETag): an idle sync reads neither row, and writes the mailbox's under that ETag."""
    world.sync("ann", FULL_READ)
    world.sync("bob", FULL_READ)
    world.clock[0] += timedelta(minutes=2)
    messages = _fanned_out(world)
    listed = messages["ann"].listed
    assert listed is not None
    stored = world.repos.mailboxes.get(ORG, "ann")
    assert stored is not None
    assert (MailboxRecord.model_validate_json(listed.row), listed.etag) == (
        stored.value,
        stored.etag,
    )
    reads = _Reads(world, monkeypatch)
    assert asyncio.run(world.syncer.sync(messages["ann"])).outcome is SyncOutcome.SYNCED
    assert reads.counts == {"mailbox": 0, "connection": 0}
    after = world.repos.mailboxes.get(ORG, "ann")
    assert after is not None
    assert after.value.sync_pending_since is None
    assert after.value.last_sync_at == world.clock[0]
    assert after.etag != listed.etag  # written under the claim's ETag, not read again first
    assert reads.counts["mailbox"] == 1  # the read just above


def test_a_row_changed_after_the_claim_is_read_again_and_decided_afresh(world: World) -> None:
    """A mailbox moved to another address between the fan-out's claim and its sync: the sync's
    end finds the row changed, reads it again, and stores no cursor read from the old one."""
    world.sync("ann", FULL_READ)
    world.clock[0] += timedelta(minutes=2)
    message = _fanned_out(world)["ann"]
    moved = world.repos.mailboxes.get(ORG, "ann")
    assert moved is not None
    world.repos.mailboxes.put(
        ORG,
        "ann",
        moved.value.model_copy(update={"address": "ann.new@bank.test", "rebaseline": True}),
        moved.etag,
    )
    before = world.mailbox("ann")
    asyncio.run(world.syncer.sync(message))
    after = world.mailbox("ann")
    assert after.sync_pending_since is None
    assert (after.sync_state, after.last_sync_at, after.rebaseline) == (
        before.sync_state,
        before.last_sync_at,
        True,
    )


def test_a_message_carrying_the_row_from_before_a_sync_died_still_forgets_what_that_sync_wrote(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fan-out's message carries the row as claimed; another sync of the mailbox wrote rows
    after that and died before its cursor, and the item was deleted since: the row the message
    carries does not say so (and its cursor may be an older one), so the sync that finds the
    row moved on when it writes it stores nothing over it and queues a sync that reads it."""
    world.sync("ann", FULL_READ)
    world.sync("bob", FULL_READ)
    world.clock[0] += timedelta(minutes=2)
    message = _fanned_out(world)["ann"]
    item = world.exchange.add_personal_event(
        ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10)
    )
    _dies_before_its_cursor(world, monkeypatch)
    assert len(world.blocks()) == 1
    world.exchange.delete_as_owner(ANN, item.item_id)
    world.queue.sent.clear()
    asyncio.run(world.syncer.sync(message))
    again = _syncs_queued(world)
    assert [(m.reason, m.listed) for m in again] == [(SYNCED_MEANWHILE, None)]
    assert asyncio.run(world.syncer.sync(again[0])).outcome is SyncOutcome.SYNCED
    assert world.blocks() == []
    assert world.repos.mailbox_items.items_of(ORG, "ann") == {}
    assert world.mailbox().written_past is None


def test_a_message_carrying_a_row_whose_cursor_moved_on_writes_nothing_from_the_old_one(
    world: World,
) -> None:
    """Another sync stored a newer cursor after the claim: a page read from the cursor the
    message carries is not written (its position would overwrite the newer one); the sync
    queued in its place reads the row and goes on from the stored cursor."""
    world.sync("ann", FULL_READ)
    world.sync("bob", FULL_READ)
    world.clock[0] += timedelta(minutes=2)
    message = _fanned_out(world)["ann"]
    world.exchange.add_personal_event(ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10))
    world.sync()
    stored = world.mailbox()
    world.exchange.add_personal_event(ANN, "Gym", DAY.replace(hour=12), DAY.replace(hour=13))
    world.queue.sent.clear()
    assert asyncio.run(world.syncer.sync(message)).outcome is SyncOutcome.SKIPPED
    assert len(world.blocks()) == 1
    assert (world.mailbox().sync_state, world.mailbox().written_past) == (
        stored.sync_state,
        None,
    )
    again = _syncs_queued(world)
    assert [(m.reason, m.listed) for m in again] == [(SYNCED_MEANWHILE, None)]
    assert world.mailbox().sync_pending_since is not None
    assert asyncio.run(world.syncer.sync(again[0])).outcome is SyncOutcome.SYNCED
    assert len(world.blocks()) == 2
    assert world.mailbox().sync_pending_since is None


def test_a_message_that_waited_longer_than_the_listing_is_trusted_reads_the_row(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.sync("ann", FULL_READ)
    world.clock[0] += timedelta(minutes=2)
    message = _fanned_out(world)["ann"]
    world.clock[0] += LISTED_ROW_TRUSTED_FOR + timedelta(seconds=1)
    reads = _Reads(world, monkeypatch)
    assert asyncio.run(world.syncer.sync(message)).outcome is SyncOutcome.SYNCED
    assert reads.counts["mailbox"] == 1


def test_a_large_sync_state_leaves_the_row_out_of_the_message(world: World) -> None:
    world.sync("ann", FULL_READ)
    world.sync("bob", FULL_READ)
    row = world.repos.mailboxes.get(ORG, "bob")
    assert row is not None
    large = row.value.model_copy(update={"sync_state": "s" * LISTED_MESSAGE_LIMIT})
    world.repos.mailboxes.put(ORG, "bob", large, row.etag)
    world.clock[0] += timedelta(minutes=2)
    messages = _fanned_out(world)
    assert messages["ann"].listed is not None
    assert messages["bob"].listed is None
    assert all(len(s.body) <= LISTED_MESSAGE_LIMIT for s in world.queue.sent)


def test_after_refused_credentials_a_message_naming_the_old_connection_row_makes_no_call(
    world: World,
) -> None:
    """Messages queued before Exchange refused the connection's credentials name the row as it
    was: the process forgets the row it kept, so the next sync reads it and makes no call (a
    round of refused logins could lock the service account)."""
    world.sync("ann", FULL_READ)
    world.sync("bob", FULL_READ)
    world.clock[0] += timedelta(minutes=2)
    messages = _fanned_out(world)
    world.exchange.fail_next("*", AuthenticationFailed("HTTP 401"), times=1_000)
    assert asyncio.run(world.syncer.sync(messages["ann"])).outcome is SyncOutcome.AUTH_FAILED
    calls = world.exchange.request_count()
    assert asyncio.run(world.syncer.sync(messages["bob"])).outcome is SyncOutcome.SKIPPED
    assert world.exchange.request_count() == calls


def _refuse_credentials(world: World) -> None:
    world.exchange.fail_next("*", AuthenticationFailed("HTTP 401"), mailbox=ANN, times=1_000)
    assert world.sync().outcome is SyncOutcome.AUTH_FAILED
    world.exchange.clear_faults()


def test_a_queued_sync_of_an_auth_failed_connection_makes_no_call() -> None:
    world = World()
    _refuse_credentials(world)
    calls = world.exchange.request_count()
    assert world.sync("bob").outcome is SyncOutcome.SKIPPED
    assert world.exchange.request_count() == calls


def test_the_slow_retry_reads_one_mailbox_every_interval_and_its_success_recovers() -> None:
    world = World()
    _refuse_credentials(world)
    world.queue.sent.clear()
    # The same secret, not yet due: nothing queued.
    assert world.fanout.run().queued == 0
    world.clock[0] += AUTH_RETRY_EVERY
    assert world.fanout.run().queued == 1
    [retry] = world.queue.bodies(MAILBOX_SYNC)
    assert retry == {"org": ORG, "staffId": "ann", "reason": AUTH_RETRY}
    # Claimed for this interval: the next timer run does not retry again.
    assert world.fanout.run().queued == 0
    world.queue.sent.clear()
    assert world.sync("ann", reason=AUTH_RETRY).outcome is SyncOutcome.SYNCED
    connection = world.repos.connections.get(ORG, "onprem")
    assert connection is not None
    assert connection.value.health is Health.OK
    told = sorted(e["data"]["health"] for e in world.events("connection.health_changed"))
    assert told == ["auth_failed", "ok"]
    # Every mailbox catches up from its cursor.
    assert sorted(m["staffId"] for m in world.queue.bodies(MAILBOX_SYNC)) == ["ann", "bob"]


def test_a_failed_slow_retry_stays_auth_failed_and_tells_nothing_new() -> None:
    world = World()
    _refuse_credentials(world)
    world.exchange.fail_next("*", AuthenticationFailed("HTTP 401"), mailbox=ANN, times=1_000)
    world.clock[0] += AUTH_RETRY_EVERY
    world.fanout.run()
    assert world.sync("ann", reason=AUTH_RETRY).outcome is SyncOutcome.AUTH_FAILED
    connection = world.repos.connections.get(ORG, "onprem")
    assert connection is not None
    assert connection.value.health is Health.AUTH_FAILED
    assert len(world.events("connection.health_changed")) == 1


def test_an_outlook_move_read_before_the_worker_recorded_its_create_is_still_reported(
    world: World,
) -> None:
    # Found by the convergence machine: the organizer moved a just-created event, and the sync
    # (a Graph notification's) read it in the moment between the create and the worker's
    # mapping write. Not yet calbridge's item, it was remembered as read with the moved change
    # key, so no later sync looked at it again: the move was never reported (and the next pass
    # of the same snapshot moved the event back).
    world.book("apt-race", hour=9)
    written = world.repos.event_map.get(ORG, "apt-race")
    assert written is not None
    item_id = world.item_of("apt-race")
    pending = written.value.model_copy(update={"item_id": None, "change_key": None})
    world.repos.event_map.put(ORG, "apt-race", pending, written.etag)
    start = DAY + timedelta(days=1, hours=13)
    world.exchange.move_as_organizer(ANN, item_id, start, start + timedelta(minutes=30))

    world.sync()  # reads the moved item while the worker's note says "creating"
    assert world.events("appointment.rescheduled") == []
    now = world.repos.event_map.get(ORG, "apt-race")
    assert now is not None
    world.repos.event_map.put(ORG, "apt-race", written.value, now.etag)  # the worker's write
    world.sync()

    [moved] = world.events("appointment.rescheduled")
    assert moved["data"]["appointmentId"] == "apt-race"
    assert datetime.fromisoformat(moved["data"]["start"]) == start


class _Meanwhile(Gateways):
    """Runs ``meanwhile`` once, right after the first ``operation`` any gateway carries out
    (``update_event``: between the worker's write to Exchange and its mapping write;
    ``changes_since``: between a sync's read and its writes)."""

    def __init__(
        self, exchange: FakeExchange, operation: str, meanwhile: Callable[[], Awaitable[None]]
    ) -> None:
        super().__init__(exchange)
        self._operation = operation
        self._meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        gateway = super().for_connection(org, connection)
        carry_out = getattr(gateway, self._operation)

        async def then_meanwhile(*args: Any, **kwargs: Any) -> Any:
            answer = await carry_out(*args, **kwargs)
            if self._meanwhile is not None:
                meanwhile, self._meanwhile = self._meanwhile, None
                await meanwhile()
            return answer

        setattr(gateway, self._operation, then_meanwhile)
        return gateway


def test_an_own_write_for_a_snapshot_overtaken_meanwhile_is_not_taken_for_a_move(
    world: World,
) -> None:
    # Found by the convergence machine (tolerated there until now): the platform moved the
    # appointment twice in quick succession. The worker of the first move wrote it to Exchange,
    # and before it stored the mapping the second move's snapshot was stored and the
    # organizer's mailbox read (a Graph notification comes at once). The item then showed
    # neither the mapping's time nor the newest snapshot's, and the sync took calbridge's own
    # write for the organizer's move: the platform was told of a reschedule it had asked for.
    world.book("apt-1", 10)
    world.sync()
    world.repos.appointments.save_snapshot(ORG, "apt-1", booked_at(2, 11))

    async def moved_again_and_read() -> None:
        world.repos.appointments.save_snapshot(ORG, "apt-1", booked_at(3, 12))
        await world.syncer.sync(MailboxSyncRequested(org=ORG, staff_id="ann", reason="poll"))

    racing = AppointmentApplier(
        world.repos,
        world.queue,
        _Meanwhile(world.exchange, "update_event", moved_again_and_read),
    )
    asyncio.run(racing.apply(AppointmentChanged(org=ORG, appointment_id="apt-1", version=2)))
    asyncio.run(world.applier.apply(AppointmentChanged(org=ORG, appointment_id="apt-1", version=3)))
    world.sync()

    assert world.events("appointment.rescheduled") == []
    [event] = [e for e in world.exchange.calendar(ANN) if not e.is_cancelled]
    assert event.start == DAY + timedelta(days=1, hours=12)


class _WorkerKilled(BaseException):
    """The process ends where it is raised: nothing of the worker's own handling runs."""


def test_an_own_write_a_concurrent_pass_took_for_up_to_date_is_undone_after_its_worker_died(
    world: World,
) -> None:
    # The platform moved the appointment and moved it back at once. The first move's worker
    # wrote 11:00 to Exchange; meanwhile the second snapshot (back at 10:00) was applied as up
    # to date (the mapping still said 10:00); then the first worker died before its mapping
    # write. The item shows calbridge's own 11:00 while everything stored says 10:00: the sync
    # tells nothing and marks the mapping in doubt, and the redelivered message puts it back.
    world.book("apt-1", 10)
    world.sync()
    world.repos.appointments.save_snapshot(ORG, "apt-1", booked_at(2, 11))

    async def moved_back_then_died() -> None:
        world.repos.appointments.save_snapshot(ORG, "apt-1", booked_at(3, 10))
        await world.applier.apply(AppointmentChanged(org=ORG, appointment_id="apt-1", version=3))
        raise _WorkerKilled

    racing = AppointmentApplier(
        world.repos,
        world.queue,
        _Meanwhile(world.exchange, "update_event", moved_back_then_died),
    )
    with pytest.raises(_WorkerKilled):
        asyncio.run(racing.apply(AppointmentChanged(org=ORG, appointment_id="apt-1", version=2)))
    world.sync()
    assert world.events("appointment.rescheduled") == []
    mapping = world.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert mapping.value.in_doubt

    asyncio.run(world.applier.apply(AppointmentChanged(org=ORG, appointment_id="apt-1", version=2)))
    world.sync()

    assert world.events("appointment.rescheduled") == []
    [event] = [e for e in world.exchange.calendar(ANN) if not e.is_cancelled]
    assert event.start == DAY + timedelta(days=1, hours=10)


def test_a_sync_of_a_mailbox_moved_while_it_read_writes_nothing(world: World) -> None:
    # Found by the convergence machine (busy time doubled and lost after two quick moves): a
    # sync still reading through the old connection wrote its rows, under the old ids, after
    # the administrator had moved the mailbox and the new connection's baseline had begun. Its
    # blocks stayed beside the new ones, and its removals took some of them away.
    world.sync()
    world.exchange.add_personal_event(ANN, "Dentist", DAY.replace(hour=9), DAY.replace(hour=10))
    config = world.repos.connections.get(ORG, "onprem")
    assert config is not None
    world.repos.connections.put(
        ORG, "cloud", config.value.model_copy(update={"connection_id": "cloud"}), None
    )

    async def moved() -> None:
        row = world.repos.mailboxes.get(ORG, "ann")
        assert row is not None
        reassigned = row.value.model_copy(update={"connection_id": "cloud", "rebaseline": True})
        world.repos.mailboxes.put(ORG, "ann", reassigned, row.etag)

    syncer = MailboxSyncer(
        world.repos,
        world.queue,
        _Meanwhile(world.exchange, "changes_since", moved),
        world.secrets,
        now=lambda: world.clock[0],
    )
    told = len(world.events())

    report = asyncio.run(syncer.sync(MailboxSyncRequested(org=ORG, staff_id="ann", reason="poll")))

    assert report.outcome is SyncOutcome.SKIPPED
    assert world.blocks() == []
    assert world.repos.mailbox_items.items_of(ORG, "ann") == {}
    assert len(world.events()) == told
    assert world.mailbox().connection_id == "cloud"
    assert world.mailbox().rebaseline
