"""Rows of the state tables that are not booking-platform contract models (those live in
``shared.models``): what calbridge keeps about connections, mailboxes, Graph subscriptions and
outbound webhooks. Field names become property names (camelCase); see ``entities``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, StringConstraints

from shared.models import (
    CamelModel,
    ConnectionConfig,
    EmailAddress,
    Health,
    Identifier,
    MailboxRef,
)

ErrorText = Annotated[str, StringConstraints(max_length=2000)]


class ConnectionRecord(ConnectionConfig):
    """A row of Connections (org / connectionId): the admin's configuration plus its health."""

    connection_id: Identifier
    health: Health | None = None
    health_detail: ErrorText | None = None
    # With ``auth_failed``: a digest of the secret Exchange refused, so a changed secret is
    # noticed (see ``shared.connections.secret_fingerprint``); never the secret.
    failed_secret_fingerprint: Annotated[str, StringConstraints(max_length=64)] | None = None
    # With ``auth_failed``: when the slow retry last tried the refused credentials on one
    # mailbox (``shared.connections.AUTH_RETRY_EVERY``).
    auth_retried_at: AwareDatetime | None = None


class MailboxRecord(MailboxRef):
    """A row of Mailboxes (org / staffId): where the staff member's calendar lives and how far
    its sync has got.

    ``sync_state`` is the EWS SyncFolderItems state or the Graph delta link: advanced only after
    the changes it covers are durable. ``sync_pending_since`` is set when a ``mailbox-sync``
    message is queued and cleared when the sync finishes, so the poll fan-out can skip mailboxes
    whose last request is still queued.
    """

    sync_state: str | None = None
    sync_pending_since: AwareDatetime | None = None
    last_sync_at: AwareDatetime | None = None
    # The last full read of the calendar (the daily drift repair, and after a lost cursor).
    last_full_read_at: AwareDatetime | None = None
    health: Health | None = None
    lag_seconds: Annotated[float, Field(ge=0)] | None = None
    last_error: ErrorText | None = None
    # Whether this staff member's Exchange calendar counts for their availability at all.
    busy_time: bool = True
    # A sync held back by the mass-cancellation guard: why, and since when (None: not held).
    held: ErrorText | None = None
    # Deliveries of change notifications for the mailbox (Graph push), counted by the
    # notification endpoint. A sync that ends seeing a larger count than when it began syncs
    # again: what arrived meanwhile may not be in what it read.
    notices: Annotated[int, Field(ge=0)] = 0
    # Why the mailbox has no working change-notification subscription (Graph), None when it
    # has one or needs none; the sweep reads the mailbox meanwhile.
    subscription_error: ErrorText | None = None
    # The mailbox moved to another connection (or address): its next full read is a new
    # baseline. What calbridge knew under the old ids is forgotten without being reported, the
    # appointments calbridge made are adopted by their marker, and only real differences in
    # busy time are told.
    rebaseline: bool = False
    # A digest of the cursor (``sync_state``) after which a sync is writing rows it has not yet
    # stored its own cursor for (None: none). Cleared with the cursor; found still set to the
    # digest of the cursor a sync starts from, it says the sync before died (or failed) after
    # writing rows for changes it read: their items are looked up if the read does not report
    # them again (Exchange reports nothing for an item made and deleted since a cursor).
    written_past: Annotated[str, StringConstraints(max_length=64)] | None = None


class MailboxItemKind(StrEnum):
    """What an item of a staff member's calendar is to calbridge."""

    BUSY = "busy"  # someone's own event: busy time (or none, when free/cancelled)
    APPOINTMENT = "appointment"  # the organizer's item calbridge wrote (its marker says which)
    COPY = "copy"  # an attendee's copy of calbridge's meeting (found by UID): not busy time


class MailboxItemRecord(CamelModel):
    """A row of MailboxItems (org|staffId / itemId): what calbridge knows of one item of a
    staff member's calendar, vdirsyncer-style: the change key and a hash of the fields that
    matter, so a change key that moved without a real change emits nothing, a deletion knows
    what it deletes, and a full read tells real differences from what is already known."""

    item_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    kind: MailboxItemKind
    change_key: str | None = None
    content_hash: Annotated[str, StringConstraints(max_length=64)] = ""
    appointment_id: Identifier | None = None
    uid: Annotated[str, StringConstraints(max_length=1024)] | None = None
    # For busy time: the busy blocks written for it (occurrence ids; "" for a single event).
    occurrences: list[str] = []
    # For busy time: whether the staff member's calendar counted for availability when the item
    # was read (a full read after the switch changes decides every busy item again).
    counted: bool = True
    # False for an item calbridge wrote that no sync of the mailbox has read yet: Exchange does
    # not report an item made and deleted between two syncs, so the sync looks for it.
    confirmed: bool = True
    # When the item takes place, as last read (None: not known, e.g. a series master): a
    # windowed reader (Graph's calendarView delta) does not see items outside its window, which
    # are therefore not taken for deleted.
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    # The digest of the cursor the incremental read that wrote this row started from (None: a
    # full read, or calbridge's own write); see ``MailboxRecord.written_past``.
    read_after: Annotated[str, StringConstraints(max_length=64)] | None = None


class AppointmentUidRecord(CamelModel):
    """A row of AppointmentUids (org / iCalendar UID): which appointment a meeting's UID
    belongs to, so attendees' copies are recognised in their calendars."""

    uid: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    appointment_id: Identifier
    # The mapping's generation that made the meeting (``EventMapping.generation``): a copy of an
    # earlier generation's meeting outlived it (None: a row written before generations were kept).
    generation: int | None = None


class SubscriptionRecord(CamelModel):
    """A row of Subscriptions (org / subscriptionId): one Graph change-notification
    subscription on a staff member's mailbox. Only a hash of the clientState is kept
    (``shared.push.notifications.client_state_hash``); ``notification_url`` is where Graph was
    told to post (a subscription for an old address is replaced)."""

    subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    connection_id: Identifier
    staff_id: Identifier
    mailbox: EmailAddress
    expires_at: AwareDatetime
    client_state_hash: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    notification_url: Annotated[str, StringConstraints(max_length=2048)] = ""


class OutboxRecord(CamelModel):
    """A row of Outbox (org / eventId): one outbound webhook and its delivery progress.

    ``payload`` is the exact JSON body to sign and send (the event envelope), so retries send
    identical bytes. ``next_attempt_at`` is when the row's next try is due while it is neither
    delivered nor dead-lettered (set when the row is made and at each retry or replay, cleared
    once it is settled): a row left overdue lost its queue message, and the sweep
    (``shared.webhooks.sweep``) queues it again.
    """

    event_id: Identifier
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    payload: str
    attempts: Annotated[int, Field(ge=0)] = 0
    next_attempt_at: AwareDatetime | None = None
    delivered_at: AwareDatetime | None = None
    # The booking platform's HTTP status for the delivered request (409: it refused the change).
    answer_status: Annotated[int, Field(ge=100, le=599)] | None = None
    dead_lettered: bool = False
    last_error: ErrorText | None = None

    def tried_afresh(self, now: datetime) -> OutboxRecord:
        """The row sent again by a replay: its tries start over, due at once."""
        return self.model_copy(
            update={"attempts": 0, "dead_lettered": False, "next_attempt_at": now}
        )


class ParkedChangeRecord(CamelModel):
    """A row of ParkedChanges (org / appointmentId): an appointment change held back because a
    connection it needs is disabled for maintenance; re-queued when the connection is enabled."""

    appointment_id: Identifier
    connection_id: Identifier
    parked_at: AwareDatetime
    # The appointment's organizer, whose mailbox the status API shows the change under (None
    # in rows written before it was kept: the status then reads the snapshot).
    organizer_staff_id: Identifier | None = None


class DeadLetterRecord(CamelModel):
    """A row of DeadLetters (org / queue|subjectId): work that failed on its last try and went
    to the poison queue, with the reason (ids and error text only, never content)."""

    queue: Annotated[str, StringConstraints(min_length=1, max_length=63)]
    subject_id: Identifier
    message: dict[str, str | int]
    reason: ErrorText
    dequeue_count: Annotated[int, Field(ge=0)]
    failed_at: AwareDatetime


# How an ApplyProblems row recording a refused Outlook move begins: the booking platform answered
# 409 to ``appointment.rescheduled`` and the event was moved back (``shared.webhooks.delivery``);
# the status API counts these as refused reschedules.
REFUSED_RESCHEDULE_PROBLEM = "the booking platform refused the move made in Outlook (HTTP 409)"


class ApplyProblemRecord(CamelModel):
    """A row of ApplyProblems (org / appointmentId): why Exchange does not show the
    appointment's latest snapshot yet (a staff member without a mailbox, a missing connection,
    Exchange throttling every try). Cleared by the next pass that has no problem; shown by the
    status API.

    Throttling is recorded too, so an appointment that Exchange keeps refusing is visible:
    ``throttled_since`` is the first throttled try of the current run of them and
    ``throttled_tries`` how many tries have been throttled since (None / 0 otherwise).
    """

    appointment_id: Identifier
    version: Annotated[int, Field(ge=0)]
    problem: ErrorText
    recorded_at: AwareDatetime
    throttled_since: AwareDatetime | None = None
    throttled_tries: Annotated[int, Field(ge=0)] = 0
    # The appointment's organizer, whose mailbox the status API shows the problem under (None
    # when not known to the writer: the status then reads the snapshot).
    organizer_staff_id: Identifier | None = None
