"""Reconcile engine rules, one test per behaviour (pure: no Exchange, no storage).

The builders at the top (staff directory, snapshots, observed events, mappings) are shared with
the other engine test modules.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.engine.content import draft_digest
from shared.engine.marker import marker_for
from shared.engine.outlook import (
    AppointmentCancelled,
    AppointmentRescheduled,
    StaffDeclined,
    organizer_item_changed,
)
from shared.engine.reconcile import (
    _BOOKED,
    READ_FIRST_WAITS,
    ActionResult,
    CancelCopy,
    CancelEvent,
    Completed,
    CopyLookup,
    CreateEvent,
    Failed,
    Found,
    MarkerLookup,
    Observation,
    PlanReason,
    ReconcilePlan,
    RecordProblem,
    Situation,
    UpdateEvent,
    Written,
    classify,
    copy_lookups,
    mapping_after,
    observation_for,
    pending_create,
    reconcile_appointment,
    transaction_id,
)
from shared.exchange.port import (
    Attendee,
    EventRef,
    ExchangeEvent,
    ExchangeUnavailable,
    ResponseType,
    RetryAfter,
)
from shared.models import AppointmentSnapshot, EventMapping, MailboxRef
from tests.builders import directory
from tests.builders import snapshot as build_snapshot

ORG = "acme"
APPOINTMENT = "appt-1"
MARKER = marker_for(ORG, APPOINTMENT)
START = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)

STAFF = ("ana", "ben", "cai", "dee")
DIRECTORY: dict[str, MailboxRef] = directory(STAFF)


def address(staff_id: str) -> str:
    return f"{staff_id}@bank.example"


def snapshot(
    version: int = 1,
    *,
    location: str | None = "Branch 12",
    clients: tuple[dict[str, str], ...] = ({"name": "Ada Client", "email": "ada@client.example"},),
    service: str | None = "Mortgages",
    **fields: Any,
) -> AppointmentSnapshot:
    """This module's appointment: ana's mortgage review at START, an hour long, in London."""
    defaults: dict[str, Any] = {
        "organizer": "ana",
        "start": START,
        "minutes": 60,
        "title": "Mortgage review",
        "time_zone": "Europe/London",
    }
    return build_snapshot(
        version,
        location=location,
        clients=clients,
        service=service,
        **{**defaults, **fields},
    )


def observed(
    item_id: str = "item-1",
    *,
    organizer: str = "ana",
    start: datetime = START,
    minutes: int = 60,
    attendees: tuple[str, ...] = (),
    cancelled: bool = False,
    change_key: str = "ck-1",
) -> ExchangeEvent:
    return ExchangeEvent(
        item_id=item_id,
        change_key=change_key,
        uid=f"uid-{item_id}",
        subject="Mortgage review",
        location="Branch 12",
        start=start,
        end=start + timedelta(minutes=minutes),
        organizer=address(organizer),
        attendees=tuple(Attendee(address=address(a)) for a in attendees),
        is_cancelled=cancelled,
        marker=MARKER,
    )


def mapping(
    *,
    organizer: str = "ana",
    item_id: str | None = "item-1",
    applied_version: int = 1,
    cancelled: bool = False,
    attendees: tuple[str, ...] = (),
    generation: int = 1,
    connection_id: str = "conn-1",
    in_doubt: bool = False,
) -> EventMapping:
    return EventMapping(
        organizer_staff_id=organizer,
        mailbox=address(organizer),
        connection_id=connection_id,
        item_id=item_id,
        change_key="ck-0",
        uid=f"uid-{item_id}",
        applied_version=applied_version,
        cancelled=cancelled,
        attendee_staff_ids=list(attendees),
        generation=generation,
        in_doubt=in_doubt,
    )


# The change key ``mapping()`` holds: an item observed with it is as calbridge last wrote it
# (or as the mailbox sync last read it).
MAPPED_KEY = "ck-0"


# --- helpers over plans ---------------------------------------------------------------------


def plan_for(
    snap: AppointmentSnapshot,
    current: EventMapping | None = None,
    seen: Sequence[ExchangeEvent] | Observation = (),
    directory: Mapping[str, MailboxRef] = DIRECTORY,
) -> ReconcilePlan:
    """Plan with ``seen`` as what the lookup found in the snapshot organizer's mailbox (a list),
    or as the whole observation (address → events)."""
    if isinstance(seen, Mapping):
        observed: Observation = seen
    else:
        organizer = directory.get(snap.organizer_staff_id)
        observed = {organizer.address: list(seen)} if organizer else {}
    return reconcile_appointment(ORG, APPOINTMENT, snap, current, observed, directory)


def kinds(plan: ReconcilePlan) -> list[str]:
    return [type(action).__name__ for action in plan.actions]


def succeed(plan: ReconcilePlan, item_id: str = "item-new") -> list[ActionResult]:
    """What an executor reports when every action works."""
    ref = EventRef(item_id=item_id, change_key="ck-new", uid=f"uid-{item_id}")
    return [
        Written(ref) if isinstance(action, CreateEvent | UpdateEvent) else Completed()
        for action in plan.actions
    ]


# --- booked ---------------------------------------------------------------------------------


def test_first_booking_creates_the_event_in_the_organizers_mailbox() -> None:
    plan = plan_for(snapshot(secondaries=("ben",)))

    assert plan.reason is PlanReason.CREATE
    [create] = plan.actions
    assert isinstance(create, CreateEvent)
    assert create.mailbox == DIRECTORY["ana"]
    assert create.draft.subject == "Mortgage review"
    assert create.draft.marker == MARKER
    assert create.draft.required_attendees == (address("ben"),)


def test_secondaries_are_attendees_in_snapshot_order_and_clients_are_not() -> None:
    snap = snapshot(
        secondaries=("dee", "ben", "cai"),
        clients=({"name": "Ada Client", "email": "ada@client.example"},),
    )

    [create] = plan_for(snap).actions

    assert isinstance(create, CreateEvent)
    assert create.draft.required_attendees == (address("dee"), address("ben"), address("cai"))
    assert "ada@client.example" not in create.draft.required_attendees
    assert "ada@client.example" in create.draft.body_text


def test_a_retried_create_adopts_the_event_found_by_marker_instead_of_creating_another() -> None:
    # The first attempt created the event but its answer was lost: no mapping, event present.
    plan = plan_for(snapshot(), None, [observed("item-orphan")])

    assert plan.reason is PlanReason.ADOPT
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert update.item_id == "item-orphan"
    assert update.change_key == "ck-1"


def test_transaction_id_repeats_for_a_retry_and_differs_for_each_new_event() -> None:
    first = plan_for(snapshot())
    retry = plan_for(snapshot())
    [create], [again] = first.actions, retry.actions
    assert isinstance(create, CreateEvent)
    assert isinstance(again, CreateEvent)
    assert create.transaction_id == again.transaction_id

    assert transaction_id(ORG, APPOINTMENT, "ana", 1) != transaction_id(ORG, APPOINTMENT, "ana", 2)
    assert transaction_id(ORG, APPOINTMENT, "ana", 1) != transaction_id(ORG, APPOINTMENT, "ben", 1)
    assert transaction_id(ORG, APPOINTMENT, "ana", 1) != transaction_id(ORG, "appt-2", "ana", 1)


def test_a_newer_version_updates_the_mapped_event_with_its_current_change_key() -> None:
    # The change behind "ck-7" was read first (see the next tests): now it is written over.
    plan = plan_for(
        snapshot(2, title="Mortgage review (moved)"),
        mapping(applied_version=1).model_copy(update={"change_key": "ck-7"}),
        [observed(change_key="ck-7")],
    )

    assert plan.reason is PlanReason.UPDATE
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.item_id, update.change_key) == ("item-1", "ck-7")
    assert update.draft.subject == "Mortgage review (moved)"
    assert plan.generation == 1


def test_the_same_version_with_the_event_unchanged_needs_no_action() -> None:
    plan = plan_for(snapshot(1), mapping(applied_version=1), [observed(change_key=MAPPED_KEY)])

    assert plan.reason is PlanReason.UP_TO_DATE
    assert plan.actions == ()


def test_a_trusted_mapping_is_updated_by_its_item_id_and_change_key_without_a_lookup() -> None:
    current = mapping(applied_version=1)
    assert observation_for(ORG, APPOINTMENT, snapshot(2), current, DIRECTORY) == ()

    plan = plan_for(snapshot(2, title="Mortgage review (moved)"), current, {})

    assert plan.reason is PlanReason.UPDATE
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.item_id, update.change_key) == ("item-1", MAPPED_KEY)
    assert update.draft.subject == "Mortgage review (moved)"


def test_a_trusted_mapping_whose_draft_is_unchanged_needs_no_request_at_all() -> None:
    first = plan_for(snapshot(1))
    written = mapping_after(first, succeed(first, "item-1"))
    assert written is not None

    again = plan_for(snapshot(1), written, {})
    bumped = plan_for(snapshot(2), written, {})  # a new version saying the same

    assert observation_for(ORG, APPOINTMENT, snapshot(2), written, DIRECTORY) == ()
    assert (again.reason, again.actions) == (PlanReason.UP_TO_DATE, ())
    assert (bumped.reason, bumped.actions) == (PlanReason.UP_TO_DATE, ())


def test_an_outlook_move_the_platform_refused_is_moved_back_to_the_booked_time() -> None:
    # The mailbox sync read the move (its change key is the mapping's now) and the platform
    # answered 409: the mapping forgot the move and is in doubt, so the pass looks.
    refused = mapping(applied_version=1, in_doubt=True)
    moved = observed(start=START + timedelta(hours=2), change_key=MAPPED_KEY)

    plan = plan_for(snapshot(1), refused, [moved])

    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert update.draft.start == START
    assert update.change_key == MAPPED_KEY


def test_an_unread_outlook_move_is_not_moved_back_by_a_snapshot_that_is_not_newer() -> None:
    # A write was refused as a conflict: the lookup finds the item moved under a change key the
    # mapping does not hold. The mailbox sync will report the move; Outlook wins until then.
    doubted = mapping(applied_version=1, in_doubt=True)
    moved = observed(start=START + timedelta(hours=2), change_key="ck-outlook")

    plan = plan_for(snapshot(1), doubted, [moved])

    assert plan.reason is PlanReason.OUTLOOK_CHANGE_UNSEEN
    assert plan.actions == ()
    after = mapping_after(plan, [])
    assert after is not None
    # The change key stays the one calbridge wrote: the sync must still see the move as new.
    assert (after.change_key, after.in_doubt, after.applied_version) == (MAPPED_KEY, False, 1)


def test_a_newer_snapshot_waits_for_the_sync_to_read_an_outlook_change_nobody_has_read() -> None:
    # Written at once, the newer snapshot would leave the sync the change key of calbridge's own
    # write: the organizer's move (or an attendee's decline) would never be reported.
    doubted = mapping(applied_version=1, in_doubt=True)
    moved = observed(start=START + timedelta(hours=2), change_key="ck-outlook")
    newer = snapshot(2, start=START + timedelta(days=1))

    first = plan_for(newer, doubted, [moved])

    assert first.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST
    assert first.actions == ()
    waiting = mapping_after(first, [])
    assert waiting is not None
    assert (waiting.read_first, waiting.in_doubt, waiting.applied_version) == (
        "ck-outlook",
        True,
        1,
    )
    assert waiting.change_key == MAPPED_KEY  # the sync still sees the change as new

    # Once the sync has read (and reported) it, the mapping holds its change key: written.
    read = waiting.model_copy(update={"change_key": "ck-outlook"})
    [update] = plan_for(newer, read, [moved]).actions
    assert isinstance(update, UpdateEvent)
    assert update.change_key == "ck-outlook"
    assert update.draft.start == START + timedelta(days=1)

    # The sync asked for has not run yet (a message behind others, a worker that died holding
    # it): the snapshot waits again, up to READ_FIRST_WAITS times, then is written anyway.
    for waits in range(2, READ_FIRST_WAITS + 1):
        again = plan_for(newer, waiting, [moved])
        assert again.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST
        waiting = mapping_after(again, [])
        assert waiting is not None
        assert waiting.read_first_waits == waits
    [update] = plan_for(newer, waiting, [moved]).actions
    assert isinstance(update, UpdateEvent)
    assert update.draft.start == START + timedelta(days=1)


def test_a_staff_member_whose_mailbox_became_known_is_invited_without_a_new_version() -> None:
    # v1 was written without ben (unknown then); the directory now knows him.
    seen_by_pass: list[Sequence[ExchangeEvent] | Observation] = [
        {},
        [observed(change_key=MAPPED_KEY)],
    ]
    for seen in seen_by_pass:
        plan = plan_for(
            snapshot(1, secondaries=("ben",)), mapping(applied_version=1, attendees=()), seen
        )

        [update] = plan.actions
        assert isinstance(update, UpdateEvent)
        assert update.draft.required_attendees == (address("ben"),)


def test_a_missing_event_is_created_again_as_a_new_generation() -> None:
    doubted = mapping(applied_version=1, generation=3, in_doubt=True)
    first = plan_for(snapshot(2), doubted, [])
    assert first.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST  # the deletion is read first
    waiting = mapping_after(first, [])
    assert waiting is not None
    # The sync has not said so after every wait: re-created all the same.
    waited = waiting.model_copy(update={"read_first_waits": READ_FIRST_WAITS})

    plan = plan_for(snapshot(2), waited, [])

    assert plan.reason is PlanReason.RECREATE
    [create] = plan.actions
    assert isinstance(create, CreateEvent)
    assert plan.generation == 4
    assert create.transaction_id == transaction_id(ORG, APPOINTMENT, "ana", 4)


def test_an_event_deleted_in_outlook_and_not_read_yet_is_not_recreated_at_the_same_version() -> (
    None
):
    plan = plan_for(snapshot(1), mapping(applied_version=1, in_doubt=True), [])

    assert plan.reason is PlanReason.OUTLOOK_CHANGE_UNSEEN
    assert plan.actions == ()


def test_an_event_observed_cancelled_counts_as_missing() -> None:
    cancelled = [observed(cancelled=True)]
    waiting = mapping(applied_version=1).model_copy(
        update={"read_first": "gone\nitem-1", "read_first_waits": READ_FIRST_WAITS}
    )
    assert plan_for(snapshot(2), mapping(applied_version=1), cancelled).reason is (
        PlanReason.OUTLOOK_CHANGE_READ_FIRST
    )

    plan = plan_for(snapshot(2), waiting, cancelled)

    assert kinds(plan) == ["CreateEvent"]


def test_a_stale_version_is_ignored() -> None:
    plan = plan_for(snapshot(2, title="old"), mapping(applied_version=3), [observed()])

    assert plan.reason is PlanReason.STALE
    assert plan.actions == ()
    assert (
        observation_for(ORG, APPOINTMENT, snapshot(2), mapping(applied_version=3), DIRECTORY) == ()
    )


def test_observation_is_the_marker_in_the_snapshot_organizers_mailbox() -> None:
    lookups = observation_for(
        ORG, APPOINTMENT, snapshot(2), mapping(organizer="ana", in_doubt=True), DIRECTORY
    )

    assert lookups == (MarkerLookup(mailbox=DIRECTORY["ana"], marker=MARKER),)


@pytest.mark.parametrize(
    ("stored", "look"),
    [
        (None, False),  # nothing was ever created: a pending create is stored before any create
        (mapping(), False),
        (mapping(cancelled=True), False),
        (mapping(item_id=None), True),  # a pending create: its answer may have been lost
        (mapping(in_doubt=True), True),  # a conflict, a missing item, a lost answer
        (mapping(connection_id="conn-old"), True),  # the mailbox moved to another connection
    ],
)
def test_only_a_mapping_that_cannot_be_trusted_is_looked_up(
    stored: EventMapping | None, look: bool
) -> None:
    lookups = observation_for(ORG, APPOINTMENT, snapshot(2), stored, DIRECTORY)
    assert bool(lookups) is look
    forced = observation_for(ORG, APPOINTMENT, snapshot(2), stored, DIRECTORY, look_first=True)
    assert forced == (MarkerLookup(mailbox=DIRECTORY["ana"], marker=MARKER),)


def test_observation_also_covers_the_mapped_mailbox_while_its_event_may_live_there() -> None:
    handover = observation_for(
        ORG,
        APPOINTMENT,
        snapshot(2, organizer="ben"),
        mapping(organizer="ana", in_doubt=True),
        DIRECTORY,
    )
    after_cancel = observation_for(
        ORG,
        APPOINTMENT,
        snapshot(3, organizer="ben"),
        mapping(organizer="ana", applied_version=2, cancelled=True),
        DIRECTORY,
        look_first=True,
    )

    assert handover == (
        MarkerLookup(DIRECTORY["ben"], MARKER),
        MarkerLookup(DIRECTORY["ana"], MARKER),
    )
    assert after_cancel == (MarkerLookup(DIRECTORY["ben"], MARKER),)


def test_organizer_change_cancels_the_old_event_before_creating_the_new_organizers_event() -> None:
    plan = plan_for(
        snapshot(2, organizer="ben", secondaries=("cai",)),
        mapping(organizer="ana", attendees=("ben", "cai"), generation=1),
        [],
    )

    assert plan.reason is PlanReason.HANDOVER
    cancel, create = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert (cancel.mailbox.address, cancel.item_id) == (address("ana"), "item-1")
    assert isinstance(create, CreateEvent)
    assert create.mailbox == DIRECTORY["ben"]
    assert create.draft.required_attendees == (address("cai"),)
    assert create.transaction_id == transaction_id(ORG, APPOINTMENT, "ben", 2)


def test_organizer_change_adopts_an_event_already_created_in_the_new_mailbox() -> None:
    plan = plan_for(
        snapshot(2, organizer="ben"),
        mapping(organizer="ana"),
        [observed("item-b", organizer="ben")],
    )

    cancel, update = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert cancel.item_id == "item-1"
    assert isinstance(update, UpdateEvent)
    assert (update.mailbox, update.item_id) == (DIRECTORY["ben"], "item-b")


MOVED_TO_CONN_2 = {
    **DIRECTORY,
    "ana": DIRECTORY["ana"].model_copy(update={"connection_id": "conn-2"}),
}


def under_new_id(**fields: Any) -> ExchangeEvent:
    """The mapped item (``uid-item-1``) as the connection the mailbox moved to names it."""
    return observed("graph-id", change_key="graph-ck", **fields).model_copy(
        update={"uid": "uid-item-1"}
    )


def test_a_mailbox_moved_to_another_connection_is_written_once_the_sync_adopted_its_item() -> None:
    # Found by its meeting's UID under the new connection's id: the change key the mapping holds
    # is the old connection's, so whether the organizer changed it around the move is known only
    # once the sync has read it there. A redelivered snapshot writes nothing meanwhile; a newer
    # one waits for that read (a move made around the administrator's would be overwritten
    # unseen, and never told).
    moved_in_outlook = under_new_id(start=START + timedelta(hours=4))
    stored = mapping(connection_id="conn-1")

    same = plan_for(snapshot(1), stored, [moved_in_outlook], MOVED_TO_CONN_2)
    assert (same.reason, same.actions) == (PlanReason.OUTLOOK_CHANGE_UNSEEN, ())

    newer = snapshot(2, start=START + timedelta(days=1))
    waits = plan_for(newer, stored, [moved_in_outlook], MOVED_TO_CONN_2)
    assert (waits.reason, waits.actions) == (PlanReason.OUTLOOK_CHANGE_READ_FIRST, ())
    waiting = mapping_after(waits, [])
    assert waiting is not None
    assert (waiting.connection_id, waiting.item_id) == ("conn-1", "item-1")

    # The sync read the item through the new connection: the mapping names it there.
    adopted = waiting.model_copy(
        update={"connection_id": "conn-2", "item_id": "graph-id", "change_key": "graph-ck"}
    )
    plan = plan_for(newer, adopted, [moved_in_outlook], MOVED_TO_CONN_2)
    assert plan.reason is PlanReason.UPDATE
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.mailbox.connection_id, update.item_id) == ("conn-2", "graph-id")
    assert update.draft.start == START + timedelta(days=1)

    # A sync that cannot read the mailbox does not hold the booking back for ever.
    exhausted = waiting.model_copy(update={"read_first_waits": READ_FIRST_WAITS})
    plan = plan_for(newer, exhausted, [moved_in_outlook], MOVED_TO_CONN_2)
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.mailbox.connection_id, update.item_id) == ("conn-2", "graph-id")
    after = mapping_after(plan, succeed(plan, "graph-id"))
    assert after is not None
    assert (after.connection_id, after.item_id, after.generation) == ("conn-2", "graph-id", 1)


def test_a_mailbox_moved_with_its_item_as_calbridge_left_it_is_written_at_once() -> None:
    # Nothing there the sync would tell: the newer snapshot is written through the new
    # connection without waiting, and the mapping names the item there from then on.
    stored = mapping(connection_id="conn-1")

    same = plan_for(snapshot(1), stored, [under_new_id()], MOVED_TO_CONN_2)
    assert (same.reason, same.actions) == (PlanReason.UP_TO_DATE, ())

    plan = plan_for(snapshot(2, title="Advice"), stored, [under_new_id()], MOVED_TO_CONN_2)
    assert plan.reason is PlanReason.UPDATE
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.item_id, update.change_key) == ("graph-id", "graph-ck")
    after = mapping_after(plan, succeed(plan, "graph-id"))
    assert after is not None
    assert (after.connection_id, after.item_id, after.generation) == ("conn-2", "graph-id", 1)


def test_a_mailbox_moved_with_a_decline_nobody_has_read_waits_for_the_sync() -> None:
    stored = mapping(connection_id="conn-1", attendees=("ben",))
    answer = Attendee(address=address("ben"), response=ResponseType.DECLINED)
    declined = under_new_id().model_copy(update={"attendees": (answer,)})

    plan = plan_for(snapshot(2, secondaries=("ben",)), stored, [declined], MOVED_TO_CONN_2)

    assert (plan.reason, plan.actions) == (PlanReason.OUTLOOK_CHANGE_READ_FIRST, ())


def test_a_mailbox_moved_to_another_connection_adopts_another_event_of_ours_found_there() -> None:
    # Not the mapped meeting (another UID): adopted as a new event, as on any connection.
    plan = plan_for(
        snapshot(2), mapping(connection_id="conn-1"), [observed("graph-id")], MOVED_TO_CONN_2
    )

    assert plan.reason is PlanReason.ADOPT
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.mailbox.connection_id, update.item_id) == ("conn-2", "graph-id")
    after = mapping_after(plan, succeed(plan, "graph-id"))
    assert after is not None
    assert (after.connection_id, after.item_id) == ("conn-2", "graph-id")


def test_a_mailbox_moved_without_its_item_waits_for_the_sync_to_read_the_deletion() -> None:
    stored = mapping(connection_id="conn-1")

    same = plan_for(snapshot(1), stored, [], MOVED_TO_CONN_2)
    newer = plan_for(snapshot(2), stored, [], MOVED_TO_CONN_2)

    assert (same.reason, same.actions) == (PlanReason.OUTLOOK_CHANGE_UNSEEN, ())
    assert newer.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST
    assert newer.read_first == "gone\nitem-1"


def test_extra_live_events_with_the_marker_are_cancelled_keeping_the_mapped_one() -> None:
    plan = plan_for(snapshot(1), mapping(applied_version=1), [observed("dup"), observed("item-1")])

    assert kinds(plan) == ["CancelEvent"]
    [cancel] = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert cancel.item_id == "dup"


def test_an_unknown_organizer_is_recorded_and_nothing_is_written() -> None:
    plan = plan_for(snapshot(1, organizer="zed", secondaries=("ben",)))

    assert plan.reason is PlanReason.ORGANIZER_UNKNOWN
    [problem] = plan.actions
    assert isinstance(problem, RecordProblem)
    assert problem.staff_id == "zed"
    assert plan.exchange_actions == ()


def test_an_unknown_secondary_is_left_out_of_the_event_and_recorded() -> None:
    plan = plan_for(snapshot(1, secondaries=("zed", "ben")))

    problem, create = plan.actions
    assert isinstance(problem, RecordProblem)
    assert problem.staff_id == "zed"
    assert isinstance(create, CreateEvent)
    assert create.draft.required_attendees == (address("ben"),)
    after = mapping_after(plan, succeed(plan))
    assert after is not None
    assert after.last_error is not None
    assert "zed" in after.last_error
    assert after.attendee_staff_ids == ["ben"]


def test_booked_again_at_a_version_cancelled_in_outlook_does_not_recreate_the_event() -> None:
    plan = plan_for(snapshot(4), mapping(applied_version=4, cancelled=True), [])

    assert plan.reason is PlanReason.CANCELLED_IN_EXCHANGE
    assert plan.actions == ()


def test_rebooking_after_a_cancellation_creates_a_new_event() -> None:
    plan = plan_for(snapshot(5), mapping(applied_version=4, cancelled=True, generation=2), [])

    [create] = plan.actions
    assert isinstance(create, CreateEvent)
    assert plan.generation == 3


def declined(*attendees: str, by: tuple[str, ...]) -> EventMapping:
    """The applied mapping once the mailbox sync recorded the declines ``by``."""
    return mapping(attendees=attendees).model_copy(update={"declined_staff_ids": list(by)})


def test_a_decline_the_platform_has_not_answered_keeps_them_off_the_next_write() -> None:
    # An update reaches every attendee the meeting lists, one who declined as a new invitation.
    moved = snapshot(2, secondaries=("ben", "cai"), start=START + timedelta(hours=1))
    plan = plan_for(moved, declined("ben", "cai", by=("ben",)), seen={})

    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert update.draft.required_attendees == (address("cai"),)
    after = mapping_after(plan, succeed(plan, "item-1"))
    assert after is not None
    assert after.attendee_staff_ids == ["cai"]
    assert after.declined_staff_ids == ["ben"]  # still standing: never invited again
    again = snapshot(3, secondaries=("ben", "cai"), start=moved.start)
    assert plan_for(again, after, seen={}).actions == ()


def written_with(*secondaries: str, declined_by: tuple[str, ...] = ()) -> EventMapping:
    """The mapping after calbridge created the event for ``secondaries`` (with the digest of
    what it wrote, as every write stores), then the declines ``declined_by`` the sync read."""
    first = plan_for(snapshot(1, secondaries=secondaries), None, seen=[])
    created = mapping_after(first, succeed(first, "item-1"))
    assert created is not None
    return created.model_copy(update={"declined_staff_ids": list(declined_by)})


def test_a_decline_alone_writes_nothing_while_the_platform_still_names_them() -> None:
    # Any write would reach ben as a new invitation: the item shows his decline meanwhile.
    declined_ben = written_with("ben", "cai", declined_by=("ben",))
    plan = plan_for(snapshot(2, secondaries=("ben", "cai")), declined_ben, seen={})

    assert plan.actions == ()
    after = mapping_after(plan, succeed(plan))
    assert after is not None
    assert after.declined_staff_ids == ["ben"]
    assert after.attendee_staff_ids == ["ben", "cai"]  # the item still lists him, declined


def test_a_decline_the_platform_answers_by_dropping_them_writes_nothing() -> None:
    # The rule: the organizer's item still shows the decline after the platform sends
    # the snapshot without that staff member, and nothing reaches the one who declined.
    declined_ben = written_with("ben", "cai", declined_by=("ben",))
    dropped = plan_for(snapshot(2, secondaries=("cai",)), declined_ben, seen={})

    assert dropped.actions == ()
    answered = mapping_after(dropped, succeed(dropped))
    assert answered is not None
    assert answered.declined_staff_ids == []
    assert answered.answered_declines == ["ben"]
    assert answered.attendee_staff_ids == ["ben", "cai"]
    assert answered.applied_version == 2
    # The same snapshot again writes nothing either.
    again = plan_for(snapshot(2, secondaries=("cai",)), answered, seen={})
    assert again.reason is PlanReason.STALE or again.actions == ()
    # The next change the appointment needs anyway leaves him off the item.
    moved = snapshot(3, secondaries=("cai",), start=START + timedelta(hours=1))
    plan = plan_for(moved, answered, seen={})
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert update.draft.required_attendees == (address("cai"),)
    after = mapping_after(plan, succeed(plan, "item-1"))
    assert after is not None
    assert (after.attendee_staff_ids, after.answered_declines) == (["cai"], [])


def test_named_again_after_the_platform_dropped_them_they_are_invited_afresh() -> None:
    declined_ben = written_with("ben", declined_by=("ben",))
    dropped = plan_for(snapshot(2), declined_ben, seen={})
    answered = mapping_after(dropped, succeed(dropped))
    assert answered is not None
    assert answered.answered_declines == ["ben"]
    [invite] = plan_for(snapshot(3, secondaries=("ben",)), answered, seen={}).actions
    assert isinstance(invite, UpdateEvent)
    assert invite.draft.required_attendees == (address("ben"),)


def test_a_decline_answered_after_a_write_left_them_off_is_forgotten() -> None:
    moved = snapshot(2, secondaries=("ben", "cai"), start=START + timedelta(hours=1))
    first = plan_for(moved, written_with("ben", "cai", declined_by=("ben",)), seen={})
    left_off = mapping_after(first, succeed(first, "item-1"))
    assert left_off is not None
    assert left_off.attendee_staff_ids == ["cai"]
    # The platform drops ben, nothing else changes: he is off the meeting already, nothing is
    # written, and his decline is forgotten.
    plan = plan_for(snapshot(3, secondaries=("cai",), start=moved.start), left_off, seen={})

    assert plan.actions == ()
    after = mapping_after(plan, succeed(plan))
    assert after is not None
    assert (after.declined_staff_ids, after.answered_declines) == ([], [])
    assert after.applied_version == 3


# --- cancelled ------------------------------------------------------------------------------


def test_cancelling_cancels_the_mapped_event() -> None:
    plan = plan_for(snapshot(2, status="cancelled"), mapping(), [observed()])

    assert plan.reason is PlanReason.CANCEL
    [cancel] = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert (cancel.mailbox, cancel.item_id) == (DIRECTORY["ana"], "item-1")


def test_cancelling_names_the_mapped_event_even_when_the_lookup_missed_it() -> None:
    plan = plan_for(snapshot(2, status="cancelled"), mapping(), [])

    [cancel] = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert cancel.item_id == "item-1"


def test_cancelling_with_nothing_written_does_nothing_but_is_recorded() -> None:
    plan = plan_for(snapshot(2, status="cancelled"), None, [])

    assert plan.reason is PlanReason.NOTHING_TO_CANCEL
    assert plan.actions == ()
    tombstone = mapping_after(plan, [])
    assert tombstone is not None
    assert tombstone.cancelled
    assert tombstone.item_id is None
    assert tombstone.applied_version == 2
    # An older "booked" message delivered afterwards creates nothing.
    assert plan_for(snapshot(1), tombstone, []).reason is PlanReason.STALE


def test_cancelling_cancels_an_orphan_found_by_marker() -> None:
    plan = plan_for(snapshot(2, status="cancelled"), None, [observed("orphan")])

    [cancel] = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert cancel.item_id == "orphan"


def test_cancelling_after_an_unapplied_handover_cancels_both_mailboxes() -> None:
    # v2 moved the appointment to ben, its create happened but was never recorded; v3 cancels.
    plan = plan_for(
        snapshot(3, status="cancelled", organizer="ben"),
        mapping(organizer="ana"),
        [observed("item-b", organizer="ben")],
    )

    targets = [(a.mailbox.address, a.item_id) for a in plan.actions if isinstance(a, CancelEvent)]
    assert targets == [(address("ana"), "item-1"), (address("ben"), "item-b")]


def test_cancelling_cancels_what_the_lookup_found_in_the_old_organizers_mailbox() -> None:
    plan = plan_for(
        snapshot(3, status="cancelled", organizer="ben"),
        mapping(organizer="ana", item_id=None),
        {address("ben"): [], address("ana"): [observed("made-after-all")]},
    )

    targets = [(a.mailbox.address, a.item_id) for a in plan.actions if isinstance(a, CancelEvent)]
    assert targets == [(address("ana"), "made-after-all")]


def test_cancelling_an_already_cancelled_appointment_does_nothing() -> None:
    plan = plan_for(snapshot(3, status="cancelled"), mapping(applied_version=2, cancelled=True))

    assert plan.actions == ()
    after = mapping_after(plan, [])
    assert after is not None
    assert after.cancelled
    assert after.applied_version == 3


# --- recording the outcome ----------------------------------------------------------------


def test_a_successful_create_is_recorded_with_the_new_item_and_version() -> None:
    plan = plan_for(snapshot(1, secondaries=("ben",)))

    after = mapping_after(plan, succeed(plan, "item-9"))

    [create] = plan.actions
    assert isinstance(create, CreateEvent)
    booked = snapshot(1, secondaries=("ben",))
    assert after == EventMapping(
        organizer_staff_id="ana",
        mailbox=address("ana"),
        connection_id="conn-1",
        item_id="item-9",
        change_key="ck-new",
        uid="uid-item-9",
        applied_version=1,
        attendee_staff_ids=["ben"],
        generation=1,
        draft_digest=draft_digest(create.draft),
        booked_start=booked.start,
        booked_end=booked.end,
    )


def test_a_failed_action_keeps_the_previous_mapping_and_records_the_error() -> None:
    previous = mapping(organizer="ana", applied_version=1)
    plan = plan_for(
        snapshot(2, organizer="ben"), previous, {address("ben"): [], address("ana"): []}
    )

    # Exchange throttled the cancellation of the old event: nothing else was tried.
    after = mapping_after(plan, [Failed(RetryAfter(30, mailbox=address("ana")))])

    assert after is not None
    assert after.model_copy(update={"last_error": None}) == previous
    assert after.last_error is not None
    assert "RetryAfter" in after.last_error
    again = plan_for(snapshot(2, organizer="ben"), after, {address("ben"): [], address("ana"): []})
    assert again.actions == plan.actions


def test_a_failed_create_leaves_a_pending_mapping_where_the_event_may_now_be() -> None:
    previous = mapping(organizer="ana", applied_version=1, generation=1)
    plan = plan_for(
        snapshot(2, organizer="ben"), previous, {address("ben"): [], address("ana"): []}
    )
    _, create = plan.actions
    assert isinstance(create, CreateEvent)

    # The old event was cancelled; the create's answer was lost.
    after = mapping_after(plan, [Completed(), Failed(ExchangeUnavailable("timeout"))])

    assert after is not None
    assert (after.mailbox, after.item_id, after.cancelled) == (address("ben"), None, False)
    assert after.generation == 2
    assert after == pending_create(plan, create).model_copy(update={"last_error": after.last_error})
    # Nothing there yet: the same create again, with the same transaction id.
    retry = plan_for(snapshot(2, organizer="ben"), after, [])
    assert retry.actions == (create,)


def test_a_failed_create_keeps_the_uid_it_planned_only_while_it_may_have_made_the_event() -> None:
    plan = plan_for(snapshot(1, secondaries=("ben",)), None, [])
    [create] = plan.actions
    assert isinstance(create, CreateEvent)

    lost = mapping_after(plan, [Failed(ExchangeUnavailable("timeout"), planned_uid="uid-planned")])
    refused = mapping_after(plan, [Failed(RetryAfter(5), planned_uid="uid-planned")])

    assert lost is not None
    assert (lost.item_id, lost.uid) == (None, "uid-planned")
    assert refused is not None
    assert (refused.item_id, refused.uid) == (None, None)  # throttled: nothing was made
    assert pending_create(plan, create, "uid-planned").uid == "uid-planned"


def pending_meeting(**fields: Any) -> EventMapping:
    """A create of ana's meeting with ben and cai whose outcome was never stored; its UID known."""
    values: dict[str, Any] = {
        "item_id": None,
        "applied_version": 1,
        "attendees": ("ben", "cai"),
    }
    return mapping(**(values | fields)).model_copy(update={"uid": "uid-planned"})


def copy_in(staff_id: str, *, cancelled: bool) -> ExchangeEvent:
    return observed(f"copy-{staff_id}", cancelled=cancelled).model_copy(
        update={"uid": "uid-planned", "marker": None, "organizer": address("ana")}
    )


def test_a_pending_creates_attendees_are_looked_at_only_when_its_meeting_is_not_found() -> None:
    booked = snapshot(1, secondaries=("ben", "cai"))
    nothing: Observation = {address("ana"): []}

    assert copy_lookups(booked, pending_meeting(), nothing, DIRECTORY) == (
        CopyLookup(DIRECTORY["ben"], "uid-planned"),
        CopyLookup(DIRECTORY["cai"], "uid-planned"),
    )
    # Found by its marker; no planned UID (Graph); not a pending create; not looked at at all.
    found = {address("ana"): [observed()]}
    assert copy_lookups(booked, pending_meeting(), found, DIRECTORY) == ()
    unknown = pending_meeting().model_copy(update={"uid": None})
    assert copy_lookups(booked, unknown, nothing, DIRECTORY) == ()
    assert copy_lookups(booked, mapping(attendees=("ben",)), nothing, DIRECTORY) == ()
    assert copy_lookups(booked, pending_meeting(), {}, DIRECTORY) == ()
    cancelled = snapshot(2, secondaries=("ben", "cai"), status="cancelled")
    assert copy_lookups(cancelled, pending_meeting(), nothing, DIRECTORY) == ()


@pytest.mark.parametrize("cancelled", [True, False], ids=["cancelled", "deleted"])
def test_a_pending_creates_meeting_removed_in_outlook_is_told_and_not_made_again(
    cancelled: bool,
) -> None:
    # The create made the meeting (an attendee holds a copy by the UID it gave it), and the
    # organizer cancelled it in Outlook (the copy cancelled too) or deleted it without sending
    # cancellations (the copy live) before the create's outcome was stored.
    booked = snapshot(1, secondaries=("ben", "cai"))
    copies = {address("cai"): copy_in("cai", cancelled=cancelled)}

    plan = reconcile_appointment(
        ORG, APPOINTMENT, booked, pending_meeting(), {address("ana"): []}, DIRECTORY, copies
    )

    assert plan.reason is PlanReason.REMOVED_IN_OUTLOOK
    # The copy a deletion left live is cancelled, through its attendee's own connection.
    left = () if cancelled else (CancelCopy(DIRECTORY["cai"], "copy-cai", "uid-planned"),)
    assert plan.actions == left
    assert plan.told == (AppointmentCancelled(APPOINTMENT, by="ana"),)
    if left:
        # Not carried out (the copy's connection failed): the note stays, the pass comes back.
        kept = mapping_after(plan, [])
        assert kept is not None
        assert (kept.cancelled, kept.item_id) == (False, None)
    after = mapping_after(plan, [Completed()] * len(left))
    assert after is not None
    assert (after.cancelled, after.applied_version, after.uid, after.in_doubt) == (
        True,
        1,
        "uid-planned",
        False,
    )
    # The message again: the booking platform has not answered; nothing is made again.
    again = plan_for(booked, after, [])
    assert (again.reason, again.actions) == (PlanReason.CANCELLED_IN_EXCHANGE, ())
    # Booked again by a newer snapshot: a new meeting.
    rebooked = plan_for(snapshot(2, secondaries=("ben", "cai")), after, [])
    assert kinds(rebooked) == ["CreateEvent"]
    assert rebooked.generation == 2


def test_a_pending_create_without_copies_of_its_meeting_is_made() -> None:
    booked = snapshot(1, secondaries=("ben", "cai"))
    other = {address("cai"): copy_in("cai", cancelled=False).model_copy(update={"uid": "uid-x"})}

    for copies in ({}, other):
        plan = reconcile_appointment(
            ORG, APPOINTMENT, booked, pending_meeting(), {address("ana"): []}, DIRECTORY, copies
        )
        assert kinds(plan) == ["CreateEvent"]
        assert plan.told == ()


def test_a_pending_create_is_adopted_in_its_mailbox_without_a_write() -> None:
    # The create made this very draft there: nothing to write again. No change key is kept,
    # so the mailbox sync reads the event once more and judges whatever Outlook changed.
    pending = mapping(item_id=None, applied_version=1, generation=4)

    plan = plan_for(snapshot(1), pending, [observed("made-after-all")])

    assert plan.reason is PlanReason.ADOPTED_AS_IT_IS
    assert plan.actions == ()
    assert plan.generation == 4
    after = mapping_after(plan, succeed(plan))
    assert after is not None
    assert (after.item_id, after.change_key, after.applied_version) == ("made-after-all", None, 1)


def test_a_pending_create_an_attendee_declined_before_it_was_recorded_is_not_written_again() -> (
    None
):
    # Found by the convergence machine: the worker created the meeting; the attendee declined
    # it before the mapping was stored; a second pass over the same snapshot found the event
    # (time and title as created) and wrote the draft again, which invited the attendee afresh:
    # the decline was undone in Exchange and never reported.
    pending = mapping(item_id=None, applied_version=1, generation=1, attendees=("ben",))
    declined = observed("made", attendees=("ben",), change_key="ck-declined")
    declined = declined.model_copy(
        update={"attendees": (Attendee(address=address("ben"), response=ResponseType.DECLINED),)}
    )

    plan = plan_for(snapshot(1, secondaries=("ben",)), pending, [declined])

    assert plan.actions == ()
    assert plan.adopted == declined


def test_a_pending_create_made_before_an_attendee_was_known_is_written_with_them() -> None:
    # The create invited nobody (ben's mailbox was not known yet); the retry knows it: the
    # event found is the create's, but the draft now names ben, so it is written.
    pending = mapping(item_id=None, applied_version=1, generation=2, attendees=())

    plan = plan_for(snapshot(1, secondaries=("ben",)), pending, [observed("made")])

    assert plan.reason is PlanReason.ADOPT
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert update.draft.required_attendees == (address("ben"),)


def test_a_pending_create_moved_in_outlook_before_it_was_recorded_is_adopted_as_it_is() -> None:
    # The worker created the event and died before storing it; the organizer moved it; the
    # message comes back. Writing the draft would undo the move unseen.
    pending = mapping(item_id=None, applied_version=1, generation=4)
    moved = observed("made-after-all", start=START + timedelta(hours=2), change_key="ck-moved")

    plan = plan_for(snapshot(1), pending, [moved])

    assert plan.reason is PlanReason.ADOPTED_AS_IT_IS
    assert plan.actions == ()
    after = mapping_after(plan, succeed(plan))
    assert after is not None
    assert (after.item_id, after.uid, after.generation) == ("made-after-all", moved.uid, 4)
    assert after.change_key is None  # the sync takes the move for the staff member's
    assert (after.booked_start, after.applied_version, after.in_doubt) == (START, 1, False)
    # The next pass trusts it and writes nothing: the move waits for the platform's answer.
    assert plan_for(snapshot(1), after, seen={}).actions == ()


def created_pending(snap: AppointmentSnapshot) -> tuple[CreateEvent, EventMapping]:
    """The create a first pass over ``snap`` makes, and the note it stores before it."""
    plan = plan_for(snap, None, [])
    [create] = plan.actions
    assert isinstance(create, CreateEvent)
    return create, pending_create(plan, create)


def test_a_pending_note_records_the_times_its_create_gives_the_event() -> None:
    _, pending = created_pending(snapshot(1))

    assert (pending.item_id, pending.applied_version) == (None, 1)
    assert (pending.booked_start, pending.booked_end) == (START, START + timedelta(hours=1))


def test_a_pending_create_moved_in_outlook_is_told_before_a_newer_snapshot_is_written() -> None:
    # A newer snapshot is the platform's word, written over the move once the mailbox sync has
    # read the move and told it (as for the mapped item of any appointment).
    _, pending = created_pending(snapshot(1))
    moved = observed("made-after-all", start=START + timedelta(hours=2), change_key="ck-moved")
    newer = snapshot(2, start=START + timedelta(days=1))

    waits = plan_for(newer, pending, [moved])

    assert (waits.reason, waits.actions) == (PlanReason.OUTLOOK_CHANGE_READ_FIRST, ())
    waiting = mapping_after(waits, [])
    assert waiting is not None
    assert (waiting.item_id, waiting.uid, waiting.change_key) == ("made-after-all", moved.uid, None)
    assert (waiting.applied_version, waiting.booked_start, waiting.in_doubt) == (1, START, True)
    # The sync reads it: a move, measured against the times the create gave it.
    verdict = organizer_item_changed(APPOINTMENT, moved, waiting, newer, {})
    assert verdict.events == (
        AppointmentRescheduled(APPOINTMENT, moved.start, moved.end, by="ana"),
    )
    assert verdict.mapping is not None
    plan = plan_for(newer, verdict.mapping, [moved])
    assert plan.reason is PlanReason.UPDATE
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert (update.item_id, update.change_key) == ("made-after-all", "ck-moved")
    assert update.draft.start == START + timedelta(days=1)


def test_a_pending_create_declined_is_told_before_a_newer_snapshot_is_written() -> None:
    # Found by the convergence machine: the worker created the meeting and died before storing
    # the mapping; the platform rescheduled and ben declined before the message came back. The
    # next pass found the event by its marker and wrote the newer draft over it, which invited
    # ben afresh: his decline was undone in Exchange and never reported. A lookup shows no
    # answers, so the event found is read by the mailbox sync first.
    booked = snapshot(1, secondaries=("ben",))
    create, pending = created_pending(booked)
    found = observed("made", attendees=("ben",), change_key="ck-declined")
    newer = snapshot(2, secondaries=("ben",), start=START + timedelta(days=1))

    waits = plan_for(newer, pending, [found])

    assert (waits.reason, waits.actions) == (PlanReason.OUTLOOK_CHANGE_READ_FIRST, ())
    waiting = mapping_after(waits, [])
    assert waiting is not None
    # The sync reads the organizer's item with its answers: the decline is told once.
    answer = Attendee(address=address("ben"), response=ResponseType.DECLINED)
    read = found.model_copy(update={"attendees": (answer,)})
    verdict = organizer_item_changed(APPOINTMENT, read, waiting, newer, {address("ben"): "ben"})
    assert verdict.events == (StaffDeclined(APPOINTMENT, "ben"),)
    assert verdict.mapping is not None
    # Then the newer snapshot is written, leaving ben off (his decline stands).
    plan = plan_for(newer, verdict.mapping, [read])
    [update] = plan.actions
    assert isinstance(update, UpdateEvent)
    assert update.draft.start == START + timedelta(days=1)
    assert update.draft.required_attendees == ()
    # A sync that cannot read the mailbox does not hold the booking back for ever.
    exhausted = waiting.model_copy(update={"read_first_waits": READ_FIRST_WAITS})
    assert kinds(plan_for(newer, exhausted, [found])) == ["UpdateEvent"]
    # The same snapshot the create was made for: adopted as it is (no wait, no write).
    assert plan_for(booked, pending, [found]).reason is PlanReason.ADOPTED_AS_IT_IS
    assert create.draft.required_attendees == (address("ben"),)


def test_a_pending_create_is_cancelled_when_the_organizer_changed_meanwhile() -> None:
    pending = mapping(organizer="ana", item_id=None, applied_version=1, generation=1)

    plan = plan_for(
        snapshot(2, organizer="ben"),
        pending,
        {address("ben"): [], address("ana"): [observed("orphan")]},
    )

    cancel, create = plan.actions
    assert isinstance(cancel, CancelEvent)
    assert (cancel.mailbox.address, cancel.item_id) == (address("ana"), "orphan")
    assert isinstance(create, CreateEvent)
    assert create.mailbox == DIRECTORY["ben"]
    assert plan.generation == 2


def test_a_failed_first_create_still_points_at_the_organizers_mailbox() -> None:
    plan = plan_for(snapshot(1))

    after = mapping_after(plan, [Failed(ExchangeUnavailable("503"))])

    assert after is not None
    assert (after.mailbox, after.item_id, after.applied_version) == (address("ana"), None, 1)


def test_a_plan_failing_before_any_write_without_a_mapping_stores_nothing() -> None:
    plan = plan_for(snapshot(2, status="cancelled"), None, [observed("orphan")])

    assert mapping_after(plan, [Failed(ExchangeUnavailable("503"))]) is None


def test_a_stale_plan_leaves_the_mapping_untouched() -> None:
    previous = mapping(applied_version=3)
    plan = plan_for(snapshot(2), previous, [])

    assert mapping_after(plan, []) is previous


def test_an_unknown_organizer_does_not_advance_the_applied_version() -> None:
    previous = mapping(applied_version=1)
    plan = plan_for(snapshot(2, organizer="zed"), previous, [])

    after = mapping_after(plan, succeed(plan))

    assert after is not None
    assert after.applied_version == 1
    assert after.last_error is not None
    assert "zed" in after.last_error


def test_a_success_clears_an_earlier_error() -> None:
    previous = mapping(applied_version=1).model_copy(update={"last_error": "RetryAfter: x"})
    plan = plan_for(snapshot(2), previous, [observed(change_key=MAPPED_KEY)])

    after = mapping_after(plan, succeed(plan, "item-1"))

    assert after is not None
    assert after.last_error is None
    assert after.applied_version == 2


# --- boundaries ---------------------------------------------------------------------------


def test_the_engine_imports_no_sdk_and_no_azure_client() -> None:
    code = (
        "import sys, shared.engine.reconcile, shared.apply.executor;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('exchangelib', 'msgraph', 'azure', 'kiota_abstractions', 'httpx', 'requests'));"
        "print(','.join(bad))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )

    assert done.stdout.strip() == ""


def test_a_logged_plan_shows_no_client_details() -> None:
    plan = plan_for(snapshot(1, notes="allergic to cats"))

    assert "ada@client.example" not in repr(plan)
    assert "allergic" not in repr(plan)


# --- the booked situations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "version", "expected"),
    [
        (None, 1, Situation.FRESH),
        (mapping(), 2, Situation.CONTINUING),
        (mapping(item_id=None), 1, Situation.PENDING_CREATE),
        (mapping(organizer="ben"), 2, Situation.HANDOVER),
        (mapping(cancelled=True, applied_version=2), 2, Situation.CANCELLED_IN_OUTLOOK),
        (mapping(cancelled=True, applied_version=2), 3, Situation.FRESH),  # booked again
        (mapping(connection_id="conn-old"), 2, Situation.MOVED),  # the mailbox moved connections
        (mapping(connection_id="conn-old", item_id=None), 2, Situation.FRESH),
    ],
)
def test_the_situation_is_named_before_deciding(
    stored: EventMapping | None, version: int, expected: Situation
) -> None:
    assert classify(snapshot(version), stored, DIRECTORY["ana"]) is expected


def test_every_situation_and_finding_the_engine_can_meet_has_a_row() -> None:
    reachable = {
        (situation, found)
        for situation in Situation
        if situation is not Situation.CANCELLED_IN_OUTLOOK
        for found in Found
        # Only a mapping with an item of this mailbox names one that can be found as itself.
        if found is not Found.MAPPED or situation in (Situation.CONTINUING, Situation.MOVED)
    }
    assert reachable == set(_BOOKED)


def test_an_edited_title_or_location_in_outlook_is_restored() -> None:
    # Read by the mailbox sync (the mapping holds the item's change key) and looked at.
    for edited in ({"subject": "Renamed in Outlook"}, {"location": "Moved rooms"}):
        event = observed(change_key=MAPPED_KEY).model_copy(update=edited)
        current = mapping(applied_version=1, in_doubt=True)
        [update] = plan_for(snapshot(1), current, [event]).actions
        assert isinstance(update, UpdateEvent)
        assert (update.draft.subject, update.draft.location) == ("Mortgage review", "Branch 12")
