"""The apply service's storage, async: every method is one hand-off to the storage threads
(``shared.store.threads``), or reads in parallel where the rows are independent.

The repositories and the queue sender are synchronous (Azure SDK clients); the service is a
coroutine that shares its event loop with every other invocation. This facade is where the two
meet, so the service reads as a sequence of steps, not of thread hand-offs.

``MappingWriter`` holds the EventMap row's current ETag across the writes of one pass (the
pending-create note before a create, the intent before a write decided from a look, then the
outcome): each write is guarded by the ETag the
previous one returned, so a concurrent worker's write makes ours fail with
``ConcurrencyConflict`` instead of overwriting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.config import SecretResolver
from shared.connections import calls_allowed, mark_auth_failed
from shared.engine.outlook import OutlookEvent
from shared.models import AppointmentSnapshot, EventMapping, MailboxRef
from shared.queues import (
    APPOINTMENT_CHANGES,
    AppointmentChanged,
    MailboxSyncRequested,
    QueueSender,
    WebhookDeliveryDue,
)
from shared.store import Repositories, Versioned
from shared.store.records import (
    ApplyProblemRecord,
    ConnectionRecord,
    DeadLetterRecord,
    MailboxItemKind,
    MailboxItemRecord,
    OutboxRecord,
    ParkedChangeRecord,
)
from shared.store.threads import in_storage_thread
from shared.webhooks.events import outlook_event_row

# A problem's text as stored (the column holds at most this much).
_MAX_TEXT = 2000


@dataclass(frozen=True)
class StoredState:
    """What one pass starts from: the newest snapshot and the mapping, each with its ETag, the
    organization's connections, and the mailboxes of the staff asked for (those who have one)."""

    snapshot: Versioned[AppointmentSnapshot] | None
    mapping: Versioned[EventMapping] | None
    connections: dict[str, ConnectionRecord]
    mailboxes: dict[str, MailboxRef]
    asked: frozenset[str]  # the staff whose mailboxes were read (``mailboxes``: those who have one)


class ApplyStore:
    """The rows and the queue the apply service reads and writes, for one organization's
    appointments."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        now: Callable[[], datetime],
        secrets: SecretResolver | None = None,
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._now = now
        self._secrets = secrets

    async def auth_failed(self, org: str, connection_id: str, detail: str) -> None:
        """Exchange refused the connection's credentials: mark it ``auth_failed`` (once) and
        tell the booking platform."""

        def mark() -> None:
            current = self._repos.connections.get(org, connection_id)
            if current is not None:
                mark_auth_failed(
                    self._repos, self._queue, self._secrets, org, current, detail, self._now()
                )

        await in_storage_thread(mark)

    # --- reading --------------------------------------------------------------------------------

    async def state(
        self, org: str, appointment_id: str, staff_ids: Iterable[str] = ()
    ) -> StoredState:
        """The snapshot, the mapping, the connections and the mailboxes of ``staff_ids``: every
        row read in parallel, one storage round."""
        asked = frozenset(staff_ids)
        snapshot, mapping, connections, mailboxes = await asyncio.gather(
            in_storage_thread(self._repos.appointments.get, org, appointment_id),
            in_storage_thread(self._repos.event_map.get, org, appointment_id),
            self.connections(org),
            self.directory(org, asked),
        )
        return StoredState(snapshot, mapping, connections, mailboxes, asked)

    async def directory(self, org: str, staff_ids: Iterable[str]) -> dict[str, MailboxRef]:
        """Staff id → mailbox for the staff members who have one (rows read in parallel)."""
        records = await asyncio.gather(
            *(in_storage_thread(self._repos.mailboxes.get, org, staff_id) for staff_id in staff_ids)
        )
        return {
            record.value.staff_id: MailboxRef(
                staff_id=record.value.staff_id,
                connection_id=record.value.connection_id,
                address=record.value.address,
                time_zone=record.value.time_zone,
            )
            for record in records
            if record is not None
        }

    async def connections(self, org: str) -> dict[str, ConnectionRecord]:
        """The organization's connections by id."""
        found = await in_storage_thread(self._repos.connections.list_by_org, org)
        return {connection_id: row.value for connection_id, row in found.items()}

    # --- writing --------------------------------------------------------------------------------

    def mapping_writer(self, org: str, appointment_id: str, etag: str | None) -> MappingWriter:
        return MappingWriter(self, org, appointment_id, etag)

    async def put_mapping(
        self, org: str, appointment_id: str, mapping: EventMapping, etag: str | None
    ) -> str:
        """Write the mapping if its ETag is still ``etag`` (None: if there is none); the new
        ETag."""
        return await in_storage_thread(
            self._repos.event_map.put, org, appointment_id, mapping, etag
        )

    async def record_problem(
        self,
        org: str,
        appointment_id: str,
        version: int,
        text: str,
        organizer_staff_id: str | None = None,
    ) -> None:
        """Why Exchange does not show the snapshot (``ApplyProblems``)."""
        record = ApplyProblemRecord(
            appointment_id=appointment_id,
            version=version,
            problem=text[:_MAX_TEXT],
            recorded_at=self._now(),
            organizer_staff_id=organizer_staff_id,
        )
        await in_storage_thread(self._repos.problems.record, org, record)

    async def note_mailbox_refused(self, org: str, staff_id: str, reason: str) -> None:
        """The staff member's mailbox refused the connection (``Health.ACCESS_DENIED``)."""
        await in_storage_thread(self._repos.mailboxes.note_refused, org, staff_id, reason)

    async def remember_uid(self, org: str, uid: str, appointment_id: str, generation: int) -> None:
        """The meeting's UID names this appointment's meeting of that generation (attendees'
        copies are known by it)."""
        await in_storage_thread(
            self._repos.appointment_uids.remember, org, uid, appointment_id, generation
        )

    async def recheck_copies(self, org: str, uid: str, staff_ids: Iterable[str]) -> None:
        """The UID of a meeting an earlier pass made, learned only now (its worker died before
        storing it): a sync that read an attendee's copy meanwhile took it for the attendee's
        own busy time. Each such item is marked for its mailbox's next sync to look at again
        (as an item calbridge wrote and no sync has read: it is known for a copy then), and
        that sync is asked for."""

        recheck = self._repos.mailbox_items.recheck

        async def one(staff_id: str) -> None:
            if await in_storage_thread(recheck, org, staff_id, uid, MailboxItemKind.BUSY):
                await self.request_sync(org, staff_id, "a copy read as busy time")

        # Each attendee's mailbox on its own: one round for all of them.
        await asyncio.gather(*(one(staff_id) for staff_id in staff_ids))

    async def copies_left(self, org: str, uids: Iterable[str], staff_ids: Iterable[str]) -> None:
        """Copies of these meetings that could not be cancelled (their mailbox's connection
        cannot be called now): each one read before is marked for the mailbox's next sync to
        look at again once the connection is back, which cancels what outlived its meeting."""
        recheck = self._repos.mailbox_items.recheck
        await asyncio.gather(
            *(
                in_storage_thread(recheck, org, staff_id, uid, MailboxItemKind.COPY)
                for staff_id in staff_ids
                for uid in uids
            )
        )

    async def note_organizer_item(
        self, org: str, appointment_id: str, mapping: EventMapping
    ) -> None:
        """What calbridge knows of the organizer's item it wrote, in the organizer's
        ``MailboxItems``: the mailbox sync then knows the item when it is deleted in Outlook,
        even if no sync saw it before."""
        assert mapping.item_id is not None
        item = MailboxItemRecord(
            item_id=mapping.item_id,
            kind=MailboxItemKind.APPOINTMENT,
            change_key=mapping.change_key,
            appointment_id=appointment_id,
            uid=mapping.uid,
            confirmed=False,
        )
        await in_storage_thread(
            self._repos.mailbox_items.put_item, org, mapping.organizer_staff_id, item
        )

    async def clear_problem(self, org: str, appointment_id: str) -> None:
        await in_storage_thread(self._repos.problems.clear, org, appointment_id)

    async def count_throttled_try(
        self,
        org: str,
        appointment_id: str,
        version: int,
        text: str,
        organizer_staff_id: str | None = None,
    ) -> ApplyProblemRecord:
        """Count one throttled try in ``ApplyProblems``, keeping when the throttling began."""

        def count() -> ApplyProblemRecord:
            now = self._now()
            earlier = self._repos.problems.get(org, appointment_id)
            since = earlier.value.throttled_since if earlier is not None else None
            tries = earlier.value.throttled_tries if earlier is not None and since else 0
            record = ApplyProblemRecord(
                appointment_id=appointment_id,
                version=version,
                problem=text[:_MAX_TEXT],
                recorded_at=now,
                throttled_since=since or now,
                throttled_tries=tries + 1,
                organizer_staff_id=organizer_staff_id,
            )
            self._repos.problems.record(org, record)
            return record

        return await in_storage_thread(count)

    async def park(
        self,
        org: str,
        appointment_id: str,
        connection_id: str,
        organizer_staff_id: str | None = None,
    ) -> bool:
        """Hold the change until the connection may be called again (``ParkedChanges``). False
        when the connection turned out callable once the change was parked (enabled, its
        credentials not refused): it is not held then, and the caller sends it again.

        Enabling (or recovering) a connection requeues what is parked at that moment, so a
        change parked just after would wait for the next time: the connection is read again
        after parking (whichever of the two comes second sees the other; both may requeue,
        which is harmless)."""
        record = ParkedChangeRecord(
            appointment_id=appointment_id,
            connection_id=connection_id,
            parked_at=self._now(),
            organizer_staff_id=organizer_staff_id,
        )

        def park_while_disabled() -> bool:
            self._repos.parked.park(org, record)
            found = self._repos.connections.get(org, connection_id)
            if found is not None and calls_allowed(found.value):
                self._repos.parked.unpark(org, appointment_id)
                return False
            return True

        return await in_storage_thread(park_while_disabled)

    async def requeue(self, message: AppointmentChanged, delay: timedelta) -> None:
        """Send the change again, invisible for ``delay``."""
        await in_storage_thread(self._queue.send, message, visibility_delay=delay)

    async def keep_told(
        self, org: str, events: Iterable[OutlookEvent], change: str
    ) -> list[OutboxRecord]:
        """Keep the Outlook-side changes a pass learned in the outbox (before the mapping that
        records them: a worker that dies between the two tells them on the message's next
        pass, under the same ids); their deliveries are queued by ``deliver``."""
        now = self._now()
        rows = [outlook_event_row(org, event, change, now) for event in events]
        await asyncio.gather(*(in_storage_thread(self._repos.outbox.add, org, r) for r in rows))
        return rows

    async def deliver(self, org: str, rows: Iterable[OutboxRecord]) -> None:
        """Queue the deliveries of rows kept in the outbox (one lost is queued again by the
        outbox sweep)."""
        await asyncio.gather(
            *(
                in_storage_thread(
                    self._queue.send, WebhookDeliveryDue(org=org, event_id=row.event_id)
                )
                for row in rows
            )
        )

    async def request_sync(self, org: str, staff_id: str, reason: str) -> None:
        """Ask for the staff member's mailbox to be read now (``mailbox-sync``)."""
        await in_storage_thread(
            self._queue.send, MailboxSyncRequested(org=org, staff_id=staff_id, reason=reason)
        )

    async def dead_letter(
        self, message: AppointmentChanged, reason: str, dequeue_count: int
    ) -> None:
        """Why a message goes to the poison queue (``DeadLetters``)."""
        record = DeadLetterRecord(
            queue=APPOINTMENT_CHANGES,
            subject_id=message.appointment_id,
            # The ids that name the change (the staff hint is not needed to replay it).
            message=message.model_dump(mode="json", by_alias=True, exclude={"staff_ids"}),
            reason=reason[:_MAX_TEXT],
            dequeue_count=dequeue_count,
            failed_at=self._now(),
        )
        await in_storage_thread(self._repos.dead_letters.record, message.org, record)


class MappingWriter:
    """Writes one appointment's EventMap row during one pass, each write guarded by the ETag the
    one before returned (see the module docstring)."""

    def __init__(self, store: ApplyStore, org: str, appointment_id: str, etag: str | None) -> None:
        self._store = store
        self._org = org
        self._appointment_id = appointment_id
        self.etag = etag
        # The UID a pending create's note put in the index before the create was sent.
        self.remembered: str | None = None

    async def write(self, mapping: EventMapping) -> None:
        self.etag = await self._store.put_mapping(
            self._org, self._appointment_id, mapping, self.etag
        )

    async def before_write(self, mapping: EventMapping) -> None:
        """``write``, right before a write to Exchange. The note of a create whose meeting's
        UID calbridge chooses also puts that UID in the index: before the create is sent, so
        no attendee's copy can be read before its UID names the appointment (a sync that read
        one by a UID the index does not hold would take it for the attendee's own busy time)."""
        uid = mapping.uid
        if mapping.item_id is None and uid is not None and not mapping.cancelled:
            await asyncio.gather(
                self.write(mapping),
                self._store.remember_uid(self._org, uid, self._appointment_id, mapping.generation),
            )
            self.remembered = uid
        else:
            await self.write(mapping)
