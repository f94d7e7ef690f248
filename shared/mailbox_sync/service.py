"""The ``mailbox-sync`` worker's service: read what changed in one staff member's calendar and
make it known — busy time, and what staff did in Outlook to calbridge's appointments.

One message names one mailbox. The service reads the changes since the mailbox's stored cursor
page by page (``CalendarReader.changes_since``) and, for each page:

1. sorts every item: calbridge's organizer item of an appointment (its marker names this
   organization), an attendee's copy of calbridge's meeting (its UID is an appointment's), or the
   staff member's own event (busy time); deletions are sorted by what calbridge knew of the item
   (``MailboxItems``, one row per item, with the change key it was last seen with);
2. decides, with the pure rules of ``shared.engine.busy`` and ``shared.engine.outlook``: the busy
   blocks (a changed series is expanded over the recurrence horizon with one ``list_events``),
   the events for the booking platform, the mappings to update, the copies to cancel;
3. carries it out: copies cancelled through Exchange first, then the rows (mappings under their
   ETag, busy blocks, item rows, outbox rows) and the ``webhook-deliveries`` messages;
4. and only then stores the cursor. A crash in between re-reads the page: busy blocks and item
   rows are upserted, outbox rows keep ids derived from the change, so nothing is duplicated.
   Exchange does not report an item made and deleted since a cursor, so the rows a page wrote
   carry the digest of the stored cursor it was read past (a full read's too), and the mailbox
   row says so until the cursor moves on (``MailboxRecord.written_past``): a sync that starts
   from that cursor looks up the items of those rows its own read does not report, and what is
   gone is deleted. A sync that finds the cursor or that mark moved on by another sync when it
   stores its own stores nothing over them and queues one more (``SyncedMeanwhile``).

A **full read** (a cursor Exchange no longer knows, the first sync, once a day to repair drift
and roll the horizon forward, and after the staff member's busy-time switch changed) reads every
page from the beginning and compares the whole calendar with what calbridge knows: items it knew
and no longer sees are deleted, and events are made only for real differences.

**Two kinds of reader, one service.** EWS reads the whole calendar folder and reports series
masters, which are expanded here with one ``list_events``. Graph reads a calendarView delta over
a window (the recurrence horizon, rolled forward by the daily full read) and reports occurrences
and exceptions each under its own id, which need no expansion (``CalendarChanges.windowed``).
For a windowed reader, "not seen" may mean "outside the window": an appointment's organizer
item it reports gone is looked up once more (``get_event``) before it counts as deleted, and a
full read forgets items that ended before the window quietly (past time changes nothing for the
booking platform) and leaves items after it alone.

**Coalescing**: the sync is queued by the poll fan-out, the Graph sweep and the notification
endpoint, each only when no sync of the mailbox is pending. Notifications that arrive while a
sync runs are counted (``MailboxRecord.notices``); a sync that ends with a larger count than it
began with queues one more, so a burst of notifications costs at most two syncs.

**Racing the apply worker**: an Outlook change to calbridge's appointment is read again
(``get_event``) and judged against the mapping as stored after that read before it is told, so
a page read before the apply worker wrote the item does not pass calbridge's own write for a
staff member's move; an item where a newer snapshot puts it is taken for that write.

**A mailbox moved to another connection** (``MailboxRecord.rebaseline``): its first full read
is a new baseline — calbridge's appointments adopted by their marker under the new ids (beyond
a windowed reader's window, looked up with ``find_by_marker``), what was known under the old ids
forgotten without being reported, busy time told only where its content differs.

**Mass-cancellation guard**: a page (or a full read) that would report more than the
organization's ``mass_cancellation_share`` of the appointments calbridge knows in this mailbox
as cancelled (two at least), or a full read that finds the calendar empty while calbridge knows
two events or more in it (a series counts once), is not acted on: the mailbox is held
(``MailboxRecord.held``) for a person to look at, and nothing is written or sent.

**Reads an idle poll saves**: the poll fan-out's message carries the mailbox's row as the
fan-out wrote it setting the pending mark, with that write's ETag, and the ETag of the
connection row it listed (``ListedMailbox``). While the mark is recent
(``LISTED_ROW_TRUSTED_FOR``) the sync takes that row for read: every write of it is
conditional on the ETag, so a row changed since (a notification counted, an administrator's
move) is read again and decided afresh at the end, as when it changes while a sync runs. A row
whose position another sync moved on since (a cursor stored, rows written past one by a sync
that then died) is not written over: the sync queues one more, which reads the row and goes on
from where it says (``SyncedMeanwhile``). The
connection row is kept per process for ``CONNECTION_REUSED_FOR`` and used for a message that
names that very version; any other is read, and a refusal of its credentials forgets it. An
idle poll then costs two storage round trips: the query for calbridge's unconfirmed writes and
the row written back.

**Faults**: throttling re-queues the message after Exchange's delay; a mailbox the service
account may not open (or that Exchange does not know) is marked ``access_denied`` with the reason
and read again at the next poll; refused credentials mark the connection ``auth_failed`` (its
mailboxes are not polled until its credentials change) and tell the booking platform
(``connection.health_changed``); other failures raise for the host's redelivery. The pending
mark the poll fan-out set is cleared when a sync ends either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from pydantic import ValidationError

from shared.config import SecretResolver
from shared.connections import AUTH_RETRY, calls_allowed, mark_auth_failed, recover
from shared.engine.busy import busy_block, changed_window, content_changed_window
from shared.engine.marker import marker_for, parse_marker
from shared.engine.outlook import (
    OutlookEvent,
    OutlookVerdict,
    adopted_after_move,
    copy_outlived,
    organizer_item_changed,
    organizer_item_deleted,
)
from shared.exchange.gateways import Gateways
from shared.exchange.port import (
    AccessDenied,
    AuthenticationFailed,
    CalendarChanges,
    CalendarGateway,
    CalendarReader,
    ExchangeEvent,
    ItemType,
    MailboxNotFound,
    ReadWindow,
    RetryAfter,
    SyncStateInvalid,
    cancel_copy,
    mailbox_refusal,
)
from shared.models import AppointmentSnapshot, BusyBlock, EventMapping, Health, OrgSettings
from shared.observability import metrics
from shared.queues import (
    MAX_VISIBILITY_DELAY,
    MailboxSyncRequested,
    QueueSender,
    WebhookDeliveryDue,
)
from shared.store import ConcurrencyConflict, Repositories, Versioned
from shared.store.records import (
    ConnectionRecord,
    MailboxItemKind,
    MailboxItemRecord,
    MailboxRecord,
    OutboxRecord,
)
from shared.store.threads import in_storage_thread
from shared.webhooks.events import busy_time_row, outlook_event_row

log = logging.getLogger(__name__)

FULL_READ: Final = "full"
# Settings change rarely and every sync needs them: each process reads them at most this often.
SETTINGS_TTL: Final = timedelta(seconds=30)
# A poll fan-out's message carries the mailbox's row: taken for read while its pending mark is
# this recent (a message that waited longer reads the row).
LISTED_ROW_TRUSTED_FOR: Final = timedelta(minutes=2)
# A connection row read this recently is used again for a message naming that very version (a
# change of the row reaches every sync within this, and at once those the fan-out queues next).
CONNECTION_REUSED_FOR: Final = timedelta(seconds=10)
# Connection rows kept per process (a process past this many starts afresh).
_CONNECTIONS_KEPT: Final = 1024
# Why a sync is queued again at its end: notifications came in while it ran.
NOTIFIED_DURING_SYNC: Final = "notified during sync"
# ... or another sync of the mailbox stored a cursor or wrote rows past one meanwhile.
SYNCED_MEANWHILE: Final = "synced meanwhile"
# Changes one page holds: what is decided and stored together before the cursor moves on. EWS
# reads them 512 a SyncFolderItems call and fetches their details in one GetItem, so n changes
# up to this cost ceil(n / 512) + 1 requests.
PAGE_CHANGES: Final = 2560
# Looking back this far when a series is expanded: an occurrence in progress still blocks.
_EXPANSION_LOOKBACK: Final = timedelta(days=1)


class MailboxMovedMeanwhile(Exception):
    """The mailbox was assigned to another connection or address while this sync read it: what
    it read is under the old connection's ids, and the new assignment's first read is the
    truth now (a new baseline)."""


class SyncedMeanwhile(Exception):
    """Another sync of the mailbox stored a cursor, or wrote rows past one, after the row this
    sync read from (a fan-out's message carries the row as it was claimed): the position this
    sync read from is not the mailbox's, so nothing of it is stored over the row."""


# Where a sync reads from: the stored cursor, and the cursor a sync that died left rows past
# (``MailboxRecord.written_past``).
_Position = tuple[str | None, str | None]


def _position(record: MailboxRecord) -> _Position:
    return (record.sync_state, record.written_past)


class SyncOutcome(StrEnum):
    SYNCED = "synced"
    REQUEUED = "requeued"  # throttled: comes back after Exchange's delay
    HELD = "held"  # the mass-cancellation guard stopped it
    AUTH_FAILED = "auth_failed"
    ACCESS_DENIED = "access_denied"  # the service account may not open this mailbox
    SKIPPED = "skipped"  # no such mailbox, a disabled or push-only connection


@dataclass(frozen=True)
class SyncReport:
    outcome: SyncOutcome
    detail: str = ""
    pages: int = 0
    events: int = 0


@dataclass
class PageEffects:
    """What one page (or a full read) comes to, before anything is written."""

    block_puts: list[BusyBlock] = field(default_factory=list)
    block_removals: list[tuple[str, str | None]] = field(default_factory=list)
    item_puts: list[MailboxItemRecord] = field(default_factory=list)
    item_removals: list[str] = field(default_factory=list)
    mappings: dict[str, tuple[EventMapping, ExchangeEvent | None, str]] = field(
        default_factory=dict
    )  # appointment → (mapping, the item it was read from, the change it names)
    outlook: list[tuple[OutlookEvent, str]] = field(default_factory=list)
    copies_to_cancel: list[tuple[str, EventMapping]] = field(default_factory=list)
    outlived_copies: list[str] = field(default_factory=list)  # ids of this mailbox's copies
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)
    cancellations: int = 0
    # Meetings organized elsewhere, read as busy time: their UIDs named no appointment.
    unknown_meetings: list[str] = field(default_factory=list)

    def writes_anything(self) -> bool:
        """Whether carrying the page out writes or sends anything at all."""
        return any(
            (
                self.block_puts,
                self.block_removals,
                self.item_puts,
                self.item_removals,
                self.mappings,
                self.outlook,
                self.copies_to_cancel,
                self.outlived_copies,
                self.windows,
            )
        )


class MailboxSyncer:
    """Syncs one mailbox per message (the ``mailbox-sync`` worker)."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        gateways: Gateways,
        secrets: SecretResolver,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._gateways = gateways
        self._secrets = secrets
        self._now = now
        self._settings: dict[str, tuple[float, OrgSettings]] = {}
        # (org, connection id) → (when read, monotonic; the row as read).
        self._connections: dict[tuple[str, str], tuple[float, Versioned[ConnectionRecord]]] = {}

    async def _settings_of(self, org: str) -> OrgSettings:
        read_at = time.monotonic()
        cached = self._settings.get(org)
        if cached is not None and read_at - cached[0] < SETTINGS_TTL.total_seconds():
            return cached[1]
        settings = await in_storage_thread(self._repos.settings.settings_of, org)
        self._settings[org] = (read_at, settings)
        return settings

    def _listed(self, message: MailboxSyncRequested) -> tuple[Versioned[MailboxRecord], str] | None:
        """The row the poll fan-out's message carries, while its pending mark is recent, and
        the ETag of the connection row listed with it."""
        listed = message.listed
        if listed is None:
            return None
        try:
            row = MailboxRecord.model_validate_json(listed.row)
        except ValidationError:
            return None
        claimed_at = row.sync_pending_since
        if (
            row.staff_id != message.staff_id
            or claimed_at is None
            or abs(self._now() - claimed_at) > LISTED_ROW_TRUSTED_FOR
        ):
            return None
        return Versioned(row, listed.etag), listed.connection_etag

    async def _connection(
        self, org: str, connection_id: str, listed_etag: str | None
    ) -> Versioned[ConnectionRecord] | None:
        """The connection row: the one this process read within ``CONNECTION_REUSED_FOR`` when
        the message names that version, else read (and kept)."""
        key = (org, connection_id)
        kept = self._connections.get(key)
        read_at = time.monotonic()
        if (
            kept is not None
            and listed_etag == kept[1].etag
            and read_at - kept[0] < CONNECTION_REUSED_FOR.total_seconds()
        ):
            return kept[1]
        found = await in_storage_thread(self._repos.connections.get, org, connection_id)
        if found is None:
            self._connections.pop(key, None)
            return None
        if len(self._connections) >= _CONNECTIONS_KEPT:
            self._connections.clear()
        self._connections[key] = (read_at, found)
        return found

    def _forget_connection(self, org: str, connection_id: str) -> None:
        """This process wrote the row or Exchange refused it: the next sync reads it."""
        self._connections.pop((org, connection_id), None)

    async def sync(self, message: MailboxSyncRequested) -> SyncReport:
        org, staff_id = message.org, message.staff_id
        listed = self._listed(message)
        # A row read afresh has its connection read afresh too.
        found, connection_etag = listed if listed is not None else (None, None)
        if found is None:
            found = await in_storage_thread(self._repos.mailboxes.get, org, staff_id)
        if found is None:
            return SyncReport(SyncOutcome.SKIPPED, "no such staff member")
        connection = await self._connection(org, found.value.connection_id, connection_etag)
        if connection is None or not connection.value.enabled:
            await self._finish(org, staff_id, found, pending_only=True)
            return SyncReport(SyncOutcome.SKIPPED, "the connection is disabled or missing")
        retrying = connection.value.health is Health.AUTH_FAILED
        if retrying and message.reason != AUTH_RETRY:
            # Refused credentials: no call until they change, a save or test, or the slow retry.
            await self._finish(org, staff_id, found, pending_only=True)
            return SyncReport(SyncOutcome.SKIPPED, "the connection's credentials were refused")
        try:
            gateway = self._gateways.for_connection(org, connection.value)
        except AuthenticationFailed as refused:
            # Credentials unusable before any call (a certificate secret that holds no
            # certificate): the connection's health says so, as for a refusal by Exchange.
            await self._auth_failed(org, connection, str(refused))
            await self._finish(org, staff_id, found, pending_only=True)
            return SyncReport(SyncOutcome.AUTH_FAILED, str(refused))
        if not isinstance(gateway, CalendarReader):
            await self._finish(org, staff_id, found, pending_only=True)
            return SyncReport(SyncOutcome.SKIPPED, "the connection's changes are pushed")
        metrics.mailbox_sync_started(org, staff_id, found.value.last_sync_at, self._now())
        settings = await self._settings_of(org)
        run = _Run(self, org, found, connection.value, gateway, gateway, settings, self._now())
        full = (
            message.reason == FULL_READ
            or found.value.sync_state is None
            or found.value.last_full_read_at is None
        )
        try:
            try:
                report = await (run.full_read() if full else run.incremental())
            except SyncStateInvalid:
                # The full read that takes its place meets the same faults, handled below.
                log.info("sync state of %s/%s no longer valid: reading it all", org, staff_id)
                report = await run.full_read()
        except AuthenticationFailed as refused:
            await self._auth_failed(org, connection, str(refused))
            await self._finish(org, staff_id, run.row, pending_only=True)
            return SyncReport(SyncOutcome.AUTH_FAILED, str(refused))
        except (AccessDenied, MailboxNotFound) as refused:
            # This mailbox only: marked, and read again at the next poll (access granted, it
            # goes on from its stored cursor); the connection's other mailboxes go on.
            reason = mailbox_refusal(refused) or str(refused)
            await in_storage_thread(self._repos.mailboxes.note_refused, org, staff_id, reason)
            await self._finish(org, staff_id, run.row, pending_only=True)
            log.warning(
                "mailbox refused by Exchange",
                extra={"org": org, "staff": staff_id, "outcome": SyncOutcome.ACCESS_DENIED},
            )
            return SyncReport(SyncOutcome.ACCESS_DENIED, reason)
        except MailboxMovedMeanwhile as moved:
            await self._finish(org, staff_id, run.row, pending_only=True)
            log.info("mailbox %s/%s moved during its sync: nothing written", org, staff_id)
            return SyncReport(SyncOutcome.SKIPPED, str(moved))
        except SyncedMeanwhile as overtaken:
            await self._finish(org, staff_id, run.row, read_from=run.read_from)
            log.info("mailbox %s/%s synced by another sync meanwhile: read again", org, staff_id)
            return SyncReport(SyncOutcome.SKIPPED, str(overtaken))
        except RetryAfter as throttled:
            # Throttled on any request of the sync (the page, a look-up, an expansion): the
            # message comes back after Exchange's delay; what was stored so far stays.
            metrics.exchange_throttled(org, "mailbox-sync")
            await in_storage_thread(
                self._queue.send,
                message,
                visibility_delay=timedelta(
                    seconds=max(1.0, min(throttled.seconds, MAX_VISIBILITY_DELAY.total_seconds()))
                ),
            )
            return SyncReport(SyncOutcome.REQUEUED, str(throttled))
        if retrying:
            # The slow retry read the mailbox: the credentials work again.
            self._forget_connection(org, connection.value.connection_id)
            await in_storage_thread(
                recover, self._repos, self._queue, org, connection.value.connection_id, self._now()
            )
        log.info(
            "mailbox synced",
            extra={"org": org, "staff": staff_id, "outcome": report.outcome, "pages": report.pages},
        )
        return report

    # --- bookkeeping ----------------------------------------------------------------------------

    async def _finish(
        self,
        org: str,
        staff_id: str,
        known: Versioned[MailboxRecord],
        *,
        pending_only: bool = False,
        cursor: str | None = None,
        full: bool = False,
        held: str | None = None,
        notices_seen: int | None = None,
        read_from: _Position | None = None,
    ) -> None:
        """Clear the pending mark; after a sync also the cursor, times and health. ``known``:
        the row as this sync last read or wrote it (written under its ETag when nobody changed
        it meanwhile, read again when somebody did). With ``notices_seen`` (a sync that read the
        mailbox): when more notifications have come in since it began, the mark stays and one
        more sync is queued. With ``read_from`` (the position the sync read from, as it last
        stored it): a row another sync moved on meanwhile keeps its cursor, and one more sync,
        queued with the mark kept, reads the row and goes on from there."""
        now = self._now()
        synced = known.value
        again = False
        reason = NOTIFIED_DURING_SYNC

        def update(record: MailboxRecord) -> MailboxRecord:
            nonlocal again, reason
            moved = (record.address, record.connection_id) != (
                synced.address,
                synced.connection_id,
            )
            if pending_only or moved:
                # Moved to another mailbox meanwhile: this sync's cursor is not the new one's.
                return record.model_copy(update={"sync_pending_since": None})
            if read_from is not None and _position(record) != read_from:
                again, reason = True, SYNCED_MEANWHILE
                return record.model_copy(update={"sync_pending_since": now})
            again = notices_seen is not None and held is None and record.notices > notices_seen
            changes: dict[str, object] = {
                "sync_pending_since": now if again else None,
                "held": held,
            }
            if held is None:
                changes |= {
                    "written_past": None,
                    "sync_state": cursor,
                    "last_sync_at": now,
                    "health": Health.OK,
                    "last_error": None,
                    "lag_seconds": 0.0,
                }
                if full:
                    changes["last_full_read_at"] = now
                    changes["rebaseline"] = False
            return record.model_copy(update=changes)

        await in_storage_thread(self._update_mailbox, org, staff_id, update, known)
        if again:
            await in_storage_thread(
                self._queue.send,
                MailboxSyncRequested(org=org, staff_id=staff_id, reason=reason),
            )

    def _update_mailbox(
        self,
        org: str,
        staff_id: str,
        change: Callable[[MailboxRecord], MailboxRecord],
        known: Versioned[MailboxRecord] | None = None,
    ) -> Versioned[MailboxRecord] | None:
        """Apply ``change`` to the mailbox's row under its ETag: first to ``known`` (no read),
        then, if the row changed meanwhile, to what is stored."""
        current = known
        for _ in range(5):
            if current is None:
                current = self._repos.mailboxes.get(org, staff_id)
                if current is None:
                    return None
            changed = change(current.value)
            try:
                etag = self._repos.mailboxes.put(org, staff_id, changed, current.etag)
                return Versioned(changed, etag)
            except ConcurrencyConflict:
                current = None
        raise ConcurrencyConflict(f"mailbox {staff_id!r} kept changing")

    async def _auth_failed(
        self, org: str, connection: Versioned[ConnectionRecord], detail: str
    ) -> None:
        """Mark the connection and tell the booking platform, once per failure."""
        self._forget_connection(org, connection.value.connection_id)
        await in_storage_thread(
            mark_auth_failed,
            self._repos,
            self._queue,
            self._secrets,
            org,
            connection,
            detail,
            self._now(),
        )

    async def _tell(self, org: str, rows: Iterable[OutboxRecord]) -> None:
        """Keep each event in the outbox, then queue its delivery (a row told again is queued
        again: its earlier message may be the one that was lost)."""
        rows = list(rows)
        await asyncio.gather(*(in_storage_thread(self._repos.outbox.add, org, r) for r in rows))
        await asyncio.gather(
            *(
                in_storage_thread(
                    self._queue.send, WebhookDeliveryDue(org=org, event_id=row.event_id)
                )
                for row in rows
            )
        )


@dataclass
class _Run:
    """One sync of one mailbox."""

    service: MailboxSyncer
    org: str
    row: Versioned[MailboxRecord]  # the mailbox's row as this sync last read or wrote it
    connection: ConnectionRecord
    reader: CalendarReader
    gateway: CalendarGateway
    settings: OrgSettings
    began: datetime
    windowed: bool = False  # the reader reported a windowed page (Graph's calendarView delta)
    # Notifications counted when the sync began (more by its end: one more sync).
    notices_seen: int = field(init=False)
    # Staff id → mailbox address (None: no mailbox), read as appointments' staff need them.
    addresses: dict[str, str | None] = field(init=False, default_factory=dict)
    # Where the mailbox was assigned when the sync began: (address, connection id).
    assigned: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.notices_seen = self.row.value.notices
        self.assigned = (self.row.value.address.lower(), self.connection.connection_id)

    @property
    def repos(self) -> Repositories:
        return self.service._repos

    @property
    def mailbox(self) -> MailboxRecord:
        return self.row.value

    @property
    def read_from(self) -> _Position:
        """The position the read goes on from, as this sync last read or wrote the row."""
        return _position(self.mailbox)

    @property
    def window(self) -> ReadWindow:
        """What a windowed reader covers when it starts afresh: the recurrence horizon, from a
        day back (an event in progress still blocks)."""
        return ReadWindow(
            start=self.began - _EXPANSION_LOOKBACK,
            end=self.began + timedelta(days=self.settings.recurrence_horizon_days),
        )

    async def incremental(self) -> SyncReport:
        cursor = self.mailbox.sync_state
        assert cursor is not None
        # Rows written after this cursor by a sync that did not store its own: see the module.
        left_behind = self.mailbox.written_past == cursor_digest(cursor)
        started_from = cursor
        reported: set[str] = set()
        pages = events = 0
        while True:
            changes = await self._read(cursor)
            pages += 1
            reported |= {event.item_id for event in changes.changed} | set(changes.deleted)
            effects = await self._decide(changes.changed, changes.deleted)
            held = await self._guard(effects)
            if held:
                await self.service._finish(self.org, self.mailbox.staff_id, self.row, held=held)
                return SyncReport(SyncOutcome.HELD, held, pages)
            events += await self._carry_out(effects, changes.cursor, read_after=cursor)
            cursor = changes.cursor
            if changes.complete:
                break  # the last page's cursor is stored with the rest at the end
            await self._store_cursor(cursor)
        unread = await self._left_behind(started_from, reported) if left_behind else []
        events += await self._confirm_written_items(cursor, unread)
        await self.service._finish(
            self.org,
            self.mailbox.staff_id,
            self.row,
            cursor=cursor,
            notices_seen=self.notices_seen,
            read_from=self.read_from,
        )
        return SyncReport(SyncOutcome.SYNCED, pages=pages, events=events)

    async def _left_behind(self, cursor: str, reported: set[str]) -> list[str]:
        """The items whose rows a sync from ``cursor`` wrote before it died, that this read did
        not report again."""
        written = await in_storage_thread(
            self.repos.mailbox_items.read_after,
            self.org,
            self.mailbox.staff_id,
            cursor_digest(cursor),
        )
        return [item_id for item_id in written if item_id not in reported]

    async def _confirm_written_items(self, change: str | None, unread: list[str]) -> int:
        """Items calbridge wrote that no sync has read yet, and ``unread`` (left behind by a
        sync that died): Exchange reports nothing for an item made and deleted between two
        syncs, so each is looked up (one GetItem each; none when every item was read, as in an
        idle mailbox)."""
        unconfirmed = await in_storage_thread(
            self.repos.mailbox_items.unconfirmed_of, self.org, self.mailbox.staff_id
        )
        unconfirmed = list(dict.fromkeys([*unconfirmed, *unread]))
        if not unconfirmed:
            return 0
        known = await in_storage_thread(
            self.repos.mailbox_items.items_of, self.org, self.mailbox.staff_id
        )
        found: list[ExchangeEvent] = []
        missing: list[str] = []
        for item_id in unconfirmed:
            event = await self.gateway.get_event(self.mailbox.address, item_id)
            if event is None:
                missing.append(item_id)
            else:
                found.append(event)
        effects = await self._decide(found, missing, known=known, looked_up=True)
        return await self._carry_out(effects, f"confirm\n{change}")

    async def full_read(self) -> SyncReport:
        # What calbridge knew before the read began: an item the apply worker creates while the
        # pages are read (and records at once) is not one the read missed, so not a deletion.
        known = await in_storage_thread(
            self.repos.mailbox_items.items_of, self.org, self.mailbox.staff_id
        )
        cursor: str | None = None
        changed: dict[str, ExchangeEvent] = {}
        pages = 0
        while True:
            changes = await self._read(cursor)
            pages += 1
            for event in changes.changed:
                changed[event.item_id] = event
            for item_id in changes.deleted:
                changed.pop(item_id, None)
            cursor = changes.cursor
            if changes.complete:
                break
        gone = [item_id for item_id in known if item_id not in changed]
        if self.mailbox.rebaseline:
            return await self._rebaseline(changed, gone, known, cursor, pages)
        past: list[str] = []
        if self.windowed:
            gone, past = await self._outside_window(gone, known)
        # Every event it knows (in the window) gone at once; a series' occurrences, each under
        # its own id in a windowed read, are one event (their iCalendar UID).
        if not changed and len({known[item_id].uid or item_id for item_id in gone}) >= 2:
            empty = "the calendar reads as empty while calbridge knows items in it"
            await self.service._finish(self.org, self.mailbox.staff_id, self.row, held=empty)
            return SyncReport(SyncOutcome.HELD, empty, pages)
        # Unchanged items need no decision: their change key is the one calbridge knows (and,
        # for busy time, the staff member's switch is the one they were decided under).
        counted = self.mailbox.busy_time
        fresh = [
            event
            for event in changed.values()
            if (record := known.get(event.item_id)) is None
            or record.change_key != event.change_key
            or (record.kind is MailboxItemKind.BUSY and record.counted != counted)
        ]
        effects = await self._decide(fresh, gone, known=known)
        held = await self._guard(effects)
        if held:
            await self.service._finish(self.org, self.mailbox.staff_id, self.row, held=held)
            return SyncReport(SyncOutcome.HELD, held, pages)
        await self._forget(past)
        assert cursor is not None
        # Its rows say they were written past the stored cursor, as an incremental page's do:
        # should this read die, a sync from that cursor may come before it is read again.
        events = await self._carry_out(effects, cursor, read_after=self.mailbox.sync_state)
        await self.service._finish(
            self.org,
            self.mailbox.staff_id,
            self.row,
            cursor=cursor,
            full=True,
            notices_seen=self.notices_seen,
            read_from=self.read_from,
        )
        return SyncReport(SyncOutcome.SYNCED, "full read", pages, events)

    async def _rebaseline(
        self,
        changed: Mapping[str, ExchangeEvent],
        gone: list[str],
        known: Mapping[str, MailboxItemRecord],
        cursor: str | None,
        pages: int,
    ) -> SyncReport:
        """The first full read after the mailbox moved to another connection: items are read
        under the new connection's ids. What calbridge knew under the old ids is forgotten, not
        reported deleted; calbridge's appointments are adopted by their marker (only a real
        Outlook change made meanwhile is told); busy time is told only where it differs from
        what the booking platform already has. An appointment whose organizer item the read
        did not see is looked up by its marker (a windowed reader's item after the window is
        adopted so); one found nowhere was deleted or cancelled in Outlook before the first
        read on this connection, and is told as such a deletion is on any read."""
        fresh = [
            event
            for event in changed.values()
            if (record := known.get(event.item_id)) is None or record.change_key != event.change_key
        ]
        searched = gone
        if self.windowed:
            # Items after the window are not read yet under their new ids: kept, but for
            # calbridge's appointments among them, adopted by their marker now. Those that
            # ended before it are forgotten.
            inside, past = await self._outside_window(gone, known)
            later = [item_id for item_id in gone if item_id not in inside and item_id not in past]
            gone, searched = inside + past, inside + later
        seen = {self._appointment_of(event) for event in changed.values()}
        unseen = [
            item_id
            for item_id in searched
            if known[item_id].kind is MailboxItemKind.APPOINTMENT
            and known[item_id].appointment_id not in seen
        ]
        effects = PageEffects()
        missing = await self._adopt(unseen, known, effects)
        settled = set(missing) | set(effects.item_removals)
        gone = [item_id for item_id in gone if item_id not in settled]
        await self._decide(fresh, missing, known=known, looked_up=True, into=effects)
        org, staff_id = self.org, self.mailbox.staff_id
        before = [
            row.value
            for row in await in_storage_thread(self.repos.busy_blocks.blocks_of, org, staff_id)
        ]
        forgotten = set(gone)
        put = {(b.event_id, b.occurrence_id) for b in effects.block_puts}
        effects.item_removals += gone
        effects.block_removals += [
            (b.event_id, b.occurrence_id)
            for b in before
            if b.event_id in forgotten and (b.event_id, b.occurrence_id) not in put
        ]
        kept = [b for b in before if b.event_id not in forgotten]
        replaced = {b.event_id for b in effects.block_puts}
        after = [b for b in kept if b.event_id not in replaced] + effects.block_puts
        window = content_changed_window(before, after)
        effects.windows = [window] if window else []
        held = await self._guard(effects)
        if held:
            await self.service._finish(org, staff_id, self.row, held=held)
            return SyncReport(SyncOutcome.HELD, held, pages)
        assert cursor is not None
        events = await self._carry_out(effects, cursor)
        await self.service._finish(
            org, staff_id, self.row, cursor=cursor, full=True, notices_seen=self.notices_seen
        )
        log.info("mailbox %s/%s: new baseline after a move", org, staff_id)
        return SyncReport(SyncOutcome.SYNCED, "new baseline", pages, events)

    async def _adopt(
        self, item_ids: list[str], known: Mapping[str, MailboxItemRecord], effects: PageEffects
    ) -> list[str]:
        """Calbridge's appointments among ``item_ids`` (known under the old connection's ids),
        found on this connection by their marker: their mappings and item rows take the new
        ids. Returns the items whose appointment has no live item with its marker here."""
        missing: list[str] = []
        for item_id in item_ids:
            record = known[item_id]
            if record.kind is not MailboxItemKind.APPOINTMENT or not record.appointment_id:
                continue
            mapping, _ = await self._appointment(record.appointment_id)
            marker = marker_for(self.org, record.appointment_id)
            found = [
                event
                for event in await self.gateway.find_by_marker(self.mailbox.address, marker)
                if event.is_live
            ]
            if not found:
                missing.append(item_id)
                continue
            event = found[0]
            adopted = adopted_after_move(
                event, mapping, self.mailbox.address, self.connection.connection_id
            )
            if adopted is None:
                continue
            effects.mappings[record.appointment_id] = (adopted, event, event.change_key or "")
            effects.item_removals.append(item_id)
            effects.item_puts.append(
                record.model_copy(
                    update={
                        "item_id": event.item_id,
                        "change_key": event.change_key,
                        **_span(event),
                    }
                )
            )
        return missing

    async def _outside_window(
        self, gone: list[str], known: Mapping[str, MailboxItemRecord]
    ) -> tuple[list[str], list[str]]:
        """Split what a windowed full read did not see: (items to take for deleted, items that
        ended before the window). Items after the window are neither: a windowed reader cannot
        say anything about them."""
        window = self.window
        deleted: list[str] = []
        past: list[str] = []
        for item_id in gone:
            span = await self._span_of(known[item_id])
            if span is None or window.holds(*span):
                deleted.append(item_id)
            elif span[1] <= window.start:
                past.append(item_id)
        return deleted, past

    async def _span_of(self, record: MailboxItemRecord) -> tuple[datetime, datetime] | None:
        """When an item takes place, as calbridge last knew it (None: not known)."""
        if record.starts_at is not None and record.ends_at is not None:
            return record.starts_at, record.ends_at
        if record.kind is MailboxItemKind.APPOINTMENT and record.appointment_id:
            mapping, snapshot = await self._appointment(record.appointment_id)
            if mapping is not None and mapping.outlook_start and mapping.outlook_end:
                return mapping.outlook_start, mapping.outlook_end
            if snapshot is not None:
                return snapshot.start, snapshot.end
        return None

    async def _forget(self, item_ids: list[str]) -> None:
        """Drop what calbridge knows of items that ended before the window, and their busy
        blocks, without telling anyone: time passing changes nothing the platform must hear."""
        if not item_ids:
            return
        org, staff_id = self.org, self.mailbox.staff_id
        blocks = await in_storage_thread(self.repos.busy_blocks.blocks_of, org, staff_id)
        forgotten = set(item_ids)
        await asyncio.gather(
            *(
                in_storage_thread(
                    self.repos.busy_blocks.remove_block,
                    org,
                    staff_id,
                    row.value.event_id,
                    row.value.occurrence_id,
                )
                for row in blocks
                if row.value.event_id in forgotten
            ),
            *(
                in_storage_thread(self.repos.mailbox_items.remove_item, org, staff_id, item_id)
                for item_id in item_ids
            ),
        )

    async def _read(self, cursor: str | None) -> CalendarChanges:
        changes = await self.reader.changes_since(
            self.mailbox.address, cursor, max_changes=PAGE_CHANGES, window=self.window
        )
        self.windowed = self.windowed or changes.windowed
        return changes

    async def _guard(self, effects: PageEffects) -> str | None:
        """The mass-cancellation guard. The appointments calbridge knows in the mailbox are
        counted only when the page cancels two or more (an idle page reads nothing more)."""
        if effects.cancellations < 2:
            return None
        known = await in_storage_thread(
            self.repos.mailbox_items.items_of, self.org, self.mailbox.staff_id
        )
        known_appointments = sum(
            1 for item in known.values() if item.kind is MailboxItemKind.APPOINTMENT
        )
        share = self.settings.mass_cancellation_share
        if effects.cancellations > share * max(known_appointments, 1):
            return (
                f"{effects.cancellations} of {known_appointments} appointments would be "
                "cancelled at once: held for a person to look at"
            )
        return None

    # --- deciding -------------------------------------------------------------------------------

    async def _decide(
        self,
        changed: Iterable[ExchangeEvent],
        deleted: Iterable[str],
        *,
        known: Mapping[str, MailboxItemRecord] | None = None,
        looked_up: bool = False,
        into: PageEffects | None = None,
    ) -> PageEffects:
        """``looked_up``: the deletions were each read again already (``get_event``);
        ``into``: effects already decided, which these are added to."""
        changed, deleted = list(changed), list(deleted)
        effects = into if into is not None else PageEffects()
        if not changed and not deleted:
            return effects
        org, staff_id = self.org, self.mailbox.staff_id
        if known is None:
            known = await in_storage_thread(self.repos.mailbox_items.items_of, org, staff_id)
        if self.windowed and not looked_up:
            changed, deleted = await self._look_again(changed, deleted, known)
        blocks_by_event: dict[str, list[BusyBlock]] = defaultdict(list)
        for row in await in_storage_thread(self.repos.busy_blocks.blocks_of, org, staff_id):
            blocks_by_event[row.value.event_id].append(row.value)

        series = [
            event
            for event in changed
            if event.item_type is ItemType.SERIES_MASTER and self._appointment_of(event) is None
        ]
        occurrences = await self._expand(series)

        for event in changed:
            appointment_id = self._appointment_of(event)
            if appointment_id is not None:
                await self._appointment_changed(effects, appointment_id, event)
                continue
            copy_of = (
                known[event.item_id].appointment_id
                if event.item_id in known and known[event.item_id].kind is MailboxItemKind.COPY
                else None
            )
            if copy_of is None and event.uid:
                copy_of = await in_storage_thread(
                    self.repos.appointment_uids.appointment_of, org, event.uid
                )
            if copy_of is not None:
                # Read as busy time before its UID was known (the create's mapping not yet
                # stored): what it blocked is busy time no more.
                _drop_blocks(effects, event.item_id, blocks_by_event)
                if event.is_live and event.uid and await self._outlived(copy_of, event.uid):
                    effects.outlived_copies.append(event.item_id)
                effects.item_puts.append(
                    MailboxItemRecord(
                        item_id=event.item_id,
                        kind=MailboxItemKind.COPY,
                        change_key=event.change_key,
                        appointment_id=copy_of,
                        uid=event.uid,
                        **_span(event),
                    )
                )
                continue
            if event.uid and event.is_live and event.organizer not in (None, self.assigned[0]):
                effects.unknown_meetings.append(event.uid)
            self._busy_changed(effects, event, occurrences, blocks_by_event)

        for item_id in deleted:
            status = known.get(item_id)
            effects.item_removals.append(item_id)
            if status is None:
                continue
            if status.kind is MailboxItemKind.BUSY:
                _drop_blocks(effects, item_id, blocks_by_event)
            elif status.kind is MailboxItemKind.APPOINTMENT and status.appointment_id:
                mapping, snapshot = await self._appointment(status.appointment_id)
                verdict = organizer_item_deleted(status.appointment_id, item_id, mapping, snapshot)
                self._take(effects, status.appointment_id, verdict, None, f"deleted\n{item_id}")
        return effects

    async def _look_again(
        self,
        changed: list[ExchangeEvent],
        deleted: list[str],
        known: Mapping[str, MailboxItemRecord],
    ) -> tuple[list[ExchangeEvent], list[str]]:
        """A windowed reader reports an item that left its window as gone: an appointment's
        organizer item it reports so is looked up before it counts as deleted (one read each;
        an organizer moving an appointment past the horizon is rare)."""
        still_deleted: list[str] = []
        for item_id in deleted:
            record = known.get(item_id)
            if record is None or record.kind is not MailboxItemKind.APPOINTMENT:
                still_deleted.append(item_id)
                continue
            event = await self.gateway.get_event(self.mailbox.address, item_id)
            if event is None:
                still_deleted.append(item_id)
            else:
                changed.append(event)
        return changed, still_deleted

    async def _outlived(self, appointment_id: str, uid: str) -> bool:
        """Whether this mailbox's live copy of the appointment's meeting ``uid`` outlived its
        meeting (``copy_outlived``): the mapping is read, and the UID's row only when the copy
        is not of the mapping's own live meeting (as nearly every copy read is)."""
        found = await in_storage_thread(self.repos.event_map.get, self.org, appointment_id)
        mapping = found.value if found is not None else None
        if mapping is None or (mapping.uid == uid and not mapping.cancelled):
            return False
        row = await in_storage_thread(self.repos.appointment_uids.get, self.org, uid)
        generation = row.value.generation if row is not None else None
        return copy_outlived(uid, generation, mapping)

    def _appointment_of(self, event: ExchangeEvent) -> str | None:
        marker = parse_marker(event.marker)
        if marker is None or marker.org != self.org:
            return None
        return marker.appointment_id

    async def _appointment(
        self, appointment_id: str
    ) -> tuple[EventMapping | None, AppointmentSnapshot | None]:
        mapping, snapshot = await asyncio.gather(
            in_storage_thread(self.repos.event_map.get, self.org, appointment_id),
            in_storage_thread(self.repos.appointments.get, self.org, appointment_id),
        )
        return (
            mapping.value if mapping else None,
            snapshot.value if snapshot else None,
        )

    async def _appointment_changed(
        self,
        effects: PageEffects,
        appointment_id: str,
        event: ExchangeEvent,
    ) -> None:
        verdict, adopted, mapping = await self._judge(appointment_id, event)
        if verdict.events:
            # An Outlook change to report: the apply worker may have written the item since
            # this page was read, and the mapping read just now be newer than the item. Read
            # the item again, then the mapping, and judge once more (one request, only when a
            # change is to be told).
            fresh = await self.gateway.get_event(self.mailbox.address, event.item_id)
            if fresh is None or fresh.change_key != event.change_key:
                event = fresh or event
                verdict, adopted, mapping = await self._judge(appointment_id, event)
        effects.item_puts.append(
            MailboxItemRecord(
                item_id=event.item_id,
                kind=MailboxItemKind.APPOINTMENT,
                change_key=event.change_key,
                appointment_id=appointment_id,
                uid=event.uid,
                # Read between calbridge's create and its mapping write (the worker's note
                # carries no item id yet): the item cannot be judged now, and Exchange will not
                # report it again unless it changes, so the next sync looks it up.
                confirmed=not (mapping is not None and mapping.item_id is None),
                **_span(event),
            )
        )
        if adopted is not None and verdict.mapping is None:
            verdict = replace(verdict, mapping=adopted)
        self._take(effects, appointment_id, verdict, event, event.change_key or event.item_id)

    async def _judge(
        self, appointment_id: str, event: ExchangeEvent
    ) -> tuple[OutlookVerdict, EventMapping | None, EventMapping | None]:
        """What the organizer's item as read says against the stored mapping and snapshot; the
        mapping adopted when the organizer's mailbox moved to this connection (the item is
        calbridge's event under its new id); and the stored mapping."""
        mapping, snapshot = await self._appointment(appointment_id)
        # Whose answers count: the booked secondary staff, known by their mailboxes' addresses.
        staff_by_address = await self._addresses_of(
            snapshot.secondary_staff_ids if snapshot is not None else []
        )
        adopted = adopted_after_move(
            event, mapping, self.mailbox.address, self.connection.connection_id
        )
        verdict = organizer_item_changed(
            appointment_id, event, adopted or mapping, snapshot, staff_by_address
        )
        return verdict, adopted, mapping

    async def _addresses_of(self, staff_ids: list[str]) -> dict[str, str]:
        """Address → staff id of these staff members who have a mailbox (each row read once a
        sync, side by side)."""
        unread = [staff_id for staff_id in staff_ids if staff_id not in self.addresses]
        rows = await asyncio.gather(
            *(in_storage_thread(self.repos.mailboxes.get, self.org, s) for s in unread)
        )
        for staff_id, row in zip(unread, rows, strict=True):
            self.addresses[staff_id] = row.value.address if row is not None else None
        return {
            address: staff_id
            for staff_id in staff_ids
            if (address := self.addresses.get(staff_id)) is not None
        }

    def _take(
        self,
        effects: PageEffects,
        appointment_id: str,
        verdict: OutlookVerdict,
        event: ExchangeEvent | None,
        change: str,
    ) -> None:
        effects.outlook += [(outlook_event, change) for outlook_event in verdict.events]
        if verdict.mapping is not None:
            effects.mappings[appointment_id] = (verdict.mapping, event, change)
        if verdict.cancel_copies and verdict.mapping is not None:
            effects.copies_to_cancel.append((appointment_id, verdict.mapping))
            effects.cancellations += 1
        if verdict.ensure_copies_cancelled is not None:
            # Not an Outlook cancellation: the mass-cancellation guard does not count it.
            effects.copies_to_cancel.append((appointment_id, verdict.ensure_copies_cancelled))

    async def _expand(self, series: list[ExchangeEvent]) -> dict[str, list[ExchangeEvent]]:
        """Each changed series' occurrences over the horizon, by the series' UID: one calendar
        view for all of them."""
        if not series:
            return {}
        now = self.service._now()
        start = now - _EXPANSION_LOOKBACK
        end = now + timedelta(days=self.settings.recurrence_horizon_days)
        view = await self.gateway.list_events(self.mailbox.address, start, end)
        wanted = {event.uid for event in series if event.uid}
        found: dict[str, list[ExchangeEvent]] = defaultdict(list)
        for occurrence in view:
            if occurrence.uid in wanted and occurrence.item_type is not ItemType.SERIES_MASTER:
                found[occurrence.uid or ""].append(occurrence)
        return found

    def _busy_changed(
        self,
        effects: PageEffects,
        event: ExchangeEvent,
        occurrences: Mapping[str, list[ExchangeEvent]],
        blocks_by_event: Mapping[str, list[BusyBlock]],
    ) -> None:
        zone = self.mailbox.time_zone
        if event.item_type is ItemType.SERIES_MASTER:
            parts = occurrences.get(event.uid or "", []) if not event.is_cancelled else []
            candidates = [busy_block(o, zone, event_id=event.item_id) for o in parts]
        else:
            candidates = [busy_block(event, zone)]
        blocks = [b for b in candidates if b is not None] if self.mailbox.busy_time else []
        old = blocks_by_event.get(event.item_id, [])
        new_keys = {b.occurrence_id for b in blocks}
        effects.block_removals += [
            (event.item_id, b.occurrence_id) for b in old if b.occurrence_id not in new_keys
        ]
        effects.block_puts += blocks
        window = changed_window(old, blocks)
        if window:
            effects.windows.append(window)
        effects.item_puts.append(
            MailboxItemRecord(
                item_id=event.item_id,
                kind=MailboxItemKind.BUSY,
                change_key=event.change_key,
                content_hash=_content_hash(blocks),
                uid=event.uid,
                occurrences=[b.occurrence_id or "" for b in blocks],
                counted=self.mailbox.busy_time,
                **_span(event),
            )
        )

    # --- carrying out ---------------------------------------------------------------------------

    async def _carry_out(
        self, effects: PageEffects, change: str, *, read_after: str | None = None
    ) -> int:
        """Write what a page comes to; ``read_after``: the stored cursor the page was read past
        (its rows say so, and so does the mailbox row until the cursor moves on)."""
        org, staff_id = self.org, self.mailbox.staff_id
        repos = self.repos
        await self._still_assigned(effects)
        if read_after is not None and (
            effects.item_puts or effects.mappings or effects.outlook or effects.windows
        ):
            digest = cursor_digest(read_after)
            effects.item_puts = [
                item.model_copy(update={"read_after": digest}) for item in effects.item_puts
            ]
            if self.mailbox.written_past != digest:
                await self._mark_written_past(digest)
        for appointment_id, mapping in effects.copies_to_cancel:
            await self._cancel_copies(appointment_id, mapping)
        for item_id in effects.outlived_copies:
            # The live copy was just read: cancelled by its id, no look-up by UID first.
            await self.gateway.cancel_event(self.mailbox.address, item_id)
        for appointment_id, (mapping, event, _) in effects.mappings.items():
            await in_storage_thread(self._store_mapping, appointment_id, mapping, event)

        # The mailbox's busy blocks and item rows, each table's rows in batches (up to a
        # hundred rows a round trip: a first read of a full calendar is a few calls, not one
        # per row), the two tables side by side; removals before writes, so a row removed and
        # written again by one page ends up written.
        def blocks() -> None:
            repos.busy_blocks.remove_blocks(org, staff_id, effects.block_removals)
            repos.busy_blocks.put_blocks(org, staff_id, effects.block_puts)

        def items() -> None:
            repos.mailbox_items.remove_items(org, staff_id, effects.item_removals)
            repos.mailbox_items.put_items(org, staff_id, effects.item_puts)

        await asyncio.gather(in_storage_thread(blocks), in_storage_thread(items))
        await self._known_since(effects.unknown_meetings)
        now = self.service._now()
        rows = [outlook_event_row(org, event, key, now) for event, key in effects.outlook]
        if effects.windows:
            window = (min(w[0] for w in effects.windows), max(w[1] for w in effects.windows))
            rows.append(busy_time_row(org, staff_id, window, change, now))
        if rows:
            await self.service._tell(org, rows)
        return len(rows)

    async def _known_since(self, uids: list[str]) -> None:
        """Meetings organized elsewhere that this page wrote as busy time, their UIDs naming no
        appointment when they were read: one may be a copy of a meeting calbridge was creating
        just then. Graph gives a new meeting its UID, and the apply worker indexes it (then
        marks the copies a sync read as busy meanwhile) once the create has answered; a row
        written after that mark is one it missed. So each UID is looked up again once the rows
        are written: one that names an appointment now marks its items for the next sync, which
        is asked for, and which reads them as copies (one of the two always sees the other)."""
        if not uids:
            return
        org, staff_id = self.org, self.mailbox.staff_id
        unique = list(dict.fromkeys(uids))
        found = await asyncio.gather(
            *(
                in_storage_thread(self.repos.appointment_uids.appointment_of, org, uid)
                for uid in unique
            )
        )
        known = [uid for uid, appointment in zip(unique, found, strict=True) if appointment]
        for uid in known:
            await in_storage_thread(
                self.repos.mailbox_items.recheck, org, staff_id, uid, MailboxItemKind.BUSY
            )
        if known:
            await in_storage_thread(
                self.service._queue.send,
                MailboxSyncRequested(org=org, staff_id=staff_id, reason="a copy read as busy time"),
            )

    async def _still_assigned(self, effects: PageEffects) -> None:
        """Before a page's effects are written: the mailbox is still where this sync read it.
        An administrator who moved it meanwhile queued a new baseline on the new connection;
        rows written now under the old connection's ids would stay beside (or remove) that
        baseline's, as duplicated or missing busy time. One row read, only for a page with
        something to write."""
        if not effects.writes_anything():
            return
        current = await in_storage_thread(self.repos.mailboxes.get, self.org, self.mailbox.staff_id)
        if current is None or self.assigned != (
            current.value.address.lower(),
            current.value.connection_id,
        ):
            raise MailboxMovedMeanwhile(
                "the mailbox was assigned elsewhere while it was read: nothing written"
            )

    def _store_mapping(
        self, appointment_id: str, decided: EventMapping, event: ExchangeEvent | None = None
    ) -> None:
        """Store what the sync decided about a mapping: only the Outlook-side fields, on top of
        the newest row (the apply worker may have written it meanwhile); after a mailbox moved
        to another connection, also the item's new id and connection (adopted by its marker)."""
        fields = ("change_key", "cancelled", "outlook_start", "outlook_end", "declined_staff_ids")
        for _ in range(5):
            current = self.repos.event_map.get(self.org, appointment_id)
            if current is None:
                return
            base = current.value
            if event is not None:
                base = (
                    adopted_after_move(
                        event, base, self.mailbox.address, self.connection.connection_id
                    )
                    or base
                )
            if base.item_id != decided.item_id:
                return  # a new event of the appointment: what was decided is about the old one
            merged = base.model_copy(update={name: getattr(decided, name) for name in fields})
            if decided.in_doubt:
                # The item holds a write of calbridge's the mapping does not record: the apply
                # worker looks before it trusts the mapping again (never cleared here).
                merged = merged.model_copy(update={"in_doubt": True})
            try:
                self.repos.event_map.put(self.org, appointment_id, merged, current.etag)
                return
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"mapping of {appointment_id!r} kept changing")

    async def _cancel_copies(self, appointment_id: str, mapping: EventMapping) -> None:
        """The organizer cancelled or deleted the event: every secondary staff member's copy
        ends up cancelled, even when Exchange sent them no cancellation."""
        if not mapping.uid:
            return
        for staff_id in mapping.attendee_staff_ids:
            row = await in_storage_thread(self.repos.mailboxes.get, self.org, staff_id)
            if row is None:
                continue
            connection = await in_storage_thread(
                self.repos.connections.get, self.org, row.value.connection_id
            )
            if connection is None or not calls_allowed(connection.value):
                # Looked at again by that mailbox's own sync once its connection is back.
                await in_storage_thread(
                    self.repos.mailbox_items.recheck,
                    self.org,
                    staff_id,
                    mapping.uid,
                    MailboxItemKind.COPY,
                )
                continue
            gateway = self.service._gateways.for_connection(self.org, connection.value)
            await cancel_copy(gateway, row.value.address, mapping.uid)

    async def _mark_written_past(self, digest: str) -> None:
        await self._move_position(sync_state=self.mailbox.sync_state, written_past=digest)

    async def _store_cursor(self, cursor: str) -> None:
        await self._move_position(sync_state=cursor, written_past=None)

    async def _move_position(self, *, sync_state: str | None, written_past: str | None) -> None:
        """Store where the read is (see ``MailboxRecord.written_past``) over the position it
        read from, and only over that: a row another sync moved on meanwhile raises
        ``SyncedMeanwhile``."""
        read_from = self.read_from

        def move(record: MailboxRecord) -> MailboxRecord:
            if _position(record) != read_from:
                raise SyncedMeanwhile("another sync of the mailbox stored its position meanwhile")
            return record.model_copy(
                update={"sync_state": sync_state, "written_past": written_past}
            )

        written = await in_storage_thread(
            self.service._update_mailbox, self.org, self.mailbox.staff_id, move, self.row
        )
        if written is not None:
            self.row = written


def _drop_blocks(
    effects: PageEffects, item_id: str, blocks_by_event: Mapping[str, list[BusyBlock]]
) -> None:
    """Remove the busy blocks an item wrote, and tell the window they covered."""
    old = blocks_by_event.get(item_id, [])
    effects.block_removals += [(item_id, block.occurrence_id) for block in old]
    window = changed_window(old, [])
    if window:
        effects.windows.append(window)


def _span(event: ExchangeEvent) -> dict[str, datetime | None]:
    """When an item takes place, for its ``MailboxItems`` row (not known for a series master:
    its own times are its first occurrence's)."""
    if event.item_type is ItemType.SERIES_MASTER:
        return {"starts_at": None, "ends_at": None}
    return {"starts_at": event.start, "ends_at": event.end}


def cursor_digest(cursor: str) -> str:
    """What an item row and the mailbox row keep of a cursor (a delta link or an EWS sync state
    can be kilobytes long)."""
    return hashlib.sha256(cursor.encode()).hexdigest()[:32]


def _content_hash(blocks: Iterable[BusyBlock]) -> str:
    text = "\n".join(sorted(block.model_dump_json() for block in blocks))
    return hashlib.sha256(text.encode()).hexdigest()
