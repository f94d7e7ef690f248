"""What an appointment looks like as an Exchange event: snapshot + staff directory → EventDraft.

Pure and shared by every caller of the port (the adapters never see a snapshot):

- subject = the appointment's title; location; start/end in the appointment's time zone;
- required attendees = the secondary staff's mailboxes, in the order the booking platform lists
  them. Clients are never attendees (Exchange would email them; the booking platform owns client
  notifications): they are listed in the body instead, with the service and the notes;
- shown as busy; tagged with the appointment's marker.

A secondary staff member without a known mailbox is left out (the engine records the problem).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.engine.marker import marker_for
from shared.exchange.port import EventDraft, ShowAs
from shared.models import AppointmentSnapshot, Client, MailboxRef


def attendee_mailboxes(
    snapshot: AppointmentSnapshot, directory: Mapping[str, MailboxRef]
) -> list[MailboxRef]:
    """The secondary staff's mailboxes in snapshot order; unknown staff, the organizer's own
    mailbox and repeated addresses are skipped."""
    organizer = directory.get(snapshot.organizer_staff_id)
    seen = {organizer.address} if organizer else set()
    mailboxes: list[MailboxRef] = []
    for staff_id in snapshot.secondary_staff_ids:
        ref = directory.get(staff_id)
        if ref is None or ref.address in seen:
            continue
        seen.add(ref.address)
        mailboxes.append(ref)
    return mailboxes


# Exchange keeps at most this many UTF-16 code units of a subject or a location.
EXCHANGE_TEXT_LIMIT = 255


def as_exchange_keeps(text: str) -> str:
    """``text`` as Exchange stores a subject or location: at most 255 UTF-16 code units, a
    character never cut in half. Writing it so means reading back exactly what was written,
    so a long title with emoji is not taken for an Outlook edit on every pass."""
    kept, units = [], 0
    for character in text:
        width = 2 if ord(character) > 0xFFFF else 1
        if units + width > EXCHANGE_TEXT_LIMIT:
            break
        kept.append(character)
        units += width
    return "".join(kept)


def _client_line(client: Client) -> str:
    details = [client.name]
    if client.email:
        details.append(client.email)
    if client.phone:
        details.append(client.phone)
    return "- " + ", ".join(details)


def event_body(snapshot: AppointmentSnapshot) -> str:
    """The plain-text description: service, clients (name, email, phone), notes."""
    lines: list[str] = []
    if snapshot.service_name:
        lines.append(f"Service: {snapshot.service_name}")
    if snapshot.clients:
        lines.append("Clients:")
        lines.extend(_client_line(client) for client in snapshot.clients)
    else:
        lines.append("Clients: none")
    if snapshot.notes:
        lines.append("Notes:")
        lines.append(snapshot.notes)
    return "\n".join(lines) + "\n"


def event_draft(
    org: str,
    appointment_id: str,
    snapshot: AppointmentSnapshot,
    directory: Mapping[str, MailboxRef],
    *,
    attendees: Sequence[MailboxRef] | None = None,
    times: tuple[datetime, datetime] | None = None,
) -> EventDraft:
    """The event the organizer's calendar should hold for this appointment. ``attendees`` and
    ``times`` replace the snapshot's when the engine decides otherwise (a staff member whose
    decline the booking platform has not answered is left off; a move it has not answered
    stays)."""
    zone = ZoneInfo(snapshot.time_zone)
    start, end = times or (snapshot.start, snapshot.end)
    invited = attendee_mailboxes(snapshot, directory) if attendees is None else attendees
    return EventDraft(
        subject=as_exchange_keeps(snapshot.title),
        start=start.astimezone(zone),
        end=end.astimezone(zone),
        time_zone=snapshot.time_zone,
        location=as_exchange_keeps(snapshot.location) if snapshot.location else None,
        body_text=event_body(snapshot),
        required_attendees=tuple(ref.address for ref in invited),
        show_as=ShowAs.BUSY,
        marker=marker_for(org, appointment_id),
    )


def draft_digest(draft: EventDraft) -> str:
    """A digest of everything a draft says, so an unchanged draft is recognised without keeping
    what it says (its body lists clients)."""
    return hashlib.sha256(draft.model_dump_json().encode()).hexdigest()
