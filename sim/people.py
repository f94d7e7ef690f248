"""Acting as a member of staff in Outlook, in-process: what a person does to their own
calendar (create events and meetings, move, rename, cancel, delete, respond to invitations,
mark private, create a recurring series, edit or delete one occurrence).

Built only on ExchangeStore methods, with the choices Outlook makes: a meeting with attendees
is sent to them (invitations, updates and cancellations go to all attendees), responses are
sent to the organizer, and times typed by the person are in their mailbox's time zone unless
aware datetimes are given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sim.store import (
    Attendee,
    CalendarItem,
    ExchangeStore,
    FreeBusy,
    Recurrence,
    ResponseType,
    SendMode,
    Sensitivity,
    SimError,
    iter_attendees,
)

# Outlook sends to everybody and keeps a copy in Sent Items.
OUTLOOK_SEND = SendMode.ALL_AND_SAVE_COPY


class Outlook:
    """One person's Outlook: ``Outlook(store, "ann@contoso.test")``."""

    def __init__(self, store: ExchangeStore, address: str) -> None:
        self.store = store
        self.mailbox = store.mailbox(address)

    @property
    def address(self) -> str:
        return self.mailbox.address

    # --- helpers --------------------------------------------------------------------------
    def _zone(self, time_zone: str | None) -> str:
        return time_zone or self.mailbox.time_zone

    def _instant(self, value: datetime | date, time_zone: str) -> datetime:
        """A naive time is wall-clock time in ``time_zone``; a date is its midnight."""
        if not isinstance(value, datetime):
            value = datetime.combine(value, time())
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo(time_zone))
        return value.astimezone(UTC)

    @staticmethod
    def _attendees(addresses: Iterable[str | Attendee]) -> list[Attendee]:
        return [a if isinstance(a, Attendee) else Attendee(a.lower()) for a in addresses]

    def _mine(self, item_id: str) -> CalendarItem:
        item = self.store.get_item(item_id)
        if item.mailbox != self.address:
            raise SimError("ErrorItemNotFound", "That item is not in this calendar.")
        return item

    def _send_mode(self, item: CalendarItem) -> SendMode:
        """Outlook sends updates for meetings the person organizes; plain appointments and
        attendee copies change silently."""
        if item.is_organizer and any(True for _ in iter_attendees(item)):
            return OUTLOOK_SEND
        return SendMode.NONE

    # --- reading --------------------------------------------------------------------------
    def items(self) -> list[CalendarItem]:
        """Singles and series masters in this calendar."""
        return self.store.calendar_items(self.address)

    def view(self, start: datetime | date, end: datetime | date) -> list[CalendarItem]:
        zone = self.mailbox.time_zone
        return self.store.calendar_view(
            self.address, self._instant(start, zone), self._instant(end, zone)
        )

    def find(self, *, subject: str | None = None, uid: str | None = None) -> list[CalendarItem]:
        """Items (singles/masters) with this subject and/or iCalendar UID."""
        return [
            item
            for item in self.items()
            if (subject is None or item.subject == subject) and (uid is None or item.uid == uid)
        ]

    def invitation(self, uid: str) -> CalendarItem:
        """This person's copy of a meeting (by the organizer's UID)."""
        found = self.find(uid=uid)
        if not found:
            raise SimError("ErrorItemNotFound", f"No meeting with UID {uid} in {self.address}.")
        return found[0]

    def occurrence(self, master_id: str, index: int) -> CalendarItem:
        """The index-th (1-based) occurrence of one of this person's series."""
        self._mine(master_id)
        return self.store.occurrence_by_index(master_id, index)

    # --- creating -------------------------------------------------------------------------
    def create_event(
        self,
        subject: str,
        start: datetime | date,
        end: datetime | date,
        *,
        attendees: Sequence[str | Attendee] = (),
        optional_attendees: Sequence[str | Attendee] = (),
        body: str = "",
        location: str = "",
        time_zone: str | None = None,
        is_all_day: bool = False,
        private: bool = False,
        free_busy: FreeBusy = FreeBusy.BUSY,
        recurrence: Recurrence | None = None,
        send: bool = True,
    ) -> CalendarItem:
        """An appointment, or a meeting when attendees are given (invitations are sent unless
        ``send`` is False, which leaves it as an unsent draft)."""
        zone = self._zone(time_zone)
        item = CalendarItem(
            id="",
            mailbox=self.address,
            subject=subject,
            body=body,
            start=self._instant(start, zone),
            end=self._instant(end, zone),
            time_zone=zone,
            is_all_day=is_all_day,
            location=location,
            sensitivity=Sensitivity.PRIVATE if private else Sensitivity.NORMAL,
            free_busy=free_busy,
            required_attendees=self._attendees(attendees),
            optional_attendees=self._attendees(optional_attendees),
            recurrence=recurrence,
        )
        return self.store.create_item(self.address, item, OUTLOOK_SEND if send else SendMode.NONE)

    def create_series(
        self,
        subject: str,
        start: datetime | date,
        end: datetime | date,
        recurrence: Recurrence,
        **options: Any,
    ) -> CalendarItem:
        """A recurring series (``start``/``end``: the first occurrence's times)."""
        return self.create_event(subject, start, end, recurrence=recurrence, **options)

    # --- changing -------------------------------------------------------------------------
    def update(self, item_id: str, **changes: Any) -> CalendarItem:
        """Change fields (CalendarItem attribute names); naive times are in the item's zone.
        An organizer's meeting sends the update to its attendees."""
        item = self._mine(item_id)
        zone = str(changes.get("time_zone") or item.time_zone)
        for name in ("start", "end"):
            if name in changes and changes[name] is not None:
                changes[name] = self._instant(changes[name], zone)
        for name in ("required_attendees", "optional_attendees"):
            if name in changes:
                changes[name] = self._attendees(changes[name])
        return self.store.update_item(
            self.address, item_id, changes, send=self._send_mode(item), always_overwrite=True
        )

    def move(self, item_id: str, start: datetime | date, end: datetime | date) -> CalendarItem:
        return self.update(item_id, start=start, end=end)

    def rename(self, item_id: str, subject: str) -> CalendarItem:
        return self.update(item_id, subject=subject)

    def mark_private(self, item_id: str, private: bool = True) -> CalendarItem:
        return self.update(
            item_id, sensitivity=Sensitivity.PRIVATE if private else Sensitivity.NORMAL
        )

    def edit_occurrence(self, master_id: str, index: int, **changes: Any) -> CalendarItem:
        """Change one occurrence (it becomes an exception)."""
        occurrence = self.occurrence(master_id, index)
        master = self._mine(master_id)
        zone = master.time_zone
        for name in ("start", "end"):
            if name in changes and changes[name] is not None:
                changes[name] = self._instant(changes[name], zone)
        return self.store.update_item(
            self.address,
            occurrence.id,
            changes,
            send=self._send_mode(master),
            always_overwrite=True,
        )

    # --- removing -------------------------------------------------------------------------
    def cancel(self, item_id: str, comment: str = "") -> None:
        """The organizer cancels a meeting (attendees receive the cancellation; a meeting with
        nobody to send it to is refused with SimError("ErrorInvalidRecipients"))."""
        self._mine(item_id)
        self.store.cancel_meeting(self.address, item_id, comment, save_copy=True)

    def delete(self, item_id: str) -> None:
        """Delete from this calendar; an organizer's meeting is cancelled for attendees."""
        item = self._mine(item_id)
        self.store.delete_item(self.address, item_id, self._send_mode(item))

    def delete_occurrence(self, master_id: str, index: int) -> None:
        occurrence = self.occurrence(master_id, index)
        master = self._mine(master_id)
        self.store.delete_item(self.address, occurrence.id, self._send_mode(master))

    # --- responding -----------------------------------------------------------------------
    def accept(self, item_id: str, *, send_response: bool = True) -> CalendarItem | None:
        self._mine(item_id)
        return self.store.respond(
            self.address, item_id, ResponseType.ACCEPT, send_response=send_response
        )

    def tentatively_accept(
        self, item_id: str, *, send_response: bool = True
    ) -> CalendarItem | None:
        self._mine(item_id)
        return self.store.respond(
            self.address, item_id, ResponseType.TENTATIVE, send_response=send_response
        )

    def decline(self, item_id: str, *, send_response: bool = True) -> None:
        self._mine(item_id)
        self.store.respond(self.address, item_id, ResponseType.DECLINE, send_response=send_response)
