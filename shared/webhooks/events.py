"""The events calbridge tells the booking platform, as outbox rows.

Each event's id is derived from what happened (uuid5 of the organization, the type and a key
naming the change), so a change read twice — a sync re-processed after a crash, a full read
that finds what an earlier sync already reported — makes the same row and is delivered once.
The payload is the exact JSON body to sign and send; it carries ids and times, never an event's
body, a private subject or a client's contact details.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, Final

from shared.engine.outlook import (
    AppointmentCancelled,
    AppointmentRescheduled,
    OutlookEvent,
    StaffDeclined,
)
from shared.store.records import OutboxRecord

_NAMESPACE: Final = uuid.UUID("6f1d9f5e-8b2e-4c5a-9a61-3f7c2b8d0e41")

APPOINTMENT_RESCHEDULED: Final = "appointment.rescheduled"
APPOINTMENT_CANCELLED: Final = "appointment.cancelled"
STAFF_DECLINED: Final = "appointment.staff_declined"
BUSY_TIME_CHANGED: Final = "busy_time.changed"
CONNECTION_HEALTH_CHANGED: Final = "connection.health_changed"


def _instant(moment: datetime) -> str:
    return moment.isoformat()


def outbox_row(
    org: str, event_type: str, key: str, data: dict[str, Any], occurred_at: datetime
) -> OutboxRecord:
    """The outbox row of one event; ``key`` names the change (the same change, the same id)."""
    event_id = str(uuid.uuid5(_NAMESPACE, f"{org}\n{event_type}\n{key}"))
    payload = {
        "id": event_id,
        "type": event_type,
        "occurredAt": _instant(occurred_at),
        "org": org,
        "data": data,
    }
    return OutboxRecord(
        event_id=event_id,
        event_type=event_type,
        payload=json.dumps(payload, separators=(",", ":"), ensure_ascii=False),
        next_attempt_at=occurred_at,
    )


def outlook_event_row(
    org: str, event: OutlookEvent, change: str, occurred_at: datetime
) -> OutboxRecord:
    """The row of an Outlook-side change; ``change`` names the item's state it was read from
    (its change key, or the deletion)."""
    if isinstance(event, AppointmentRescheduled):
        data: dict[str, Any] = {
            "appointmentId": event.appointment_id,
            "start": _instant(event.start),
            "end": _instant(event.end),
            "by": event.by,
        }
        return outbox_row(
            org, APPOINTMENT_RESCHEDULED, f"{event.appointment_id}\n{change}", data, occurred_at
        )
    if isinstance(event, AppointmentCancelled):
        data = {"appointmentId": event.appointment_id, "by": event.by}
        return outbox_row(org, APPOINTMENT_CANCELLED, event.appointment_id, data, occurred_at)
    assert isinstance(event, StaffDeclined)
    data = {"appointmentId": event.appointment_id, "staffId": event.staff_id}
    key = f"{event.appointment_id}\n{event.staff_id}"
    return outbox_row(org, STAFF_DECLINED, key, data, occurred_at)


def busy_time_row(
    org: str, staff_id: str, window: tuple[datetime, datetime], change: str, occurred_at: datetime
) -> OutboxRecord:
    """``busy_time.changed`` for one staff member's window; ``change`` names the sync page."""
    data = {"staffId": staff_id, "from": _instant(window[0]), "to": _instant(window[1])}
    return outbox_row(org, BUSY_TIME_CHANGED, f"{staff_id}\n{change}", data, occurred_at)


def health_row(
    org: str, connection_id: str, health: str, detail: str, change: str, occurred_at: datetime
) -> OutboxRecord:
    """``connection.health_changed``; ``change`` names the transition."""
    data = {"connectionId": connection_id, "health": health, "detail": detail}
    return outbox_row(
        org, CONNECTION_HEALTH_CHANGED, f"{connection_id}\n{change}", data, occurred_at
    )
