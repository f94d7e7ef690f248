"""EWS contract: meetings as exchangelib sees them — invitations reaching attendees, responses
reaching the organizer, updates and cancellations, change-key conflicts, extended properties
found by restriction, recurring series with an edited and a deleted occurrence, and item
fields round-tripping. Only exchangelib talks to the simulator; the store is read to inspect.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import (
    Attendee,
    CalendarItem,
    EWSDate,
    EWSDateTime,
    EWSTimeZone,
    ExtendedProperty,
    HTMLBody,
    Mailbox,
)
from exchangelib.errors import ErrorIrresolvableConflict, ErrorItemNotFound
from exchangelib.items import (
    ALWAYS_OVERWRITE,
    AUTO_RESOLVE,
    NEVER_OVERWRITE,
    SEND_TO_ALL_AND_SAVE_COPY,
    SEND_TO_NONE,
)
from exchangelib.protocol import close_connections
from exchangelib.recurrence import NumberedPattern, Recurrence, WeeklyPattern

from sim.server import RunningSimulator
from sim.store import ExtendedPropertyKey
from tests.sim.conftest import ANN, BOB, CARA, exchangelib_account

TZ = EWSTimeZone("America/Toronto")
MARKER_SET = "C11FF724-AA03-4555-9952-8FA248A11C3E"


class Marker(ExtendedProperty):
    property_set_id = MARKER_SET
    property_name = "CalbridgeMarker"
    property_type = "String"


class CleanGlobalObjectId(ExtendedProperty):
    """PidLidCleanGlobalObjectId: how clients find a meeting's copies (UID is not searchable)."""

    distinguished_property_set_id = "Meeting"
    property_id = 0x23
    property_type = "Binary"


class GlobalObjectId(ExtendedProperty):
    distinguished_property_set_id = "Meeting"
    property_id = 0x3
    property_type = "Binary"


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols() -> Iterator[None]:
    yield
    close_connections()


@pytest.fixture(scope="module", autouse=True)
def marker_field() -> Iterator[None]:
    CalendarItem.register("marker", Marker)
    CalendarItem.register("clean_goid", CleanGlobalObjectId)
    CalendarItem.register("goid", GlobalObjectId)
    yield
    CalendarItem.deregister("goid")
    CalendarItem.deregister("clean_goid")
    CalendarItem.deregister("marker")


@pytest.fixture(scope="module", autouse=True)
def responses_are_schema_valid(simulator: RunningSimulator) -> Iterator[None]:
    yield
    assert simulator.ews.validated_responses > 0
    assert simulator.ews.schema_failures == []


@pytest.fixture(scope="module")
def ann(simulator: RunningSimulator) -> Any:
    return exchangelib_account(simulator, ANN)


@pytest.fixture(scope="module")
def bob(simulator: RunningSimulator) -> Any:
    return exchangelib_account(simulator, BOB, auth="basic")


def at(day: int, hour: int, minute: int = 0) -> EWSDateTime:
    return EWSDateTime(2027, 3, day, hour, minute, tzinfo=TZ)


def invite(account: Any, subject: str, attendees: list[str], day: int, hour: int = 10) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        body="Agenda: numbers",
        start=at(day, hour),
        end=at(day, hour + 1),
        location="Room 4",
        required_attendees=[Attendee(mailbox=Mailbox(email_address=a)) for a in attendees],
    )
    item.save(send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)
    return item


def copies(account: Any, uid: str, day: int) -> list[Any]:
    window = account.calendar.view(start=at(day, 0), end=at(day + 1, 0))
    return [item for item in window if item.uid == uid]


def attendee_response(item: Any, address: str) -> Any:
    [attendee] = [a for a in item.required_attendees if a.mailbox.email_address == address]
    return attendee


def test_meeting_reaches_the_attendee_calendar(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Quarterly numbers", [BOB], day=1)
    sent.refresh()

    [received] = copies(bob, sent.uid, day=1)

    assert received.subject == "Quarterly numbers"
    assert received.start == sent.start
    assert received.end == sent.end
    assert received.organizer.email_address == ANN
    assert received.my_response_type == "NoResponseReceived"
    assert received.legacy_free_busy_status == "Tentative"
    assert received.is_meeting is True
    assert received.id != sent.id
    assert sent.my_response_type == "Organizer"
    assert sent.meeting_request_was_sent is True
    assert attendee_response(sent, BOB).response_type == "Unknown"


def test_accept_shows_on_the_organizer_item(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Accept me", [BOB], day=2)
    [received] = copies(bob, ann.calendar.get(id=sent.id).uid, day=2)

    received.accept(body="See you there")

    sent.refresh()
    assert attendee_response(sent, BOB).response_type == "Accept"
    assert attendee_response(sent, BOB).last_response_time is not None
    received.refresh()
    assert received.my_response_type == "Accept"
    assert received.legacy_free_busy_status == "Busy"


def test_tentative_accept_shows_on_the_organizer_item(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Maybe", [BOB], day=3)
    sent.refresh()
    [received] = copies(bob, sent.uid, day=3)

    received.tentatively_accept()

    sent.refresh()
    assert attendee_response(sent, BOB).response_type == "Tentative"
    assert copies(bob, sent.uid, day=3)[0].legacy_free_busy_status == "Tentative"


def test_decline_removes_the_copy_and_reaches_the_organizer(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Decline me", [BOB], day=4)
    sent.refresh()
    [received] = copies(bob, sent.uid, day=4)

    received.decline()

    assert copies(bob, sent.uid, day=4) == []
    with pytest.raises(ErrorItemNotFound):
        received.refresh()
    sent.refresh()
    assert attendee_response(sent, BOB).response_type == "Decline"


def test_update_with_invitations_moves_the_copies(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Moving meeting", [BOB], day=5)
    sent.refresh()
    copies(bob, sent.uid, day=5)[0].accept()
    sent.refresh()

    sent.start, sent.end = at(6, 14), at(6, 15, 30)
    sent.save(update_fields=["start", "end"], send_meeting_invitations=SEND_TO_ALL_AND_SAVE_COPY)

    assert copies(bob, sent.uid, day=5) == []
    [moved] = copies(bob, sent.uid, day=6)
    assert (moved.start, moved.end) == (at(6, 14), at(6, 15, 30))
    assert moved.my_response_type == "NoResponseReceived"  # a new time asks again


def test_update_without_invitations_leaves_the_copies(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Quiet change", [BOB], day=7)
    sent.refresh()

    sent.subject = "Quiet change (renamed)"
    sent.save(update_fields=["subject"], send_meeting_invitations=SEND_TO_NONE)

    [copy] = copies(bob, sent.uid, day=7)
    assert copy.subject == "Quiet change"
    assert ann.calendar.get(id=sent.id).subject == "Quiet change (renamed)"


def test_full_save_round_trips_every_field(ann: Any) -> None:
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Round trip",
        body=HTMLBody("<p>Plan</p>"),
        start=at(8, 9),
        end=at(8, 10),
        location="Lab",
        sensitivity="Private",
        legacy_free_busy_status="OOF",
        uid="calbridge-round-trip-1",
    )
    item.save()
    fetched = ann.calendar.get(id=item.id)
    fetched.location = "Lab 2"
    fetched.save()  # exchangelib sends every writable field (and deletes the empty ones)

    again = ann.calendar.get(id=item.id)
    assert again.subject == "Round trip"
    assert str(again.body) == "<p>Plan</p>"
    assert isinstance(again.body, HTMLBody)
    assert again.location == "Lab 2"
    assert again.sensitivity == "Private"
    assert again.legacy_free_busy_status == "OOF"
    assert again._start_timezone == TZ
    assert again.datetime_created is not None
    assert again.last_modified_time >= again.datetime_created
    assert again.type == "Single"
    assert again.uid == "calbridge-round-trip-1"


def test_all_day_event_keeps_its_dates(ann: Any) -> None:
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Offsite",
        start=EWSDate(2027, 3, 9),
        end=EWSDate(2027, 3, 10),
        is_all_day=True,
    )
    item.save()

    fetched = ann.calendar.get(id=item.id)

    assert fetched.is_all_day is True
    assert (fetched.start, fetched.end) == (EWSDate(2027, 3, 9), EWSDate(2027, 3, 10))


def test_cancel_cancels_the_copies(ann: Any, bob: Any, simulator: RunningSimulator) -> None:
    sent = invite(ann, "Cancel me", [BOB, CARA], day=10)
    sent.refresh()

    sent.cancel()

    with pytest.raises(ErrorItemNotFound):
        sent.refresh()
    [copy] = copies(bob, sent.uid, day=10)
    assert copy.is_cancelled is True
    assert copy.subject.startswith("Canceled: ")
    [cara_copy] = simulator.store.find_by_uid(CARA, sent.uid)
    assert cara_copy.is_cancelled


def test_delete_with_cancellations_cancels_the_copies(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Delete me", [BOB], day=11)
    sent.refresh()

    sent.delete(send_meeting_cancellations=SEND_TO_ALL_AND_SAVE_COPY)

    [copy] = copies(bob, sent.uid, day=11)
    assert copy.is_cancelled is True


def test_stale_change_key_is_an_irresolvable_conflict(ann: Any) -> None:
    item = CalendarItem(
        account=ann, folder=ann.calendar, subject="Conflict", start=at(12, 9), end=at(12, 10)
    )
    item.save()
    first = ann.calendar.get(id=item.id)
    second = ann.calendar.get(id=item.id)
    first.subject = "Conflict (first)"
    first.save(update_fields=["subject"])

    second.subject = "Conflict (second)"
    with pytest.raises(ErrorIrresolvableConflict):
        second.save(update_fields=["subject"], conflict_resolution=NEVER_OVERWRITE)
    assert ann.calendar.get(id=item.id).subject == "Conflict (first)"

    second.save(update_fields=["subject"], conflict_resolution=ALWAYS_OVERWRITE)
    assert ann.calendar.get(id=item.id).subject == "Conflict (second)"


def test_auto_resolve_overwrites_despite_a_stale_change_key(ann: Any) -> None:
    # [MS-OXWSCORE] 3.1.4.9.4.1 ConflictResolutionType: NeverOverwrite fails with
    # ErrorIrresolvableConflict; "The AutoResolve option will in most cases overwrite the existing
    # value for a property"
    # (https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxwscore/0dc48948-2f1b-425a-9e53-0c247657ef12).
    item = CalendarItem(
        account=ann, folder=ann.calendar, subject="Merge", start=at(12, 11), end=at(12, 12)
    )
    item.save()
    first = ann.calendar.get(id=item.id)
    second = ann.calendar.get(id=item.id)
    first.subject = "Merge (first)"
    first.save(update_fields=["subject"])

    second.subject = "Merge (second)"
    second.save(update_fields=["subject"], conflict_resolution=AUTO_RESOLVE)

    assert ann.calendar.get(id=item.id).subject == "Merge (second)"


def test_extended_property_is_set_and_found_by_restriction(
    ann: Any, bob: Any, simulator: RunningSimulator
) -> None:
    tagged = invite(ann, "Tagged", [BOB], day=13)
    tagged.marker = "apt-1001"
    tagged.save(update_fields=["marker"])
    other = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Other",
        start=at(13, 15),
        end=at(13, 16),
        marker="apt-1002",
    )
    other.save()

    [found] = ann.calendar.filter(marker="apt-1001")

    assert found.id == tagged.id
    assert found.marker == "apt-1001"
    assert [i.id for i in ann.calendar.filter(marker="APT-1002")] == [other.id]
    key = ExtendedPropertyKey(MARKER_SET.lower(), "CalbridgeMarker", "String")
    [stored] = simulator.store.find_by_extended_property(ANN, key, "apt-1001")
    assert stored.subject == "Tagged"
    # Named properties stay with the organizer's item; the invitation does not carry them.
    [copy] = copies(bob, found.uid, day=13)
    assert copy.marker is None

    found.marker = None
    found.save(update_fields=["marker"])
    assert list(ann.calendar.filter(marker="apt-1001")) == []


def test_recurring_series_with_an_edited_and_a_deleted_occurrence(ann: Any) -> None:
    master = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Standup",
        start=at(15, 9),
        end=at(15, 9, 30),
        recurrence=Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[1, 3]),  # Monday, Wednesday
            boundary=NumberedPattern(start=datetime.date(2027, 3, 15), number=4),
        ),
    )
    master.save()
    occurrences = list(ann.calendar.view(start=at(15, 0), end=at(28, 0)))
    assert [o.start for o in occurrences] == [at(15, 9), at(17, 9), at(22, 9), at(24, 9)]
    assert {o.type for o in occurrences} == {"Occurrence"}

    second = occurrences[1]
    second.subject = "Standup (moved)"
    second.start, second.end = at(17, 11), at(17, 11, 30)
    second.save(update_fields=["subject", "start", "end"])
    occurrences[2].delete()

    shown = list(ann.calendar.view(start=at(15, 0), end=at(28, 0)))
    assert [(o.subject, o.start, o.type) for o in shown] == [
        ("Standup", at(15, 9), "Occurrence"),
        ("Standup (moved)", at(17, 11), "Exception"),
        ("Standup", at(24, 9), "Occurrence"),
    ]
    assert shown[1].id == second.id  # an edited occurrence keeps its id
    series = ann.calendar.get(id=master.id)
    assert series.type == "RecurringMaster"
    assert [o.start for o in series.modified_occurrences] == [at(17, 11)]
    assert [d.start for d in series.deleted_occurrences] == [at(22, 9)]
    assert series.first_occurrence.start == at(15, 9)
    assert series.last_occurrence.start == at(24, 9)
    assert series.recurrence.boundary.number == 4
    series.location = "Huddle room"
    series.save()  # a full save sends the unchanged recurrence, times and zones back
    kept = ann.calendar.get(id=master.id)
    assert kept.location == "Huddle room"
    assert [o.start for o in kept.modified_occurrences] == [at(17, 11)]
    assert [d.start for d in kept.deleted_occurrences] == [at(22, 9)]
    third = ann.calendar.get(id=master.id).occurrence(4)
    third.refresh()
    assert third.start == at(24, 9)


def test_attendee_copy_is_found_by_the_clean_global_object_id(ann: Any, bob: Any) -> None:
    sent = invite(ann, "Find my copy", [BOB], day=14)
    sent.refresh()
    assert isinstance(sent.clean_goid, bytes)
    assert sent.clean_goid.startswith(bytes.fromhex("040000008200E00074C5B7101A82E008"))

    [found] = bob.calendar.filter(clean_goid=sent.clean_goid)

    assert found.uid == sent.uid
    assert found.organizer.email_address == ANN
    other = sent.clean_goid[:-1] + bytes([sent.clean_goid[-1] ^ 0xFF])
    assert list(bob.calendar.filter(clean_goid=other)) == []


def test_an_occurrence_global_object_id_carries_its_date(ann: Any) -> None:
    master = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Dated instances",
        start=at(29, 9),
        end=at(29, 10),
        uid="dated-instances@calbridge.test",
        recurrence=Recurrence(
            pattern=WeeklyPattern(interval=1, weekdays=[1]),
            boundary=NumberedPattern(start=datetime.date(2027, 3, 29), number=2),
        ),
    )
    master.save()
    [series] = ann.calendar.filter(clean_goid=ann.calendar.get(id=master.id).clean_goid)
    [first, second] = ann.calendar.view(start=at(29, 0), end=EWSDateTime(2027, 4, 6, tzinfo=TZ))

    assert series.id == master.id
    assert series.goid == series.clean_goid  # a master has no instance date
    assert b"vCal-Uid" in series.clean_goid  # a non-Exchange UID is wrapped
    assert second.goid[16:20] == bytes([0x07, 0xEB, 4, 5])  # 2027-04-05
    assert second.clean_goid == series.clean_goid
    assert first.goid != second.goid
