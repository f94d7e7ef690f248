"""``SubscriptionManager``: one change-notification subscription per Graph mailbox, kept alive.

What it keeps true, per staff member (``ensure``): a mailbox on an enabled Graph connection has
exactly one subscription to its events, posting to this app's notification and lifecycle URLs
(``{functions url}/graph/notifications/{org}``, ``.../graph/lifecycle/{org}``), with more than
``RENEW_BEFORE`` left; a subscription of a mailbox that left the connection (or the URLs it
posts to changed) is deleted. A new subscription gets a fresh random clientState (only its hash
is stored) and is followed by a sync of the mailbox: what changed before it existed is read.
Mailboxes of a disabled connection, or one whose credentials were refused, are left alone (no
call to that Exchange; their subscriptions lapse or are renewed once it is back).

Triggers: the ``mailbox-subscriptions`` worker runs ``handle`` for a staff member assigned
through the admin API, for Graph's ``reauthorizationRequired`` (reauthorize; a subscription Graph
no longer has is made anew) and ``subscriptionRemoved`` (made anew, then a sync). An hourly timer
(``due``) reads the tables only and queues that work for every mailbox that needs it: renewals
long before Graph's 10,080-minute limit, subscriptions that failed to be made, orphans.

Faults: throttling re-queues the work after Graph's delay; an outage raises for the host's
redelivery; any other refusal (credentials, access, a validation handshake that failed) is noted
on the mailbox (``subscription_error``) and tried again by the timer, while the sweep keeps the
mailbox read.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.exchange.gateways import Gateways
from shared.exchange.port import (
    CalendarError,
    ChangeSubscriptions,
    ExchangeUnavailable,
    RetryAfter,
    SubscriptionGone,
)
from shared.mailbox_sync.pending import claim_sync
from shared.models import Health
from shared.push.notifications import client_state_hash
from shared.queues import MAX_VISIBILITY_DELAY, MailboxSyncRequested, QueueSender, SubscriptionWork
from shared.store import ConcurrencyConflict, Repositories
from shared.store.records import ConnectionRecord, MailboxRecord, SubscriptionRecord
from shared.store.tables import Condition
from shared.store.threads import in_storage_thread

log = logging.getLogger(__name__)

# Graph allows events subscriptions at most 10,080 minutes; a little less leaves room for clocks.
SUBSCRIPTION_LIFETIME: Final = timedelta(minutes=10_000)
# The hourly timer renews a subscription once less than this is left: days before it lapses.
RENEW_BEFORE: Final = timedelta(days=3)
SUBSCRIBED: Final = "subscribed"  # why a sync follows a new subscription


class SubscriptionOutcome(StrEnum):
    CREATED = "created"
    RENEWED = "renewed"
    REAUTHORIZED = "reauthorized"
    KEPT = "kept"  # there, and far from expiry
    NONE = "none"  # the mailbox needs none (and has none now)
    LEFT_ALONE = "left_alone"  # its connection is disabled or refused
    REQUEUED = "requeued"  # throttled: comes back after Graph's delay
    FAILED = "failed"  # refused: noted on the mailbox, the timer tries again


def notification_urls(functions_url: str, org: str) -> tuple[str, str]:
    """Where Graph posts an organization's change and lifecycle notifications."""
    base = functions_url.rstrip("/")
    return f"{base}/graph/notifications/{org}", f"{base}/graph/lifecycle/{org}"


class SubscriptionManager:
    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        gateways: Gateways,
        *,
        functions_url: str | None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._gateways = gateways
        self._functions_url = functions_url
        self._now = now

    # --- the worker -----------------------------------------------------------------------------

    async def handle(self, work: SubscriptionWork) -> SubscriptionOutcome:
        try:
            if work.action == "reauthorize" and work.subscription_id:
                return await self._reauthorize(work.org, work.staff_id, work.subscription_id)
            if work.action == "recreate" and work.subscription_id:
                # Graph has removed it: forget it (no call), make a new one, and sync.
                await in_storage_thread(
                    self._repos.subscriptions.delete, work.org, work.subscription_id
                )
            return await self.ensure(work.org, work.staff_id)
        except RetryAfter as throttled:
            delay = max(1.0, min(throttled.seconds, MAX_VISIBILITY_DELAY.total_seconds()))
            await in_storage_thread(
                self._queue.send, work, visibility_delay=timedelta(seconds=delay)
            )
            return SubscriptionOutcome.REQUEUED

    async def ensure(self, org: str, staff_id: str) -> SubscriptionOutcome:
        """Make the staff member's subscriptions match their mailbox's assignment."""
        now = self._now()
        found = await in_storage_thread(self._repos.mailboxes.get, org, staff_id)
        mailbox = found.value if found is not None else None
        connection = await self._connection_of(org, mailbox)
        if connection is not None and _paused(connection):
            return SubscriptionOutcome.LEFT_ALONE
        wanted = mailbox is not None and connection is not None and connection.kind == "graph"
        urls = notification_urls(self._functions_url, org) if self._functions_url else None
        keep: SubscriptionRecord | None = None
        for record in await self._subscriptions_of(org, staff_id):
            if (
                keep is None
                and wanted
                and mailbox is not None
                and urls is not None
                and (record.connection_id, record.mailbox, record.notification_url)
                == (mailbox.connection_id, mailbox.address, urls[0])
            ):
                keep = record
                continue
            await self._drop(org, record)
        if not wanted or mailbox is None or connection is None:
            await self._note(org, staff_id, None)
            return SubscriptionOutcome.NONE
        if urls is None:
            await self._note(
                org,
                staff_id,
                "calbridge does not know its public URL (CALBRIDGE_PUBLIC_URL or "
                "WEBSITE_HOSTNAME), so Graph cannot be told where to post notifications",
            )
            return SubscriptionOutcome.FAILED
        try:
            if keep is not None:
                if keep.expires_at - now > RENEW_BEFORE:
                    return SubscriptionOutcome.KEPT
                try:
                    return await self._renew(org, connection, keep, now)
                except SubscriptionGone:
                    await in_storage_thread(
                        self._repos.subscriptions.delete, org, keep.subscription_id
                    )
            return await self._create(org, connection, mailbox, urls, now)
        except (RetryAfter, ExchangeUnavailable):
            raise
        except CalendarError as refused:
            await self._note(org, staff_id, f"subscribing failed: {refused}")
            log.warning("graph subscription for %s/%s failed: %s", org, staff_id, refused)
            return SubscriptionOutcome.FAILED

    # --- the timer ------------------------------------------------------------------------------

    def due(self) -> int:
        """Queue ``ensure`` for every staff member whose subscriptions need work, from the
        tables alone (no Graph call here): a Graph mailbox without a current subscription or
        with one that lapses within ``RENEW_BEFORE``, and subscriptions that no longer fit
        their mailbox."""
        now = self._now()
        url = notification_urls(self._functions_url, "")[0] if self._functions_url else None
        queued = 0
        connections_of: dict[str, dict[str, ConnectionRecord]] = {}
        for org, row in self._repos.connections.every_org():
            connections_of.setdefault(org, {})[row.value.connection_id] = row.value
        for org, connections in connections_of.items():
            mailboxes = {s: r.value for s, r in self._repos.mailboxes.list_by_org(org).items()}
            subscriptions = [r.value for r in self._repos.subscriptions.list_by_org(org).values()]
            wanted_url = f"{url}{org}" if url else None
            for staff_id in sorted(set(mailboxes) | {s.staff_id for s in subscriptions}):
                mailbox = mailboxes.get(staff_id)
                connection = connections.get(mailbox.connection_id) if mailbox else None
                if connection is not None and _paused(connection):
                    continue
                wanted = (
                    mailbox is not None and connection is not None and (connection.kind == "graph")
                )
                mine = [s for s in subscriptions if s.staff_id == staff_id]
                current = [
                    s
                    for s in mine
                    if wanted
                    and mailbox is not None
                    and (s.connection_id, s.mailbox, s.notification_url)
                    == (mailbox.connection_id, mailbox.address, wanted_url)
                ]
                needs_work = (
                    len(mine) != len(current)
                    or len(current) > 1
                    or (wanted and wanted_url is not None and not current)
                    or any(s.expires_at - now <= RENEW_BEFORE for s in current)
                )
                if needs_work:
                    self._queue.send(SubscriptionWork(org=org, staff_id=staff_id))
                    queued += 1
        log.info("graph subscriptions: %d mailboxes queued for work", queued)
        return queued

    # --- steps ----------------------------------------------------------------------------------

    async def _reauthorize(
        self, org: str, staff_id: str, subscription_id: str
    ) -> SubscriptionOutcome:
        found = await in_storage_thread(self._repos.subscriptions.get, org, subscription_id)
        if found is None:
            return await self.ensure(org, staff_id)
        record = found.value
        connection = await self._connection(org, record.connection_id)
        if connection is None or _paused(connection):
            return SubscriptionOutcome.LEFT_ALONE
        try:
            await self._subscriber(org, connection).reauthorize_subscription(subscription_id)
        except SubscriptionGone:
            await in_storage_thread(self._repos.subscriptions.delete, org, subscription_id)
            return await self.ensure(org, staff_id)
        return SubscriptionOutcome.REAUTHORIZED

    async def _renew(
        self, org: str, connection: ConnectionRecord, record: SubscriptionRecord, now: datetime
    ) -> SubscriptionOutcome:
        ref = await self._subscriber(org, connection).renew_subscription(
            record.subscription_id, now + SUBSCRIPTION_LIFETIME
        )
        renewed = record.model_copy(update={"expires_at": ref.expires_at})
        await in_storage_thread(self._put, org, renewed)
        await self._note(org, record.staff_id, None)
        return SubscriptionOutcome.RENEWED

    async def _create(
        self,
        org: str,
        connection: ConnectionRecord,
        mailbox: MailboxRecord,
        urls: tuple[str, str],
        now: datetime,
    ) -> SubscriptionOutcome:
        client_state = secrets.token_urlsafe(32)
        ref = await self._subscriber(org, connection).subscribe(
            mailbox.address,
            notification_url=urls[0],
            lifecycle_url=urls[1],
            client_state=client_state,
            expires_at=now + SUBSCRIPTION_LIFETIME,
        )
        record = SubscriptionRecord(
            subscription_id=ref.subscription_id,
            connection_id=mailbox.connection_id,
            staff_id=mailbox.staff_id,
            mailbox=mailbox.address,
            expires_at=ref.expires_at,
            client_state_hash=client_state_hash(client_state),
            notification_url=urls[0],
        )
        await in_storage_thread(self._put, org, record)
        await self._note(org, mailbox.staff_id, None)
        log.info("graph subscription made for %s/%s", org, mailbox.staff_id)
        # Changes made before the subscription existed were notified to nobody: read them.
        if await in_storage_thread(claim_sync, self._repos, org, mailbox.staff_id, self._now()):
            await in_storage_thread(
                self._queue.send,
                MailboxSyncRequested(org=org, staff_id=mailbox.staff_id, reason=SUBSCRIBED),
            )
        return SubscriptionOutcome.CREATED

    async def _drop(self, org: str, record: SubscriptionRecord) -> None:
        """Delete a subscription that no longer fits (at Graph when its connection can still be
        reached; the row in any case: a lapsed one's notifications are refused)."""
        connection = await self._connection(org, record.connection_id)
        if connection is not None and not _paused(connection) and connection.kind == "graph":
            try:
                await self._subscriber(org, connection).unsubscribe(record.subscription_id)
            except (RetryAfter, ExchangeUnavailable):
                raise
            except CalendarError as refused:
                log.warning(
                    "graph subscription %s of %s/%s not deleted: %s",
                    record.subscription_id,
                    org,
                    record.staff_id,
                    refused,
                )
        await in_storage_thread(self._repos.subscriptions.delete, org, record.subscription_id)

    # --- reading and writing --------------------------------------------------------------------

    def _subscriber(self, org: str, connection: ConnectionRecord) -> ChangeSubscriptions:
        gateway = self._gateways.for_connection(org, connection)
        if not isinstance(gateway, ChangeSubscriptions):
            raise CalendarError(
                f"connection {connection.connection_id!r} offers no change notifications"
            )
        return gateway

    async def _connection(self, org: str, connection_id: str) -> ConnectionRecord | None:
        found = await in_storage_thread(self._repos.connections.get, org, connection_id)
        return found.value if found is not None else None

    async def _connection_of(
        self, org: str, mailbox: MailboxRecord | None
    ) -> ConnectionRecord | None:
        return None if mailbox is None else await self._connection(org, mailbox.connection_id)

    async def _subscriptions_of(self, org: str, staff_id: str) -> list[SubscriptionRecord]:
        rows = await in_storage_thread(
            self._repos.subscriptions.read_partition,
            (org,),
            (Condition("staffId", "eq", staff_id),),
        )
        return [row.value for _, row in rows]

    def _put(self, org: str, record: SubscriptionRecord) -> None:
        current = self._repos.subscriptions.get(org, record.subscription_id)
        self._repos.subscriptions.put(
            org, record.subscription_id, record, current.etag if current else None
        )

    async def _note(self, org: str, staff_id: str, problem: str | None) -> None:
        """Keep (or clear) why the mailbox has no working subscription."""

        def note() -> None:
            for _ in range(5):
                current = self._repos.mailboxes.get(org, staff_id)
                if current is None or current.value.subscription_error == problem:
                    return
                changed = current.value.model_copy(
                    update={"subscription_error": None if problem is None else problem[:2000]}
                )
                try:
                    self._repos.mailboxes.put(org, staff_id, changed, current.etag)
                    return
                except ConcurrencyConflict:
                    continue

        await in_storage_thread(note)


def _paused(connection: ConnectionRecord) -> bool:
    """No call goes to this connection: disabled, or its credentials were refused."""
    return not connection.enabled or connection.health is Health.AUTH_FAILED
