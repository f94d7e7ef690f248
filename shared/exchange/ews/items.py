"""Calendar items on the EWS side of the port: which properties each request asks for, an
``EventDraft`` as exchangelib ``CalendarItem`` fields, and a returned item as an ``ExchangeEvent``.

Two read shapes, both without the body (calbridge never reads it):
- ``FIND_FIELDS``: what FindItem returns. Exchange leaves attendee lists out of FindItem answers
  and gives the organizer as a name without an address, so events read this way (find_by_marker,
  find_by_uid, list_events) have no attendees, and their organizer is known only when the
  mailbox's owner is it (``MyResponseType`` Organizer). UID, Location and the marker are simple
  values Exchange does return from FindItem; exchangelib refuses them there only because it
  counts all text fields as "complex" (FindItem truncates text at 255 characters: a UID,
  location or marker value is far shorter).
- ``GET_FIELDS``: everything, for GetItem (get_event, and the details of a sync's changes): the
  same plus organizer, attendees and a series' recurrence (which FindItem cannot return).

Times: exchangelib returns aware datetimes; all-day items come back as dates in the item's own
zone, so the zone fields are always requested with start and end and the dates turned back into
midnights there. Events leave here in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from exchangelib import Attendee as EwsAttendee
from exchangelib import Body, CalendarItem, EWSDateTime, EWSTimeZone, Mailbox
from exchangelib.fields import FieldPath
from exchangelib.recurrence import (
    AbsoluteMonthlyPattern,
    AbsoluteYearlyPattern,
    DailyPattern,
    EndDatePattern,
    NumberedPattern,
    RelativeMonthlyPattern,
    RelativeYearlyPattern,
    WeeklyPattern,
)

from shared.exchange.common import (
    attendee_response,
    event_item_type,
    event_sensitivity,
    event_show_as,
    ews_free_busy,
    series_recurrence,
    utc,
)
from shared.exchange.ews.properties import MARKER_FIELD, WRITTEN_FIELD
from shared.exchange.port import (
    WEEK_INDEXES,
    WEEKDAYS,
    Attendee,
    EventDraft,
    ExchangeEvent,
    Recurrence,
    RecurrencePattern,
)
from shared.timezones import windows_zone_names

_FIND_FIELD_NAMES: Final = (
    "subject",
    "start",
    "end",
    "_start_timezone",
    "_end_timezone",
    "is_all_day",
    "is_cancelled",
    "legacy_free_busy_status",
    "sensitivity",
    "type",
    "last_modified_time",
    "my_response_type",
    "uid",
    "location",
    MARKER_FIELD,
    WRITTEN_FIELD,
)
_GET_ONLY_FIELD_NAMES: Final = (
    "organizer",
    "required_attendees",
    "optional_attendees",
    "recurrence",
)

# What a draft governs on the organizer's item: the fields an update sets (or clears).
DRAFT_FIELDS: Final = (
    "subject",
    "body",
    "start",
    "end",
    "is_all_day",
    "location",
    "legacy_free_busy_status",
    "required_attendees",
    MARKER_FIELD,
    WRITTEN_FIELD,
)


def _paths(names: Iterable[str]) -> frozenset[FieldPath]:
    return frozenset(FieldPath(field=CalendarItem.get_field_by_fieldname(name)) for name in names)


FIND_FIELDS: Final = _paths(_FIND_FIELD_NAMES)
GET_FIELDS: Final = _paths(_FIND_FIELD_NAMES + _GET_ONLY_FIELD_NAMES)


# --- writing ------------------------------------------------------------------------------------


def _ews_time(instant: datetime, zone: EWSTimeZone) -> EWSDateTime:
    # Through UTC, so the local time keeps its fold (the repeated hour when clocks go back).
    as_utc = EWSDateTime.from_datetime(instant.astimezone(ZoneInfo("UTC")))
    return as_utc.astimezone(zone)


def staff_attendees(draft: EventDraft, mailbox: str) -> list[EwsAttendee]:
    """The draft's invitees (``EventDraft.invitees``) as required attendees."""
    return [
        EwsAttendee(mailbox=Mailbox(email_address=address), response_type="Unknown")
        for address in draft.invitees(mailbox)
    ]


class WindowsNamedZone(EWSTimeZone):
    """exchangelib's time zone, named the Windows way by calbridge's one table
    (``shared.timezones``) instead of exchangelib's own copy of CLDR: EWS and Graph then write
    the same Windows zone for an appointment, and zones Windows added since exchangelib's copy
    (British Columbia, Alberta) are written by their current names."""

    IANA_TO_MS_MAP = {iana: (windows, "") for iana, windows in windows_zone_names().items()}


# exchangelib accepts a tzinfo as one of its own by the module the class is defined in
# (``EWSTimeZone.from_timezone``); this subclass is one of its own in all but the table.
WindowsNamedZone.__module__ = EWSTimeZone.__module__


def draft_values(draft: EventDraft, mailbox: str) -> dict[str, Any]:
    """The ``DRAFT_FIELDS`` values that make an item say what the draft says. Start and end are
    in the draft's own zone, so Outlook shows the appointment in the zone it was booked in."""
    zone = WindowsNamedZone(draft.time_zone)
    return {
        "subject": draft.subject,
        "body": Body(draft.body_text),
        "start": _ews_time(draft.start, zone),
        "end": _ews_time(draft.end, zone),
        "is_all_day": False,
        "location": draft.location or None,
        "legacy_free_busy_status": ews_free_busy(draft.show_as),
        "required_attendees": staff_attendees(draft, mailbox) or None,
        MARKER_FIELD: draft.marker,
        WRITTEN_FIELD: draft.written,
    }


# --- reading ------------------------------------------------------------------------------------


def _plain_utc(value: datetime) -> datetime:
    """A plain ``datetime`` in UTC from an exchangelib ``EWSDateTime`` (whose ``astimezone``
    accepts only exchangelib's own zones): rebuilt field by field in the same zone first."""
    zone = getattr(value.tzinfo, "key", None)
    plain = datetime(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        tzinfo=ZoneInfo(zone) if zone else value.tzinfo,
        fold=value.fold,
    )
    return utc(plain)


def _instant(value: object, zone: object, *, is_end: bool) -> datetime:
    """An aware UTC datetime from what exchangelib parsed (a datetime, or for all-day items a
    date in the item's zone — exchangelib takes a day off an all-day end; put it back)."""
    if isinstance(value, datetime):
        return _plain_utc(value)
    if isinstance(value, date):
        key = getattr(zone, "key", None) or "UTC"
        day = value + timedelta(days=1) if is_end else value
        midnight = datetime.combine(day, time(0), tzinfo=ZoneInfo(key))
        return midnight.astimezone(UTC)
    raise ValueError("EWS item without a start or end")


def _address(mailbox: object) -> str | None:
    address = getattr(mailbox, "email_address", None)
    return address.lower() if isinstance(address, str) and address else None


def _attendees(item: CalendarItem) -> tuple[Attendee, ...]:
    found: list[Attendee] = []
    for entry in [*(item.required_attendees or ()), *(item.optional_attendees or ())]:
        address = _address(entry.mailbox)
        if address is not None:
            found.append(Attendee(address=address, response=attendee_response(entry.response_type)))
    return tuple(found)


def _organizer(item: CalendarItem, mailbox: str) -> str | None:
    address = _address(item.organizer)
    if address is not None:
        return address
    if item.my_response_type == "Organizer":
        return mailbox.strip().lower()
    return None


_PATTERNS: Final[dict[type, RecurrencePattern]] = {
    DailyPattern: RecurrencePattern.DAILY,
    WeeklyPattern: RecurrencePattern.WEEKLY,
    AbsoluteMonthlyPattern: RecurrencePattern.ABSOLUTE_MONTHLY,
    RelativeMonthlyPattern: RecurrencePattern.RELATIVE_MONTHLY,
    AbsoluteYearlyPattern: RecurrencePattern.ABSOLUTE_YEARLY,
    RelativeYearlyPattern: RecurrencePattern.RELATIVE_YEARLY,
}
# exchangelib numbers DaysOfWeek 1-7 from Monday, then 8-10 for EWS's Day, Weekday, WeekendDay.
_DAY_GROUPS: Final = {8: WEEKDAYS, 9: WEEKDAYS[:5], 10: WEEKDAYS[5:]}


def _days(value: object) -> tuple[str, ...]:
    days: list[str] = []
    for number in value if isinstance(value, list | tuple) else [value]:
        if number in _DAY_GROUPS:
            days += _DAY_GROUPS[number]
        elif isinstance(number, int) and 1 <= number <= len(WEEKDAYS):
            days.append(WEEKDAYS[number - 1])
    return tuple(dict.fromkeys(days))


def _numbered(value: object, names: tuple[str, ...]) -> str | None:
    return names[value - 1] if isinstance(value, int) and 1 <= value <= len(names) else None


def _date(value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def _recurrence(value: object) -> Recurrence | None:
    """A series master's EWS Recurrence in the port's terms (None when absent or not a
    calendar pattern)."""
    pattern = getattr(value, "pattern", None)
    boundary = getattr(value, "boundary", None)
    kind = _PATTERNS.get(type(pattern))
    start = _date(getattr(boundary, "start", None))
    if kind is None or start is None:
        return None
    weekdays = getattr(pattern, "weekdays", None) or getattr(pattern, "weekday", None)
    return series_recurrence(
        kind,
        interval=getattr(pattern, "interval", None),
        days_of_week=_days(weekdays) if weekdays is not None else (),
        day_of_month=getattr(pattern, "day_of_month", None),
        month=getattr(pattern, "month", None),
        index=_numbered(getattr(pattern, "week_number", None), WEEK_INDEXES),
        first_day_of_week=_numbered(getattr(pattern, "first_day_of_week", None), WEEKDAYS),
        start_date=start,
        end_date=_date(boundary.end) if isinstance(boundary, EndDatePattern) else None,
        occurrences=boundary.number if isinstance(boundary, NumberedPattern) else None,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def event_from_item(item: CalendarItem, mailbox: str) -> ExchangeEvent:
    """The port's view of an item read with ``FIND_FIELDS`` or ``GET_FIELDS``."""
    last_modified = item.last_modified_time
    return ExchangeEvent(
        item_id=item.id,
        change_key=item.changekey or None,
        uid=_text(item.uid),
        subject=item.subject or "",
        start=_instant(item.start, item._start_timezone, is_end=False),
        end=_instant(item.end, item._end_timezone or item._start_timezone, is_end=True),
        is_all_day=bool(item.is_all_day),
        location=_text(item.location),
        organizer=_organizer(item, mailbox),
        attendees=_attendees(item),
        is_cancelled=bool(item.is_cancelled),
        marker=_text(getattr(item, MARKER_FIELD, None)),
        written=_text(getattr(item, WRITTEN_FIELD, None)),
        show_as=event_show_as(item.legacy_free_busy_status),
        sensitivity=event_sensitivity(item.sensitivity),
        item_type=event_item_type(item.type),
        last_modified=_plain_utc(last_modified) if isinstance(last_modified, datetime) else None,
        recurrence=_recurrence(getattr(item, "recurrence", None)),
    )
