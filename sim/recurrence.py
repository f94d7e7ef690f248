"""Recurrence expansion for the simulator: which dates and start times a series produces.

Patterns follow Exchange (and Graph, which shares its model): daily, weekly, absolute/relative
monthly, absolute/relative yearly, each with an interval; ranges end on a date, after a count, or
never. Expansion happens in the series' IANA time zone on wall-clock time, so a 09:00 meeting
stays at 09:00 local across a DST change (its UTC instant moves). A wall-clock time that does
not exist on a spring-forward day resolves with the offset before the change (as Windows does,
it lands one hour later in local time).

Occurrence counting includes deleted occurrences: Exchange numbers occurrences by pattern, not by
what is left of the series (EWS OccurrenceItemId InstanceIndex works the same way).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:  # the store imports this module; the dataclass is only needed for types
    from sim.store import Recurrence

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WEEK_INDEXES = ["First", "Second", "Third", "Fourth", "Last"]
PATTERNS = (
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
)
# EWS DayOfWeekType also names groups of days (relative patterns: "the first weekday").
DAY_GROUPS = {
    "Day": set(range(7)),
    "Weekday": {0, 1, 2, 3, 4},
    "WeekendDay": {5, 6},
}
# A series without an end is expanded no further than this many years past its start, so a
# window query far in the future cannot loop forever.
MAX_YEARS = 200


class RecurrenceError(ValueError):
    """A pattern that cannot be expanded (unknown pattern, missing day, bad interval)."""


def weekday_numbers(names: list[str]) -> set[int]:
    """Python weekday numbers (Monday = 0) for day names, including EWS day groups."""
    numbers: set[int] = set()
    for name in names:
        if name in DAY_GROUPS:
            numbers |= DAY_GROUPS[name]
            continue
        normalized = name[:1].upper() + name[1:].lower()
        if normalized not in WEEKDAYS:
            raise RecurrenceError(f"unknown day of week {name!r}")
        numbers.add(WEEKDAYS.index(normalized))
    return numbers


def validate(rec: Recurrence) -> None:
    """Raise RecurrenceError when the pattern lacks what its kind needs."""
    if rec.pattern not in PATTERNS:
        raise RecurrenceError(f"unknown recurrence pattern {rec.pattern!r}")
    if rec.interval < 1:
        raise RecurrenceError("recurrence interval must be at least 1")
    if rec.count is not None and rec.count < 1:
        raise RecurrenceError("recurrence count must be at least 1")
    if rec.pattern in ("weekly", "relativeMonthly", "relativeYearly") and not rec.days_of_week:
        raise RecurrenceError(f"{rec.pattern} recurrence needs days of week")
    if rec.days_of_week:
        weekday_numbers(rec.days_of_week)
    if rec.pattern in ("absoluteMonthly", "absoluteYearly") and not rec.day_of_month:
        raise RecurrenceError(f"{rec.pattern} recurrence needs a day of month")
    if rec.day_of_month is not None and not 1 <= rec.day_of_month <= 31:
        raise RecurrenceError("day of month must be 1..31")
    if rec.pattern in ("absoluteYearly", "relativeYearly") and not rec.month:
        raise RecurrenceError(f"{rec.pattern} recurrence needs a month")
    if rec.month is not None and not 1 <= rec.month <= 12:
        raise RecurrenceError("month must be 1..12")
    if rec.pattern in ("relativeMonthly", "relativeYearly") and rec.week_index not in WEEK_INDEXES:
        raise RecurrenceError(f"{rec.pattern} recurrence needs a week index (First..Last)")
    if rec.start_date and rec.end_date and rec.end_date < rec.start_date:
        raise RecurrenceError("recurrence end date is before its start date")


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def _day_in_month(year: int, month: int, day: int) -> date:
    # Outlook puts "day 31" on the last day of shorter months (and Feb 29 on Feb 28).
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def _relative_day(year: int, month: int, week_index: str, days: set[int]) -> date:
    last = calendar.monthrange(year, month)[1]
    candidates = [date(year, month, d) for d in range(1, last + 1)]
    matching = [d for d in candidates if d.weekday() in days]
    if week_index == "Last":
        return matching[-1]
    return matching[WEEK_INDEXES.index(week_index)]


def _day_in_period(rec: Recurrence, year: int, month: int) -> date:
    """The day a monthly or yearly pattern gives in one month: a day number (absolute) or
    "the first Monday" (relative)."""
    if rec.pattern in ("absoluteMonthly", "absoluteYearly"):
        return _day_in_month(year, month, rec.day_of_month or 1)
    return _relative_day(year, month, rec.week_index or "First", weekday_numbers(rec.days_of_week))


def _pattern_dates(rec: Recurrence, first: date) -> Iterator[date]:
    """Every date the pattern produces on or after ``first``, ascending, without range end."""
    horizon = date(min(first.year + MAX_YEARS, 9999), 12, 31)
    if rec.pattern == "daily":
        current = first
        step = timedelta(days=rec.interval)
        while current <= horizon:
            yield current
            current += step
    elif rec.pattern == "weekly":
        days = sorted(weekday_numbers(rec.days_of_week))
        first_dow = weekday_numbers([rec.first_day_of_week or "Sunday"]).pop()
        # The week (starting on first_day_of_week) that contains the range start is week 0.
        week_start = first - timedelta(days=(first.weekday() - first_dow) % 7)
        ordered = sorted(days, key=lambda d: (d - first_dow) % 7)
        while week_start <= horizon:
            for day in ordered:
                candidate = week_start + timedelta(days=(day - first_dow) % 7)
                if candidate >= first:
                    yield candidate
            week_start += timedelta(weeks=rec.interval)
    else:  # one day a month: every interval months, or every interval years in one month
        yearly = rec.pattern in ("absoluteYearly", "relativeYearly")
        year, month = first.year, (rec.month or first.month) if yearly else first.month
        months = 12 * rec.interval if yearly else rec.interval
        while year <= horizon.year:
            candidate = _day_in_period(rec, year, month)
            if candidate >= first:
                yield candidate
            year, month = _add_months(year, month, months)


def occurrence_dates(rec: Recurrence, series_start: date) -> Iterator[date]:
    """The local dates of a series' occurrences, ascending, honouring the range (end date
    inclusive, or count, or no end). ``series_start`` is used when the range has no start."""
    validate(rec)
    first = rec.start_date or series_start
    for produced, day in enumerate(_pattern_dates(rec, first)):
        if rec.end_date is not None and day > rec.end_date:
            return
        if rec.count is not None and produced >= rec.count:
            return
        yield day


def local_start(day: date, wall_time: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of ``wall_time`` on ``day`` in ``zone``."""
    return datetime.combine(day, wall_time, tzinfo=zone).astimezone(UTC)


def occurrence_starts(
    rec: Recurrence, series_start: datetime, time_zone: str, until: datetime | None = None
) -> Iterator[datetime]:
    """UTC starts of a series' occurrences (original starts), ascending, up to ``until``
    (exclusive) when given. ``series_start`` is the master's start (aware); its wall-clock time
    in ``time_zone`` is the time of every occurrence."""
    zone = ZoneInfo(time_zone)
    local = series_start.astimezone(zone)
    wall_time = local.time().replace(tzinfo=None)
    for day in occurrence_dates(rec, local.date()):
        start = local_start(day, wall_time, zone)
        if until is not None and start >= until:
            return
        yield start


def first_occurrence(rec: Recurrence, series_start: datetime, time_zone: str) -> datetime | None:
    """The first occurrence's UTC start (None if the range produces nothing)."""
    return next(occurrence_starts(rec, series_start, time_zone), None)
