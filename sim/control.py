"""The control API (``/control/...``, JSON, no auth, loopback only): what tests, demos and
benchmarks use to arrange and inspect the simulated organization without a protocol.

- ``POST /control/people/<address>/<action>``: act as that person in Outlook. Actions and body
  fields (times ISO 8601; naive = the mailbox's zone):
  ``createEvent`` {subject, start, end, attendees?, optionalAttendees?, body?, location?,
  timeZone?, isAllDay?, private?, recurrence?, send?}; ``update`` {itemId, subject?, start?,
  end?, location?, body?}; ``move`` {itemId, start, end}; ``markPrivate`` {itemId, private?};
  ``cancel`` {itemId, comment?}; ``delete`` {itemId}; ``accept`` / ``tentativelyAccept`` /
  ``decline`` {itemId, sendResponse?}; ``editOccurrence`` {itemId (master), index, ...fields};
  ``deleteOccurrence`` {itemId, index}. ``recurrence``: {pattern, interval?, daysOfWeek?,
  dayOfMonth?, month?, weekIndex?, firstDayOfWeek?, startDate?, endDate?, count?}.
- ``GET /control/mailboxes``; ``GET /control/mailboxes/<address>/items`` (with bodies;
  ``?start=&end=`` for an expanded view);
  ``POST /control/mailboxes/<address>/invalidate-sync-state``.
- ``GET|POST|DELETE /control/faults`` (POST {kind, operation?, mailbox?, remaining?,
  backOffMs?, retryAfter?, delaySeconds?}; DELETE ``?mailbox=``).
- ``GET|DELETE /control/counters``; ``GET /control/timing`` (seconds the protocols spent serving
  requests since the counters were reset).
- ``POST /control/tokens/revoke`` {subject, block?}; ``POST /control/tokens/restore`` {subject}.
- ``POST /control/lifecycle`` {subscriptionId, event}: a Graph lifecycle notification.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sim.people import Outlook
from sim.store import (
    Attendee,
    CalendarItem,
    ExchangeStore,
    Fault,
    FreeBusy,
    Recurrence,
    SimError,
    iter_attendees,
)
from sim.token import TokenIssuer
from sim.wire import SimRequest, SimResponse

FAULT_KINDS = frozenset(
    {
        "server_busy",
        "throttle",
        "http_500",
        "http_503",
        "reset",
        "slow",
        "unauthorized",
        "invalid_sync_state",
        "expired_delta",
        "drop_notifications",
        "subscription_removed",
    }
)
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def item_json(item: CalendarItem) -> dict[str, Any]:
    """Everything about an item, bodies included (tests inspect what Exchange holds)."""

    def attendee(a: Attendee | None) -> dict[str, Any] | None:
        if a is None:
            return None
        return {
            "address": a.address,
            "name": a.name,
            "response": a.response.value,
            "responseTime": a.response_time.isoformat() if a.response_time else None,
        }

    def when(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    recurrence = item.recurrence
    return {
        "id": item.id,
        "mailbox": item.mailbox,
        "subject": item.subject,
        "body": item.body,
        "bodyType": item.body_type,
        "start": when(item.start),
        "end": when(item.end),
        "timeZone": item.time_zone,
        "isAllDay": item.is_all_day,
        "location": item.location,
        "sensitivity": item.sensitivity.value,
        "freeBusy": item.free_busy.value,
        "organizer": attendee(item.organizer),
        "requiredAttendees": [attendee(a) for a in item.required_attendees],
        "optionalAttendees": [attendee(a) for a in item.optional_attendees],
        "uid": item.uid,
        "changeKey": item.change_key,
        "created": when(item.created),
        "lastModified": when(item.last_modified),
        "isCancelled": item.is_cancelled,
        "itemType": item.item_type.value,
        "recurrence": None
        if recurrence is None
        else {
            "pattern": recurrence.pattern,
            "interval": recurrence.interval,
            "daysOfWeek": recurrence.days_of_week,
            "dayOfMonth": recurrence.day_of_month,
            "month": recurrence.month,
            "weekIndex": recurrence.week_index,
            "firstDayOfWeek": recurrence.first_day_of_week,
            "startDate": recurrence.start_date.isoformat() if recurrence.start_date else None,
            "endDate": recurrence.end_date.isoformat() if recurrence.end_date else None,
            "count": recurrence.count,
        },
        "modifiedOccurrences": [when(s) for s in sorted(item.modified_occurrences)],
        "deletedOccurrences": [when(s) for s in item.deleted_occurrences],
        "masterId": item.master_id,
        "originalStart": when(item.original_start),
        "extendedProperties": [
            {"propertySetId": k.property_set_id, "name": k.name, "type": k.type, "value": v}
            for k, v in item.extended_properties.items()
        ],
        "isMeeting": item.is_meeting,
        "responseType": item.response_type.value,
        "attendeeCount": sum(1 for _ in iter_attendees(item)),
    }


def _time(value: Any, name: str) -> datetime:
    if not isinstance(value, str):
        raise ControlError(400, f"{name}: expected an ISO 8601 date-time string")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise ControlError(400, f"{name}: {value!r} is not an ISO 8601 date-time") from error


def _date(value: Any, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as error:
        raise ControlError(400, f"{name}: {value!r} is not an ISO date") from error


def parse_recurrence(spec: Any) -> Recurrence | None:
    if spec is None:
        return None
    if not isinstance(spec, dict) or "pattern" not in spec:
        raise ControlError(400, "recurrence: expected an object with a pattern")
    try:
        return Recurrence(
            pattern=str(spec["pattern"]),
            interval=int(spec.get("interval", 1)),
            days_of_week=list(spec.get("daysOfWeek", [])),
            day_of_month=spec.get("dayOfMonth"),
            month=spec.get("month"),
            week_index=spec.get("weekIndex"),
            first_day_of_week=str(spec.get("firstDayOfWeek", "Sunday")),
            start_date=_date(spec.get("startDate"), "recurrence.startDate"),
            end_date=_date(spec.get("endDate"), "recurrence.endDate"),
            count=spec.get("count"),
        )
    except (TypeError, ValueError) as error:
        raise ControlError(400, f"recurrence: {error}") from error


# JSON body field → CalendarItem attribute for updates.
_UPDATE_FIELDS = {
    "subject": "subject",
    "body": "body",
    "location": "location",
    "start": "start",
    "end": "end",
    "isAllDay": "is_all_day",
    "timeZone": "time_zone",
    "freeBusy": "free_busy",
    "sensitivity": "sensitivity",
    "attendees": "required_attendees",
    "optionalAttendees": "optional_attendees",
}


class ControlApi:
    """Routes ``/control/...`` requests onto the store, the people API, the token issuer and
    the Graph service's lifecycle hook."""

    def __init__(
        self,
        store: ExchangeStore,
        issuer: TokenIssuer,
        lifecycle: Callable[[str, str], Any],
    ) -> None:
        self.store = store
        self.issuer = issuer
        self.lifecycle = lifecycle

    def handle(self, request: SimRequest) -> SimResponse:
        try:
            payload = self._route(request)
        except ControlError as error:
            return _json(error.status, {"error": error.message})
        except SimError as error:
            status = 404 if error.code in ("ErrorItemNotFound", "ErrorNonExistentMailbox") else 400
            return _json(status, {"error": error.message, "code": error.code})
        except (ValueError, TypeError) as error:  # e.g. an unknown enum value in the body
            return _json(400, {"error": str(error)})
        if payload is None:
            return SimResponse(204)
        return _json(200, payload)

    def _body(self, request: SimRequest) -> dict[str, Any]:
        if not request.body:
            return {}
        try:
            body = json.loads(request.body)
        except ValueError as error:
            raise ControlError(400, f"body is not JSON: {error}") from error
        if not isinstance(body, dict):
            raise ControlError(400, "body must be a JSON object")
        return body

    def _route(self, request: SimRequest) -> Any:
        parts = [p for p in request.path.split("/") if p][1:]  # drop "control"
        method = request.method
        if parts == ["health"]:
            return {"ok": True}
        if parts == ["mailboxes"] and method == "GET":
            return [
                {"address": m.address, "name": m.name, "timeZone": m.time_zone}
                for m in self.store.mailboxes.values()
            ]
        if len(parts) == 3 and parts[0] == "mailboxes":
            return self._mailbox(method, parts[1], parts[2], request)
        if len(parts) == 3 and parts[0] == "people" and method == "POST":
            return self._person(parts[1], parts[2], self._body(request))
        if parts == ["faults"]:
            return self._faults(method, request)
        if parts == ["timing"] and method == "GET":
            return self.store.service_time()
        if parts == ["counters"]:
            if method == "GET":
                return self.store.counter_snapshot()
            if method == "DELETE":
                self.store.reset_counters()
                return None
        if len(parts) == 2 and parts[0] == "tokens" and method == "POST":
            body = self._body(request)
            subject = body.get("subject")
            if not isinstance(subject, str) or not subject:
                raise ControlError(400, "subject: expected a client id or user address")
            if parts[1] == "revoke":
                self.issuer.revoke(subject, block=bool(body.get("block", True)))
                return {"revoked": subject}
            if parts[1] == "restore":
                self.issuer.restore(subject)
                return {"restored": subject}
        if parts == ["lifecycle"] and method == "POST":
            return self._lifecycle(self._body(request))
        raise ControlError(404, f"no such control endpoint: {method} {request.path}")

    def _mailbox(self, method: str, address: str, what: str, request: SimRequest) -> Any:
        mailbox = self.store.mailbox(address)
        if what == "items" and method == "GET":
            start, end = request.query_value("start"), request.query_value("end")
            if start or end:
                if not (start and end):
                    raise ControlError(400, "give both start and end for a view")
                items = self.store.calendar_view(
                    mailbox.address, _time(start, "start"), _time(end, "end")
                )
            else:
                items = self.store.calendar_items(mailbox.address)
            return [item_json(item) for item in items]
        if what == "invalidate-sync-state" and method == "POST":
            self.store.invalidate_sync_states(mailbox.address)
            return {"invalidated": mailbox.address}
        raise ControlError(404, f"no such control endpoint: {method} {request.path}")

    def _faults(self, method: str, request: SimRequest) -> Any:
        if method == "GET":
            with self.store.lock:
                return [vars(fault).copy() for fault in self.store.faults]
        if method == "DELETE":
            self.store.clear_faults(request.query_value("mailbox"))
            return None
        if method != "POST":
            raise ControlError(405, f"{method} is not allowed on /control/faults")
        body = self._body(request)
        kind = body.get("kind")
        if kind not in FAULT_KINDS:
            raise ControlError(400, f"kind: expected one of {', '.join(sorted(FAULT_KINDS))}")
        remaining = body.get("remaining", 1)
        try:
            fault = Fault(
                kind=kind,
                operation=str(body.get("operation", "*")),
                mailbox=str(body.get("mailbox", "*")),
                remaining=None if remaining is None else int(remaining),
                back_off_ms=int(body.get("backOffMs", 1000)),
                retry_after=int(body.get("retryAfter", 1)),
                delay_s=float(body.get("delaySeconds", 0.0)),
            )
        except (TypeError, ValueError) as error:
            raise ControlError(400, f"fault: {error}") from error
        self.store.add_fault(fault)
        return vars(fault).copy()

    def _lifecycle(self, body: dict[str, Any]) -> Any:
        subscription_id, event = body.get("subscriptionId"), body.get("event")
        if not isinstance(subscription_id, str) or event not in LIFECYCLE_EVENTS:
            raise ControlError(
                400,
                "expected {subscriptionId, event} with event one of "
                + ", ".join(sorted(LIFECYCLE_EVENTS)),
            )
        result = self.lifecycle(subscription_id, event)
        return {"sent": event, "subscriptionId": subscription_id, "result": result}

    def _person(self, address: str, action: str, body: dict[str, Any]) -> Any:
        person = Outlook(self.store, address)

        def item_id() -> str:
            value = body.get("itemId")
            if not isinstance(value, str) or not value:
                raise ControlError(400, "itemId: required")
            return value

        def index() -> int:
            value = body.get("index")
            if not isinstance(value, int) or value < 1:
                raise ControlError(400, "index: expected a 1-based occurrence number")
            return value

        def changes() -> dict[str, Any]:
            found: dict[str, Any] = {}
            for key, name in _UPDATE_FIELDS.items():
                if key in body:
                    value = body[key]
                    if key in ("start", "end"):
                        value = _time(value, key)
                    found[name] = value
            if "private" in body:
                found["sensitivity"] = "Private" if body["private"] else "Normal"
            return found

        if action == "createEvent":
            for key in ("subject", "start", "end"):
                if key not in body:
                    raise ControlError(400, f"{key}: required")
            item = person.create_event(
                str(body["subject"]),
                _time(body["start"], "start"),
                _time(body["end"], "end"),
                attendees=list(body.get("attendees", [])),
                optional_attendees=list(body.get("optionalAttendees", [])),
                body=str(body.get("body", "")),
                location=str(body.get("location", "")),
                time_zone=body.get("timeZone"),
                is_all_day=bool(body.get("isAllDay", False)),
                private=bool(body.get("private", False)),
                free_busy=FreeBusy(body.get("freeBusy", "Busy")),
                recurrence=parse_recurrence(body.get("recurrence")),
                send=bool(body.get("send", True)),
            )
            return item_json(item)
        if action in ("update", "move"):
            return item_json(person.update(item_id(), **changes()))
        if action == "markPrivate":
            return item_json(person.mark_private(item_id(), bool(body.get("private", True))))
        if action == "cancel":
            person.cancel(item_id(), str(body.get("comment", "")))
            return None
        if action == "delete":
            person.delete(item_id())
            return None
        if action in ("accept", "tentativelyAccept"):
            respond = person.accept if action == "accept" else person.tentatively_accept
            result = respond(item_id(), send_response=bool(body.get("sendResponse", True)))
            return item_json(result) if result else None
        if action == "decline":
            person.decline(item_id(), send_response=bool(body.get("sendResponse", True)))
            return None
        if action == "editOccurrence":
            return item_json(person.edit_occurrence(item_id(), index(), **changes()))
        if action == "deleteOccurrence":
            person.delete_occurrence(item_id(), index())
            return None
        raise ControlError(404, f"unknown action {action!r}")


def _json(status: int, payload: Any) -> SimResponse:
    return SimResponse(status, json.dumps(payload, default=str).encode())
