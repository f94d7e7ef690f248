"""The bodies and headers of the HTTP contract that are not domain models (those live in
``shared.models``): what the routes answer, and the admin API's staff assignment. The OpenAPI
document is generated from these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from shared.models import (
    CamelModel,
    ConnectionKind,
    EmailAddress,
    Health,
    Identifier,
    TimeZoneName,
)

# The booking platform's HMAC signature (``shared.booking.signature``).
SIGNATURE_HEADER = "X-Calbridge-Signature"
# The organization administrator's key (``shared.admin``), beside the host's function key.
ADMIN_KEY_HEADER = "X-Calbridge-Admin-Key"


class AppointmentAccepted(CamelModel):
    """202: the snapshot is stored (or was already) and Exchange will be brought in line."""

    accepted: Literal[True] = True
    version: int


class AppointmentStale(CamelModel):
    """200: a newer version is already stored; this snapshot was ignored."""

    accepted: Literal[False] = False
    reason: Literal["stale"] = "stale"
    stored_version: int


class StaffMailboxAssignment(CamelModel):
    """``PUT .../staff/{staffId}``: a staff member's mailbox and the connection reaching it."""

    connection_id: Identifier
    mailbox: EmailAddress
    time_zone: TimeZoneName
    # Whether the staff member's own Exchange events count as busy time for their availability.
    busy_time: bool = True


class ConnectionSaved(CamelModel):
    connection_id: str
    created: bool
    requeued_parked_changes: int = 0


class StaffSaved(CamelModel):
    model_config = ConfigDict(frozen=True)

    staff_id: str
    connection_id: str
    mailbox: str
    created: bool
    sync_reset: bool


class WebhookReplayed(CamelModel):
    """202: the event is queued for delivery again."""

    event_id: str
    queued: Literal[True] = True


# --- GET .../status: the organization's health at a glance ----------------------------------
# Ids, times, counts and the error texts calbridge stored (which never hold a secret, an event's
# content or a client's details); no connection setting beyond its kind.


class ResyncProgress(CamelModel):
    """A connection's mailboxes read in full since their resync was asked for (a mailbox is
    resyncing until its next full read)."""

    done: int
    total: int


class PendingWork(CamelModel):
    """Work waiting: appointment changes parked while a connection is disabled, appointments
    Exchange does not fully show yet (``ApplyProblems``), webhooks not delivered yet."""

    parked: int = 0
    apply_problems: int = 0
    undelivered_webhooks: int = 0


class DeadLetteredWork(CamelModel):
    """Work given up after its last try, until replayed: poison-queue messages (``DeadLetters``,
    webhook deliveries aside) and dead-lettered webhooks."""

    dead_letters: int = 0
    webhooks: int = 0


class ConnectionStatus(CamelModel):
    connection_id: str
    kind: ConnectionKind
    enabled: bool
    # ``disabled`` whenever the connection is disabled; ``ok`` until a worker found otherwise.
    health: Health
    last_error: str | None = None
    mailboxes: int
    resync: ResyncProgress
    parked: int


class MailboxStatus(CamelModel):
    staff_id: str
    mailbox: str
    connection_id: str
    # null: the mailbox has not been read yet.
    health: Health | None = None
    last_error: str | None = None
    last_synced_at: datetime | None = None
    # Seconds since the last successful sync (null: never synced).
    lag_seconds: float | None = None
    sync_pending_since: datetime | None = None
    # Why a sync was held back (the mass-cancellation guard), null when not held.
    held: str | None = None
    # The last full read of the calendar; null while resyncing (waiting for a full read: a
    # resync asked for, a new mailbox, a lost cursor).
    last_full_read_at: datetime | None = None
    resyncing: bool
    pending: PendingWork
    dead_lettered: DeadLetteredWork
    # Outlook moves the booking platform refused (409): moved back to the booked time.
    refused_reschedules: int = 0
    # Graph mailboxes: when the change-notification subscription expires, and why there is
    # none when there is none.
    subscription_expires_at: datetime | None = None
    subscription_error: str | None = None


class DeadLetterEntry(CamelModel):
    """One piece of dead-lettered work, newest first (replayable one by one)."""

    queue: str
    subject_id: str
    staff_id: str | None = None
    reason: str
    failed_at: datetime | None = None


class StatusError(CamelModel):
    """One of the newest errors of the organization. ``at`` is null for a current state that
    carries no time (a connection's or mailbox's health)."""

    at: datetime | None = None
    source: Literal["connection", "mailbox", "apply", "deadLetter", "webhook"]
    connection_id: str | None = None
    staff_id: str | None = None
    # The appointment, event or message the error concerns.
    subject_id: str | None = None
    message: str


class OrgStatus(CamelModel):
    """``GET .../status``."""

    org: str
    generated_at: datetime
    connections: list[ConnectionStatus]
    mailboxes: list[MailboxStatus]
    pending: PendingWork
    dead_lettered: DeadLetteredWork
    dead_letters: list[DeadLetterEntry]
    errors: list[StatusError]


# --- Graph change notifications (Microsoft's format, received) ---------------------------------
# https://learn.microsoft.com/graph/change-notifications-delivery-webhooks and
# https://learn.microsoft.com/graph/change-notifications-lifecycle-events. Unknown fields are
# ignored (Graph adds fields over time); calbridge reads the subscription id, the clientState and,
# for lifecycle notifications, the event.


class GraphNotification(CamelModel):
    """One change or lifecycle notification as Graph posts it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    client_state: Annotated[str, StringConstraints(max_length=256)] | None = None
    change_type: Annotated[str, StringConstraints(max_length=64)] | None = None
    lifecycle_event: Annotated[str, StringConstraints(max_length=64)] | None = None
    tenant_id: Annotated[str, StringConstraints(max_length=64)] | None = None


class GraphNotificationBatch(CamelModel):
    """What Graph posts to a notification or lifecycle URL: ``{"value": [...]}``."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    value: Annotated[list[GraphNotification], Field(min_length=1, max_length=1000)]
