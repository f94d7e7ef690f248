"""What staff did in Outlook to calbridge's appointment, judged against what calbridge applied
(``shared.engine.outlook``), including while a newer snapshot waits for the apply worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.engine.outlook import (
    AppointmentRescheduled,
    StaffDeclined,
    copy_outlived,
    organizer_item_changed,
)
from shared.exchange.marker_property import written_stamp
from shared.exchange.port import Attendee, ExchangeEvent, ResponseType
from shared.models import AppointmentSnapshot, EventMapping
from tests.builders import snapshot

START = datetime(2031, 3, 3, 9, tzinfo=UTC)
STAFF = {"ana@bank.example": "ana", "ben@bank.example": "ben"}


def applied_mapping(version: int, start: datetime) -> EventMapping:
    return EventMapping(
        organizer_staff_id="ana",
        mailbox="ana@bank.example",
        connection_id="onprem",
        item_id="item-1",
        change_key="ck-written",
        applied_version=version,
        attendee_staff_ids=["ben"],
        booked_start=start,
        booked_end=start + timedelta(minutes=30),
    )


def item(
    start: datetime,
    *,
    ben: ResponseType = ResponseType.NONE,
    written: datetime | None = None,
) -> ExchangeEvent:
    """The organizer's item at ``start``; ``written``: where calbridge's last write put it."""
    return ExchangeEvent(
        item_id="item-1",
        change_key="ck-outlook",
        start=start,
        end=start + timedelta(minutes=30),
        attendees=(Attendee(address="ben@bank.example", response=ben),),
        written=written_stamp(written, written + timedelta(minutes=30)) if written else None,
    )


def booked(version: int, start: datetime) -> AppointmentSnapshot:
    return snapshot(version, organizer="ana", secondaries=("ben",), start=start, time_zone="UTC")


def test_a_decline_while_a_newer_snapshot_waits_is_not_reported_as_a_move() -> None:
    mapping = applied_mapping(1, START)
    # The platform has moved the appointment (version 2, stored, not applied yet).
    newest = snapshot(
        2, organizer="ana", secondaries=("ben",), start=START + timedelta(hours=2), time_zone="UTC"
    )

    verdict = organizer_item_changed(
        "appt-1", item(START, ben=ResponseType.DECLINED), mapping, newest, STAFF
    )

    assert verdict.events == (StaffDeclined("appt-1", "ben"),)
    assert verdict.mapping is not None
    assert verdict.mapping.outlook_start is None


def test_a_move_is_measured_against_the_applied_times() -> None:
    mapping = applied_mapping(1, START)
    newest = snapshot(1, organizer="ana", secondaries=("ben",), start=START, time_zone="UTC")
    moved = START + timedelta(days=1)

    verdict = organizer_item_changed("appt-1", item(moved), mapping, newest, STAFF)

    assert verdict.events == (
        AppointmentRescheduled("appt-1", moved, moved + timedelta(minutes=30), by="ana"),
    )
    assert verdict.mapping is not None
    assert verdict.mapping.outlook_start == moved


def test_a_mapping_without_applied_times_falls_back_to_the_snapshot() -> None:
    mapping = applied_mapping(1, START).model_copy(
        update={"booked_start": None, "booked_end": None}
    )
    newest = snapshot(1, organizer="ana", secondaries=("ben",), start=START, time_zone="UTC")

    verdict = organizer_item_changed("appt-1", item(START), mapping, newest, STAFF)

    assert verdict.events == ()


def test_an_unrecorded_own_write_for_an_overtaken_snapshot_is_no_move() -> None:
    # Two deliveries at once: the worker of version 2 wrote 11:00 and has not stored the
    # mapping (still version 1, 09:00); version 3 (13:00) is stored meanwhile. The item shows the
    # times calbridge's last write stamped on it: calbridge's own write, not the organizer's.
    mapping = applied_mapping(1, START)
    written = START + timedelta(hours=2)

    verdict = organizer_item_changed(
        "appt-1",
        item(written, written=written),
        mapping,
        booked(3, START + timedelta(hours=4)),
        STAFF,
    )

    assert verdict.events == ()
    assert verdict.mapping is not None
    assert verdict.mapping.outlook_start is None
    # The newest snapshot wants other times: the worker must look before it trusts the mapping.
    assert verdict.mapping.in_doubt


def test_an_unrecorded_own_write_of_the_newest_snapshot_leaves_the_mapping_trusted() -> None:
    mapping = applied_mapping(1, START)
    written = START + timedelta(hours=2)

    verdict = organizer_item_changed(
        "appt-1", item(written, written=written), mapping, booked(2, written), STAFF
    )

    assert verdict.events == ()
    assert verdict.mapping is not None
    assert not verdict.mapping.in_doubt


def test_a_move_away_from_calbridges_last_write_is_reported() -> None:
    mapping = applied_mapping(1, START)
    moved = START + timedelta(hours=5)

    verdict = organizer_item_changed(
        "appt-1", item(moved, written=START), mapping, booked(1, START), STAFF
    )

    assert verdict.events == (
        AppointmentRescheduled("appt-1", moved, moved + timedelta(minutes=30), by="ana"),
    )


def test_a_held_outlook_move_calbridge_wrote_again_stays_recorded() -> None:
    # The organizer moved it to 14:00 (told); a new title from the platform was written keeping
    # the move (the stamp says 14:00). The move is still the organizer's, and told once only.
    moved = START + timedelta(hours=5)
    mapping = applied_mapping(2, START).model_copy(
        update={"outlook_start": moved, "outlook_end": moved + timedelta(minutes=30)}
    )

    verdict = organizer_item_changed(
        "appt-1", item(moved, written=moved), mapping, booked(2, START), STAFF
    )

    assert verdict.events == ()
    assert verdict.mapping is not None
    assert verdict.mapping.outlook_start == moved
    assert not verdict.mapping.in_doubt


def test_a_move_back_to_calbridges_last_write_is_reported_as_a_move_back() -> None:
    moved = START + timedelta(hours=5)
    mapping = applied_mapping(2, START).model_copy(
        update={"outlook_start": moved, "outlook_end": moved + timedelta(minutes=30)}
    )

    verdict = organizer_item_changed(
        "appt-1", item(START, written=START), mapping, booked(2, START), STAFF
    )

    assert verdict.events == (
        AppointmentRescheduled("appt-1", START, START + timedelta(minutes=30), by="ana"),
    )
    assert verdict.mapping is not None
    assert verdict.mapping.outlook_start is None


def test_a_copy_outlives_an_earlier_generations_meeting_and_a_cancelled_one_only() -> None:
    current = applied_mapping(2, START).model_copy(update={"generation": 2, "uid": "uid-2"})
    # An earlier generation's meeting (handed over, or made again after a deletion).
    assert copy_outlived("uid-1", 1, current)
    # The mapping's own live meeting, and a copy whose generation is not known.
    assert not copy_outlived("uid-2", 2, current)
    assert not copy_outlived("uid-1", None, current)
    # The organizer cancelled the mapping's meeting in Outlook.
    cancelled = current.model_copy(update={"cancelled": True})
    assert copy_outlived("uid-2", 2, cancelled)
    # Never while the mapping is unsettled: the copy may be of the meeting being made.
    assert not copy_outlived("uid-1", 1, current.model_copy(update={"in_doubt": True}))
    assert not copy_outlived("uid-1", 1, current.model_copy(update={"item_id": None}))
    # A copy of a newer generation than the mapping records (its create not stored yet).
    assert not copy_outlived("uid-3", 3, current)
    # A pending create's meeting its organizer removed before its outcome was stored: the
    # mapping is cancelled with only the UID the create gave it.
    removed = cancelled.model_copy(update={"item_id": None})
    assert copy_outlived("uid-2", 2, removed)
    assert not copy_outlived("uid-2", 2, removed.model_copy(update={"cancelled": False}))
