"""Bodies of the administrator's connection operations: reading connections back, maintenance,
the connection test, resync and replay."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from shared.models import CamelModel, ConnectionConfig, Health, Identifier

ReplayQueue = Literal[
    "appointment-changes", "mailbox-sync", "mailbox-subscriptions", "webhook-deliveries"
]


class ConnectionView(ConnectionConfig):
    """A connection as stored (``GET .../connections[/{id}]``): its settings — secret by
    reference only, never the secret — its health, the last error, and its mailboxes' resync
    progress (``mailboxesRead`` of ``mailboxes`` have been read in full since their last
    resync)."""

    connection_id: str
    health: Health | None = None
    last_error: str | None = None
    mailboxes: int = 0
    mailboxes_read: int = 0


class ConnectionList(CamelModel):
    """``GET .../connections``: every connection of the organization, by id."""

    connections: list[ConnectionView]


class ConnectionState(CamelModel):
    """The answer of ``disable`` and ``enable``."""

    connection_id: str
    enabled: bool
    health: Health | None = None
    # Enable: the changes held back meanwhile, queued again; the mailboxes read from their
    # stored cursors to catch up on Exchange-side changes.
    requeued_parked_changes: int = 0
    syncs_queued: int = 0


class MailboxTest(CamelModel):
    """One mailbox's test: whether calbridge can read and write its calendar, with which access
    mode, and why not."""

    staff_id: str
    mailbox: str
    access_mode: str
    can_read: bool
    can_write: bool
    problem: str | None = None
    detail: str | None = None


class ConnectionTest(CamelModel):
    """``POST .../connections/{id}/test``: ``ok`` when every mailbox can be read and written."""

    connection_id: str
    kind: str
    auth_type: str
    access_mode: str
    ok: bool
    health: Health | None = None
    mailboxes: list[MailboxTest]


class ResyncQueued(CamelModel):
    """The mailboxes whose calendars will be read in full; progress in ``GET .../connections``
    (``mailboxesRead``) and each mailbox's ``lastFullReadAt`` in the status."""

    connection_id: str | None = None
    staff_ids: list[str]


class ReplayRequest(CamelModel):
    """``POST .../replay``: no body (or ``{}``) replays every dead-lettered and poison item of
    the organization; ``queue`` and ``id`` together replay one (``id``: the appointment, staff
    member or webhook event id the dead letter names)."""

    queue: ReplayQueue | None = None
    id: Identifier | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> ReplayRequest:
        if (self.queue is None) != (self.id is None):
            raise ValueError("queue and id go together (both to replay one item, neither for all)")
        return self


class ReplayedItem(CamelModel):
    queue: str
    id: str
    source: Literal["dead_letter", "poison", "outbox"]


class ReplayReport(CamelModel):
    replayed: list[ReplayedItem]
    count: Annotated[int, Field(ge=0)]
    at: AwareDatetime
