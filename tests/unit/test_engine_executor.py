"""One apply pass (observe → decide → execute → record) against the in-memory Exchange."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from shared.apply.executor import ApplyOutcome, apply_appointment
from shared.engine.reconcile import READ_FIRST_WAITS, Completed, Failed, PlanReason, Written
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import (
    CalendarGateway,
    ChangeKeyConflict,
    EventNotFound,
    ExchangeUnavailable,
    RetryAfter,
)
from shared.models import AppointmentSnapshot, EventMapping, MailboxRef
from tests.unit.test_engine import APPOINTMENT, DIRECTORY, MARKER, ORG, START, address, snapshot

HOUR = timedelta(hours=1)
START_2H = START + 2 * HOUR


def setup() -> tuple[FakeExchange, FakeCalendarGateway]:
    exchange = FakeExchange(ref.address for ref in DIRECTORY.values())
    return exchange, FakeCalendarGateway(exchange, connection_id="conn-1")


def apply(
    gateway: CalendarGateway,
    snap: AppointmentSnapshot,
    mapping: EventMapping | None,
    directory: dict[str, MailboxRef] = DIRECTORY,
) -> ApplyOutcome:
    return asyncio.run(
        apply_appointment(lambda ref: gateway, ORG, APPOINTMENT, snap, mapping, directory)
    )


def test_applying_a_booking_creates_the_meeting_and_returns_the_mapping_to_store() -> None:
    exchange, gateway = setup()

    outcome = apply(gateway, snapshot(1, secondaries=("ben",)), None)

    assert outcome.failure is None
    [event] = exchange.calendar(address("ana"))
    assert event.marker == MARKER
    assert [c.uid for c in exchange.calendar(address("ben"))] == [event.uid]
    assert outcome.mapping is not None
    assert (outcome.mapping.item_id, outcome.mapping.change_key) == (
        event.item_id,
        event.change_key,
    )


def test_a_throttled_create_is_reported_and_the_redelivery_makes_one_event() -> None:
    exchange, gateway = setup()
    exchange.fail_next("create_event", RetryAfter(7))

    first = apply(gateway, snapshot(1), None)

    assert isinstance(first.failure, RetryAfter)
    assert first.failure.retry_after_seconds == 7
    assert first.mapping is not None
    assert (first.mapping.mailbox, first.mapping.item_id) == (address("ana"), None)
    assert exchange.calendar(address("ana")) == []
    second = apply(gateway, snapshot(1), first.mapping)
    assert second.failure is None
    assert len(exchange.calendar(address("ana"))) == 1


def test_a_create_whose_answer_was_lost_is_adopted_not_repeated() -> None:
    exchange, gateway = setup()
    exchange.fail_next("create_event", ExchangeUnavailable("timeout"), after_effect=True)

    first = apply(gateway, snapshot(1, secondaries=("ben",)), None)
    second = apply(gateway, snapshot(1, secondaries=("ben",)), first.mapping)

    assert first.failure is not None
    assert second.plan is not None
    assert second.plan.reason is PlanReason.ADOPTED_AS_IT_IS
    assert exchange.request_count("create_event") == 1
    assert exchange.request_count("update_event") == 0  # the create made this very draft
    [event] = exchange.calendar(address("ana"))
    assert second.mapping is not None
    assert second.mapping.item_id == event.item_id
    assert len(exchange.calendar(address("ben"))) == 1


def test_a_failed_observation_changes_nothing() -> None:
    exchange, gateway = setup()
    exchange.fail_next("create_event", RetryAfter(3))
    pending = apply(gateway, snapshot(1), None).mapping  # a create whose outcome is unknown
    assert pending is not None
    exchange.fail_next("find_by_marker", RetryAfter(3))

    outcome = apply(gateway, snapshot(1), pending)

    assert outcome.plan is None
    assert isinstance(outcome.failure, RetryAfter)
    assert exchange.request_count("create_event") == 1
    assert outcome.mapping is not None
    assert outcome.mapping == pending.model_copy(update={"last_error": outcome.mapping.last_error})


# --- one request per change, looking only where the mapping cannot be trusted --------------


def test_create_update_and_cancel_cost_one_request_each_and_a_handover_two() -> None:
    exchange, gateway = setup()

    def requests_for(snap: AppointmentSnapshot, current: EventMapping | None) -> ApplyOutcome:
        before = exchange.request_count()
        outcome = apply(gateway, snap, current)
        assert outcome.failure is None
        outcomes.append(exchange.request_count() - before)
        return outcome

    outcomes: list[int] = []
    created = requests_for(snapshot(1, secondaries=("ben",)), None)
    updated = requests_for(snapshot(2, secondaries=("ben",), title="Moved"), created.mapping)
    handed = requests_for(snapshot(3, organizer="ben", secondaries=("cai",)), updated.mapping)
    requests_for(snapshot(4, organizer="ben", status="cancelled"), handed.mapping)

    assert outcomes == [1, 1, 2, 1]
    assert exchange.request_count("find_by_marker") == 0
    assert exchange.request_count("get_event") == 0


def test_a_create_whose_answer_was_lost_is_found_by_marker_and_adopted() -> None:
    exchange, gateway = setup()
    exchange.fail_next("create_event", ExchangeUnavailable("timed out"), after_effect=True)

    lost = apply(gateway, snapshot(1, secondaries=("ben",)), None)

    assert lost.mapping is not None
    assert lost.mapping.item_id is None  # pending: the event may exist
    [event] = exchange.calendar(address("ana"))
    again = apply(gateway, snapshot(1, secondaries=("ben",)), lost.mapping)

    assert again.failure is None
    assert again.plan is not None
    assert again.plan.reason is PlanReason.ADOPTED_AS_IT_IS
    assert exchange.request_count("find_by_marker") == 1
    assert exchange.request_count("create_event") == 1
    assert exchange.request_count("update_event") == 0
    assert [e.item_id for e in exchange.calendar(address("ana")) if e.is_live] == [event.item_id]
    assert again.mapping is not None
    assert again.mapping.item_id == event.item_id
    assert len([c for c in exchange.calendar(address("ben")) if c.is_live]) == 1


def test_an_update_refused_as_a_conflict_looks_and_a_newer_snapshot_is_written_once() -> None:
    exchange, gateway = setup()
    booked = apply(gateway, snapshot(1), None).mapping
    assert booked is not None
    assert booked.item_id is not None
    # Edited in Outlook since: the change key calbridge holds is stale.
    exchange.move_as_organizer(address("ana"), booked.item_id, START_2H, START_2H + HOUR)

    refused = apply(gateway, snapshot(2, title="Renamed"), booked)

    assert isinstance(refused.failure, ChangeKeyConflict)
    assert refused.mapping is not None
    assert refused.mapping.in_doubt
    assert refused.mapping.change_key == booked.change_key
    waited = apply(gateway, snapshot(2, title="Renamed"), refused.mapping)

    # The move is the organizer's: read (and reported) by the mailbox sync before the newer
    # snapshot is written over it.
    assert waited.plan is not None
    assert waited.plan.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST
    assert waited.results == ()
    assert waited.mapping is not None
    assert waited.mapping.in_doubt
    [moved] = exchange.calendar(address("ana"))
    assert moved.subject != "Renamed"
    # The sync reads the move: the mapping holds its change key.
    read = waited.mapping.model_copy(update={"change_key": moved.change_key})
    looked = apply(gateway, snapshot(2, title="Renamed"), read)

    assert looked.failure is None
    assert exchange.request_count("find_by_marker") == 2
    [event] = exchange.calendar(address("ana"))
    assert event.subject == "Renamed"
    assert looked.mapping is not None
    assert not looked.mapping.in_doubt
    assert looked.mapping.change_key == event.change_key


def test_an_event_deleted_in_outlook_just_before_an_update_is_created_again() -> None:
    exchange, gateway = setup()
    booked = apply(gateway, snapshot(1, secondaries=("ben",)), None).mapping
    assert booked is not None
    assert booked.item_id is not None
    exchange.delete_as_owner(address("ana"), booked.item_id)

    missing = apply(gateway, snapshot(2, secondaries=("ben",), title="Renamed"), booked)

    assert isinstance(missing.failure, EventNotFound)
    assert missing.mapping is not None
    assert missing.mapping.in_doubt
    waited = apply(gateway, snapshot(2, secondaries=("ben",), title="Renamed"), missing.mapping)
    # The deletion is read (and reported) by the mailbox sync before the event is made again.
    assert waited.plan is not None
    assert waited.plan.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST
    assert waited.mapping is not None
    assert [e for e in exchange.calendar(address("ana")) if e.is_live] == []
    # The sync has not said so after every wait: made again all the same.
    waited_out = waited.mapping.model_copy(update={"read_first_waits": READ_FIRST_WAITS})
    again = apply(gateway, snapshot(2, secondaries=("ben",), title="Renamed"), waited_out)

    assert again.failure is None
    assert again.plan is not None
    assert again.plan.reason is PlanReason.RECREATE
    [event] = [e for e in exchange.calendar(address("ana")) if e.is_live]
    assert event.subject == "Renamed"
    assert event.item_id != booked.item_id
    assert again.mapping is not None
    assert (again.mapping.item_id, again.mapping.generation) == (event.item_id, 2)
    assert [c.uid for c in exchange.calendar(address("ben")) if c.is_live] == [event.uid]


def test_execution_stops_at_the_first_failure() -> None:
    exchange, gateway = setup()
    booked = apply(gateway, snapshot(1, secondaries=("ben",)), None)
    exchange.fail_next("cancel_event", ExchangeUnavailable("503"))

    handover = apply(gateway, snapshot(2, organizer="ben"), booked.mapping)

    assert handover.plan is not None
    assert handover.plan.reason is PlanReason.HANDOVER
    assert len(handover.results) == 1
    assert isinstance(handover.results[0], Failed)
    assert exchange.request_count("create_event") == 1  # the new organizer's create never ran
    assert handover.mapping is not None
    assert handover.mapping.organizer_staff_id == "ana"
    assert handover.mapping.last_error is not None


def test_each_mailbox_is_written_through_its_own_connection() -> None:
    # ana is still on premises (EWS), ben already moved to Exchange Online (Graph).
    exchange = FakeExchange(ref.address for ref in DIRECTORY.values())
    onprem = FakeCalendarGateway(exchange, connection_id="conn-1", reachable=[address("ana")])
    online = FakeCalendarGateway(exchange, connection_id="conn-2", reachable=[address("ben")])
    directory = {
        "ana": DIRECTORY["ana"],
        "ben": DIRECTORY["ben"].model_copy(update={"connection_id": "conn-2"}),
    }
    gateways = {"conn-1": onprem, "conn-2": online}

    def gateway_for(ref: MailboxRef) -> CalendarGateway:
        return gateways[ref.connection_id]

    booked = asyncio.run(
        apply_appointment(gateway_for, ORG, APPOINTMENT, snapshot(1), None, directory)
    )
    handed_over = asyncio.run(
        apply_appointment(
            gateway_for, ORG, APPOINTMENT, snapshot(2, organizer="ben"), booked.mapping, directory
        )
    )

    assert handed_over.failure is None
    assert [type(r) for r in handed_over.results] == [Completed, Written]
    assert exchange.calendar(address("ana")) == []
    [event] = exchange.calendar(address("ben"))
    assert event.marker == MARKER
    assert handed_over.mapping is not None
    assert handed_over.mapping.connection_id == "conn-2"


def test_a_worker_dying_right_after_a_create_leaves_a_mapping_that_finds_the_event() -> None:
    exchange, gateway = setup()
    stored: list[EventMapping] = []

    async def store(pending: EventMapping) -> None:
        stored.append(pending)

    # The create happens; the worker dies before it can store the outcome.
    exchange.fail_next("create_event", ExchangeUnavailable("worker killed"), after_effect=True)
    asyncio.run(
        apply_appointment(
            lambda ref: gateway,
            ORG,
            APPOINTMENT,
            snapshot(1, secondaries=("cai",)),
            None,
            DIRECTORY,
            before_write=store,
        )
    )
    [pending] = stored
    assert (pending.mailbox, pending.item_id) == (address("ana"), None)

    # Before the redelivery, the booking platform moved the appointment to ben.
    later = apply(gateway, snapshot(2, organizer="ben", secondaries=("cai",)), pending)

    assert later.failure is None
    assert [e for e in exchange.calendar(address("ana")) if e.is_live] == []
    assert [e.organizer for e in exchange.calendar(address("cai")) if e.is_live] == [address("ben")]
    [event] = exchange.calendar(address("ben"))
    assert later.mapping is not None
    assert later.mapping.item_id == event.item_id


def test_a_failing_store_before_a_create_stops_the_pass_before_anything_is_created() -> None:
    exchange, gateway = setup()

    async def store(pending: EventMapping) -> None:
        raise RuntimeError("etag conflict")

    with pytest.raises(RuntimeError, match="etag conflict"):
        asyncio.run(
            apply_appointment(
                lambda ref: gateway, ORG, APPOINTMENT, snapshot(1), None, DIRECTORY, store
            )
        )
    assert exchange.request_count("create_event") == 0


def _stored_by(
    gateway: CalendarGateway, snap: AppointmentSnapshot, mapping: EventMapping | None
) -> tuple[ApplyOutcome, list[EventMapping]]:
    stored: list[EventMapping] = []

    async def store(written: EventMapping) -> None:
        stored.append(written)

    outcome = asyncio.run(
        apply_appointment(lambda ref: gateway, ORG, APPOINTMENT, snap, mapping, DIRECTORY, store)
    )
    return outcome, stored


def test_a_pass_that_looked_stores_its_intent_before_its_first_write() -> None:
    _, gateway = setup()
    booked = apply(gateway, snapshot(1), None)
    assert booked.mapping is not None
    doubtful = booked.mapping.model_copy(update={"in_doubt": True})

    handover, stored = _stored_by(gateway, snapshot(2, organizer="ben"), doubtful)

    assert handover.plan is not None
    assert handover.plan.reason is PlanReason.HANDOVER
    # Before the old meeting is cancelled: the mapping as read, still naming it, in doubt; then
    # the pending create.
    intent, pending = stored
    assert intent == doubtful
    assert (pending.mailbox, pending.item_id) == (address("ben"), None)


def test_a_write_refused_by_the_store_before_it_changes_nothing_in_exchange() -> None:
    # Another pass stored the mapping since this one read it: the intent's ETag conflict stops
    # this pass before its first write (the old organizer's meeting is not cancelled either).
    exchange, gateway = setup()
    booked = apply(gateway, snapshot(1), None)
    assert booked.mapping is not None
    doubtful = booked.mapping.model_copy(update={"in_doubt": True})

    async def conflict(mapping: EventMapping) -> None:
        raise RuntimeError("etag conflict")

    with pytest.raises(RuntimeError, match="etag conflict"):
        asyncio.run(
            apply_appointment(
                lambda ref: gateway,
                ORG,
                APPOINTMENT,
                snapshot(2, organizer="ben"),
                doubtful,
                DIRECTORY,
                conflict,
            )
        )
    assert [e.is_live for e in exchange.calendar(address("ana"))] == [True]
    assert exchange.request_count("cancel_event") == 0
    assert exchange.request_count("update_event") == 0


def test_a_write_decided_from_a_trusted_mapping_stores_nothing_before_it() -> None:
    # The change key guards it; the intent would cost a storage round on every change.
    _, gateway = setup()
    booked = apply(gateway, snapshot(1), None)

    updated, stored = _stored_by(gateway, snapshot(2, title="Advice (new)"), booked.mapping)

    assert updated.plan is not None
    assert updated.plan.reason is PlanReason.UPDATE
    assert [type(r) for r in updated.results] == [Written]
    assert stored == []


def test_an_adoption_without_a_mapping_stores_a_pending_note_that_writes_the_snapshot() -> None:
    # A look without any mapping (it vanished) finds the meeting: before it is adopted, a note
    # points at the organizer's mailbox without applying any version, so a worker dying there
    # leaves a mapping whose next pass looks and writes the snapshot.
    exchange, gateway = setup()
    booked = apply(gateway, snapshot(1), None)
    assert booked.mapping is not None

    stored: list[EventMapping] = []

    async def store(written: EventMapping) -> None:
        stored.append(written)

    adopted = asyncio.run(
        apply_appointment(
            lambda ref: gateway,
            ORG,
            APPOINTMENT,
            snapshot(2, title="Advice (new)"),
            None,
            DIRECTORY,
            store,
            look_first=True,
        )
    )

    assert adopted.plan is not None
    assert adopted.plan.reason is PlanReason.ADOPT
    [note] = stored
    assert (note.mailbox, note.item_id, note.applied_version, note.in_doubt) == (
        address("ana"),
        None,
        0,
        True,
    )
    [event] = exchange.calendar(address("ana"))
    assert event.subject == "Advice (new)"


def test_a_handover_of_a_meeting_deleted_without_cancellations_cancels_its_copies() -> None:
    # The organizer deleted the meeting in Outlook sending nothing; the booking platform handed
    # it over before calbridge read that. The hand-over's cancellation finds it gone, so the
    # attendees' copies (the new organizer's among them) are cancelled by calbridge.
    exchange, gateway = setup()
    booked = apply(gateway, snapshot(1, secondaries=("ben", "cai")), None)
    assert booked.mapping is not None
    [meeting] = exchange.calendar(address("ana"))
    exchange.delete_permanently(address("ana"), meeting.item_id)

    def live_copies() -> list[str]:
        return [
            staff
            for staff in ("ben", "cai")
            for copy in exchange.calendar(address(staff))
            if copy.uid == meeting.uid and copy.is_live
        ]

    assert live_copies() == ["ben", "cai"]

    handed = apply(gateway, snapshot(2, organizer="ben", secondaries=("cai",)), booked.mapping)

    assert handed.failure is None
    assert live_copies() == []
    [new] = [e for e in exchange.calendar(address("ben")) if e.is_live]
    assert new.organizer == address("ben")
    assert [e.organizer for e in exchange.calendar(address("cai")) if e.is_live] == [address("ben")]


def test_a_handover_of_a_live_meeting_costs_no_copy_lookups() -> None:
    _, gateway = setup()
    exchange = gateway.exchange
    booked = apply(gateway, snapshot(1, secondaries=("ben",)), None)

    apply(gateway, snapshot(2, organizer="ben"), booked.mapping)

    assert exchange.request_count("find_by_uid") == 0
