"""NCRONTAB schedules as the Azure Functions host reads them, and when they next fire.

A schedule has six fields, seconds first: ``second minute hour day month day-of-week``
(``0 */5 * * * *`` = every five minutes). Each field takes ``*``, a number, a range ``a-b``, a
list ``a,b,c-d`` and steps ``*/n``, ``a-b/n`` and ``a/n`` (from ``a`` to the field's maximum).
Months and days of the week may be named (``Jan``/``January``, ``Mon``/``Monday``, any case);
days of the week run 0-6 with 0 = Sunday.

As in NCrontab (the library the host uses), a time matches when *every* field matches: a schedule
restricting both the day of the month and the day of the week fires only on days satisfying
both (classic Unix cron fires on either). Times are wall-clock times in the time zone of the
datetime passed in; the runner passes UTC, which is what the host uses unless
``WEBSITE_TIME_ZONE`` says otherwise.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta

_MONTH_NAMES = [name.lower() for name in calendar.month_name[1:]]
# calendar.day_name starts on Monday; cron counts from Sunday = 0.
_DAY_NAMES = [name.lower() for name in calendar.day_name[6:] + calendar.day_name[:6]]

# A schedule that matches nothing within this many years never matches (a 29 February that must
# also be a given weekday recurs within 40 years in the Gregorian calendar).
_SEARCH_YEARS = 50


class ScheduleError(ValueError):
    """An NCRONTAB expression the host would refuse; the message names the field and the problem."""


@dataclass(frozen=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] stands for low + i


_FIELDS = (
    _FieldSpec("second", 0, 59),
    _FieldSpec("minute", 0, 59),
    _FieldSpec("hour", 0, 23),
    _FieldSpec("day", 1, 31),
    _FieldSpec("month", 1, 12, tuple(_MONTH_NAMES)),
    _FieldSpec("day-of-week", 0, 6, tuple(_DAY_NAMES)),
)


def _parse_value(text: str, spec: _FieldSpec) -> int:
    if text.isascii() and text.isdigit():
        value = int(text)
    else:
        lowered = text.lower()
        matches = [
            index
            for index, name in enumerate(spec.names)
            if len(lowered) >= 3 and (name == lowered or name[:3] == lowered)
        ]
        if not matches:
            raise ScheduleError(f"{spec.name} field: {text!r} is not a number or a known name")
        value = spec.low + matches[0]
    if not spec.low <= value <= spec.high:
        raise ScheduleError(f"{spec.name} field: {value} is outside {spec.low}-{spec.high}")
    return value


def _parse_field(text: str, spec: _FieldSpec) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"{spec.name} field: empty list item in {text!r}")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ScheduleError(f"{spec.name} field: bad step {step_text!r} in {part!r}")
            step = int(step_text)
        if base == "*":
            low, high = spec.low, spec.high
        elif "-" in base:
            first, _, last = base.partition("-")
            low, high = _parse_value(first, spec), _parse_value(last, spec)
            if low > high:
                raise ScheduleError(f"{spec.name} field: range {base!r} runs backwards")
        else:
            low = _parse_value(base, spec)
            # "a/n" means from a to the end of the field in steps of n; a lone "a" is just a.
            high = spec.high if step_text else low
        values.update(range(low, high + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed six-field NCRONTAB schedule: the set of allowed values of each field."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        parts = expression.split()
        if len(parts) != len(_FIELDS):
            raise ScheduleError(
                f"schedule {expression!r} has {len(parts)} fields; NCRONTAB needs 6 "
                "(second minute hour day month day-of-week)"
            )
        sets = [_parse_field(part, spec) for part, spec in zip(parts, _FIELDS, strict=True)]
        return cls(expression, *sets)

    def matches_date(self, day: date) -> bool:
        # isoweekday(): Monday = 1 ... Sunday = 7; cron: Sunday = 0.
        return (
            day.month in self.months
            and day.day in self.days
            and day.isoweekday() % 7 in self.weekdays
        )

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires at this (whole) second."""
        return (
            moment.microsecond == 0
            and self.matches_date(moment.date())
            and moment.hour in self.hours
            and moment.minute in self.minutes
            and moment.second in self.seconds
        )


def _first_at_or_after(values: frozenset[int], start: int) -> int | None:
    candidates = [value for value in values if value >= start]
    return min(candidates) if candidates else None


def next_occurrence(schedule: CronSchedule | str, after: datetime) -> datetime:
    """The first whole second strictly after ``after`` at which the schedule fires.

    The result carries ``after``'s tzinfo. Raises :class:`ScheduleError` for a schedule that can
    never fire (for example the 30th of February).
    """
    parsed = schedule if isinstance(schedule, CronSchedule) else CronSchedule.parse(schedule)
    tzinfo = after.tzinfo
    start = after.replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
    day = start.date()
    # Within the first day, start from the given time; every later day starts at midnight.
    hour, minute, second = start.hour, start.minute, start.second
    last_day = day + timedelta(days=366 * _SEARCH_YEARS)
    while day <= last_day:
        if not parsed.matches_date(day):
            day = _next_candidate_day(parsed, day)
            hour = minute = second = 0
            continue
        found = _first_time_in_day(parsed, hour, minute, second)
        if found is not None:
            h, m, s = found
            return datetime(day.year, day.month, day.day, h, m, s, tzinfo=tzinfo)
        day += timedelta(days=1)
        hour = minute = second = 0
    raise ScheduleError(f"schedule {parsed.expression!r} never fires")


def _next_candidate_day(parsed: CronSchedule, day: date) -> date:
    """The next day worth checking: skips whole months the schedule excludes."""
    if day.month not in parsed.months:
        year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
        return date(year, month, 1)
    return day + timedelta(days=1)


def _first_time_in_day(
    parsed: CronSchedule, hour: int, minute: int, second: int
) -> tuple[int, int, int] | None:
    """The earliest (hour, minute, second) of a matching day at or after the given time."""
    h = _first_at_or_after(parsed.hours, hour)
    while h is not None:
        m_start = minute if h == hour else 0
        m = _first_at_or_after(parsed.minutes, m_start)
        while m is not None:
            s_start = second if (h == hour and m == minute) else 0
            s = _first_at_or_after(parsed.seconds, s_start)
            if s is not None:
                return h, m, s
            m = _first_at_or_after(parsed.minutes, m + 1)
        h = _first_at_or_after(parsed.hours, h + 1)
    return None
