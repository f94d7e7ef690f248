"""Graph's ``event`` resource: the store's CalendarItem written as Graph v1.0 JSON, and event JSON
from a POST or PATCH read back into store fields.

Output follows Graph's shapes and spellings (``dateTimeTimeZone`` in the zone asked for with
``Prefer: outlook.timezone``, lower-camel enumerations, ``W/"..."`` etags, a recurrence pattern
and range with Graph's zero/"0001-01-01" placeholders). Input is validated property by property:
an unknown property, a bad enumeration value or an impossible time is a 400 that names it.

Extended properties of the ...Array types are ``multiValueExtendedProperties`` (values an array
of strings), the others ``singleValueExtendedProperties``; each collection appears only when
``$expand`` asks for it. ``isOnlineMeeting: true`` without a provider uses the calendar's
default online meeting provider; once online, an event stays online (later ``isOnlineMeeting``
and ``onlineMeetingProvider`` values are ignored, as the event resource documents).
https://learn.microsoft.com/graph/api/resources/event
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote

from sim import extended
from sim import recurrence as recurrence_rules
from sim.extended import ExtendedValue
from sim.graph import timezones
from sim.graph.errors import bad_request
from sim.graph.ids import event_id
from sim.graph.odata import ExtendedExpansion, format_extended_id, parse_extended_id
from sim.store import (
    ONLINE_MEETING_PROVIDERS,
    Attendee,
    CalendarItem,
    ExtendedPropertyKey,
    FreeBusy,
    Importance,
    ItemType,
    Recurrence,
    ResponseType,
    Sensitivity,
)

NEVER = "0001-01-01T00:00:00Z"

SENSITIVITY_OUT = {
    Sensitivity.NORMAL: "normal",
    Sensitivity.PERSONAL: "personal",
    Sensitivity.PRIVATE: "private",
    Sensitivity.CONFIDENTIAL: "confidential",
}
SENSITIVITY_IN = {value: key for key, value in SENSITIVITY_OUT.items()}

SHOW_AS_OUT = {
    FreeBusy.FREE: "free",
    FreeBusy.TENTATIVE: "tentative",
    FreeBusy.BUSY: "busy",
    FreeBusy.OOF: "oof",
    FreeBusy.WORKING_ELSEWHERE: "workingElsewhere",
    FreeBusy.NO_DATA: "unknown",
}
SHOW_AS_IN = {value.lower(): key for key, value in SHOW_AS_OUT.items()}

IMPORTANCE_OUT = {Importance.LOW: "low", Importance.NORMAL: "normal", Importance.HIGH: "high"}
IMPORTANCE_IN = {value: key for key, value in IMPORTANCE_OUT.items()}

RESPONSE_OUT = {
    ResponseType.UNKNOWN: "none",
    ResponseType.ORGANIZER: "organizer",
    ResponseType.TENTATIVE: "tentativelyAccepted",
    ResponseType.ACCEPT: "accepted",
    ResponseType.DECLINE: "declined",
    ResponseType.NO_RESPONSE: "notResponded",
}

TYPE_OUT = {
    ItemType.SINGLE: "singleInstance",
    ItemType.OCCURRENCE: "occurrence",
    ItemType.EXCEPTION: "exception",
    ItemType.RECURRING_MASTER: "seriesMaster",
}

RANGE_TYPES = ("endDate", "noEnd", "numbered")
DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
WEEK_INDEXES = ("first", "second", "third", "fourth", "last")

# Graph's Exchange-style global object id prefix; for occurrences the date goes after it.
_GOID_PREFIX = "040000008200E00074C5B7101A82E008"


# --- output --------------------------------------------------------------------------------------


@dataclass
class EventView:
    """How one request wants events written."""

    zone: str = "UTC"  # Prefer: outlook.timezone, echoed as given
    body_type: str | None = None  # Prefer: outlook.body-content-type ("text" | "html")
    # $expand: the extended property collections asked for ("singleValueExtendedProperties",
    # "multiValueExtendedProperties").
    expansions: dict[str, ExtendedExpansion] = field(default_factory=dict)
    base_url: str = "https://graph.microsoft.com/v1.0"


def _email(address: str, name: str) -> dict[str, str]:
    return {"name": name or address, "address": address}


def _body_text(item: CalendarItem) -> str:
    if item.body_type.upper() != "HTML":
        return item.body
    without_tags = re.sub(r"<[^>]+>", " ", item.body)
    return html.unescape(re.sub(r"\s+", " ", without_tags)).strip()


def _body(item: CalendarItem, view: EventView) -> dict[str, str]:
    if view.body_type == "text" and item.body_type.upper() == "HTML":
        return {"contentType": "text", "content": _body_text(item)}
    if view.body_type == "html" and item.body_type.upper() != "HTML":
        escaped = html.escape(item.body).replace("\n", "<br>\r\n")
        return {"contentType": "html", "content": f"<html><body>{escaped}</body></html>"}
    return {
        "contentType": "html" if item.body_type.upper() == "HTML" else "text",
        "content": item.body,
    }


def _date_time_zone(
    instant: datetime | None, item: CalendarItem, view: EventView
) -> dict[str, str]:
    if instant is None:
        return {"dateTime": "0001-01-01T00:00:00.0000000", "timeZone": view.zone}
    if item.is_all_day:
        # All-day events are calendar days in the item's own zone, whatever zone is asked for.
        day = instant.astimezone(timezones.resolve_zone(item.time_zone)).date()
        return {"dateTime": f"{day.isoformat()}T00:00:00.0000000", "timeZone": view.zone}
    return {"dateTime": timezones.format_local(instant, view.zone), "timeZone": view.zone}


def _ical_uid(item: CalendarItem) -> str:
    """Different for each occurrence (Graph's iCalUId), unlike ``uid`` (the series')."""
    if item.original_start is None or item.item_type not in (
        ItemType.OCCURRENCE,
        ItemType.EXCEPTION,
    ):
        return item.uid
    day = item.original_start.astimezone(timezones.resolve_zone(item.time_zone)).date()
    stamp = f"{day.year:04X}{day.month:02X}{day.day:02X}"
    if item.uid.upper().startswith(_GOID_PREFIX) and len(item.uid) >= 40:
        return item.uid[:32] + stamp + item.uid[40:]
    return f"{item.uid}_{stamp}"


def _recurrence(recurrence: Recurrence, item: CalendarItem) -> dict[str, Any]:
    pattern: dict[str, Any] = {
        "type": recurrence.pattern,
        "interval": recurrence.interval,
        "month": recurrence.month or 0,
        "dayOfMonth": recurrence.day_of_month or 0,
        "firstDayOfWeek": recurrence.first_day_of_week.lower(),
        "index": (recurrence.week_index or "First").lower(),
    }
    if recurrence.days_of_week:
        pattern["daysOfWeek"] = [day.lower() for day in recurrence.days_of_week]
    if recurrence.end_date is not None:
        range_type = "endDate"
    elif recurrence.count:
        range_type = "numbered"
    else:
        range_type = "noEnd"
    start_date = recurrence.start_date
    if start_date is None and item.start is not None:
        start_date = item.start.astimezone(timezones.resolve_zone(item.time_zone)).date()
    return {
        "pattern": pattern,
        "range": {
            "type": range_type,
            "startDate": start_date.isoformat() if start_date else "0001-01-01",
            "endDate": recurrence.end_date.isoformat() if recurrence.end_date else "0001-01-01",
            "recurrenceTimeZone": timezones.windows_name(item.time_zone),
            "numberOfOccurrences": recurrence.count or 0,
        },
    }


def _attendee(attendee: Attendee, kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": {
            "response": RESPONSE_OUT.get(attendee.response, "none"),
            "time": timezones.format_utc(attendee.response_time) or NEVER,
        },
        "emailAddress": _email(attendee.address, attendee.name),
    }


SINGLE_VALUE = "singleValueExtendedProperties"
MULTI_VALUE = "multiValueExtendedProperties"


def extended_json(item: CalendarItem, collection: str) -> list[dict[str, Any]]:
    """The item's extended properties of one collection (single- or multi-valued)."""
    multi = collection == MULTI_VALUE
    return [
        {"id": format_extended_id(key), "value": list(value) if multi else value}
        for key, value in item.extended_properties.items()
        if isinstance(value, tuple) == multi
    ]


def _online_meeting(item: CalendarItem) -> dict[str, Any] | None:
    if not item.is_online_meeting:
        return None
    return {"joinUrl": item.online_meeting_join_url}


def event_json(
    item: CalendarItem,
    view: EventView,
    *,
    transaction_id: str | None = None,
    owner_name: str = "",
) -> dict[str, Any]:
    """The Graph JSON of one item (single, master, occurrence or exception) as its mailbox sees
    it. ``owner_name`` is the mailbox's display name (the organizer's name when it organizes)."""
    graph_id = event_id(item.id)
    organizer = item.organizer or Attendee(item.mailbox, owner_name)
    own_response = ResponseType.ORGANIZER if item.is_organizer else item.response_type
    responded_at = (
        NEVER
        if own_response in (ResponseType.ORGANIZER, ResponseType.UNKNOWN, ResponseType.NO_RESPONSE)
        else timezones.format_utc(item.last_modified) or NEVER
    )
    location: dict[str, Any] = {
        "displayName": item.location,
        "locationType": "default",
        "uniqueIdType": "unknown" if not item.location else "private",
        "address": {},
        "coordinates": {},
    }
    if item.location:
        location["uniqueId"] = item.location
    event: dict[str, Any] = {
        "@odata.etag": f'W/"{item.change_key}"',
        "id": graph_id,
        "createdDateTime": timezones.format_utc(item.created),
        "lastModifiedDateTime": timezones.format_utc(item.last_modified),
        "changeKey": item.change_key,
        "categories": list(item.categories),
        "transactionId": transaction_id,
        "originalStartTimeZone": timezones.windows_name(item.time_zone),
        "originalEndTimeZone": timezones.windows_name(item.time_zone),
        "iCalUId": _ical_uid(item),
        "uid": item.uid,
        "reminderMinutesBeforeStart": item.reminder_minutes_before_start,
        "isReminderOn": item.reminder_is_set,
        "hasAttachments": False,
        "subject": item.subject,
        "bodyPreview": _body_text(item)[:255],
        "importance": IMPORTANCE_OUT.get(item.importance, "normal"),
        "sensitivity": SENSITIVITY_OUT.get(item.sensitivity, "normal"),
        "isAllDay": item.is_all_day,
        "isCancelled": item.is_cancelled,
        "isOrganizer": item.is_organizer,
        "responseRequested": item.response_requested,
        "seriesMasterId": event_id(item.master_id) if item.master_id else None,
        "showAs": SHOW_AS_OUT.get(item.free_busy, "unknown"),
        "type": TYPE_OUT.get(item.item_type, "singleInstance"),
        "webLink": (
            "https://outlook.office365.com/owa/?itemid="
            + quote(graph_id, safe="")
            + "&exvsurl=1&path=/calendar/item"
        ),
        "onlineMeetingUrl": None,
        "isOnlineMeeting": item.is_online_meeting,
        "onlineMeetingProvider": item.online_meeting_provider,
        "allowNewTimeProposals": item.allow_new_time_proposal,
        "isDraft": False,
        "hideAttendees": False,
        "responseStatus": {
            "response": RESPONSE_OUT.get(own_response, "none"),
            "time": responded_at,
        },
        "body": _body(item, view),
        "start": _date_time_zone(item.start, item, view),
        "end": _date_time_zone(item.end, item, view),
        "location": location,
        "locations": [location] if item.location else [],
        "recurrence": (
            _recurrence(item.recurrence, item)
            if item.recurrence is not None and item.item_type == ItemType.RECURRING_MASTER
            else None
        ),
        "attendees": [_attendee(a, "required") for a in item.required_attendees]
        + [_attendee(a, "optional") for a in item.optional_attendees],
        "organizer": {"emailAddress": _email(organizer.address, organizer.name or owner_name)},
        "onlineMeeting": _online_meeting(item),
    }
    if item.original_start is not None and item.item_type in (
        ItemType.OCCURRENCE,
        ItemType.EXCEPTION,
    ):
        event["originalStart"] = timezones.format_utc(item.original_start)
    for collection, expansion in view.expansions.items():
        expanded = [prop for prop in extended_json(item, collection) if expansion.wants(prop)]
        if expanded:
            event[collection] = expanded
    return event


def filter_document(item: CalendarItem, event: Mapping[str, Any]) -> dict[str, Any]:
    """What a ``$filter`` sees: the event JSON with every single-value extended property
    present (Graph filters on those; multi-value ones it only expands)."""
    document = dict(event)
    document[SINGLE_VALUE] = extended_json(item, SINGLE_VALUE)
    return document


# --- input -------------------------------------------------------------------------------------

# Properties Graph lets a client send but that change nothing here (read-only, or settings the
# simulator does not model); they are accepted and ignored, as Graph ignores read-only ones.
_IGNORED = {
    "@odata.type",
    "@odata.etag",
    "@odata.context",
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "iCalUId",
    "uid",
    "isOrganizer",
    "isCancelled",
    "type",
    "seriesMasterId",
    "webLink",
    "responseStatus",
    "bodyPreview",
    "originalStart",
    "organizer",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "hideAttendees",
    "onlineMeetingUrl",
    "onlineMeeting",
    "isDraft",
    "hasAttachments",
}
_UNSUPPORTED = {
    "attachments",
    "extensions",
    "instances",
    "exceptionOccurrences",
    "cancelledOccurrences",
    "calendar",
}
_WRITABLE = {
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "location",
    "locations",
    "sensitivity",
    "showAs",
    "attendees",
    "recurrence",
    "categories",
    "importance",
    "isReminderOn",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "allowNewTimeProposals",
    "isOnlineMeeting",
    "onlineMeetingProvider",
    "singleValueExtendedProperties",
    "multiValueExtendedProperties",
    "transactionId",
}


@dataclass
class EventInput:
    """A POST/PATCH body read into store terms."""

    fields: dict[str, object] = field(default_factory=dict)  # CalendarItem attribute → value
    extended: dict[ExtendedPropertyKey, ExtendedValue | None] = field(default_factory=dict)
    transaction_id: str | None = None
    # isOnlineMeeting: true without onlineMeetingProvider: the calendar's default provider.
    online_by_default: bool = False


def _expect(value: object, kind: type | tuple[type, ...], name: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise bad_request(
            f"property {name!r} must be a {wanted}, not {value!r}", "ErrorInvalidRequest"
        )
    return value


def _enum(value: object, name: str, allowed: Mapping[str, Any] | tuple[str, ...]) -> str:
    text = _expect(value, str, name)
    lookup = {option.lower(): option for option in allowed}
    if text.lower() not in lookup:
        raise bad_request(
            f"property {name!r}: {text!r} is not one of {', '.join(allowed)}",
            "ErrorInvalidRequest",
        )
    return lookup[text.lower()]


def _parse_date_time_zone(value: object, name: str) -> tuple[datetime, str]:
    """(UTC instant, IANA zone) of a dateTimeTimeZone."""
    mapping = _expect(value, dict, name)
    text = mapping.get("dateTime")
    zone = mapping.get("timeZone") or "UTC"
    if not isinstance(text, str) or not isinstance(zone, str):
        raise bad_request(
            f"property {name!r} needs dateTime and timeZone strings", "ErrorInvalidRequest"
        )
    try:
        iana = timezones.iana_name(zone)
        return timezones.parse_date_time(text, iana), iana
    except timezones.UnknownTimeZone as error:
        raise bad_request(f"property {name!r}: {error}", "ErrorInvalidTimeZone") from None
    except ValueError as error:
        raise bad_request(f"property {name!r}: {error}", "ErrorInvalidRequest") from None


def _parse_attendees(value: object) -> tuple[list[Attendee], list[Attendee]]:
    required: list[Attendee] = []
    optional: list[Attendee] = []
    for index, entry in enumerate(_expect(value, list, "attendees")):
        attendee = _expect(entry, dict, f"attendees[{index}]")
        email = _expect(attendee.get("emailAddress"), dict, f"attendees[{index}].emailAddress")
        address = email.get("address")
        if not isinstance(address, str) or "@" not in address:
            raise bad_request(
                f"attendees[{index}].emailAddress.address must be an email address, "
                f"not {address!r}",
                "ErrorInvalidRecipients",
            )
        kind = _enum(
            attendee.get("type", "required"),
            f"attendees[{index}].type",
            ("required", "optional", "resource"),
        )
        parsed = Attendee(
            address.strip().lower(), str(email.get("name") or ""), ResponseType.UNKNOWN
        )
        (required if kind == "required" else optional).append(parsed)
    return required, optional


def _parse_date(value: object, name: str) -> date:
    text = _expect(value, str, name)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise bad_request(
            f"{name}: {text!r} is not a date like 2026-01-05", "ErrorInvalidRequest"
        ) from None


def parse_recurrence(value: object, start_date: date | None) -> tuple[Recurrence, str | None]:
    """A patternedRecurrence → (store Recurrence, IANA recurrenceTimeZone or None)."""
    recurrence = _expect(value, dict, "recurrence")
    pattern = _expect(recurrence.get("pattern"), dict, "recurrence.pattern")
    range_ = _expect(recurrence.get("range"), dict, "recurrence.range")
    kind = _enum(pattern.get("type"), "recurrence.pattern.type", recurrence_rules.PATTERNS)
    interval = _expect(pattern.get("interval", 1), int, "recurrence.pattern.interval")
    if interval < 1:
        raise bad_request("recurrence.pattern.interval must be at least 1", "ErrorInvalidRequest")
    days = [
        _enum(day, "recurrence.pattern.daysOfWeek", DAYS).capitalize()
        for day in _expect(pattern.get("daysOfWeek") or [], list, "recurrence.pattern.daysOfWeek")
    ]
    if kind in ("weekly", "relativeMonthly", "relativeYearly") and not days:
        raise bad_request(
            f"recurrence.pattern.daysOfWeek is required for a {kind} pattern", "ErrorInvalidRequest"
        )
    day_of_month = pattern.get("dayOfMonth") or None
    if kind in ("absoluteMonthly", "absoluteYearly"):
        day_of_month = _expect(day_of_month, int, "recurrence.pattern.dayOfMonth")
        if not 1 <= day_of_month <= 31:
            raise bad_request("recurrence.pattern.dayOfMonth must be 1-31", "ErrorInvalidRequest")
    month = pattern.get("month") or None
    if kind in ("absoluteYearly", "relativeYearly"):
        month = _expect(month, int, "recurrence.pattern.month")
        if not 1 <= month <= 12:
            raise bad_request("recurrence.pattern.month must be 1-12", "ErrorInvalidRequest")
    index = None
    if kind in ("relativeMonthly", "relativeYearly"):
        index = _enum(
            pattern.get("index") or "first", "recurrence.pattern.index", WEEK_INDEXES
        ).capitalize()
    first_day = _enum(
        pattern.get("firstDayOfWeek") or "sunday", "recurrence.pattern.firstDayOfWeek", DAYS
    )
    range_kind = _enum(range_.get("type"), "recurrence.range.type", RANGE_TYPES)
    series_start = (
        _parse_date(range_["startDate"], "recurrence.range.startDate")
        if range_.get("startDate")
        else start_date
    )
    if series_start is None:
        raise bad_request("recurrence.range.startDate is required", "ErrorInvalidRequest")
    end_date = None
    count = None
    if range_kind == "endDate":
        end_date = _parse_date(range_.get("endDate"), "recurrence.range.endDate")
        if end_date < series_start:
            raise bad_request("recurrence.range.endDate is before startDate", "ErrorInvalidRequest")
    elif range_kind == "numbered":
        count = _expect(
            range_.get("numberOfOccurrences"), int, "recurrence.range.numberOfOccurrences"
        )
        if count < 1:
            raise bad_request(
                "recurrence.range.numberOfOccurrences must be at least 1", "ErrorInvalidRequest"
            )
    zone_name = range_.get("recurrenceTimeZone")
    zone = None
    if zone_name:
        try:
            zone = timezones.iana_name(
                _expect(zone_name, str, "recurrence.range.recurrenceTimeZone")
            )
        except timezones.UnknownTimeZone as error:
            raise bad_request(
                f"recurrence.range.recurrenceTimeZone: {error}", "ErrorInvalidTimeZone"
            ) from None
    return (
        Recurrence(
            pattern=kind,
            interval=interval,
            days_of_week=days,
            day_of_month=day_of_month if kind in ("absoluteMonthly", "absoluteYearly") else None,
            month=month if kind in ("absoluteYearly", "relativeYearly") else None,
            week_index=index,
            first_day_of_week=first_day.capitalize(),
            start_date=series_start,
            end_date=end_date,
            count=count,
        ),
        zone,
    )


def parse_event(body: object, *, creating: bool, current: CalendarItem | None = None) -> EventInput:
    """Read a POST (creating) or PATCH body. ``current`` is the item a PATCH changes (for
    validating a partial start/end/isAllDay change against what is stored)."""
    payload = _expect(body, dict, "request body")
    result = EventInput()
    for name in payload:
        if name in _UNSUPPORTED:
            raise bad_request(
                f"property {name!r} is not supported by this simulator", "ErrorInvalidRequest"
            )
        if name not in _WRITABLE and name not in _IGNORED and not name.startswith("@"):
            raise bad_request(
                f"Property '{name}' does not exist on type 'microsoft.graph.event'",
                "RequestBodyRead",
            )
    fields = result.fields
    if "subject" in payload:
        fields["subject"] = _expect(payload["subject"] or "", str, "subject")
    if "body" in payload:
        body_value = _expect(payload["body"] or {}, dict, "body")
        fields["body"] = _expect(body_value.get("content") or "", str, "body.content")
        content_type = _enum(
            body_value.get("contentType") or "text", "body.contentType", ("text", "html")
        )
        fields["body_type"] = "HTML" if content_type == "html" else "Text"
    if "location" in payload or "locations" in payload:
        location = payload.get("location")
        if location is None and payload.get("locations"):
            location = _expect(payload["locations"], list, "locations")[0]
        location = _expect(location or {}, dict, "location")
        fields["location"] = _expect(location.get("displayName") or "", str, "location.displayName")
    if "sensitivity" in payload:
        fields["sensitivity"] = SENSITIVITY_IN[
            _enum(payload["sensitivity"], "sensitivity", tuple(SENSITIVITY_IN))
        ]
    if "showAs" in payload:
        fields["free_busy"] = SHOW_AS_IN[
            _enum(payload["showAs"], "showAs", tuple(SHOW_AS_OUT.values())).lower()
        ]
    if "isAllDay" in payload:
        fields["is_all_day"] = _expect(payload["isAllDay"], bool, "isAllDay")
    if "attendees" in payload:
        required, optional = _parse_attendees(payload["attendees"] or [])
        fields["required_attendees"] = required
        fields["optional_attendees"] = optional
    end_zone = None
    if "start" in payload:
        fields["start"], fields["time_zone"] = _parse_date_time_zone(payload["start"], "start")
    if "end" in payload:
        fields["end"], end_zone = _parse_date_time_zone(payload["end"], "end")
    if creating and ("start" not in fields or "end" not in fields):
        raise bad_request("an event needs both start and end", "ErrorInvalidRequest")
    _check_times(fields, current, end_zone)
    if "recurrence" in payload:
        if payload["recurrence"] is None:
            fields["recurrence"] = None
        else:
            start = fields.get("start") or (current.start if current else None)
            start_zone = str(fields.get("time_zone") or (current.time_zone if current else "UTC"))
            local_start = (
                start.astimezone(timezones.resolve_zone(start_zone)).date()
                if isinstance(start, datetime)
                else None
            )
            recurrence, recurrence_zone = parse_recurrence(payload["recurrence"], local_start)
            fields["recurrence"] = recurrence
            if recurrence_zone and "time_zone" not in fields:
                fields["time_zone"] = recurrence_zone
    _parse_settings(payload, fields, result)
    for collection in (SINGLE_VALUE, MULTI_VALUE):
        if collection in payload:
            result.extended.update(_parse_extended(payload[collection], collection))
    if creating and payload.get("transactionId") is not None:
        # Only a create uses it; a PATCH that echoes an event's JSON back is not refused for it.
        result.transaction_id = _expect(payload["transactionId"], str, "transactionId")
    return result


def _parse_settings(
    payload: Mapping[str, Any], fields: dict[str, object], result: EventInput
) -> None:
    """Categories, reminder, importance and the meeting's settings."""
    if "categories" in payload:
        categories = _expect(payload["categories"] or [], list, "categories")
        fields["categories"] = [
            _expect(category, str, f"categories[{index}]")
            for index, category in enumerate(categories)
        ]
    if "importance" in payload:
        fields["importance"] = IMPORTANCE_IN[
            _enum(payload["importance"], "importance", tuple(IMPORTANCE_IN)).lower()
        ]
    for name, attribute in (
        ("isReminderOn", "reminder_is_set"),
        ("responseRequested", "response_requested"),
        ("allowNewTimeProposals", "allow_new_time_proposal"),
    ):
        if name in payload:
            fields[attribute] = _expect(payload[name], bool, name)
    if "reminderMinutesBeforeStart" in payload:
        minutes = _expect(payload["reminderMinutesBeforeStart"], int, "reminderMinutesBeforeStart")
        if minutes < 0:
            raise bad_request(
                "property 'reminderMinutesBeforeStart' must not be negative", "ErrorInvalidRequest"
            )
        fields["reminder_minutes_before_start"] = minutes
    if payload.get("onlineMeetingProvider") is not None:
        fields["online_meeting_provider"] = _enum(
            payload["onlineMeetingProvider"], "onlineMeetingProvider", ONLINE_MEETING_PROVIDERS
        )
    if "isOnlineMeeting" in payload and _expect(
        payload["isOnlineMeeting"], bool, "isOnlineMeeting"
    ):
        result.online_by_default = fields.get("online_meeting_provider", "unknown") == "unknown"


def _parse_extended(
    value: object, collection: str
) -> dict[ExtendedPropertyKey, ExtendedValue | None]:
    """single- or multiValueExtendedProperties: each id must name a type of its collection (the
    ...Array types are multi-valued); a null value deletes the property."""
    multi = collection == MULTI_VALUE
    parsed: dict[ExtendedPropertyKey, ExtendedValue | None] = {}
    for index, entry in enumerate(_expect(value or [], list, collection)):
        prop = _expect(entry, dict, f"{collection}[{index}]")
        key = parse_extended_id(_expect(prop.get("id"), str, f"{collection}[{index}].id"))
        if extended.is_array(key.type) != multi:
            raise bad_request(
                f"{collection}[{index}].id: a {key.type} property belongs in "
                f"{MULTI_VALUE if not multi else SINGLE_VALUE}",
                "ErrorInvalidExtendedPropertyValue",
            )
        raw = prop.get("value")
        if raw is None:
            parsed[key] = None
        elif multi:
            values = _expect(raw, list, f"{collection}[{index}].value")
            parsed[key] = tuple(
                _expect(item, str, f"{collection}[{index}].value[{position}]")
                for position, item in enumerate(values)
            )
        else:
            parsed[key] = _expect(raw, str, f"{collection}[{index}].value")
    return parsed


def _check_times(
    fields: dict[str, object], current: CalendarItem | None, end_zone: str | None
) -> None:
    """The event's times as Graph requires them. An all-day event's start and end must be
    midnight and in the same time zone (event resource, isAllDay:
    https://learn.microsoft.com/graph/api/resources/event); Graph refuses others where EWS
    would move them onto midnights. The store keeps one zone per item, so an end sent without
    a start (or a start without an end) is compared with the zone the event has."""
    start = fields.get("start", current.start if current else None)
    end = fields.get("end", current.end if current else None)
    all_day = fields.get("is_all_day", current.is_all_day if current else False)
    zone = str(fields.get("time_zone", current.time_zone if current else "UTC"))
    end_zone = end_zone or (current.time_zone if current else zone)
    if isinstance(start, datetime) and isinstance(end, datetime):
        if end < start:
            raise bad_request("the event's end is before its start", "ErrorInvalidRequest")
        if all_day:
            if timezones.windows_name(end_zone) != timezones.windows_name(zone):
                raise bad_request(
                    "an all-day event's start and end must be in the same time zone",
                    "ErrorPropertyValidationFailure",
                )
            local_zone = timezones.resolve_zone(zone)
            for instant in (start, end):
                local = instant.astimezone(local_zone)
                if (local.hour, local.minute, local.second, local.microsecond) != (0, 0, 0, 0):
                    raise bad_request(
                        "an all-day event's start and end must be midnight in its time zone",
                        "ErrorPropertyValidationFailure",
                    )
            if end - start < timedelta(days=1) - timedelta(hours=1):
                raise bad_request(
                    "an all-day event lasts at least one day", "ErrorPropertyValidationFailure"
                )
