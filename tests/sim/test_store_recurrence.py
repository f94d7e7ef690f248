"""Recurring series in the store: pattern expansion (incl. DST), ranges, exceptions, deleted
occurrences, occurrence ids and indexes, and series meetings reaching attendees."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sim import recurrence
from sim.store import (
    Attendee,
    CalendarItem,
    ChangeKind,
    ExchangeStore,
    ItemType,
    Mailbox,
    Recurrence,
    ResponseType,
    SendMode,
    SimError,
)

ANN = "ann@contoso.test"
BOB = "bob@contoso.test"
TORONTO = ZoneInfo("America/Toronto")
YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
YEAR_END = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def store() -> ExchangeStore:
    store = ExchangeStore()
    store.add_mailbox(Mailbox(ANN, "Ann Lee", "America/Toronto"))
    store.add_mailbox(Mailbox(BOB, "Bob Ray", "America/Toronto"))
    return store


def local(year: int, month: int, day: int, hour: int = 9, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=TORONTO)


def series(rec: Recurrence, start: datetime, *attendees: str, minutes: int = 30) -> CalendarItem:
    return CalendarItem(
        id="",
        mailbox="",
        subject="Standup",
        start=start.astimezone(UTC),
        end=(start + timedelta(minutes=minutes)).astimezone(UTC),
        time_zone="America/Toronto",
        recurrence=rec,
        required_attendees=[Attendee(a) for a in attendees],
    )


def local_dates(items: list[CalendarItem]) -> list[date]:
    return [item.start.astimezone(TORONTO).date() for item in items if item.start]


def test_daily_with_count_keeps_wall_clock_across_dst(store: ExchangeStore) -> None:
    # DST starts in Toronto on Sunday 2026-03-08.
    master = store.create_item(
        ANN, series(Recurrence("daily", count=4), local(2026, 3, 6)), SendMode.NONE
    )
    assert master.item_type == ItemType.RECURRING_MASTER
    view = store.calendar_view(ANN, YEAR_START, YEAR_END)
    assert [item.start.astimezone(TORONTO).hour for item in view if item.start] == [9] * 4
    assert [item.start.hour for item in view if item.start] == [14, 14, 13, 13]  # UTC moves
    assert local_dates(view) == [date(2026, 3, d) for d in (6, 7, 8, 9)]
    assert all(item.item_type == ItemType.OCCURRENCE for item in view)
    assert all(item.master_id == master.id for item in view)
    assert all(
        item.end - item.start == timedelta(minutes=30) for item in view if item.end and item.start
    )


def test_fall_back_and_nonexistent_local_time() -> None:
    # DST ends on 2026-11-01; 02:30 does not exist on 2026-03-08.
    starts = list(
        recurrence.occurrence_starts(
            Recurrence("daily", count=3),
            local(2026, 10, 31, 8).astimezone(UTC),
            "America/Toronto",
        )
    )
    assert [s.hour for s in starts] == [12, 13, 13]
    gap = list(
        recurrence.occurrence_starts(
            Recurrence("daily", count=3), local(2026, 3, 7, 2, 30), "America/Toronto"
        )
    )
    assert [s.astimezone(TORONTO).strftime("%d %H:%M") for s in gap] == [
        "07 02:30",
        "08 03:30",
        "09 02:30",
    ]


def test_daily_interval_with_end_date_inclusive(store: ExchangeStore) -> None:
    rec = Recurrence("daily", interval=3, end_date=date(2026, 3, 13))
    store.create_item(ANN, series(rec, local(2026, 3, 1)), SendMode.NONE)
    view = store.calendar_view(ANN, YEAR_START, YEAR_END)
    assert local_dates(view) == [date(2026, 3, d) for d in (1, 4, 7, 10, 13)]


def test_weekly_every_other_week_on_two_days(store: ExchangeStore) -> None:
    rec = Recurrence("weekly", interval=2, days_of_week=["Tuesday", "Thursday"], count=5)
    # Starts on Wednesday 2026-03-04: the Tuesday of that week is before the range start.
    master = store.create_item(ANN, series(rec, local(2026, 3, 4)), SendMode.NONE)
    view = store.calendar_view(ANN, YEAR_START, YEAR_END)
    assert local_dates(view) == [
        date(2026, 3, 5),
        date(2026, 3, 17),
        date(2026, 3, 19),
        date(2026, 3, 31),
        date(2026, 4, 2),
    ]
    # Exchange moves the series start onto its first occurrence.
    assert master.start == local(2026, 3, 5).astimezone(UTC)


def test_weekly_week_alignment_follows_first_day_of_week() -> None:
    base = local(2026, 3, 7)  # a Saturday
    sunday_weeks = Recurrence("weekly", interval=2, days_of_week=["Saturday", "Sunday"], count=3)
    monday_weeks = Recurrence(
        "weekly",
        interval=2,
        days_of_week=["Saturday", "Sunday"],
        count=3,
        first_day_of_week="Monday",
    )
    by_sunday = [d.day for d in recurrence.occurrence_dates(sunday_weeks, base.date())]
    by_monday = [d.day for d in recurrence.occurrence_dates(monday_weeks, base.date())]
    assert by_sunday == [7, 15, 21]  # weeks start on Sunday: Sat 7, then Sun 15, Sat 21
    assert by_monday == [7, 8, 21]  # weeks start on Monday: Sat 7 and Sun 8 share a week


def test_absolute_monthly_clamps_to_short_months() -> None:
    rec = Recurrence("absoluteMonthly", day_of_month=31, count=4)
    days = list(recurrence.occurrence_dates(rec, date(2026, 1, 31)))
    assert days == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30)]


def test_relative_monthly_last_friday_and_first_weekday() -> None:
    last_friday = Recurrence(
        "relativeMonthly", days_of_week=["Friday"], week_index="Last", interval=2, count=3
    )
    assert list(recurrence.occurrence_dates(last_friday, date(2026, 1, 1))) == [
        date(2026, 1, 30),
        date(2026, 3, 27),
        date(2026, 5, 29),
    ]
    first_weekday = Recurrence(
        "relativeMonthly", days_of_week=["Weekday"], week_index="First", count=3
    )
    assert list(recurrence.occurrence_dates(first_weekday, date(2026, 2, 1))) == [
        date(2026, 2, 2),
        date(2026, 3, 2),
        date(2026, 4, 1),
    ]


def test_yearly_patterns() -> None:
    leap = Recurrence("absoluteYearly", day_of_month=29, month=2, count=3)
    assert list(recurrence.occurrence_dates(leap, date(2028, 2, 29))) == [
        date(2028, 2, 29),
        date(2029, 2, 28),
        date(2030, 2, 28),
    ]
    thanksgiving = Recurrence(
        "relativeYearly", days_of_week=["Thursday"], week_index="Fourth", month=11, count=2
    )
    assert list(recurrence.occurrence_dates(thanksgiving, date(2026, 1, 1))) == [
        date(2026, 11, 26),
        date(2027, 11, 25),
    ]


def test_no_end_series_expands_only_the_window(store: ExchangeStore) -> None:
    store.create_item(ANN, series(Recurrence("daily"), local(2020, 1, 1)), SendMode.NONE)
    window_start = local(2030, 6, 1, 0).astimezone(UTC)
    view = store.calendar_view(ANN, window_start, window_start + timedelta(days=7))
    assert len(view) == 7


def test_invalid_patterns_are_refused(store: ExchangeStore) -> None:
    for bad in (
        Recurrence("fortnightly"),
        Recurrence("weekly"),
        Recurrence("daily", interval=0),
        Recurrence("relativeMonthly", days_of_week=["Monday"], week_index="Fifth"),
        Recurrence("absoluteYearly", day_of_month=1, month=13),
        Recurrence("daily", start_date=date(2026, 3, 2), end_date=date(2026, 3, 1)),
    ):
        with pytest.raises(SimError) as refused:
            store.create_item(ANN, series(bad, local(2026, 3, 2)), SendMode.NONE)
        assert refused.value.code == "ErrorCalendarInvalidRecurrence"
    assert store.calendar_items(ANN) == []


def test_occurrence_ids_resolve_and_unknown_ones_do_not(store: ExchangeStore) -> None:
    master = store.create_item(
        ANN, series(Recurrence("daily", count=3), local(2026, 3, 2)), SendMode.NONE
    )
    second_start = local(2026, 3, 3).astimezone(UTC)
    occurrence_id = ExchangeStore.occurrence_id(master.id, second_start)
    occurrence = store.get_item(occurrence_id)
    assert occurrence.item_type == ItemType.OCCURRENCE
    assert occurrence.original_start == second_start
    assert occurrence.id == occurrence_id
    assert store.occurrence_by_index(master.id, 2).id == occurrence_id
    for bad in (
        ExchangeStore.occurrence_id(master.id, second_start + timedelta(hours=1)),
        ExchangeStore.occurrence_id(master.id, local(2026, 3, 9).astimezone(UTC)),
        ExchangeStore.occurrence_id("nope", second_start),
    ):
        with pytest.raises(SimError) as missing:
            store.get_item(bad)
        assert missing.value.code == "ErrorItemNotFound"
    with pytest.raises(SimError) as out_of_range:
        store.occurrence_by_index(master.id, 4)
    assert out_of_range.value.code == "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange"


def test_modified_occurrence_becomes_an_exception(store: ExchangeStore) -> None:
    master = store.create_item(
        ANN, series(Recurrence("daily", count=3), local(2026, 3, 2)), SendMode.NONE
    )
    seq = store.current_seq(ANN)
    second = store.occurrence_by_index(master.id, 2)
    moved = local(2026, 3, 3, 15).astimezone(UTC)
    exception = store.update_item(
        ANN,
        second.id,
        {"start": moved, "end": moved + timedelta(hours=1), "subject": "Moved"},
        change_key=second.change_key,
    )
    assert exception.item_type == ItemType.EXCEPTION
    assert exception.id == second.id
    assert store.get_item(second.id) is exception
    assert master.modified_occurrences == {second.original_start: exception}
    # The change is logged against the series (the folder item).
    assert [(c.item_id, c.kind) for c in store.changes_since(ANN, seq)] == [
        (master.id, ChangeKind.UPDATE)
    ]
    view = store.calendar_view(ANN, YEAR_START, YEAR_END)
    assert [(item.subject, item.item_type) for item in view] == [
        ("Standup", ItemType.OCCURRENCE),
        ("Moved", ItemType.EXCEPTION),
        ("Standup", ItemType.OCCURRENCE),
    ]
    # Moved out of its original day, it shows where it now sits.
    later = local(2026, 3, 10, 9).astimezone(UTC)
    store.update_item(ANN, second.id, {"start": later, "end": later + timedelta(hours=1)})
    assert [item.subject for item in store.calendar_view(ANN, YEAR_START, YEAR_END)] == [
        "Standup",
        "Standup",
        "Moved",
    ]


def test_deleted_occurrence_keeps_its_index(store: ExchangeStore) -> None:
    master = store.create_item(
        ANN, series(Recurrence("daily", count=3), local(2026, 3, 2)), SendMode.NONE
    )
    second = store.occurrence_by_index(master.id, 2)
    store.delete_item(ANN, second.id)
    assert master.deleted_occurrences == [second.original_start]
    assert len(store.calendar_view(ANN, YEAR_START, YEAR_END)) == 2
    with pytest.raises(SimError) as deleted:
        store.occurrence_by_index(master.id, 2)
    assert deleted.value.code == "ErrorCalendarOccurrenceIsDeletedFromRecurrence"
    assert store.occurrence_by_index(master.id, 3).original_start == local(2026, 3, 4).astimezone(
        UTC
    )
    with pytest.raises(SimError):
        store.get_item(second.id)


def test_moving_the_series_drops_exceptions(store: ExchangeStore) -> None:
    master = store.create_item(
        ANN, series(Recurrence("daily", count=3), local(2026, 3, 2)), SendMode.NONE
    )
    store.update_item(ANN, store.occurrence_by_index(master.id, 1).id, {"subject": "Special"})
    store.delete_item(ANN, store.occurrence_by_index(master.id, 2).id)
    new_start = local(2026, 3, 5, 10).astimezone(UTC)
    store.update_item(
        ANN, master.id, {"start": new_start, "end": new_start + timedelta(minutes=30)}
    )
    assert master.modified_occurrences == {}
    assert master.deleted_occurrences == []
    view = store.calendar_view(ANN, YEAR_START, YEAR_END)
    assert local_dates(view) == [date(2026, 3, d) for d in (5, 6, 7)]
    assert {item.subject for item in view} == {"Standup"}


def test_recurrence_can_be_added_and_removed(store: ExchangeStore) -> None:
    single = CalendarItem(
        id="",
        mailbox="",
        subject="One-off",
        start=local(2026, 3, 2).astimezone(UTC),
        end=local(2026, 3, 2, 10).astimezone(UTC),
        time_zone="America/Toronto",
    )
    item = store.create_item(ANN, single, SendMode.NONE)
    store.update_item(
        ANN, item.id, {"recurrence": Recurrence("weekly", days_of_week=["Monday"], count=2)}
    )
    assert item.item_type == ItemType.RECURRING_MASTER
    assert len(store.calendar_view(ANN, YEAR_START, YEAR_END)) == 2
    store.update_item(ANN, item.id, {"recurrence": None})
    assert item.item_type == ItemType.SINGLE
    assert len(store.calendar_view(ANN, YEAR_START, YEAR_END)) == 1


def test_series_meeting_reaches_attendee_with_exceptions(store: ExchangeStore) -> None:
    master = store.create_item(
        ANN,
        series(Recurrence("daily", count=3), local(2026, 3, 2), BOB),
        SendMode.ALL_AND_SAVE_COPY,
    )
    [copy] = store.calendar_items(BOB)
    assert copy.item_type == ItemType.RECURRING_MASTER
    assert copy.recurrence == master.recurrence
    assert copy.recurrence is not master.recurrence
    assert len(store.calendar_view(BOB, YEAR_START, YEAR_END)) == 3

    # Organizer edits one occurrence and cancels another, sending updates.
    first = store.occurrence_by_index(master.id, 1)
    store.update_item(ANN, first.id, {"location": "Roof"}, send=SendMode.ALL_AND_SAVE_COPY)
    store.delete_item(ANN, store.occurrence_by_index(master.id, 3).id, SendMode.ALL_AND_SAVE_COPY)
    bob_view = store.calendar_view(BOB, YEAR_START, YEAR_END)
    assert [(item.location, item.item_type) for item in bob_view] == [
        ("Roof", ItemType.EXCEPTION),
        ("", ItemType.OCCURRENCE),
    ]
    assert first.original_start is not None
    assert bob_view[0].id == ExchangeStore.occurrence_id(copy.id, first.original_start)

    # Bob accepts the series, then declines the second occurrence only.
    store.respond(BOB, copy.id, ResponseType.ACCEPT)
    assert master.required_attendees[0].response == ResponseType.ACCEPT
    store.respond(BOB, bob_view[1].id, ResponseType.DECLINE)
    assert len(store.calendar_view(BOB, YEAR_START, YEAR_END)) == 1
    declined_start = bob_view[1].original_start
    assert declined_start is not None
    organizer_second = store.get_item(ExchangeStore.occurrence_id(master.id, declined_start))
    assert organizer_second.item_type == ItemType.EXCEPTION
    assert organizer_second.required_attendees[0].response == ResponseType.DECLINE
    assert master.required_attendees[0].response == ResponseType.ACCEPT


def test_cancelling_the_series_cancels_the_attendee_series(store: ExchangeStore) -> None:
    master = store.create_item(
        ANN,
        series(Recurrence("weekly", days_of_week=["Monday"]), local(2026, 3, 2), BOB),
        SendMode.ALL_AND_SAVE_COPY,
    )
    store.cancel_meeting(ANN, master.id)
    assert store.calendar_items(ANN) == []
    window = store.calendar_view(BOB, YEAR_START, local(2026, 4, 1).astimezone(UTC))
    assert len(window) == 5
    assert all(item.is_cancelled for item in window)
