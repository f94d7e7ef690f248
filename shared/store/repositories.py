"""The repositories of calbridge's state tables (architecture.md, "State").

Each is a few lines on top of :mod:`shared.store.entity_repository`: the table, the model, the
key shape and the domain methods. :func:`build_repositories` puts them together over any
:class:`~shared.store.tables.TableService` (Azure or in-memory).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.models import AppointmentSnapshot, BusyBlock, EventMapping, Health, OrgSettings
from shared.observability import metrics
from shared.store.call_slots import CallSlotLeases
from shared.store.entities import canonical_datetime
from shared.store.entity_repository import (
    EntityKey,
    EntityRepository,
    OrgScopedRepository,
    Versioned,
)
from shared.store.errors import ConcurrencyConflict
from shared.store.records import (
    ApplyProblemRecord,
    AppointmentUidRecord,
    ConnectionRecord,
    DeadLetterRecord,
    MailboxItemKind,
    MailboxItemRecord,
    MailboxRecord,
    OutboxRecord,
    ParkedChangeRecord,
    SubscriptionRecord,
)
from shared.store.tables import Condition, TableService

# Racing writers of one appointment settle within a few rounds; more means something is wrong.
MAX_SAVE_ATTEMPTS = 8


class SaveResult(StrEnum):
    STORED = "stored"  # new, or newer than what was stored
    SAME = "same"  # this version with this content is already stored (a retry)
    STALE = "stale"  # older than the stored version: ignored
    CONFLICT = "conflict"  # this version is stored with different content


@dataclass(frozen=True)
class SaveOutcome:
    result: SaveResult
    stored_version: int  # the version stored once the call returns


class AppointmentRepository(OrgScopedRepository[AppointmentSnapshot]):
    """Appointments (org / appointmentId): the latest snapshot the booking platform sent."""

    table_name = "Appointments"
    model = AppointmentSnapshot

    def save_snapshot(
        self, org: str, appointment_id: str, snapshot: AppointmentSnapshot
    ) -> SaveOutcome:
        """Keep ``snapshot`` if it is newer than what is stored. Conditional on the ETag read,
        so of two racing saves exactly one is decided against what the other stored."""
        key = EntityKey.of((org,), (appointment_id,))
        for _ in range(MAX_SAVE_ATTEMPTS):
            current = self.read(key)
            if current is None or snapshot.version > current.value.version:
                try:
                    self.write(key, snapshot, None if current is None else current.etag)
                except ConcurrencyConflict:
                    continue  # someone else wrote first: re-read and decide again
                return SaveOutcome(SaveResult.STORED, snapshot.version)
            stored = current.value
            if snapshot.version < stored.version:
                return SaveOutcome(SaveResult.STALE, stored.version)
            # model_dump compares datetimes as instants: the same time sent with another
            # offset is the same content.
            same = stored.model_dump() == snapshot.model_dump()
            return SaveOutcome(SaveResult.SAME if same else SaveResult.CONFLICT, stored.version)
        raise ConcurrencyConflict(
            f"appointment {appointment_id!r} kept changing during {MAX_SAVE_ATTEMPTS} attempts"
        )


class EventMapRepository(OrgScopedRepository[EventMapping]):
    """EventMap (org / appointmentId): what calbridge wrote to Exchange for an appointment."""

    table_name = "EventMap"
    model = EventMapping


class ConnectionRepository(OrgScopedRepository[ConnectionRecord]):
    """Connections (org / connectionId)."""

    table_name = "Connections"
    model = ConnectionRecord
    id_field = "connection_id"

    def every_org(self) -> list[tuple[str, Versioned[ConnectionRecord]]]:
        """Every organization's connections, as (org, connection): the poll fan-out's list."""
        return [(partition[0], row) for partition, _, row in self.read_all()]


class OrgSettingsRepository(EntityRepository[OrgSettings]):
    """OrgSettings (org / "settings"): one row per organization."""

    table_name = "OrgSettings"
    model = OrgSettings

    @staticmethod
    def key(org: str) -> EntityKey:
        return EntityKey.of((org,), ("settings",))

    def get(self, org: str) -> Versioned[OrgSettings] | None:
        return self.read(self.key(org))

    def put(self, org: str, settings: OrgSettings, etag: str | None) -> str:
        return self.write(self.key(org), settings, etag)

    def settings_of(self, org: str) -> OrgSettings:
        """The organization's settings, the defaults when it has none stored."""
        found = self.get(org)
        return found.value if found is not None else OrgSettings()


class MailboxItemRepository(EntityRepository[MailboxItemRecord]):
    """MailboxItems (org|staffId / itemId): what calbridge knows of each item of a staff
    member's calendar. One writer per mailbox (its sync)."""

    table_name = "MailboxItems"
    model = MailboxItemRecord

    @staticmethod
    def key(org: str, staff_id: str, item_id: str) -> EntityKey:
        return EntityKey.of((org, staff_id), (item_id,))

    def get_item(self, org: str, staff_id: str, item_id: str) -> MailboxItemRecord | None:
        found = self.read(self.key(org, staff_id, item_id))
        return found.value if found is not None else None

    def put_item(self, org: str, staff_id: str, item: MailboxItemRecord) -> None:
        self.upsert(self.key(org, staff_id, item.item_id), item)

    def remove_item(self, org: str, staff_id: str, item_id: str) -> None:
        self.remove(self.key(org, staff_id, item_id))

    def put_items(self, org: str, staff_id: str, items: Sequence[MailboxItemRecord]) -> None:
        """``put_item`` for many items of one mailbox, in batches."""
        self.upsert_many([(self.key(org, staff_id, item.item_id), item) for item in items])

    def remove_items(self, org: str, staff_id: str, item_ids: Sequence[str]) -> None:
        self.remove_many([self.key(org, staff_id, item_id) for item_id in item_ids])

    def items_of(self, org: str, staff_id: str) -> dict[str, MailboxItemRecord]:
        return {row.value.item_id: row.value for _, row in self.read_partition((org, staff_id))}

    def unconfirmed_of(self, org: str, staff_id: str) -> list[str]:
        """Ids of the items calbridge wrote that no sync has read yet (a filtered query: an
        idle mailbox reads no rows)."""
        rows = self.read_partition((org, staff_id), [Condition("confirmed", "eq", False)])
        return [row.value.item_id for _, row in rows]

    def with_uid(self, org: str, staff_id: str, uid: str) -> list[MailboxItemRecord]:
        """The mailbox's items with this iCalendar UID (a filtered query)."""
        rows = self.read_partition((org, staff_id), [Condition("uid", "eq", uid)])
        return [row.value for _, row in rows]

    def recheck(self, org: str, staff_id: str, uid: str, kind: MailboxItemKind) -> bool:
        """Mark the mailbox's items of that kind with this UID for its next sync to look at
        again (as items calbridge wrote and no sync has read); True when there was any."""
        found = [item for item in self.with_uid(org, staff_id, uid) if item.kind is kind]
        if found:
            self.put_items(
                org, staff_id, [item.model_copy(update={"confirmed": False}) for item in found]
            )
        return bool(found)

    def read_after(self, org: str, staff_id: str, cursor_digest: str) -> list[str]:
        """Ids of the items whose rows an incremental read from that cursor wrote."""
        rows = self.read_partition((org, staff_id), [Condition("readAfter", "eq", cursor_digest)])
        return [row.value.item_id for _, row in rows]


class AppointmentUidRepository(OrgScopedRepository[AppointmentUidRecord]):
    """AppointmentUids (org / UID): which appointment an iCalendar UID belongs to."""

    table_name = "AppointmentUids"
    model = AppointmentUidRecord
    id_field = "uid"

    def appointment_of(self, org: str, uid: str) -> str | None:
        found = self.get(org, uid)
        return found.value.appointment_id if found is not None else None

    def remember(
        self, org: str, uid: str, appointment_id: str, generation: int | None = None
    ) -> None:
        self.upsert(
            EntityKey.of((org,), (uid,)),
            AppointmentUidRecord(uid=uid, appointment_id=appointment_id, generation=generation),
        )


class MailboxRepository(OrgScopedRepository[MailboxRecord]):
    """Mailboxes (org / staffId): which mailbox each staff member lives in, and its sync."""

    table_name = "Mailboxes"
    model = MailboxRecord
    id_field = "staff_id"

    def note_refused(self, org: str, staff_id: str, reason: str) -> bool:
        """Mark the mailbox ``access_denied`` with ``reason`` (its sync state stays: access
        granted again, it goes on from there). False when there is no such row or it was
        already marked with that reason."""
        for _ in range(5):
            found = self.get(org, staff_id)
            if found is None:
                return False
            record = found.value
            reason = reason[:2000]
            if record.health is Health.ACCESS_DENIED and record.last_error == reason:
                return False
            changed = record.model_copy(
                update={"health": Health.ACCESS_DENIED, "last_error": reason}
            )
            try:
                self.put(org, staff_id, changed, found.etag)
                return True
            except ConcurrencyConflict:
                continue
        return False

    # What the status API shows of a mailbox: everything but the sync cursor (an EWS sync
    # state or a Graph delta link, up to a few KB each).
    STATUS_FIELDS = tuple(name for name in MailboxRecord.model_fields if name != "sync_state")

    def status_of(self, org: str) -> list[MailboxRecord]:
        """The organization's mailboxes without their sync cursors (``sync_state`` None), by
        staff id: for reading, never for writing back."""
        rows = self.read_partition((org,), fields=self.STATUS_FIELDS)
        return [row.value for _, row in rows]


class SubscriptionRepository(OrgScopedRepository[SubscriptionRecord]):
    """Subscriptions (org / subscriptionId): Graph change-notification subscriptions."""

    table_name = "Subscriptions"
    model = SubscriptionRecord
    id_field = "subscription_id"


class OutboxRepository(OrgScopedRepository[OutboxRecord]):
    """Outbox (org / eventId): outbound webhooks and their delivery state."""

    table_name = "Outbox"
    model = OutboxRecord
    id_field = "event_id"

    # The rows the status API counts, each one filtered query: delivered rows, however many,
    # are never read.

    def never_tried(self, org: str) -> list[OutboxRecord]:
        """Rows no delivery has tried yet (new, or replayed: their tries start over)."""
        return self._undelivered(org, Condition("attempts", "eq", 0))

    def retried_since(self, org: str, since: datetime) -> list[OutboxRecord]:
        """Undelivered rows whose next try was due at ``since`` or later (being retried)."""
        return self._undelivered(org, Condition("nextAttemptAt", "ge", canonical_datetime(since)))

    def dead_lettered(self, org: str) -> list[OutboxRecord]:
        """Rows given up after their last try (until replayed)."""
        return self._undelivered(org, Condition("deadLettered", "eq", True))

    def _undelivered(self, org: str, condition: Condition) -> list[OutboxRecord]:
        rows = self.read_partition((org,), [condition])
        return [row.value for _, row in rows if row.value.delivered_at is None]

    def overdue(self, before: datetime) -> list[tuple[str, Versioned[OutboxRecord]]]:
        """(org, row) of every organization's rows whose next try was due before ``before``
        and that are neither delivered nor dead-lettered: one filtered query over the table
        (the service reads every row; only the overdue ones come back)."""
        rows = self.read_all([Condition("nextAttemptAt", "lt", canonical_datetime(before))])
        return [
            (partition[0], row)
            for partition, _, row in rows
            if row.value.delivered_at is None and not row.value.dead_lettered
        ]

    def add(self, org: str, row: OutboxRecord) -> bool:
        """Keep a new event; False when a row with its id exists already (the same change told
        again: its delivery state is left as it is)."""
        try:
            self.put(org, row.event_id, row, None)
        except ConcurrencyConflict:
            return False
        return True


class ParkedChangeRepository(OrgScopedRepository[ParkedChangeRecord]):
    """ParkedChanges (org / appointmentId): changes waiting for a disabled connection."""

    table_name = "ParkedChanges"
    model = ParkedChangeRecord
    id_field = "appointment_id"

    def park(self, org: str, record: ParkedChangeRecord) -> None:
        self.upsert(EntityKey.of((org,), (record.appointment_id,)), record)

    def unpark(self, org: str, appointment_id: str) -> None:
        """Forget a parked change (a missing row is fine)."""
        self.delete(org, appointment_id)

    def parked_on(self, org: str, connection_id: str) -> list[ParkedChangeRecord]:
        return [
            v.value
            for v in self.list_by_org(org).values()
            if v.value.connection_id == connection_id
        ]


class ApplyProblemRepository(OrgScopedRepository[ApplyProblemRecord]):
    """ApplyProblems (org / appointmentId): why an appointment is not (fully) in Exchange."""

    table_name = "ApplyProblems"
    model = ApplyProblemRecord
    id_field = "appointment_id"

    def record(self, org: str, problem: ApplyProblemRecord) -> None:
        self.upsert(EntityKey.of((org,), (problem.appointment_id,)), problem)

    def clear(self, org: str, appointment_id: str) -> None:
        self.delete(org, appointment_id)


class DeadLetterRepository(EntityRepository[DeadLetterRecord]):
    """DeadLetters (org / queue|subjectId): the last failure of work that went to a poison
    queue, shown by the status API and used to replay it."""

    table_name = "DeadLetters"
    model = DeadLetterRecord

    def record(self, org: str, letter: DeadLetterRecord) -> None:
        self.upsert(EntityKey.of((org,), (letter.queue, letter.subject_id)), letter)
        metrics.dead_lettered(org, letter.queue)

    def of_org(self, org: str) -> list[DeadLetterRecord]:
        return [value.value for _, value in self.read_partition((org,))]

    def forget(self, org: str, queue: str, subject_id: str) -> None:
        """The work was replayed: its dead letter goes (a missing row is fine)."""
        self.remove(EntityKey.of((org,), (queue, subject_id)))


class BusyBlockRepository(EntityRepository[BusyBlock]):
    """BusyBlocks (org|staffId / eventId|occurrence): a staff member's busy time from Exchange.

    One writer per mailbox (its sync), so blocks are upserted; the occurrence part of the row key
    is empty for a single event.
    """

    table_name = "BusyBlocks"
    model = BusyBlock

    @staticmethod
    def key(org: str, staff_id: str, event_id: str, occurrence_id: str | None) -> EntityKey:
        return EntityKey.of((org, staff_id), (event_id, occurrence_id or ""))

    def put_block(self, org: str, staff_id: str, block: BusyBlock) -> str:
        return self.upsert(self.key(org, staff_id, block.event_id, block.occurrence_id), block)

    def put_blocks(self, org: str, staff_id: str, blocks: Sequence[BusyBlock]) -> None:
        """``put_block`` for many blocks of one staff member, in batches."""
        self.upsert_many(
            [(self.key(org, staff_id, b.event_id, b.occurrence_id), b) for b in blocks]
        )

    def remove_blocks(
        self, org: str, staff_id: str, blocks: Sequence[tuple[str, str | None]]
    ) -> None:
        """``remove_block`` for many (event id, occurrence id) pairs, in batches."""
        self.remove_many([self.key(org, staff_id, event, occ) for event, occ in blocks])

    def get_block(
        self, org: str, staff_id: str, event_id: str, occurrence_id: str | None = None
    ) -> Versioned[BusyBlock] | None:
        return self.read(self.key(org, staff_id, event_id, occurrence_id))

    def remove_block(
        self, org: str, staff_id: str, event_id: str, occurrence_id: str | None = None
    ) -> None:
        self.remove(self.key(org, staff_id, event_id, occurrence_id))

    def blocks_of(self, org: str, staff_id: str) -> list[Versioned[BusyBlock]]:
        return [value for _, value in self.read_partition((org, staff_id))]

    def overlapping(
        self, org: str, staff_id: str, start: datetime, end: datetime
    ) -> list[BusyBlock]:
        """Blocks that overlap ``[start, end)``, by start time. Filtered by the table service:
        stored times are fixed-width UTC strings, so string order is time order."""
        conditions = (
            Condition("start", "lt", canonical_datetime(end)),
            Condition("end", "gt", canonical_datetime(start)),
        )
        return self.read_values((org, staff_id), conditions, order_by=("start", "end", "event_id"))


@dataclass(frozen=True)
class Repositories:
    """Every repository, over one table service."""

    connections: ConnectionRepository
    mailboxes: MailboxRepository
    appointments: AppointmentRepository
    event_map: EventMapRepository
    busy_blocks: BusyBlockRepository
    subscriptions: SubscriptionRepository
    outbox: OutboxRepository
    parked: ParkedChangeRepository
    dead_letters: DeadLetterRepository
    problems: ApplyProblemRepository
    settings: OrgSettingsRepository
    mailbox_items: MailboxItemRepository
    appointment_uids: AppointmentUidRepository
    call_slots: CallSlotLeases


def build_repositories(tables: TableService) -> Repositories:
    return Repositories(
        connections=ConnectionRepository(tables),
        mailboxes=MailboxRepository(tables),
        appointments=AppointmentRepository(tables),
        event_map=EventMapRepository(tables),
        busy_blocks=BusyBlockRepository(tables),
        subscriptions=SubscriptionRepository(tables),
        outbox=OutboxRepository(tables),
        parked=ParkedChangeRepository(tables),
        dead_letters=DeadLetterRepository(tables),
        problems=ApplyProblemRepository(tables),
        settings=OrgSettingsRepository(tables),
        mailbox_items=MailboxItemRepository(tables),
        appointment_uids=AppointmentUidRepository(tables),
        call_slots=CallSlotLeases(tables),
    )
