"""Behaviour every ``CalendarGateway`` must show, whatever protocol is behind it.

Each test reads the outcome the way staff would see it — through the world's owner-side view of
each mailbox, not through the gateway under test.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.engine.marker import marker_for
from shared.exchange.port import (
    AuthenticationFailed,
    CalendarError,
    ChangeKeyConflict,
    ChosenUids,
    EventDraft,
    EventNotFound,
    EventRef,
    ExchangeEvent,
    ExchangeUnavailable,
    MailboxNotFound,
    RetryAfter,
    ShowAs,
)
from tests.contract.worlds import THROTTLE_SECONDS, CalendarWorld, ExchangeFault

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2031, 5, 6, 9, 30, tzinfo=BERLIN)
_appointments = itertools.count(1)


def new_marker() -> str:
    return marker_for("contract", f"appt-{next(_appointments)}")


def draft(
    *,
    marker: str,
    attendees: tuple[str, ...] = (),
    start: datetime = START,
    minutes: int = 45,
    subject: str = "Pension review",
    body: str = "Service: Pensions\nClients:\n- Ada Client, ada@client.example\n",
) -> EventDraft:
    return EventDraft(
        subject=subject,
        start=start,
        end=start + timedelta(minutes=minutes),
        time_zone="Europe/Berlin",
        location="Branch 7",
        body_text=body,
        required_attendees=attendees,
        show_as=ShowAs.BUSY,
        marker=marker,
    )


def create(world: CalendarWorld, event: EventDraft, transaction_id: str = "") -> EventRef:
    tx = transaction_id or f"tx-{event.marker}"
    return world.run(world.gateway.create_event(world.organizer, event, tx))


def live(world: CalendarWorld, mailbox: str) -> list[ExchangeEvent]:
    return [event for event in world.calendar(mailbox) if not event.is_cancelled]


def with_uid(world: CalendarWorld, mailbox: str, uid: str | None) -> list[ExchangeEvent]:
    return [event for event in world.calendar(mailbox) if event.uid == uid]


def test_a_created_event_is_visible_with_subject_time_marker_and_busy(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    marker = new_marker()

    ref = create(world, draft(marker=marker))

    [event] = world.calendar(world.organizer)
    assert event.item_id == ref.item_id
    assert event.uid == ref.uid
    assert event.uid
    assert event.subject == "Pension review"
    assert event.location == "Branch 7"
    assert (event.start, event.end) == (START, START + timedelta(minutes=45))
    assert event.marker == marker
    assert event.show_as is ShowAs.BUSY
    assert not event.is_cancelled
    assert not event.is_all_day
    assert event.organizer == world.organizer
    assert "ada@client.example" in world.body_of(world.organizer, ref.item_id)
    through_port = world.run(world.gateway.get_event(world.organizer, ref.item_id))
    assert through_port is not None
    assert (through_port.start, through_port.marker) == (START, marker)


def test_every_write_stamps_its_times_and_an_outlook_move_leaves_the_stamp(
    calendar_world: CalendarWorld,
) -> None:
    # The stamp (a named property beside the marker) tells calbridge's own write from an
    # Outlook move whatever the stored mapping says yet: both read it back the same way.
    world = calendar_world
    marker = new_marker()
    ref = create(world, draft(marker=marker))
    [created] = world.run(world.gateway.find_by_marker(world.organizer, marker))
    assert created.written == draft(marker=marker).written
    assert created.shows_written

    later = START + timedelta(hours=2)
    moved = draft(marker=marker, start=later)
    world.run(world.gateway.update_event(world.organizer, ref.item_id, moved, None))
    updated = world.run(world.gateway.get_event(world.organizer, ref.item_id))
    assert updated is not None
    assert updated.written == moved.written != created.written
    assert updated.shows_written

    world.move_as_owner(world.organizer, ref.item_id, START, START + timedelta(minutes=45))
    [after_move] = world.calendar(world.organizer)
    assert after_move.written == moved.written  # Outlook keeps named properties as they were
    assert not after_move.shows_written
    read = world.run(world.gateway.get_event(world.organizer, ref.item_id))
    assert read is not None
    assert (read.written, read.shows_written) == (moved.written, False)


def test_a_meeting_puts_a_copy_with_the_same_uid_in_each_attendees_calendar(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    ava, bo, _ = world.attendees
    marker = new_marker()

    ref = create(world, draft(marker=marker, attendees=(ava, bo)))

    [organizers] = live(world, world.organizer)
    assert set(organizers.attendee_addresses) == {ava, bo}
    assert "ada@client.example" not in organizers.attendee_addresses
    for attendee in (ava, bo):
        [copy] = with_uid(world, attendee, ref.uid)
        assert not copy.is_cancelled
        assert (copy.start, copy.end) == (START, START + timedelta(minutes=45))
        assert copy.organizer == world.organizer
        assert copy.marker is None  # Exchange does not copy named properties to attendees
        found = world.run(world.gateway.find_by_uid(attendee, ref.uid or ""))
        assert found is not None
        assert found.item_id == copy.item_id


def test_moving_the_meeting_moves_the_attendees_copies(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    ava, bo, _ = world.attendees
    marker = new_marker()
    ref = create(world, draft(marker=marker, attendees=(ava, bo)))
    later = START + timedelta(days=1, hours=2)

    moved = world.run(
        world.gateway.update_event(
            world.organizer,
            ref.item_id,
            draft(marker=marker, attendees=(ava, bo), start=later),
            ref.change_key,
        )
    )

    assert moved.item_id == ref.item_id
    assert moved.uid == ref.uid
    for mailbox in (world.organizer, ava, bo):
        [event] = with_uid(world, mailbox, ref.uid)
        assert (event.start, event.end) == (later, later + timedelta(minutes=45))
        assert not event.is_cancelled


def test_an_added_attendee_is_invited_and_a_removed_one_gets_a_cancellation(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    ava, bo, cy = world.attendees
    marker = new_marker()
    ref = create(world, draft(marker=marker, attendees=(ava, bo)))

    world.run(
        world.gateway.update_event(
            world.organizer, ref.item_id, draft(marker=marker, attendees=(ava, cy)), None
        )
    )

    [organizers] = live(world, world.organizer)
    assert set(organizers.attendee_addresses) == {ava, cy}
    [ava_copy] = with_uid(world, ava, ref.uid)
    assert not ava_copy.is_cancelled
    [cy_copy] = with_uid(world, cy, ref.uid)
    assert not cy_copy.is_cancelled
    assert cy_copy.start == START
    assert all(copy.is_cancelled for copy in with_uid(world, bo, ref.uid))


def test_a_re_added_attendee_has_one_live_copy_again(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    ava, bo, _ = world.attendees
    marker = new_marker()
    ref = create(world, draft(marker=marker, attendees=(ava, bo)))
    world.run(
        world.gateway.update_event(
            world.organizer, ref.item_id, draft(marker=marker, attendees=(ava,)), None
        )
    )

    world.run(
        world.gateway.update_event(
            world.organizer, ref.item_id, draft(marker=marker, attendees=(ava, bo)), None
        )
    )

    assert len([c for c in with_uid(world, bo, ref.uid) if not c.is_cancelled]) == 1


def test_cancelling_a_meeting_removes_it_for_the_organizer_and_cancels_the_copies(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    ava, bo, _ = world.attendees
    marker = new_marker()
    ref = create(world, draft(marker=marker, attendees=(ava, bo)))

    world.run(world.gateway.cancel_event(world.organizer, ref.item_id))

    assert live(world, world.organizer) == []
    gone = world.run(world.gateway.get_event(world.organizer, ref.item_id))
    assert gone is None or gone.is_cancelled
    assert world.run(world.gateway.find_by_marker(world.organizer, marker)) == []
    for attendee in (ava, bo):
        copies = with_uid(world, attendee, ref.uid)
        assert copies
        assert all(copy.is_cancelled for copy in copies)


def test_cancelling_an_event_without_attendees_deletes_it(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    ref = create(world, draft(marker=new_marker()))

    assert world.run(world.gateway.cancel_event(world.organizer, ref.item_id)) is True

    assert live(world, world.organizer) == []
    assert world.run(world.gateway.get_event(world.organizer, ref.item_id)) is None


def test_cancelling_an_event_that_is_already_gone_is_quiet(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    ava = world.attendees[0]
    ref = create(world, draft(marker=new_marker(), attendees=(ava,)))
    assert world.run(world.gateway.cancel_event(world.organizer, ref.item_id)) is True

    # False: nothing was there to cancel, so nothing was sent (the copies may need seeing to).
    assert world.run(world.gateway.cancel_event(world.organizer, ref.item_id)) is False

    assert live(world, world.organizer) == []
    assert [copy.is_cancelled for copy in with_uid(world, ava, ref.uid)] == [True]


def test_find_by_marker_finds_only_calbridge_events_with_that_marker(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    ava = world.attendees[0]
    marker, other_marker = new_marker(), new_marker()
    world.add_personal_event(world.organizer, "Dentist", START, START + timedelta(hours=1))
    other = create(world, draft(marker=other_marker, subject="Other appointment"))
    ref = create(world, draft(marker=marker, attendees=(ava,)))

    found = world.run(world.gateway.find_by_marker(world.organizer, marker))

    assert [event.item_id for event in found] == [ref.item_id]
    assert found[0].marker == marker
    others = world.run(world.gateway.find_by_marker(world.organizer, other_marker))
    assert [event.item_id for event in others] == [other.item_id]
    # The attendee's copy does not carry the marker; it is found by UID instead.
    assert world.run(world.gateway.find_by_marker(ava, marker)) == []
    assert world.run(world.gateway.find_by_marker(world.organizer, new_marker())) == []


def test_a_create_retried_after_a_lost_answer_makes_no_second_event(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    ava = world.attendees[0]
    marker = new_marker()
    event = draft(marker=marker, attendees=(ava,))

    first = create(world, event, transaction_id="tx-retry-1")
    if world.transaction_ids:
        # Graph: the same transactionId returns the event the first POST made.
        second = create(world, event, transaction_id="tx-retry-1")
        assert second.item_id == first.item_id
    else:
        # EWS: no transaction id; the retry is preceded by the marker lookup (the engine's, for
        # every create whose answer may have been lost), which finds the first event.
        [found] = world.run(world.gateway.find_by_marker(world.organizer, marker))
        assert (found.item_id, found.uid) == (first.item_id, first.uid)

    assert len(live(world, world.organizer)) == 1
    assert len(with_uid(world, ava, first.uid)) == 1


def test_a_uid_planned_before_the_create_is_the_one_its_meeting_and_copies_carry(
    calendar_world: CalendarWorld,
) -> None:
    # Where the protocol lets calbridge choose the UID (EWS), it is known before the create:
    # the meeting a create made before its outcome was stored is known by it even once the
    # organizer removed it, in the copies its attendees keep (cancelled or not).
    world = calendar_world
    if not isinstance(world.gateway, ChosenUids):
        pytest.skip("the protocol chooses the UID itself (Graph, the fake)")
    ava = world.attendees[0]
    event = draft(marker=new_marker(), attendees=(ava,))
    planned = world.gateway.planned_uid(world.organizer, "tx-planned-1")
    assert planned == world.gateway.planned_uid(world.organizer.upper(), "tx-planned-1")
    assert planned != world.gateway.planned_uid(world.organizer, "tx-planned-2")

    ref = create(world, event, transaction_id="tx-planned-1")
    world.run(world.gateway.cancel_event(world.organizer, ref.item_id))

    assert ref.uid == planned
    copy = world.run(world.gateway.find_by_uid(ava, planned))
    assert copy is not None
    assert copy.is_cancelled


def test_a_stale_change_key_is_refused_and_changes_nothing(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    marker = new_marker()
    ref = create(world, draft(marker=marker))
    newer = world.run(
        world.gateway.update_event(
            world.organizer, ref.item_id, draft(marker=marker, subject="Second"), ref.change_key
        )
    )
    assert newer.change_key != ref.change_key

    with pytest.raises(ChangeKeyConflict):
        world.run(
            world.gateway.update_event(
                world.organizer, ref.item_id, draft(marker=marker, subject="Third"), ref.change_key
            )
        )

    [event] = world.calendar(world.organizer)
    assert event.subject == "Second"
    assert event.change_key == newer.change_key


def test_every_write_gives_a_new_change_key(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    marker = new_marker()
    ref = create(world, draft(marker=marker))
    keys = [ref.change_key]
    for minutes in (30, 60):
        ref = world.run(
            world.gateway.update_event(
                world.organizer, ref.item_id, draft(marker=marker, minutes=minutes), ref.change_key
            )
        )
        keys.append(ref.change_key)

    assert len(set(keys)) == 3
    assert all(keys)


def test_updating_a_deleted_event_raises_event_not_found(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    marker = new_marker()
    ref = create(world, draft(marker=marker))
    world.run(world.gateway.cancel_event(world.organizer, ref.item_id))

    with pytest.raises(EventNotFound):
        world.run(
            world.gateway.update_event(world.organizer, ref.item_id, draft(marker=marker), None)
        )


def test_an_unknown_mailbox_raises_mailbox_not_found(calendar_world: CalendarWorld) -> None:
    world = calendar_world

    with pytest.raises(MailboxNotFound):
        world.run(world.gateway.find_by_marker(world.missing_mailbox, new_marker()))


def test_times_keep_their_instant_across_time_zones(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    # The night the clocks change in Berlin, written from a New York wall clock.
    start = datetime(2031, 3, 30, 1, 30, tzinfo=BERLIN).astimezone(ZoneInfo("America/New_York"))

    ref = create(world, draft(marker=new_marker(), start=start, minutes=90))

    [event] = world.calendar(world.organizer)
    assert event.item_id == ref.item_id
    assert event.start == start
    assert event.end - event.start == timedelta(minutes=90)
    assert event.start.astimezone(UTC) == datetime(2031, 3, 30, 0, 30, tzinfo=UTC)


def test_the_calendar_view_lists_what_overlaps_the_window(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    inside = create(world, draft(marker=new_marker()))
    create(world, draft(marker=new_marker(), start=START + timedelta(days=3)))
    own = world.add_personal_event(
        world.organizer, "Gym", START - timedelta(minutes=30), START + timedelta(minutes=15)
    )

    window = world.run(
        world.gateway.list_events(
            world.organizer, START - timedelta(hours=1), START + timedelta(hours=2)
        )
    )

    assert [event.item_id for event in window] == [own.item_id, inside.item_id]


# --- Exchange's failures, as the port's typed errors -------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (ExchangeFault.THROTTLED, RetryAfter),
        (ExchangeFault.SERVER_ERROR, ExchangeUnavailable),
        (ExchangeFault.RESET, ExchangeUnavailable),
        (ExchangeFault.UNAUTHORIZED, AuthenticationFailed),
    ],
)
def test_a_failing_exchange_raises_the_ports_typed_error_and_writes_nothing(
    calendar_world: CalendarWorld, fault: ExchangeFault, error: type[CalendarError]
) -> None:
    world = calendar_world
    marker = new_marker()
    world.inject(fault, world.organizer)
    try:
        with pytest.raises(error) as raised:
            create(world, draft(marker=marker))
    finally:
        world.clear_faults()
    assert raised.value.mailbox == world.organizer
    expected_wait = THROTTLE_SECONDS if fault is ExchangeFault.THROTTLED else None
    assert raised.value.retry_after_seconds == expected_wait
    assert not raised.value.look_again
    # Nothing was written, and once Exchange is back the same call goes through, once.
    assert [e for e in world.calendar(world.organizer) if e.marker == marker] == []
    create(world, draft(marker=marker))
    assert len([e for e in world.calendar(world.organizer) if e.marker == marker]) == 1


def test_the_calendar_view_includes_an_event_ending_exactly_where_the_window_starts(
    calendar_world: CalendarWorld,
) -> None:
    # Exchange's CalendarView edges: an item whose end is the view's start is returned, one
    # whose start is the view's end is not
    # (https://learn.microsoft.com/exchange/client-developer/web-service-reference/calendarview).
    world = calendar_world
    mailbox = world.attendees[0]
    before = world.add_personal_event(mailbox, "Before", START - timedelta(hours=1), START)
    after = world.add_personal_event(
        mailbox, "After", START + timedelta(hours=1), START + timedelta(hours=2)
    )
    seen = world.run(world.gateway.list_events(mailbox, START, START + timedelta(hours=1)))
    ids = {event.item_id for event in seen}
    assert before.item_id in ids
    assert after.item_id not in ids


def test_an_update_with_its_change_key_after_the_owner_deleted_the_event_raises_not_found(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    ava = world.attendees[0]
    marker = new_marker()
    ref = create(world, draft(marker=marker, attendees=(ava,)))
    world.delete_as_owner(world.organizer, ref.item_id)  # in Outlook, just before the update

    with pytest.raises(EventNotFound) as raised:
        world.run(
            world.gateway.update_event(
                world.organizer, ref.item_id, draft(marker=marker, subject="Later"), ref.change_key
            )
        )

    assert raised.value.look_again
    assert [e for e in world.calendar(world.organizer) if not e.is_cancelled] == []
