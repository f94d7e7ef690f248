"""Exchange → booking: what staff did in Outlook to the appointments calbridge wrote.

Pure: the organizer's item as Exchange shows it now (or its deletion), the stored mapping and
the newest snapshot → the events to tell the booking platform and the mapping to store.

The rules
---------
- **Echo**: an item whose change key is the one the mapping stored after calbridge's last write
  is calbridge's own write: nothing to tell. So is an item at the times calbridge's last write
  stamped on it (``ExchangeEvent.shows_written``) that the mapping has not recorded yet — a
  write whose mapping is still being stored, or one for an older snapshot that a concurrent
  delivery overtook: no move is told, and when the newest snapshot wants other times the mapping
  is marked ``in_doubt`` so the apply worker looks at the item before trusting it.
- **Moved** by the organizer: ``appointment.rescheduled`` with the new time, once per move. The
  mapping remembers the move (``outlook_start``/``outlook_end``) until the booking platform
  answers with a newer snapshot, so a redelivered or older snapshot does not move it back
  (``shared.engine.reconcile``); a move back to the booked time forgets it.
- **Cancelled or deleted** by the organizer: ``appointment.cancelled``, and the secondary staff's
  copies are cancelled too (the organizer may have deleted the item without sending
  cancellations). Not when the snapshot itself is cancelled or names another organizer: then the
  deletion is calbridge's own cancellation or hand-over — but a cancelled snapshot's copies are
  still made sure of (no event told): the organizer may have deleted the item without sending
  cancellations just before the booking platform cancelled, and calbridge's cancellation then
  found nothing left to send them from.
- **Declined** by a secondary staff member: ``appointment.staff_declined``, once per staff
  member; the appointment stays booked.
- Other edits (title, location, body) are not reported: the next snapshot restores them.
- **A copy that outlived its meeting** (``copy_outlived``): a secondary's live copy of a meeting
  calbridge no longer keeps — an earlier generation's (handed over, or made again after the
  organizer deleted it), or the mapping's own meeting cancelled — is cancelled when the
  secondary's mailbox is read. Its cancellation may never have come: the organizer deleted the
  meeting without sending any while that mailbox's connection could not be called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from shared.exchange.port import ExchangeEvent, ResponseType
from shared.models import AppointmentSnapshot, AppointmentStatus, EventMapping


@dataclass(frozen=True)
class AppointmentRescheduled:
    appointment_id: str
    start: datetime
    end: datetime
    by: str  # the organizer's staff id


@dataclass(frozen=True)
class AppointmentCancelled:
    appointment_id: str
    by: str


@dataclass(frozen=True)
class StaffDeclined:
    appointment_id: str
    staff_id: str


OutlookEvent = AppointmentRescheduled | AppointmentCancelled | StaffDeclined


@dataclass(frozen=True)
class OutlookVerdict:
    """What an Outlook-side change means: events for the booking platform, the mapping to store
    (None: unchanged), and whether the secondary staff's copies must be cancelled."""

    events: tuple[OutlookEvent, ...] = ()
    mapping: EventMapping | None = None
    cancel_copies: bool = False
    reason: str = "unchanged"
    # The appointment's copies to make sure are cancelled, nothing told (see the rules).
    ensure_copies_cancelled: EventMapping | None = None


NOTHING = OutlookVerdict()


def _booked_by_organizer(snapshot: AppointmentSnapshot | None, mapping: EventMapping) -> bool:
    """The snapshot still wants this organizer's event: a change to it is the staff's."""
    return (
        snapshot is not None
        and snapshot.status is AppointmentStatus.BOOKED
        and snapshot.organizer_staff_id == mapping.organizer_staff_id
        and not mapping.cancelled
    )


def organizer_item_changed(
    appointment_id: str,
    event: ExchangeEvent,
    mapping: EventMapping | None,
    snapshot: AppointmentSnapshot | None,
    staff_by_address: Mapping[str, str],
) -> OutlookVerdict:
    """The organizer's item of an appointment, as it is now in Exchange."""
    if mapping is None or mapping.item_id != event.item_id:
        return OutlookVerdict(reason="not the mapped item")
    if event.change_key is not None and event.change_key == mapping.change_key:
        return OutlookVerdict(reason="echo")
    if not _booked_by_organizer(snapshot, mapping):
        return OutlookVerdict(reason="calbridge is changing it")
    assert snapshot is not None
    if event.is_cancelled:
        return _cancelled(appointment_id, mapping)

    events: list[OutlookEvent] = []
    updates: dict[str, object] = {"change_key": event.change_key}
    # Measured against what calbridge applied: a newer snapshot waiting for the apply worker
    # does not make the event look moved.
    booked = (
        (mapping.booked_start, mapping.booked_end)
        if mapping.booked_start is not None and mapping.booked_end is not None
        else (snapshot.start, snapshot.end)
    )
    reported = (mapping.outlook_start, mapping.outlook_end) if mapping.outlook_start else booked
    now = (event.start, event.end)
    # calbridge's own write the mapping has not recorded yet: the item shows the times of
    # calbridge's last write (an Outlook move would not), and they are neither the booked nor
    # the reported ones. Two deliveries at once can leave a write for an older snapshot there
    # while the mapping names another; the apply worker is told to look (``in_doubt``).
    unrecorded = event.shows_written and now not in (booked, reported)
    # Where a newer snapshot puts it: the apply worker's write, its mapping not stored yet.
    writing = unrecorded or (
        snapshot.version > mapping.applied_version and now == (snapshot.start, snapshot.end)
    )
    if unrecorded and now != (snapshot.start, snapshot.end):
        updates["in_doubt"] = True
    if now != reported and not writing:
        events.append(
            AppointmentRescheduled(
                appointment_id, event.start, event.end, by=mapping.organizer_staff_id
            )
        )
    moved = now != booked and not writing
    updates["outlook_start"] = event.start if moved else None
    updates["outlook_end"] = event.end if moved else None

    declined = list(mapping.declined_staff_ids)
    secondaries = set(snapshot.secondary_staff_ids)
    for attendee in event.attendees:
        staff_id = staff_by_address.get(attendee.address)
        if (
            attendee.response is ResponseType.DECLINED
            and staff_id in secondaries
            and staff_id not in declined
        ):
            declined.append(staff_id)
            events.append(StaffDeclined(appointment_id, staff_id))
    updates["declined_staff_ids"] = declined
    updated = mapping.model_copy(update=updates)
    return OutlookVerdict(
        events=tuple(events),
        mapping=updated if updated != mapping else None,
        reason="changed in Outlook" if events else "edited in Outlook",
    )


def adopted_after_move(
    event: ExchangeEvent, mapping: EventMapping | None, mailbox: str, connection_id: str
) -> EventMapping | None:
    """The mapping of an appointment whose organizer's mailbox moved to another connection,
    pointed at the item as the new connection names it (found there by its marker, which
    survives the move); None when there is nothing to adopt. The change key is kept as it was:
    judging the item against it then tells a real Outlook change made meanwhile from what is
    already known."""
    if mapping is None or mapping.item_id == event.item_id or mapping.cancelled:
        return None
    if mapping.connection_id == connection_id or mapping.mailbox.lower() != mailbox.lower():
        return None
    return mapping.model_copy(update={"item_id": event.item_id, "connection_id": connection_id})


def organizer_item_deleted(
    appointment_id: str,
    item_id: str,
    mapping: EventMapping | None,
    snapshot: AppointmentSnapshot | None,
) -> OutlookVerdict:
    """The organizer's item of an appointment is gone from the organizer's calendar."""
    if mapping is None or mapping.item_id != item_id:
        return OutlookVerdict(reason="not the mapped item")
    if not _booked_by_organizer(snapshot, mapping):
        if snapshot is not None and snapshot.status is AppointmentStatus.CANCELLED:
            return OutlookVerdict(
                reason="cancelled by the booking platform", ensure_copies_cancelled=mapping
            )
        return OutlookVerdict(reason="calbridge cancelled or handed it over")
    return _cancelled(appointment_id, mapping)


def _cancelled(appointment_id: str, mapping: EventMapping) -> OutlookVerdict:
    return OutlookVerdict(
        events=(AppointmentCancelled(appointment_id, by=mapping.organizer_staff_id),),
        mapping=mapping.model_copy(update={"cancelled": True}),
        cancel_copies=True,
        reason="cancelled in Outlook",
    )


def copy_outlived(uid: str, generation: int | None, mapping: EventMapping | None) -> bool:
    """Whether a live copy of the appointment's meeting ``uid`` (made by the mapping generation
    ``generation``) belongs to a meeting calbridge no longer keeps. Never while the mapping is
    unsettled (a create or a write whose outcome is not recorded: the copy may be of the meeting
    being made), nor for a meeting whose generation is not known. A cancelled mapping is
    settled with or without an item id (a pending create's meeting removed in Outlook before
    its outcome was stored keeps only its UID)."""
    if mapping is None or generation is None or mapping.in_doubt:
        return False
    if mapping.item_id is None and not mapping.cancelled:
        return False
    if generation < mapping.generation:
        return True
    return generation == mapping.generation and mapping.uid == uid and mapping.cancelled
