"""The fan-outs that queue ``mailbox-sync`` messages on a timer: the EWS poll (every minute) and
the Graph sweep (every 15 minutes).

**Poll** (EWS): one message per mailbox whose organization's poll interval has passed since its
last sync. **Sweep** (Graph): one message per mailbox, whatever the notifications did — Graph
may drop notifications, or stop sending them for hours, and a delta round catches up on
everything since the stored delta link. Either way a mailbox with a sync still pending is
skipped (``pending.claim_many``: the mark is set under the row's ETag before the message is
sent, and expires, so a lost message never stalls a mailbox), and a mailbox whose last full
read is a day old gets a full read (drift repair, and the recurrence horizon — for Graph the
delta window — rolled forward).

Not read: mailboxes of a disabled connection, and of a connection whose credentials Exchange
refused (``auth_failed``) until its configuration or its secret changes — except by the slow
retry: every ``AUTH_RETRY_EVERY`` one mailbox of such a connection is read with the refused
credentials (a password fixed on the Exchange side, or a secret fixed in Key Vault that this
process still reads as it was), and a success recovers the connection
(``shared.connections.recover``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from shared.config import SecretResolver
from shared.connections import (
    AUTH_RETRY,
    AUTH_RETRY_EVERY,
    connection_secrets_fingerprint,
    requeue_parked,
)
from shared.mailbox_sync.pending import PENDING_EXPIRY, claim_many
from shared.mailbox_sync.service import FULL_READ
from shared.models import Health
from shared.queues import ListedMailbox, MailboxSyncRequested, QueueSender, message_body
from shared.store import ConcurrencyConflict, Repositories, Versioned
from shared.store.records import ConnectionRecord, MailboxRecord
from shared.store.threads import storage_executor

log = logging.getLogger(__name__)

__all__ = ["FULL_READ_EVERY", "PENDING_EXPIRY", "FanOutReport", "GraphSweep", "PollFanOut"]

FULL_READ_EVERY: Final = timedelta(days=1)
# A message carries its mailbox's row only while it stays this small (a sync state can be
# large; a queue message holds at most 64 KiB, base64-encoded).
LISTED_MESSAGE_LIMIT: Final = 16 * 1024
# A mailbox synced a little less than an interval ago is due: the timer's minute has jitter.
_SLACK: Final = timedelta(seconds=5)


@dataclass(frozen=True)
class FanOutReport:
    queued: int
    skipped_connections: int


class PollFanOut:
    """The EWS poll: mailboxes of ``ews`` connections whose poll interval has passed."""

    kind: Literal["ews", "graph"] = "ews"
    reason = "poll"

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        secrets: SecretResolver,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._secrets = secrets
        self._now = now

    def _synced_within(self, org: str) -> timedelta | None:
        """A mailbox synced more recently than this is not due (None: every mailbox is)."""
        interval = timedelta(seconds=self._repos.settings.settings_of(org).poll_interval_seconds)
        return interval - _SLACK

    def run(self) -> FanOutReport:
        now = self._now()
        skipped = 0
        mailboxes_of: dict[str, dict[str, Versioned[MailboxRecord]]] = {}
        due: dict[str, dict[str, Versioned[MailboxRecord]]] = {}
        connection_etags: dict[tuple[str, str], str] = {}
        synced_within: dict[str, timedelta | None] = {}
        retries: list[tuple[str, str]] = []
        for org, row in self._repos.connections.every_org():
            connection = row.value
            polled = self._polled(org, connection, row.etag)
            if polled is False:
                if self._retry_due(org, row, now):
                    retries.append((org, connection.connection_id))
                skipped += 1
                continue
            connection_etags[org, connection.connection_id] = row.etag
            if org not in mailboxes_of:
                mailboxes_of[org] = self._repos.mailboxes.list_by_org(org)
                synced_within[org] = self._synced_within(org)
            due.setdefault(org, {}).update(
                (staff_id, mailbox)
                for staff_id, mailbox in mailboxes_of[org].items()
                if mailbox.value.connection_id == connection.connection_id
            )
        # Each organization's due mailboxes are claimed together (a transaction per hundred
        # rows, under the ETags they were listed with), then their messages sent side by side:
        # thousands of mailboxes fit well inside the timer's minute.
        messages = [
            self._message(
                org,
                claimed,
                connection_etags[org, claimed.value.connection_id],
                now,
            )
            for org in due
            for _, claimed in sorted(
                claim_many(
                    self._repos, org, due[org], now, synced_within=synced_within[org]
                ).items()
            )
        ]
        for _ in storage_executor().map(self._queue.send, messages):
            pass
        queued = len(messages)
        for org, connection_id in retries:
            queued += self._queue_auth_retry(org, connection_id)
        log.info("%s fan-out queued %d mailbox syncs", self.reason, queued)
        return FanOutReport(queued, skipped)

    def _message(
        self, org: str, claimed: Versioned[MailboxRecord], connection_etag: str, now: datetime
    ) -> MailboxSyncRequested:
        """The sync a claimed mailbox is due: a full read once a day, else this fan-out's. The
        row as claimed rides along as a read hint, unless it would make a large message."""
        mailbox = claimed.value
        reason = (
            FULL_READ
            if mailbox.last_full_read_at is None
            or now - mailbox.last_full_read_at >= FULL_READ_EVERY
            else self.reason
        )
        listed = ListedMailbox(
            etag=claimed.etag, connection_etag=connection_etag, row=mailbox.model_dump_json()
        )
        message = MailboxSyncRequested(
            org=org, staff_id=mailbox.staff_id, reason=reason, listed=listed
        )
        if len(message_body(message)) > LISTED_MESSAGE_LIMIT:
            return MailboxSyncRequested(org=org, staff_id=mailbox.staff_id, reason=reason)
        return message

    def _retry_due(self, org: str, row: Versioned[ConnectionRecord], now: datetime) -> bool:
        """An ``auth_failed`` connection of this fan-out's kind whose slow retry is due: the
        retry time is claimed under the row's ETag, so one timer run retries it once."""
        connection = row.value
        if connection.kind != self.kind or not connection.enabled:
            return False
        if connection.health is not Health.AUTH_FAILED:
            return False
        last = connection.auth_retried_at
        if last is not None and now - last < AUTH_RETRY_EVERY:
            return False
        claimed = connection.model_copy(update={"auth_retried_at": now})
        try:
            self._repos.connections.put(org, connection.connection_id, claimed, row.etag)
        except ConcurrencyConflict:
            return False
        return True

    def _queue_auth_retry(self, org: str, connection_id: str) -> int:
        """One mailbox of the connection (the first by staff id) is read with the refused
        credentials: its success recovers the connection and queues the rest."""
        staff = sorted(
            staff_id
            for staff_id, row in self._repos.mailboxes.list_by_org(org).items()
            if row.value.connection_id == connection_id
        )
        if not staff:
            return 0
        self._queue.send(MailboxSyncRequested(org=org, staff_id=staff[0], reason=AUTH_RETRY))
        log.info(
            "connection %s/%s: refused credentials tried again on one mailbox", org, connection_id
        )
        return 1

    def _polled(self, org: str, connection: ConnectionRecord, etag: str) -> bool:
        if connection.kind != self.kind or not connection.enabled:
            return False
        if connection.health is not Health.AUTH_FAILED:
            return True
        # Refused credentials: polled again once the secret differs from the one that failed.
        failed = connection.failed_secret_fingerprint
        if failed is None:
            return False
        current = connection_secrets_fingerprint(self._secrets, org, connection)
        if current is None or current == failed:
            return False
        recovered = connection.model_copy(
            update={
                "health": None,
                "health_detail": None,
                "failed_secret_fingerprint": None,
                "auth_retried_at": None,
            }
        )
        try:
            self._repos.connections.put(org, connection.connection_id, recovered, etag)
        except ConcurrencyConflict:
            return False
        # The changes held back meanwhile are applied now with the new secret.
        requeue_parked(self._repos, self._queue, org, connection.connection_id)
        return True


class GraphSweep(PollFanOut):
    """The Graph sweep: every mailbox of ``graph`` connections, each time (their changes are
    pushed; this is the safety net for lost notifications)."""

    kind = "graph"
    reason = "sweep"

    def _synced_within(self, org: str) -> timedelta | None:
        return None
