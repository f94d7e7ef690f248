"""One set of builders for what many tests need: appointment snapshots (as the booking platform's
JSON document, its bytes, or the model) and staff mailboxes. Each test module passes what its
scenario cares about; everything else has a plain default.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.models import AppointmentSnapshot, MailboxRef

DEFAULT_START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=1)))
ADA = {"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 1"}


def snapshot_document(
    version: int = 1,
    *,
    status: str = "booked",
    organizer: str = "s1",
    secondaries: Iterable[str] = (),
    start: datetime = DEFAULT_START,
    minutes: int = 30,
    time_zone: str = "Europe/Berlin",
    title: str = "Mortgage advice",
    location: str | None = None,
    service: str | None = None,
    clients: Iterable[Mapping[str, str]] = (),
    notes: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The booking platform's JSON document of a snapshot; ``overrides`` replace or add
    top-level fields by their camelCase names (how tests send what the contract refuses)."""
    document: dict[str, Any] = {
        "version": version,
        "status": status,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=minutes)).isoformat(),
        "timeZone": time_zone,
        "title": title,
        "location": location,
        "serviceName": service,
        "organizerStaffId": organizer,
        "staff": [{"staffId": organizer, "role": "organizer"}]
        + [{"staffId": staff_id, "role": "secondary"} for staff_id in secondaries],
        "clients": [dict(client) for client in clients],
        "notes": notes,
    }
    document = {name: value for name, value in document.items() if value is not None}
    document.update(overrides)
    return document


def snapshot_body(version: int = 1, **fields: Any) -> bytes:
    """``snapshot_document`` as the bytes of a request body."""
    return json.dumps(snapshot_document(version, **fields)).encode()


def snapshot(version: int = 1, **fields: Any) -> AppointmentSnapshot:
    """``snapshot_document`` as the model."""
    return AppointmentSnapshot.model_validate(snapshot_document(version, **fields))


def mailbox(
    staff_id: str,
    *,
    connection_id: str = "conn-1",
    domain: str = "bank.example",
    time_zone: str = "Europe/London",
) -> MailboxRef:
    """A staff member's mailbox ``<staff_id>@<domain>`` on a connection."""
    return MailboxRef(
        staff_id=staff_id,
        connection_id=connection_id,
        address=f"{staff_id}@{domain}",
        time_zone=time_zone,
    )


def directory(staff_ids: Iterable[str], **mailbox_fields: Any) -> dict[str, MailboxRef]:
    """Staff id → mailbox for each of ``staff_ids``."""
    return {staff_id: mailbox(staff_id, **mailbox_fields) for staff_id in staff_ids}
