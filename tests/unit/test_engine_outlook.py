"""What staff did in Outlook to calbridge's appointment, judged against what calbridge applied
(``shared.engine.outlook``), including while a newer snapshot waits for the apply worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.engine.outlook import (
    AppointmentRescheduled,
    StaffDeclined,
    organizer_item_changed,
)
from shared.exchange.port import Attendee, ExchangeEvent, ResponseType
from shared.models import EventMapping
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


def item(start: datetime, *, ben: ResponseType = ResponseType.NONE) -> ExchangeEvent:
    return ExchangeEvent(
        item_id="item-1",
        change_key="ck-outlook",
        start=start,
        end=start + timedelta(minutes=30),
        attendees=(Attendee(address="ben@bank.example", response=ben),),
    )


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
