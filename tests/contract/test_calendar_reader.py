"""What every ``CalendarReader`` must show: the changes of a mailbox's calendar since a cursor,
page by page, as the owner's Outlook makes them — created, moved, cancelled, deleted — and an
idle mailbox answering "nothing" with the cursor it was given again to follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.exchange.port import (
    CalendarChanges,
    CalendarReader,
    ExchangeEvent,
    ReadWindow,
    SyncStateInvalid,
)
from tests.contract.worlds import CalendarWorld

START = datetime(2031, 6, 2, 9, tzinfo=UTC)
# What a windowed reader (Graph's calendarView delta) covers from the beginning; readers of the
# whole calendar ignore it.
WINDOW = ReadWindow(start=START - timedelta(days=30), end=START + timedelta(days=90))


def reader(world: CalendarWorld) -> CalendarReader:
    assert isinstance(world.gateway, CalendarReader)
    return world.gateway


def read_all(
    world: CalendarWorld, mailbox: str, cursor: str | None, page: int = 512
) -> CalendarChanges:
    """Every page after ``cursor`` folded into one (later pages win)."""
    changed: dict[str, ExchangeEvent] = {}
    deleted: dict[str, None] = {}
    while True:
        changes = world.run(
            reader(world).changes_since(mailbox, cursor, max_changes=page, window=WINDOW)
        )
        for event in changes.changed:
            changed[event.item_id] = event
            deleted.pop(event.item_id, None)
        for item_id in changes.deleted:
            deleted[item_id] = None
            changed.pop(item_id, None)
        cursor = changes.cursor
        if changes.complete:
            return CalendarChanges(
                changed=tuple(changed.values()),
                deleted=tuple(deleted),
                cursor=cursor,
                complete=True,
            )


def test_from_the_beginning_every_item_is_a_change_then_an_idle_mailbox_has_none(
    reader_world: CalendarWorld,
) -> None:
    world = reader_world
    mailbox = world.attendees[0]
    mine = world.add_personal_event(mailbox, "Dentist", START, START + timedelta(hours=1))
    first = read_all(world, mailbox, None)
    assert mine.item_id in {event.item_id for event in first.changed}
    again = world.run(reader(world).changes_since(mailbox, first.cursor, window=WINDOW))
    assert (again.changed, again.deleted, again.complete) == ((), (), True)


def test_outlook_changes_come_as_changed_and_deleted_items_with_what_they_say_now(
    reader_world: CalendarWorld,
) -> None:
    world = reader_world
    mailbox = world.attendees[1]
    start = read_all(world, mailbox, None).cursor
    kept = world.add_personal_event(mailbox, "Gym", START, START + timedelta(hours=1))
    gone = world.add_personal_event(mailbox, "Lunch", START, START + timedelta(hours=1))
    world.delete_as_owner(mailbox, gone.item_id)
    changes = read_all(world, mailbox, start)
    assert [event.item_id for event in changes.changed] == [kept.item_id]
    [event] = changes.changed
    assert (event.subject, event.start, event.end) == ("Gym", kept.start, kept.end)
    assert event.change_key == kept.change_key
    # An item made and deleted between two reads may be reported deleted or not at all.
    assert set(changes.deleted) <= {gone.item_id}

    world.delete_as_owner(mailbox, kept.item_id)
    later = read_all(world, mailbox, changes.cursor)
    assert later.changed == ()
    assert later.deleted == (kept.item_id,)


def test_changes_come_in_pages_of_at_most_the_size_asked_and_none_is_lost(
    reader_world: CalendarWorld,
) -> None:
    world = reader_world
    mailbox = world.attendees[2]
    cursor = read_all(world, mailbox, None).cursor
    made = {
        world.add_personal_event(
            mailbox,
            f"Block {n}",
            START + timedelta(hours=n),
            START + timedelta(hours=n, minutes=30),
        ).item_id
        for n in range(5)
    }
    seen: list[str] = []
    pages = 0
    while True:
        page = world.run(reader(world).changes_since(mailbox, cursor, max_changes=2, window=WINDOW))
        pages += 1
        assert len(page.changed) + len(page.deleted) <= 2
        seen += [event.item_id for event in page.changed]
        cursor = page.cursor
        if page.complete:
            break
    assert set(seen) == made
    assert pages >= 3


def test_a_cursor_the_server_no_longer_knows_raises_sync_state_invalid(
    reader_world: CalendarWorld,
) -> None:
    world = reader_world
    with pytest.raises(SyncStateInvalid):
        world.run(reader(world).changes_since(world.organizer, "not-a-sync-state", window=WINDOW))
