"""Booking platform → Exchange, end to end, over EWS and over Graph: a signed PUT reaches the
function, the queue, the apply worker and the simulator; the result is read back as the staff
members see their calendars."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import bootstrap
from shared.engine.marker import marker_for
from shared.exchange.marker_property import MARKER_PROPERTY_NAME, MARKER_PROPERTY_SET_ID
from sim.people import Outlook
from sim.store import CalendarItem, ExtendedPropertyKey, Fault
from tests.builders import snapshot_document
from tests.e2e.conftest import ORG, STAFF, World
from tests.waiting import wait_until

MARKER_KEY = ExtendedPropertyKey(MARKER_PROPERTY_SET_ID.lower(), MARKER_PROPERTY_NAME, "String")
SIDES = ["ews", "graph"]
_ids = itertools.count(1)
_days = itertools.count(1)


def staff(side: str) -> tuple[tuple[str, str], tuple[str, str], tuple[str, str]]:
    """(staff id, mailbox) of the organizer and two secondaries on one side."""
    a, b, c = STAFF[side].items()
    return a, b, c


def snapshot(
    version: int,
    organizer: str,
    secondaries: list[str],
    *,
    title: str,
    day: int,
    hour: int = 9,
    status: str = "booked",
    **extra: Any,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "minutes": 45,
        "time_zone": "America/Toronto",
        "location": "Branch 12",
        "service": "Mortgage advice",
        "clients": (
            {"name": "Grace Hopper", "email": "grace@client.test", "phone": "+1 555 0100"},
        ),
    }
    return snapshot_document(
        version,
        status=status,
        organizer=organizer,
        secondaries=secondaries,
        start=datetime(2027, 3, 1, hour, 0, tzinfo=UTC) + timedelta(days=day),
        title=title,
        **{**defaults, **extra},
    )


def put(world: World, appointment_id: str, body: dict[str, Any]) -> None:
    response = world.put_appointment(appointment_id, body)
    assert response.status_code == 202, response.text
    world.applied(appointment_id, body["version"])


def only_live(world: World, address: str, title: str) -> CalendarItem:
    items = world.live(address, title)
    assert len(items) == 1, f"{address}: expected one live {title!r}, found {len(items)}"
    return items[0]


def attendee_addresses(item: CalendarItem) -> set[str]:
    return {a.address for a in item.required_attendees + item.optional_attendees}


def unique(title: str) -> tuple[str, str, int]:
    n = next(_ids)
    return f"apt-{n}", f"{title} #{n}", next(_days)


@pytest.mark.parametrize("side", SIDES)
def test_a_single_staff_booking_lands_in_the_organizers_calendar(world: World, side: str) -> None:
    (organizer, mailbox), _, _ = staff(side)
    appointment_id, title, day = unique("Single")
    put(world, appointment_id, snapshot(1, organizer, [], title=title, day=day))
    item = only_live(world, mailbox, title)
    assert item.start == datetime(2027, 3, 1, 9, tzinfo=UTC) + timedelta(days=day)
    assert item.location == "Branch 12"
    assert item.free_busy.value == "Busy"
    assert item.extended_properties[MARKER_KEY] == marker_for(ORG, appointment_id)
    assert attendee_addresses(item) == set()
    mapping = world.mapping(appointment_id)
    assert mapping is not None
    assert mapping.uid == item.uid
    assert mapping.last_error is None


@pytest.mark.parametrize("side", SIDES)
def test_a_multi_staff_booking_invites_secondaries_and_lists_clients_in_the_body(
    world: World, side: str
) -> None:
    (organizer, mailbox), (s1, m1), (s2, m2) = staff(side)
    appointment_id, title, day = unique("Multi")
    put(world, appointment_id, snapshot(1, organizer, [s1, s2], title=title, day=day))
    item = only_live(world, mailbox, title)
    assert attendee_addresses(item) == {m1, m2}
    assert "Grace Hopper" in item.body
    assert "grace@client.test" in item.body
    assert "grace@client.test" not in attendee_addresses(item)
    for address in (m1, m2):
        copy = only_live(world, address, title)
        assert copy.uid == item.uid
        assert copy.organizer is not None
        assert copy.organizer.address == mailbox


@pytest.mark.parametrize("side", SIDES)
def test_reschedule_and_detail_changes_reach_every_calendar(world: World, side: str) -> None:
    (organizer, mailbox), (s1, m1), _ = staff(side)
    appointment_id, title, day = unique("Move")
    put(world, appointment_id, snapshot(1, organizer, [s1], title=title, day=day))
    put(
        world,
        appointment_id,
        snapshot(2, organizer, [s1], title=title, day=day, hour=14, location="Branch 7"),
    )
    moved_start = datetime(2027, 3, 1, 14, tzinfo=UTC) + timedelta(days=day)
    for address in (mailbox, m1):
        item = only_live(world, address, title)
        assert item.start == moved_start
        assert item.location == "Branch 7"
    renamed = title + " (renamed)"
    put(world, appointment_id, snapshot(3, organizer, [s1], title=renamed, day=day, hour=14))
    for address in (mailbox, m1):
        assert only_live(world, address, renamed)


@pytest.mark.parametrize("side", SIDES)
def test_adding_and_removing_secondary_staff(world: World, side: str) -> None:
    (organizer, mailbox), (s1, m1), (s2, m2) = staff(side)
    appointment_id, title, day = unique("Staff")
    put(world, appointment_id, snapshot(1, organizer, [s1], title=title, day=day))
    assert only_live(world, m1, title)
    assert world.live(m2, title) == []
    put(world, appointment_id, snapshot(2, organizer, [s1, s2], title=title, day=day))
    assert only_live(world, m2, title)
    put(world, appointment_id, snapshot(3, organizer, [s2], title=title, day=day))
    assert attendee_addresses(only_live(world, mailbox, title)) == {m2}
    assert world.live(m1, title) == []
    assert only_live(world, m2, title)


@pytest.mark.parametrize("side", SIDES)
def test_cancel_then_rebook(world: World, side: str) -> None:
    (organizer, mailbox), (s1, m1), _ = staff(side)
    appointment_id, title, day = unique("Cancel")
    put(world, appointment_id, snapshot(1, organizer, [s1], title=title, day=day))
    put(
        world,
        appointment_id,
        snapshot(2, organizer, [s1], title=title, day=day, status="cancelled"),
    )
    assert world.live(mailbox, title) == []
    assert world.live(m1, title) == []
    mapping = world.mapping(appointment_id)
    assert mapping is not None
    assert mapping.cancelled
    put(world, appointment_id, snapshot(3, organizer, [s1], title=title, day=day))
    assert only_live(world, mailbox, title)
    assert only_live(world, m1, title)


@pytest.mark.parametrize("side", SIDES)
def test_the_organizer_removing_themselves_hands_the_event_over(world: World, side: str) -> None:
    (organizer, mailbox), (s1, m1), (s2, m2) = staff(side)
    appointment_id, title, day = unique("Handover")
    put(world, appointment_id, snapshot(1, organizer, [s1, s2], title=title, day=day))
    original = only_live(world, mailbox, title)
    put(world, appointment_id, snapshot(2, s1, [s2], title=title, day=day))
    assert world.live(mailbox, title) == []  # the original is cancelled
    new = only_live(world, m1, title)
    assert new.uid != original.uid
    assert new.is_organizer
    assert attendee_addresses(new) == {m2}
    copy = only_live(world, m2, title)  # a new invitation from the new organizer
    assert copy.uid == new.uid
    mapping = world.mapping(appointment_id)
    assert mapping is not None
    assert (mapping.organizer_staff_id, mapping.mailbox) == (s1, m1)


@pytest.mark.parametrize("side", SIDES)
def test_a_staff_member_without_a_mailbox_is_recorded_not_a_crash(world: World, side: str) -> None:
    (organizer, mailbox), (s1, m1), _ = staff(side)
    appointment_id, title, day = unique("Unknown")
    put(world, appointment_id, snapshot(1, organizer, [s1, "ghost"], title=title, day=day))
    item = only_live(world, mailbox, title)
    assert attendee_addresses(item) == {m1}
    mapping = world.mapping(appointment_id)
    assert mapping is not None
    assert mapping.last_error is not None
    assert "ghost" in mapping.last_error


def test_an_unknown_organizer_is_recorded_and_nothing_is_written(world: World) -> None:
    appointment_id, title, day = unique("NoOrganizer")
    response = world.put_appointment(appointment_id, snapshot(1, "ghost", [], title=title, day=day))
    assert response.status_code == 202

    def recorded() -> str | None:
        found = bootstrap.services().repositories.problems.get(ORG, appointment_id)
        return found.value.problem if found else None

    problem = wait_until(recorded, what="the unknown organizer recorded")
    assert "ghost" in problem
    for side in SIDES:
        for address in STAFF[side].values():
            assert world.live(address, title) == []


@pytest.mark.parametrize("side", SIDES)
def test_duplicate_and_out_of_order_deliveries_leave_one_event(world: World, side: str) -> None:
    (organizer, mailbox), (s1, _), _ = staff(side)
    appointment_id, title, day = unique("Dupes")
    v1 = snapshot(1, organizer, [s1], title=title, day=day)
    v2 = snapshot(2, organizer, [s1], title=title, day=day, hour=15)
    put(world, appointment_id, v2)
    stale = world.put_appointment(appointment_id, v1)
    assert stale.status_code == 200
    assert stale.json()["accepted"] is False
    again = world.put_appointment(appointment_id, v2)  # the same version re-sent: re-queued
    assert again.status_code == 202
    world.applied(appointment_id, 2)
    wait_until(world.queue_drained, what="the queue to drain")
    item = only_live(world, mailbox, title)
    assert item.start is not None
    assert item.start.hour == 15


THROTTLE = {
    # EWS ErrorServerBusy with BackOffMilliseconds; Graph 429 with Retry-After.
    "ews": Fault(kind="server_busy", operation="ews:CreateItem", back_off_ms=1000),
    "graph": Fault(kind="throttle", operation="graph:createEvent", retry_after=1),
}


@pytest.mark.parametrize("side", SIDES)
def test_throttling_requeues_the_change_and_it_lands_once_later(world: World, side: str) -> None:
    (organizer, mailbox), (s1, m1), _ = staff(side)
    appointment_id, title, day = unique("Throttled")
    fault = THROTTLE[side]
    world.sim.store.add_fault(replace(fault, mailbox=mailbox, remaining=1))
    started = time.monotonic()
    response = world.put_appointment(
        appointment_id, snapshot(1, organizer, [s1], title=title, day=day)
    )
    assert response.status_code == 202

    def throttled_then_written() -> str | None:
        mapping = world.mapping(appointment_id)
        return mapping.last_error if mapping is not None else None

    assert "RetryAfter" in wait_until(throttled_then_written, what="the throttled first try")
    world.applied(appointment_id, 1)
    # The message came back after the server's delay (the worker re-queued it, never slept).
    assert time.monotonic() - started >= 1.0
    assert only_live(world, mailbox, title)
    assert only_live(world, m1, title)
    assert world.sim.store.take_fault(mailbox, fault.operation) is None  # the fault was used


@pytest.mark.parametrize("side", SIDES)
def test_a_change_after_an_attendee_answered_in_outlook_lands_once(world: World, side: str) -> None:
    # The attendee's answer changes the organizer's item, so the change key the mapping holds
    # is stale until the mailbox sync reads it: the update is refused (EWS NeverOverwrite, Graph
    # If-Match), the worker looks the item up and writes again, once.
    (organizer, mailbox), (s1, m1), _ = staff(side)
    appointment_id, title, day = unique("Answered")
    put(world, appointment_id, snapshot(1, organizer, [s1], title=title, day=day))
    copy = only_live(world, m1, title)
    Outlook(world.sim.store, m1).accept(copy.id)

    renamed = title + " (renamed)"
    put(world, appointment_id, snapshot(2, organizer, [s1], title=renamed, day=day))

    item = only_live(world, mailbox, renamed)
    assert world.live(mailbox, title) == [item]
    assert only_live(world, m1, renamed).uid == item.uid
    mapping = world.mapping(appointment_id)
    assert mapping is not None
    assert not mapping.in_doubt
    assert mapping.applied_version == 2
