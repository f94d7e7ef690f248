"""The poll fan-out: every minute, one ``mailbox-sync`` message per EWS mailbox that is due.

A mailbox is due when its organization's poll interval has passed since its last sync and no
earlier message for it is still pending. The pending mark (``sync_pending_since``) is set, under
the row's ETag, before the message is sent, and the sync clears it; it expires after
``PENDING_EXPIRY``, so a lost message never stalls a mailbox. A mailbox whose last full read is a
day old gets a full read (drift repair, and the recurrence horizon rolled forward).

Not polled: mailboxes of a disabled connection, of a Graph connection (their changes are
pushed), and of a connection whose credentials Exchange refused (``auth_failed``) until its
configuration or its secret changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.config import SecretNotFound, SecretResolver, connection_secret_name
from shared.mailbox_sync.service import FULL_READ, secret_fingerprint
from shared.models import Health
from shared.queues import MailboxSyncRequested, QueueSender
from shared.store import ConcurrencyConflict, Repositories, Versioned
from shared.store.records import ConnectionRecord, MailboxRecord
from shared.store.threads import storage_executor

log = logging.getLogger(__name__)

PENDING_EXPIRY: Final = timedelta(minutes=10)
FULL_READ_EVERY: Final = timedelta(days=1)
# A mailbox synced a little less than an interval ago is due: the timer's minute has jitter.
_SLACK: Final = timedelta(seconds=5)


@dataclass(frozen=True)
class FanOutReport:
    queued: int
    skipped_connections: int


class PollFanOut:
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

    def run(self) -> FanOutReport:
        now = self._now()
        skipped = 0
        mailboxes_of: dict[str, dict[str, Versioned[MailboxRecord]]] = {}
        due: list[tuple[str, str, Versioned[MailboxRecord], timedelta]] = []
        for org, row in self._repos.connections.every_org():
            connection = row.value
            if not self._polled(org, connection, row.etag):
                skipped += 1
                continue
            if org not in mailboxes_of:
                mailboxes_of[org] = self._repos.mailboxes.list_by_org(org)
            interval = timedelta(
                seconds=self._repos.settings.settings_of(org).poll_interval_seconds
            )
            due += [
                (org, staff_id, mailbox, interval)
                for staff_id, mailbox in mailboxes_of[org].items()
                if mailbox.value.connection_id == connection.connection_id
            ]
        # Claims and messages of different mailboxes are independent: sent side by side, so
        # thousands of mailboxes fit well inside the timer's minute.
        queued = sum(
            storage_executor().map(lambda args: self._claim_and_queue(*args, now=now), due)
        )
        log.info("poll fan-out queued %d mailbox syncs", queued)
        return FanOutReport(queued, skipped)

    def _claim_and_queue(
        self,
        org: str,
        staff_id: str,
        row: Versioned[MailboxRecord],
        interval: timedelta,
        *,
        now: datetime,
    ) -> bool:
        if not self._claim(org, staff_id, row, now, interval):
            return False
        mailbox = row.value
        reason = (
            FULL_READ
            if mailbox.last_full_read_at is None
            or now - mailbox.last_full_read_at >= FULL_READ_EVERY
            else "poll"
        )
        self._queue.send(MailboxSyncRequested(org=org, staff_id=staff_id, reason=reason))
        return True

    def _polled(self, org: str, connection: ConnectionRecord, etag: str) -> bool:
        if connection.kind != "ews" or not connection.enabled:
            return False
        if connection.health is not Health.AUTH_FAILED:
            return True
        # Refused credentials: polled again once the secret differs from the one that failed.
        failed = connection.failed_secret_fingerprint
        if failed is None or connection.secret_reference is None:
            return False
        try:
            secret = self._secrets.resolve(connection_secret_name(org, connection.secret_reference))
        except SecretNotFound:
            return False
        if secret_fingerprint(secret) == failed:
            return False
        recovered = connection.model_copy(
            update={"health": None, "health_detail": None, "failed_secret_fingerprint": None}
        )
        try:
            self._repos.connections.put(org, connection.connection_id, recovered, etag)
        except ConcurrencyConflict:
            return False
        return True

    def _claim(
        self,
        org: str,
        staff_id: str,
        current: Versioned[MailboxRecord],
        now: datetime,
        interval: timedelta,
    ) -> bool:
        """Mark the mailbox pending if it is due, under the ETag it was listed with; False
        when it is not due (or changed since: another fan-out claimed it, or a sync ended)."""
        mailbox = current.value
        if (
            mailbox.sync_pending_since is not None
            and now - mailbox.sync_pending_since < PENDING_EXPIRY
        ):
            return False
        if mailbox.last_sync_at is not None and now - mailbox.last_sync_at < interval - _SLACK:
            return False
        try:
            self._repos.mailboxes.put(
                org,
                staff_id,
                mailbox.model_copy(update={"sync_pending_since": now}),
                current.etag,
            )
        except ConcurrencyConflict:
            return False
        return True
