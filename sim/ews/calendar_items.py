"""Calendar items on the EWS wire, both ways.

``render_calendar_item`` writes a store item as ``t:CalendarItem`` with exactly the properties
an ItemShape asks for, in the order types.xsd demands (ItemType's sequence, then
CalendarItemType's). ``read_calendar_item`` turns a request's ``t:CalendarItem`` (CreateItem, or
the one-property item inside UpdateItem's SetItemField) into store field values.

Times leave in UTC with a ``Z``; the item's own zone travels as StartTimeZone/EndTimeZone
(MeetingTimeZone for Exchange 2007 clients), named by Windows id.

ReminderDueBy is not stored: Exchange sets it to the item's start whatever a client writes, so
it is read from the start and writes to it are ignored. IsOnlineMeeting is read-only in EWS (an
item becomes an online meeting through Graph's onlineMeetingProvider). Multi-valued extended
properties travel as ``Values/Value``.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/reminderdueby
https://learn.microsoft.com/exchange/client-developer/web-service-reference/isonlinemeeting
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sim import recurrence as recurrence_rules
from sim.ews.context import EwsContext
from sim.ews.errors import EwsError, EwsFault
from sim.ews.ids import encode_change_key, encode_folder_id, encode_item_id
from sim.ews.properties import (
    COMPUTED_PROPERTIES,
    Shape,
    extended_value,
    read_extended_uri,
)
from sim.ews.soap import (
    add,
    format_bool,
    format_datetime,
    parse_bool,
    parse_datetime,
    t,
    text_of,
)
from sim.ews.timezones import iana_for_ms_id, ms_id_for_iana
from sim.extended import ExtendedValue
from sim.store import (
    MAX_REMINDER_MINUTES,
    REMINDER_UNSET_MARKER,
    Attendee,
    CalendarItem,
    ExchangeStore,
    ExtendedPropertyKey,
    FreeBusy,
    Importance,
    ItemType,
    Recurrence,
    ResponseType,
    Sensitivity,
    SimError,
)

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
PATTERN_ELEMENTS = {
    "RelativeYearlyRecurrence": "relativeYearly",
    "AbsoluteYearlyRecurrence": "absoluteYearly",
    "RelativeMonthlyRecurrence": "relativeMonthly",
    "AbsoluteMonthlyRecurrence": "absoluteMonthly",
    "WeeklyRecurrence": "weekly",
    "DailyRecurrence": "daily",
}
PATTERN_NAMES = {value: key for key, value in PATTERN_ELEMENTS.items()}
DAY_NAMES = frozenset(
    [
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Day",
        "Weekday",
        "WeekendDay",
    ]
)
WEEK_INDEXES = frozenset(["First", "Second", "Third", "Fourth", "Last"])

# Properties a Default shape includes (AllProperties includes every one we know).
DEFAULT_SHAPE = frozenset(
    [
        "item:Subject",
        "item:Sensitivity",
        "item:HasAttachments",
        "item:ItemClass",
        "calendar:Start",
        "calendar:End",
        "calendar:IsAllDayEvent",
        "calendar:LegacyFreeBusyStatus",
        "calendar:Location",
        "calendar:Organizer",
        "calendar:CalendarItemType",
        "calendar:MyResponseType",
        "calendar:IsCancelled",
        "calendar:IsMeeting",
        "calendar:IsRecurring",
        "calendar:UID",
    ]
)


# --- ids ---------------------------------------------------------------------------------------


def ews_item_id(item: CalendarItem) -> str:
    """Occurrences and exceptions are named by master + original start (stable whether or not
    the occurrence has been edited), everything else by its store id."""
    if (
        item.item_type in (ItemType.OCCURRENCE, ItemType.EXCEPTION)
        and item.master_id is not None
        and item.original_start is not None
    ):
        return encode_item_id(ExchangeStore.occurrence_id(item.master_id, item.original_start))
    return encode_item_id(item.id)


def add_item_id(parent: Any, item: CalendarItem, tag: str = "ItemId") -> Any:
    return add(parent, t(tag), Id=ews_item_id(item), ChangeKey=encode_change_key(item.change_key))


# --- rendering ---------------------------------------------------------------------------------


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = "P" + (f"{days}D" if days else "")
    clock = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    clock += f"{seconds}S" if seconds else ""
    if clock:
        text += "T" + clock
    return text if text != "P" else "PT0S"


def _html_to_text(body: str) -> str:
    without_tags = re.sub(r"<br\s*/?>|</p>", "\n", body, flags=re.IGNORECASE)
    without_tags = re.sub(r"<[^>]+>", "", without_tags)
    return html.unescape(without_tags).strip()


def _text_to_html(body: str) -> str:
    escaped = html.escape(body).replace("\n", "<br>\r\n")
    return (
        '<html>\r\n<head>\r\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        f"\r\n</head>\r\n<body>\r\n{escaped}\r\n</body>\r\n</html>\r\n"
    )


def _body_for_shape(item: CalendarItem, wanted: str) -> tuple[str, str]:
    stored_type = "HTML" if item.body_type.upper() == "HTML" else "Text"
    if wanted == "Best" or wanted == stored_type:
        return stored_type, item.body
    if wanted == "Text":
        return "Text", _html_to_text(item.body)
    return "HTML", _text_to_html(item.body)


def _display_name(store: ExchangeStore, address: str) -> str:
    try:
        return store.mailbox(address).name
    except SimError:
        return address


def add_mailbox(parent: Any, store: ExchangeStore, address: str, name: str) -> None:
    mailbox = add(parent, t("Mailbox"))
    try:
        known = store.mailbox(address)
        display, mailbox_type = name or known.name, "Mailbox"
    except SimError:
        display, mailbox_type = name or address, "OneOff"
    add(mailbox, t("Name"), display)
    add(mailbox, t("EmailAddress"), address)
    add(mailbox, t("RoutingType"), "SMTP")
    add(mailbox, t("MailboxType"), mailbox_type)


def _add_attendees(parent: Any, tag: str, attendees: list[Attendee], store: ExchangeStore) -> None:
    container = add(parent, t(tag))
    for attendee in attendees:
        element = add(container, t("Attendee"))
        add_mailbox(element, store, attendee.address, attendee.name)
        add(element, t("ResponseType"), attendee.response.value)
        if attendee.response_time is not None:
            add(element, t("LastResponseTime"), format_datetime(attendee.response_time))


def _add_recurrence(parent: Any, item: CalendarItem, rec: Recurrence) -> None:
    element = add(parent, t("Recurrence"))
    pattern = add(element, t(PATTERN_NAMES[rec.pattern]))
    first_day = rec.days_of_week[0] if rec.days_of_week else "Monday"
    if rec.pattern in ("daily", "weekly", "absoluteMonthly", "relativeMonthly"):
        add(pattern, t("Interval"), str(rec.interval))
    if rec.pattern == "weekly":
        add(pattern, t("DaysOfWeek"), " ".join(rec.days_of_week))
        add(pattern, t("FirstDayOfWeek"), rec.first_day_of_week)
    elif rec.pattern in ("relativeMonthly", "relativeYearly"):
        add(pattern, t("DaysOfWeek"), first_day)
        add(pattern, t("DayOfWeekIndex"), rec.week_index or "First")
        if rec.pattern == "relativeYearly":
            add(pattern, t("Month"), MONTHS[(rec.month or 1) - 1])
    elif rec.pattern in ("absoluteMonthly", "absoluteYearly"):
        add(pattern, t("DayOfMonth"), str(rec.day_of_month or 1))
        if rec.pattern == "absoluteYearly":
            add(pattern, t("Month"), MONTHS[(rec.month or 1) - 1])
    start_date = rec.start_date or _local_date(item)
    if rec.count is not None:
        range_elem = add(element, t("NumberedRecurrence"))
        add(range_elem, t("StartDate"), _zoned_date(start_date, item.time_zone))
        add(range_elem, t("NumberOfOccurrences"), str(rec.count))
    elif rec.end_date is not None:
        range_elem = add(element, t("EndDateRecurrence"))
        add(range_elem, t("StartDate"), _zoned_date(start_date, item.time_zone))
        add(range_elem, t("EndDate"), _zoned_date(rec.end_date, item.time_zone))
    else:
        add(
            add(element, t("NoEndRecurrence")),
            t("StartDate"),
            _zoned_date(start_date, item.time_zone),
        )


def _local_date(item: CalendarItem) -> date:
    start = item.start or datetime.now(UTC)
    return start.astimezone(ZoneInfo(item.time_zone)).date()


def _zoned_date(day: date, time_zone: str) -> str:
    """An xs:date with the series' UTC offset, as Exchange writes recurrence dates
    ("2027-07-05-04:00"); clients read the date part as the local date."""
    offset = datetime.combine(day, time(0), tzinfo=ZoneInfo(time_zone)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return f"{day.isoformat()}Z"
    sign = "+" if minutes > 0 else "-"
    return f"{day.isoformat()}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass
class _OccurrenceInfo:
    item_id: str
    change_key: str
    start: datetime
    end: datetime
    original_start: datetime


def _series_occurrences(master: CalendarItem, *, last_only: bool) -> list[_OccurrenceInfo]:
    """The live occurrences of a finite series (first only unless ``last_only``)."""
    if master.recurrence is None or master.start is None or master.end is None:
        return []
    duration = master.end - master.start
    deleted = set(master.deleted_occurrences)
    found: list[_OccurrenceInfo] = []
    for original in recurrence_rules.occurrence_starts(
        master.recurrence, master.start, master.time_zone
    ):
        if original in deleted:
            continue
        exception = master.modified_occurrences.get(original)
        start = exception.start if exception is not None and exception.start else original
        end = exception.end if exception is not None and exception.end else original + duration
        occurrence_id = encode_item_id(ExchangeStore.occurrence_id(master.id, original))
        change_key = exception.change_key if exception is not None else master.change_key
        info = _OccurrenceInfo(occurrence_id, change_key, start, end, original)
        if not last_only:
            return [info]
        found = [info]
    return found


def _add_occurrence_info(parent: Any, tag: str, info: _OccurrenceInfo) -> None:
    element = add(parent, t(tag))
    add(element, t("ItemId"), Id=info.item_id, ChangeKey=encode_change_key(info.change_key))
    add(element, t("Start"), format_datetime(info.start))
    add(element, t("End"), format_datetime(info.end))
    add(element, t("OriginalStart"), format_datetime(info.original_start))


def _appointment_state(item: CalendarItem) -> int:
    state = 0
    if item.is_meeting or not item.is_organizer:
        state |= 1  # a meeting
    if not item.is_organizer:
        state |= 2  # received
    if item.is_cancelled:
        state |= 4
    return state


def reminder_due_by(item: CalendarItem) -> datetime:
    """ReminderDueBy as Exchange keeps it on a calendar item: the item's start (for a series,
    its first occurrence's)."""
    assert item.start is not None
    return item.start


def render_calendar_item(parent: Any, item: CalendarItem, shape: Shape, ctx: EwsContext) -> Any:
    """Append ``t:CalendarItem`` for ``item`` with the properties ``shape`` asks for."""
    store = ctx.store
    element = add(parent, t("CalendarItem"))

    def wants(uri: str) -> bool:
        return shape.wants(uri, in_default=uri in DEFAULT_SHAPE)

    add_item_id(element, item)
    if wants("item:ParentFolderId"):
        add(
            element,
            t("ParentFolderId"),
            Id=encode_folder_id(item.mailbox, "calendar"),
            ChangeKey=encode_change_key("folder"),
        )
    if wants("item:ItemClass"):
        add(element, t("ItemClass"), "IPM.Appointment")
    if wants("item:Subject"):
        add(element, t("Subject"), item.subject)
    if wants("item:Sensitivity"):
        add(element, t("Sensitivity"), item.sensitivity.value)
    if wants("item:Body"):
        body_type, body = _body_for_shape(item, shape.body_type)
        add(element, t("Body"), body, BodyType=body_type)
    if wants("item:DateTimeReceived") and item.created is not None:
        add(element, t("DateTimeReceived"), format_datetime(item.created))
    if wants("item:Size"):
        add(element, t("Size"), str(512 + len(item.body.encode("utf-8"))))
    if wants("item:Categories") and item.categories:
        categories = add(element, t("Categories"))
        for category in item.categories:
            add(categories, t("String"), category)
    if wants("item:Importance"):
        add(element, t("Importance"), item.importance.value)
    if wants("item:IsDraft"):
        add(element, t("IsDraft"), format_bool(False))
    if wants("item:DateTimeCreated") and item.created is not None:
        add(element, t("DateTimeCreated"), format_datetime(item.created))
    if wants("item:ReminderDueBy") and item.start is not None:
        add(element, t("ReminderDueBy"), format_datetime(reminder_due_by(item)))
    if wants("item:ReminderIsSet"):
        add(element, t("ReminderIsSet"), format_bool(item.reminder_is_set))
    if wants("item:ReminderMinutesBeforeStart"):
        add(element, t("ReminderMinutesBeforeStart"), str(item.reminder_minutes_before_start))
    if wants("item:DisplayTo") and item.required_attendees:
        names = (a.name or _display_name(store, a.address) for a in item.required_attendees)
        add(element, t("DisplayTo"), "; ".join(names))
    if wants("item:HasAttachments"):
        add(element, t("HasAttachments"), format_bool(False))
    for uri in shape.extended:
        value = extended_value(item, uri.key)
        if value is None:
            continue
        prop = add(element, t("ExtendedProperty"))
        add(prop, t("ExtendedFieldURI"), **dict(uri.attributes))
        if isinstance(value, tuple):
            values = add(prop, t("Values"))
            for entry in value:
                add(values, t("Value"), entry)
        else:
            add(prop, t("Value"), value)
    if wants("item:Culture"):
        add(element, t("Culture"), item.culture)
    if wants("item:LastModifiedTime") and item.last_modified is not None:
        add(element, t("LastModifiedTime"), format_datetime(item.last_modified))
    if wants("item:IsAssociated"):
        add(element, t("IsAssociated"), format_bool(False))

    is_instance = item.item_type in (ItemType.OCCURRENCE, ItemType.EXCEPTION)
    if wants("calendar:UID") and item.uid:
        add(element, t("UID"), item.uid)
    if wants("calendar:RecurrenceId") and is_instance and item.original_start is not None:
        add(element, t("RecurrenceId"), format_datetime(item.original_start))
    if wants("calendar:Start") and item.start is not None:
        add(element, t("Start"), format_datetime(item.start))
    if wants("calendar:End") and item.end is not None:
        add(element, t("End"), format_datetime(item.end))
    if wants("calendar:OriginalStart") and is_instance and item.original_start is not None:
        add(element, t("OriginalStart"), format_datetime(item.original_start))
    if wants("calendar:IsAllDayEvent"):
        add(element, t("IsAllDayEvent"), format_bool(item.is_all_day))
    if wants("calendar:LegacyFreeBusyStatus"):
        add(element, t("LegacyFreeBusyStatus"), item.free_busy.value)
    if wants("calendar:Location"):
        add(element, t("Location"), item.location)
    if wants("calendar:IsMeeting"):
        add(element, t("IsMeeting"), format_bool(item.is_meeting or not item.is_organizer))
    if wants("calendar:IsCancelled"):
        add(element, t("IsCancelled"), format_bool(item.is_cancelled))
    if wants("calendar:IsRecurring"):
        # As Exchange reports it: true on occurrences and exceptions, false on the master.
        add(element, t("IsRecurring"), format_bool(is_instance))
    if wants("calendar:MeetingRequestWasSent"):
        add(element, t("MeetingRequestWasSent"), format_bool(item.meeting_request_was_sent))
    if wants("calendar:IsResponseRequested"):
        add(element, t("IsResponseRequested"), format_bool(item.response_requested))
    if wants("calendar:CalendarItemType"):
        add(element, t("CalendarItemType"), item.item_type.value)
    if wants("calendar:MyResponseType"):
        response = ResponseType.ORGANIZER if item.is_organizer else item.response_type
        add(element, t("MyResponseType"), response.value)
    if wants("calendar:Organizer") and item.organizer is not None:
        organizer = add(element, t("Organizer"))
        add_mailbox(organizer, store, item.organizer.address, item.organizer.name)
    if wants("calendar:RequiredAttendees") and item.required_attendees:
        _add_attendees(element, "RequiredAttendees", item.required_attendees, store)
    if wants("calendar:OptionalAttendees") and item.optional_attendees:
        _add_attendees(element, "OptionalAttendees", item.optional_attendees, store)
    if wants("calendar:Duration") and item.start is not None and item.end is not None:
        add(element, t("Duration"), _duration(item.end - item.start))
    if wants("calendar:TimeZone"):
        add(element, t("TimeZone"), ms_id_for_iana(item.time_zone))
    if wants("calendar:AppointmentState"):
        add(element, t("AppointmentState"), str(_appointment_state(item)))

    is_master = item.item_type == ItemType.RECURRING_MASTER and item.recurrence is not None
    if is_master and item.recurrence is not None:
        if wants("calendar:Recurrence"):
            _add_recurrence(element, item, item.recurrence)
        if wants("calendar:FirstOccurrence"):
            first = _series_occurrences(item, last_only=False)
            if first:
                _add_occurrence_info(element, "FirstOccurrence", first[0])
        finite = item.recurrence.count is not None or item.recurrence.end_date is not None
        if wants("calendar:LastOccurrence") and finite:
            last = _series_occurrences(item, last_only=True)
            if last:
                _add_occurrence_info(element, "LastOccurrence", last[0])
        if wants("calendar:ModifiedOccurrences") and item.modified_occurrences:
            container = add(element, t("ModifiedOccurrences"))
            for original, exception in sorted(item.modified_occurrences.items()):
                _add_occurrence_info(
                    container,
                    "Occurrence",
                    _OccurrenceInfo(
                        encode_item_id(ExchangeStore.occurrence_id(item.id, original)),
                        exception.change_key,
                        exception.start or original,
                        exception.end or original,
                        original,
                    ),
                )
        if wants("calendar:DeletedOccurrences") and item.deleted_occurrences:
            container = add(element, t("DeletedOccurrences"))
            for original in sorted(item.deleted_occurrences):
                add(add(container, t("DeletedOccurrence")), t("Start"), format_datetime(original))

    ms_zone = ms_id_for_iana(item.time_zone)
    if ctx.legacy_time_zones:
        if wants("calendar:MeetingTimeZone"):
            add(element, t("MeetingTimeZone"), TimeZoneName=ms_zone)
    else:
        if wants("calendar:StartTimeZone"):
            add(element, t("StartTimeZone"), Id=ms_zone, Name=ms_zone)
        if wants("calendar:EndTimeZone"):
            add(element, t("EndTimeZone"), Id=ms_zone, Name=ms_zone)
    if wants("calendar:ConferenceType"):
        add(element, t("ConferenceType"), str(item.conference_type))
    if wants("calendar:AllowNewTimeProposal"):
        add(element, t("AllowNewTimeProposal"), format_bool(item.allow_new_time_proposal))
    if wants("calendar:IsOnlineMeeting"):
        add(element, t("IsOnlineMeeting"), format_bool(item.is_online_meeting))
    if wants("calendar:MeetingWorkspaceUrl") and item.meeting_workspace_url:
        add(element, t("MeetingWorkspaceUrl"), item.meeting_workspace_url)
    if wants("calendar:NetShowUrl") and item.net_show_url:
        add(element, t("NetShowUrl"), item.net_show_url)
    if wants("calendar:IsOrganizer"):
        add(element, t("IsOrganizer"), format_bool(item.is_organizer))
    return element


# --- reading requests --------------------------------------------------------------------------


@dataclass
class CalendarFields:
    """Store field values read from a request's t:CalendarItem (only those it carries)."""

    values: dict[str, object] = field(default_factory=dict)
    # A Value's text, or the texts of Values (multi-valued); None deletes.
    extended: dict[ExtendedPropertyKey, ExtendedValue | None] = field(default_factory=dict)


# xs:language, the type of Culture: letters, then dash-separated letter/digit parts.
_LANGUAGE = re.compile(r"^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$")
# xs:int, the type of ConferenceType.
_INT_RANGE = (-(2**31), 2**31 - 1)


def _choice(raw: str | None, allowed: type[Any], name: str) -> Any:
    try:
        return allowed((raw or "").strip())
    except ValueError as error:
        raise EwsError(
            "ErrorInvalidValueForProperty", f"{name}: {raw!r} is not a valid value."
        ) from error


def read_attendees(container: Any) -> list[Attendee]:
    attendees = []
    for element in container.findall(t("Attendee")):
        mailbox = element.find(t("Mailbox"))
        address = text_of(mailbox, t("EmailAddress")) if mailbox is not None else None
        if not address:
            raise EwsError(
                "ErrorInvalidRecipients", "Every attendee needs a Mailbox with an EmailAddress."
            )
        name = (text_of(mailbox, t("Name")) or "") if mailbox is not None else ""
        attendees.append(Attendee(address=address.strip().lower(), name=name))
    return attendees


def _parse_date(raw: str | None, name: str) -> date:
    text = (raw or "").strip()
    # xs:date may carry a zone suffix ("2026-01-05Z", "2026-01-05-05:00"); the date is what counts.
    match = re.match(r"^(\d{4}-\d{2}-\d{2})", text)
    if not match:
        raise EwsError("ErrorCalendarInvalidRecurrence", f"{name}: {raw!r} is not a date.")
    return date.fromisoformat(match.group(1))


def read_recurrence(element: Any) -> Recurrence:
    """A t:Recurrence element (one pattern + one range) as the store's Recurrence."""
    pattern_elem = next((c for c in element if c.tag.split("}")[-1] in PATTERN_ELEMENTS), None)
    if pattern_elem is None:
        raise EwsError("ErrorCalendarInvalidRecurrence", "Recurrence needs a pattern element.")
    pattern = PATTERN_ELEMENTS[pattern_elem.tag.split("}")[-1]]
    rec = Recurrence(pattern=pattern)
    interval = text_of(pattern_elem, t("Interval"))
    if interval is not None:
        try:
            rec.interval = int(interval)
        except ValueError as error:
            raise EwsError(
                "ErrorCalendarInvalidRecurrence", "Interval must be a number."
            ) from error
        if rec.interval < 1:
            raise EwsError("ErrorCalendarInvalidRecurrence", "Interval must be at least 1.")
    days = (text_of(pattern_elem, t("DaysOfWeek")) or "").split()
    for day in days:
        if day not in DAY_NAMES:
            raise EwsError("ErrorCalendarInvalidRecurrence", f"{day!r} is not a day of the week.")
    rec.days_of_week = days
    if pattern in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise EwsError("ErrorCalendarInvalidRecurrence", f"A {pattern} pattern needs DaysOfWeek.")
    first_day = text_of(pattern_elem, t("FirstDayOfWeek"))
    if first_day:
        rec.first_day_of_week = first_day
    week_index = text_of(pattern_elem, t("DayOfWeekIndex"))
    if week_index is not None:
        if week_index not in WEEK_INDEXES:
            raise EwsError(
                "ErrorCalendarInvalidRecurrence", f"{week_index!r} is not a DayOfWeekIndex."
            )
        rec.week_index = week_index
    day_of_month = text_of(pattern_elem, t("DayOfMonth"))
    if day_of_month is not None:
        try:
            rec.day_of_month = int(day_of_month)
        except ValueError as error:
            raise EwsError(
                "ErrorCalendarInvalidRecurrence", "DayOfMonth must be a number."
            ) from error
        if not 1 <= rec.day_of_month <= 31:
            raise EwsError("ErrorCalendarInvalidRecurrence", "DayOfMonth must be 1..31.")
    month = text_of(pattern_elem, t("Month"))
    if month is not None:
        if month not in MONTHS:
            raise EwsError("ErrorCalendarInvalidRecurrence", f"{month!r} is not a month name.")
        rec.month = MONTHS.index(month) + 1

    range_elem = next(
        (
            c
            for c in element
            if c.tag in (t("NoEndRecurrence"), t("EndDateRecurrence"), t("NumberedRecurrence"))
        ),
        None,
    )
    if range_elem is None:
        raise EwsError("ErrorCalendarInvalidRecurrence", "Recurrence needs a range element.")
    rec.start_date = _parse_date(text_of(range_elem, t("StartDate")), "StartDate")
    if range_elem.tag == t("EndDateRecurrence"):
        rec.end_date = _parse_date(text_of(range_elem, t("EndDate")), "EndDate")
        if rec.end_date < rec.start_date:
            raise EwsError(
                "ErrorCalendarInvalidRecurrence", "The recurrence EndDate is before its StartDate."
            )
    elif range_elem.tag == t("NumberedRecurrence"):
        try:
            rec.count = int(text_of(range_elem, t("NumberOfOccurrences")) or "")
        except ValueError as error:
            raise EwsError(
                "ErrorCalendarInvalidRecurrence", "NumberOfOccurrences must be a number."
            ) from error
        if rec.count < 1:
            raise EwsError("ErrorCalendarInvalidRecurrence", "NumberOfOccurrences must be >= 1.")
    try:
        recurrence_rules.validate(rec)
    except ValueError as error:
        raise EwsError("ErrorCalendarInvalidRecurrence", str(error)) from error
    return rec


def read_time_zone(element: Any, name: str) -> str:
    """The IANA zone of a StartTimeZone/EndTimeZone (Id) or MeetingTimeZone (TimeZoneName)."""
    ms_id = element.get("Id") or element.get("TimeZoneName") or element.get("Name")
    zone = iana_for_ms_id(ms_id) if ms_id else None
    if zone is None:
        raise EwsError("ErrorTimeZone", f"{name}: the time zone {ms_id!r} is unknown.")
    return zone


def _schema_invalid(name: str, text: str) -> EwsFault:
    return EwsFault(
        "ErrorSchemaValidation",
        f"The request failed schema validation: {name} {text!r} is not valid.",
    )


def _read_int(text: str, name: str) -> int:
    """An xs:int; anything else fails schema validation, as in Exchange."""
    try:
        value = int(text.strip())
    except ValueError:
        raise _schema_invalid(name, text) from None
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise _schema_invalid(name, text)
    return value


def _read_extended_value(child: Any) -> str | tuple[str, ...]:
    values = child.find(t("Values"))
    if values is not None:
        return tuple(entry.text or "" for entry in values.findall(t("Value")))
    value = text_of(child, t("Value"))
    if value is None:
        raise EwsFault(
            "ErrorSchemaValidation",
            "The request failed schema validation: ExtendedProperty needs Value or Values.",
        )
    return value


def read_calendar_item(element: Any, ctx: EwsContext) -> CalendarFields:
    """The store fields a request's t:CalendarItem sets. Properties Exchange computes
    (ReminderDueBy, IsOnlineMeeting, IsMeeting...) and properties the simulated store does not
    keep are accepted and ignored."""
    fields = CalendarFields()
    values = fields.values
    zone = ctx.time_zone
    for child in element:
        name = child.tag.split("}")[-1]
        text = child.text or ""
        if name == "Subject":
            values["subject"] = text
        elif name == "Sensitivity":
            values["sensitivity"] = _choice(text, Sensitivity, "Sensitivity")
        elif name == "Body":
            body_type = child.get("BodyType", "Text")
            if body_type not in ("HTML", "Text"):
                raise EwsError(
                    "ErrorInvalidValueForProperty", f"BodyType {body_type!r} is invalid."
                )
            values["body"] = text
            values["body_type"] = body_type
        elif name == "ExtendedProperty":
            uri_elem = child.find(t("ExtendedFieldURI"))
            if uri_elem is None:
                raise EwsError("ErrorInvalidExtendedProperty", "ExtendedProperty needs a URI.")
            uri = read_extended_uri(uri_elem)
            value = _read_extended_value(child)
            if uri.key not in COMPUTED_PROPERTIES:  # derived from the UID; writes are ignored
                fields.extended[uri.key] = value
        elif name == "UID":
            values["uid"] = text.strip()
        elif name == "Start":
            values["start"] = parse_datetime(text, "Start", zone)
        elif name == "End":
            values["end"] = parse_datetime(text, "End", zone)
        elif name == "IsAllDayEvent":
            values["is_all_day"] = parse_bool(text, "IsAllDayEvent")
        elif name == "LegacyFreeBusyStatus":
            values["free_busy"] = _choice(text, FreeBusy, "LegacyFreeBusyStatus")
        elif name == "Location":
            values["location"] = text
        elif name == "RequiredAttendees":
            values["required_attendees"] = read_attendees(child)
        elif name == "OptionalAttendees":
            values["optional_attendees"] = read_attendees(child)
        elif name == "Recurrence":
            values["recurrence"] = read_recurrence(child)
        elif name in ("StartTimeZone", "MeetingTimeZone"):
            values["time_zone"] = read_time_zone(child, name)
        elif name == "EndTimeZone":
            # The store keeps one zone per item; an end zone only counts when no start zone came.
            values.setdefault("time_zone", read_time_zone(child, name))
        elif name == "Categories":
            values["categories"] = [entry.text or "" for entry in child.findall(t("String"))]
        elif name == "Importance":
            values["importance"] = _choice(text, Importance, "Importance")
        elif name == "ReminderIsSet":
            values["reminder_is_set"] = parse_bool(text, "ReminderIsSet")
        elif name == "ReminderMinutesBeforeStart":
            minutes = _read_int(text, name)
            if not 0 <= minutes <= MAX_REMINDER_MINUTES and minutes != REMINDER_UNSET_MARKER:
                raise _schema_invalid(name, text)
            values["reminder_minutes_before_start"] = minutes
        elif name == "Culture":
            if not _LANGUAGE.match(text.strip()):
                raise EwsFault(
                    "ErrorSchemaValidation",
                    f"The request failed schema validation: Culture {text!r} is not a language.",
                )
            values["culture"] = text.strip()
        elif name == "IsResponseRequested":
            values["response_requested"] = parse_bool(text, name)
        elif name == "AllowNewTimeProposal":
            values["allow_new_time_proposal"] = parse_bool(text, name)
        elif name == "ConferenceType":
            values["conference_type"] = _read_int(text, name)
        elif name == "MeetingWorkspaceUrl":
            values["meeting_workspace_url"] = text
        elif name == "NetShowUrl":
            values["net_show_url"] = text
    return fields


def check_times(values: dict[str, object], current: CalendarItem | None = None) -> None:
    start = values.get("start", current.start if current is not None else None)
    end = values.get("end", current.end if current is not None else None)
    if isinstance(start, datetime) and isinstance(end, datetime) and end < start:
        raise EwsError(
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "EndDate is earlier than StartDate",
        )
