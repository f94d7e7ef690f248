"""Graph's ``event`` JSON, both ways: what calbridge sends (create and update bodies) and what it
reads back (an ``ExchangeEvent``), parsed by hand so that no msgraph-sdk model module is loaded.

Reading asks for ``EVENT_FIELDS`` only — never ``body`` or ``bodyPreview`` — with times in UTC
(``Prefer: outlook.timezone="UTC"``) and the marker expanded (``MARKER_EXPANSION``). Writing
sends times as wall-clock ``dateTimeTimeZone`` in the draft's own zone, named the Windows way
(``shared.timezones``: Graph's writes take only one IANA name per Windows zone), so Outlook shows
the appointment in the zone it was booked in; a zone CLDR does not map is written in UTC.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.exchange.common import (
    attendee_response,
    event_item_type,
    event_sensitivity,
    event_show_as,
    graph_show_as,
    series_recurrence,
    wall_clock,
)
from shared.exchange.marker_property import MARKER_GRAPH_ID, WRITTEN_GRAPH_ID
from shared.exchange.port import (
    WEEK_INDEXES,
    WEEKDAYS,
    Attendee,
    CalendarError,
    EventDraft,
    ExchangeEvent,
    Recurrence,
    RecurrencePattern,
)
from shared.timezones import iana_zone_name, windows_zone_name

# Everything ExchangeEvent needs, and nothing else (no body, no bodyPreview).
EVENT_FIELDS: Final = (
    "id",
    "changeKey",
    "iCalUId",
    "uid",
    "subject",
    "start",
    "end",
    "isAllDay",
    "location",
    "organizer",
    "attendees",
    "isCancelled",
    "isOrganizer",
    "showAs",
    "sensitivity",
    "type",
    "lastModifiedDateTime",
    "recurrence",
    # An all-day event's days are in this zone (see ``_all_day_instant``).
    "originalStartTimeZone",
    "originalEndTimeZone",
)
MARKER_EXPANSION: Final = (
    "singleValueExtendedProperties("
    f"$filter=id eq '{MARKER_GRAPH_ID}' or id eq '{WRITTEN_GRAPH_ID}')"
)
PREFER_UTC: Final = 'outlook.timezone="UTC"'

_UTC_NAMES: Final = frozenset({"utc", "etc/utc", "gmt", "z", "coordinated universal time"})
# Graph documents no alphabet for transactionId; ids made of these characters and no longer than
# this are sent as they are (the engine's are UUIDs), anything else as a digest of itself.
_SAFE_TRANSACTION_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class UnreadableEvent(CalendarError):
    """Graph answered with an event calbridge cannot read (missing id or times, unknown zone)."""


# --- writing ------------------------------------------------------------------------------------


def graph_transaction_id(transaction_id: str) -> str:
    """The port's transaction id as Graph's ``transactionId``: unchanged when it is short and
    plain, otherwise a stable digest (so a retry still sends the same value)."""
    if _SAFE_TRANSACTION_ID.match(transaction_id):
        return transaction_id
    return "cb-" + hashlib.sha256(transaction_id.encode()).hexdigest()[:40]


def _date_time_zone(instant: datetime, zone: str) -> dict[str, str]:
    windows = windows_zone_name(zone)
    if windows is None:
        return {"dateTime": wall_clock(instant, "UTC").isoformat(), "timeZone": "UTC"}
    return {"dateTime": wall_clock(instant, zone).isoformat(), "timeZone": windows}


def _attendees(draft: EventDraft, mailbox: str) -> list[dict[str, Any]]:
    """The draft's invitees (``EventDraft.invitees``) as required attendees."""
    return [
        {"emailAddress": {"address": address}, "type": "required"}
        for address in draft.invitees(mailbox)
    ]


def draft_fields(draft: EventDraft, mailbox: str) -> dict[str, Any]:
    """Every property the draft governs, as Graph JSON (the body of a full overwrite)."""
    return {
        "subject": draft.subject,
        "body": {"contentType": "text", "content": draft.body_text},
        "start": _date_time_zone(draft.start, draft.time_zone),
        "end": _date_time_zone(draft.end, draft.time_zone),
        "location": {"displayName": draft.location or ""},
        "attendees": _attendees(draft, mailbox),
        "showAs": graph_show_as(draft.show_as),
        "singleValueExtendedProperties": [
            {"id": MARKER_GRAPH_ID, "value": draft.marker},
            {"id": WRITTEN_GRAPH_ID, "value": draft.written},
        ],
    }


def create_body(draft: EventDraft, mailbox: str, transaction_id: str) -> dict[str, Any]:
    """The POST body that creates the draft's event, idempotent through ``transactionId``."""
    body = draft_fields(draft, mailbox)
    if not draft.location:
        del body["location"]
    body["transactionId"] = graph_transaction_id(transaction_id)
    return body


def update_body(draft: EventDraft, mailbox: str) -> dict[str, Any]:
    """The PATCH body that makes the item say what the draft says: every property the draft
    governs, as the EWS adapter's UpdateItem sets them, so nothing has to be read first."""
    return draft_fields(draft, mailbox)


# --- reading ------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    """The zone of a ``dateTimeTimeZone`` read back: UTC as asked for, or — should Graph ignore
    ``Prefer: outlook.timezone`` — whatever IANA or Windows name it used."""
    cleaned = name.strip()
    if cleaned.lower() in _UTC_NAMES:
        return ZoneInfo("UTC")
    iana = iana_zone_name(cleaned) or cleaned
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnreadableEvent(f"Graph answered in an unknown time zone {name!r}") from None


def _instant(value: object, label: str) -> datetime:
    if not isinstance(value, Mapping) or not isinstance(value.get("dateTime"), str):
        raise UnreadableEvent(f"Graph event without a readable {label}")
    try:
        moment = datetime.fromisoformat(value["dateTime"])
    except ValueError:
        raise UnreadableEvent(f"Graph event {label} is not a date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(str(value.get("timeZone") or "UTC")))
    return moment.astimezone(UTC)


def _all_day_instant(value: object, original_zone: object, label: str) -> datetime:
    """The midnight that starts (or ends) an all-day event, in the event's own zone.

    Graph gives an all-day event's start and end as midnights labelled with the zone asked for
    (UTC here), not as instants: they are calendar days in the zone the event was made in
    (``originalStartTimeZone``/``originalEndTimeZone``), as EWS reads them. A zone name calbridge
    cannot resolve falls back to the label Graph gave."""
    labelled = _instant(value, label)
    if not isinstance(value, Mapping) or not isinstance(original_zone, str):
        return labelled
    try:
        zone = _zone(original_zone) if original_zone.strip() else None
    except UnreadableEvent:
        zone = None
    if zone is None:
        return labelled
    day = datetime.fromisoformat(value["dateTime"]).date()
    return datetime.combine(day, datetime.min.time(), tzinfo=zone).astimezone(UTC)


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _address(value: object) -> str | None:
    if isinstance(value, Mapping):
        email = value.get("emailAddress")
        if isinstance(email, Mapping) and isinstance(email.get("address"), str):
            return str(email["address"]) or None
    return None


def _day(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _name(value: object, names: tuple[str, ...]) -> str | None:
    return value.lower() if isinstance(value, str) and value.lower() in names else None


def recurrence_from_graph(value: object) -> Recurrence | None:
    """A series master's ``patternedRecurrence`` in the port's terms (None when absent or
    unreadable)."""
    if not isinstance(value, Mapping):
        return None
    pattern, span = value.get("pattern"), value.get("range")
    if not isinstance(pattern, Mapping) or not isinstance(span, Mapping):
        return None
    try:
        kind = RecurrencePattern(str(pattern.get("type")))
    except ValueError:
        return None
    start = _day(span.get("startDate"))
    if start is None:
        return None
    days = pattern.get("daysOfWeek") or ()
    return series_recurrence(
        kind,
        interval=_int(pattern.get("interval")),
        days_of_week=tuple(day for day in (_name(d, WEEKDAYS) for d in days) if day is not None),
        day_of_month=_int(pattern.get("dayOfMonth")),
        month=_int(pattern.get("month")),
        index=_name(pattern.get("index"), WEEK_INDEXES),
        first_day_of_week=_name(pattern.get("firstDayOfWeek"), WEEKDAYS),
        start_date=start,
        end_date=_day(span.get("endDate")) if span.get("type") == "endDate" else None,
        occurrences=_int(span.get("numberOfOccurrences"))
        if span.get("type") == "numbered"
        else None,
    )


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def extended_fields(document: Mapping[str, Any]) -> dict[str, str | None]:
    """The ``ExchangeEvent`` fields calbridge keeps in named properties (marker, written), from
    the event's expanded extended properties."""
    return {
        "marker": _extended_value(document, MARKER_GRAPH_ID),
        "written": _extended_value(document, WRITTEN_GRAPH_ID),
    }


def _extended_value(document: Mapping[str, Any], property_id: str) -> str | None:
    """One expanded single-value extended property's value (ids compared without regard to
    case, as Graph may spell the GUID either way)."""
    properties = document.get("singleValueExtendedProperties")
    if not isinstance(properties, Sequence):
        return None
    wanted = property_id.lower()
    for entry in properties:
        if isinstance(entry, Mapping) and str(entry.get("id", "")).lower() == wanted:
            value = entry.get("value")
            return value if isinstance(value, str) else None
    return None


def event_from_graph(document: Mapping[str, Any]) -> ExchangeEvent:
    """An ``ExchangeEvent`` from Graph event JSON (as selected by ``EVENT_FIELDS``)."""
    item_id = document.get("id")
    if not isinstance(item_id, str) or not item_id:
        raise UnreadableEvent("Graph event without an id")
    attendees = []
    for entry in document.get("attendees") or ():
        address = _address(entry)
        if address is None:
            continue
        status = entry.get("status") if isinstance(entry, Mapping) else None
        response = status.get("response") if isinstance(status, Mapping) else None
        attendees.append(Attendee(address=address, response=attendee_response(response)))
    location = document.get("location")
    location_name = location.get("displayName") if isinstance(location, Mapping) else None
    uid = document.get("uid") or document.get("iCalUId")
    is_all_day = bool(document.get("isAllDay"))
    if is_all_day:
        start = _all_day_instant(
            document.get("start"), document.get("originalStartTimeZone"), "start"
        )
        end = _all_day_instant(document.get("end"), document.get("originalEndTimeZone"), "end")
    else:
        start = _instant(document.get("start"), "start")
        end = _instant(document.get("end"), "end")
    return ExchangeEvent(
        item_id=item_id,
        change_key=document.get("changeKey") or None,
        uid=uid if isinstance(uid, str) and uid else None,
        subject=_text(document.get("subject")),
        start=start,
        end=end,
        is_all_day=is_all_day,
        location=location_name if isinstance(location_name, str) and location_name else None,
        organizer=_address(document.get("organizer")),
        attendees=tuple(attendees),
        is_cancelled=bool(document.get("isCancelled")),
        **extended_fields(document),
        show_as=event_show_as(document.get("showAs")),
        sensitivity=event_sensitivity(document.get("sensitivity")),
        item_type=event_item_type(document.get("type")),
        last_modified=_timestamp(document.get("lastModifiedDateTime")),
        recurrence=recurrence_from_graph(document.get("recurrence")),
    )
