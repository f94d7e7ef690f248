"""The apply worker's service: make Exchange show an appointment's latest stored snapshot.

One call per ``appointment-changes`` message. The message carries ids only: the service reads
the newest snapshot and the mapping, resolves the staff members' mailboxes and connections, runs
one pass of the engine through the calendar port (``shared.apply.executor.apply_appointment``)
and stores the resulting mapping with its ETag; storage is reached through ``ApplyStore``.
Duplicate and out-of-order messages are harmless: every pass reconciles to the newest stored
snapshot.

What happens to the message (``ApplyDisposition``):

- ``done`` — Exchange matches the snapshot (or nothing was to be done); the message is deleted.
- ``requeued`` — Exchange throttled us (``RetryAfter``): a fresh message is queued with that
  visibility delay and this one completes. The worker never sleeps. Each throttled try is
  counted in ``ApplyProblems`` (since when, how many tries) and logged as a warning, so an
  appointment that Exchange throttles without end shows in the status and the logs.
- ``parked`` — a connection the pass needs is disabled for maintenance, or refuses its
  credentials (``auth_failed``; a 401 during this pass marks it so): no call is made, the
  appointment is recorded in ``ParkedChanges`` and re-queued when the connection may be called
  again (enabled, saved, tested, or recovered by the slow retry; ``shared.connections``).
- ``problem`` — a staff member has no known mailbox, or a connection is missing: recorded in
  ``ApplyProblems`` (and on the mapping's ``last_error`` when there is a mapping); the next
  snapshot or an admin fix re-triggers it. Nothing to retry. A mailbox the connection's service
  account may not open (or that Exchange does not know) is a problem too, also marked on that
  mailbox (``access_denied``); its change comes back after ``MAILBOX_REFUSED_RETRY``.
- Anything else raises (``AppointmentApplyFailed`` for Exchange's refusals): the host makes the
  message visible again after its visibility timeout and, after ``maxDequeueCount`` tries,
  moves it to the poison queue. A calendar failure is recorded on the mapping at every try; every
  failure's reason is recorded in ``DeadLetters`` on the last try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.apply.executor import ApplyOutcome, apply_appointment
from shared.apply.store import ApplyStore, MappingWriter, StoredState
from shared.config import SecretResolver
from shared.connections import calls_allowed
from shared.engine.reconcile import (
    CancelCopy,
    CancelEvent,
    PlanReason,
    ReconcilePlan,
    copy_holders,
    mailboxes_called,
)
from shared.exchange.gateways import Gateways
from shared.exchange.port import (
    AuthenticationFailed,
    CalendarError,
    CalendarGateway,
    mailbox_refusal,
)
from shared.models import AppointmentSnapshot, EventMapping, Health, MailboxRef
from shared.observability import metrics
from shared.queues import MAX_VISIBILITY_DELAY, AppointmentChanged, QueueSender
from shared.store import ConcurrencyConflict, Repositories
from shared.store.records import ConnectionRecord

log = logging.getLogger(__name__)

# A change-key conflict or a vanished item means someone edited the calendar between our read
# and our write; so does an ETag conflict on the mapping. Looking again at once settles it; more
# rounds than this means something keeps interfering, and the host's retry takes over.
MAX_PASSES = 3
_MAX_DELAY_SECONDS = MAX_VISIBILITY_DELAY.total_seconds()
# How soon a change whose mailbox refused the connection is tried again (rights are granted in
# Exchange, not through calbridge, so nothing else would bring it back).
MAILBOX_REFUSED_RETRY: Final = timedelta(minutes=10)
# How long a newer snapshot waits for the mailbox sync to read an Outlook change it met.
READ_FIRST_DELAY: Final = timedelta(seconds=15)


class ApplyDisposition(StrEnum):
    DONE = "done"
    REQUEUED = "requeued"
    PARKED = "parked"
    PROBLEM = "problem"
    MISSING = "missing"  # no snapshot stored (never accepted): nothing to do


@dataclass(frozen=True)
class ApplyReport:
    disposition: ApplyDisposition
    detail: str = ""
    retry_after: float | None = None


class LookAgain:
    """A pass's outcome when the calendar or the mapping changed under it: run the pass again
    from fresh reads."""


LOOK_AGAIN: Final = LookAgain()

# How each outcome is logged: a re-queued (throttled) or problem outcome is not a success.
_OUTCOME_LOG: dict[ApplyDisposition, tuple[int, str]] = {
    ApplyDisposition.DONE: (logging.INFO, "appointment applied"),
    ApplyDisposition.REQUEUED: (logging.WARNING, "appointment throttled by Exchange; re-queued"),
    ApplyDisposition.PARKED: (logging.INFO, "appointment parked: its connection is disabled"),
    ApplyDisposition.PROBLEM: (logging.WARNING, "appointment not fully applied: problem recorded"),
    ApplyDisposition.MISSING: (logging.INFO, "appointment not applied: no snapshot stored"),
}


class AppointmentApplyFailed(Exception):
    """A pass failed in a way the host's redelivery should retry; the message names no content."""


class ConnectionUnavailable(Exception):
    """A connection the pass needs is disabled, refusing its credentials, or missing. A disabled
    or refusing connection holds the change (parked); a missing one is a problem."""

    def __init__(self, connection_id: str, *, disabled: bool, auth_failed: bool = False) -> None:
        if auth_failed:
            state = "refusing its credentials (auth_failed)"
        else:
            state = "disabled" if disabled else "not configured"
        super().__init__(f"connection {connection_id!r} is {state}")
        self.connection_id = connection_id
        self.disabled = disabled or auth_failed


class AppointmentApplier:
    """Applies stored appointment snapshots to Exchange (the ``appointment-changes`` worker)."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        gateways: Gateways,
        *,
        max_dequeue_count: int = 5,
        secrets: SecretResolver | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = ApplyStore(repositories, queue, now, secrets)
        self._gateways = gateways
        self._max_dequeue_count = max_dequeue_count

    async def apply(self, message: AppointmentChanged, *, dequeue_count: int = 1) -> ApplyReport:
        """One delivery of one message (see the module docstring for the outcomes)."""
        org, appointment_id = message.org, message.appointment_id
        try:
            report = await self._apply_latest(message)
        except Exception as failure:
            # Whatever the cause (Exchange, storage, a secret that cannot be read), the last try
            # leaves its reason where the status API and a replay can find it.
            if dequeue_count >= self._max_dequeue_count:
                reason = (
                    str(failure)
                    if isinstance(failure, AppointmentApplyFailed)
                    else f"{type(failure).__name__}: {failure}"
                )
                await self._store.dead_letter(message, reason, dequeue_count)
            metrics.appointment_applied(org, "failed")
            raise
        level, text = _OUTCOME_LOG[report.disposition]
        log.log(
            level,
            text,
            extra={
                "org": org,
                "appointment": appointment_id,
                "outcome": report.disposition,
                "detail": report.detail,
            },
        )
        metrics.appointment_applied(org, report.disposition)
        return report

    async def _apply_latest(self, message: AppointmentChanged) -> ApplyReport:
        org, appointment_id = message.org, message.appointment_id
        look_first = False
        staff_ids = message.staff_ids
        for _ in range(MAX_PASSES):
            # One storage round: the rows, the connections, and the mailboxes of the staff the
            # message names (the snapshot's, as the intake stored it).
            state = await self._store.state(org, appointment_id, staff_ids)
            if state.snapshot is None:
                return ApplyReport(ApplyDisposition.MISSING, "no snapshot stored")
            staff_ids = _staff_to_look_up(
                state.snapshot.value, state.mapping.value if state.mapping else None
            )
            try:
                outcome = await self._one_pass(org, appointment_id, state, look_first)
            except ConcurrencyConflict:
                # Another worker wrote the mapping meanwhile: what this pass wrote to Exchange
                # (a create, say) may be a duplicate of that worker's. Look before deciding.
                look_first = True
                continue
            if isinstance(outcome, ApplyReport):
                return outcome
        raise AppointmentApplyFailed(
            f"appointment {appointment_id!r} kept changing during {MAX_PASSES} passes"
        )

    async def _one_pass(
        self, org: str, appointment_id: str, state: StoredState, look_first: bool
    ) -> ApplyReport | LookAgain:
        assert state.snapshot is not None
        snapshot = state.snapshot.value
        current = state.mapping
        mapping = current.value if current else None
        writer = self._store.mapping_writer(org, appointment_id, current.etag if current else None)
        wanted = _staff_to_look_up(snapshot, mapping)
        # Whoever the message did not name (a hand-over's old organizer, say): a second round.
        unread = [staff_id for staff_id in wanted if staff_id not in state.asked]
        extra = await self._store.directory(org, unread) if unread else {}
        directory = {
            staff_id: ref
            for staff_id, ref in {**state.mailboxes, **extra}.items()
            if staff_id in wanted
        }
        try:
            connections = _connections_needed(snapshot, mapping, directory, state.connections)
        except ConnectionUnavailable as unavailable:
            return await self._connection_unavailable(
                org, appointment_id, snapshot, mapping, writer, unavailable
            )

        def gateway_for(mailbox: MailboxRef) -> CalendarGateway:
            return self._gateways.for_connection(org, connections[mailbox.connection_id])

        unreachable: list[str] = []  # staff whose copies could not be reached

        def copy_gateway_for(mailbox: MailboxRef) -> CalendarGateway | None:
            record = state.connections.get(mailbox.connection_id)
            if record is None or not calls_allowed(record):
                unreachable.append(mailbox.staff_id)
                return None
            return self._gateways.for_connection(org, record)

        outcome = await apply_appointment(
            gateway_for,
            org,
            appointment_id,
            snapshot,
            mapping,
            directory,
            writer.before_write,
            look_first=look_first,
            copy_gateway_for=copy_gateway_for,
        )
        told = outcome.plan.told if outcome.plan is not None and outcome.failure is None else ()
        rows = await self._store.keep_told(org, told, _change_told(outcome)) if told else []
        await self._record(org, appointment_id, snapshot, mapping, writer, outcome)
        if rows:
            await self._store.deliver(org, rows)
        if unreachable and outcome.plan is not None:
            uids = [
                a.uid
                for a in outcome.plan.actions
                if isinstance(a, CancelEvent | CancelCopy) and a.uid
            ]
            await self._store.copies_left(org, uids, unreachable)
        refusing = (
            _connection_refusing(outcome.failure, directory, snapshot)
            if isinstance(outcome.failure, AuthenticationFailed)
            else None
        )
        if outcome.failure is not None and refusing is not None:
            # Exchange refused the connection's credentials: no more calls to it until they
            # work again (a save, a test, the slow retry); this change waits with the others.
            connection_id = refusing
            await self._store.auth_failed(org, connection_id, str(outcome.failure))
            if await self._store.park(
                org, appointment_id, connection_id, snapshot.organizer_staff_id
            ):
                return ApplyReport(ApplyDisposition.PARKED, str(outcome.failure))
            again = AppointmentChanged(
                org=org, appointment_id=appointment_id, version=snapshot.version
            )
            await self._store.requeue(again, timedelta(0))
            return ApplyReport(ApplyDisposition.REQUEUED, "the connection recovered meanwhile")
        if outcome.failure is not None:
            if (reason := mailbox_refusal(outcome.failure)) is not None:
                return await self._mailbox_refused(
                    org, appointment_id, snapshot, outcome.failure, reason, directory
                )
            return await self._after_failure(org, appointment_id, snapshot, outcome.failure)
        if outcome.plan is not None and outcome.plan.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST:
            return await self._read_first(org, appointment_id, snapshot, outcome.plan)
        if outcome.problems:
            return ApplyReport(ApplyDisposition.PROBLEM, outcome.problems)
        return ApplyReport(ApplyDisposition.DONE)

    async def _record(
        self,
        org: str,
        appointment_id: str,
        snapshot: AppointmentSnapshot,
        mapping: EventMapping | None,
        writer: MappingWriter,
        outcome: ApplyOutcome,
    ) -> None:
        """Store what the pass did: the mapping, and the problem row (noted, or cleared once
        the pass had none), independent rows written in one round. A meeting's UID indexed only
        now comes first (see ``_index_uid``)."""
        writes = []
        if outcome.mapping is not None and outcome.mapping != mapping:
            uid = outcome.mapping.uid
            new_uid = mapping is None or mapping.uid != uid or mapping.item_id is None
            if uid and new_uid and uid != writer.remembered:
                await self._index_uid(org, appointment_id, uid, outcome.mapping)
            writes.append(writer.write(outcome.mapping))
            if outcome.mapping.item_id is not None and not outcome.mapping.cancelled:
                writes.append(self._store.note_organizer_item(org, appointment_id, outcome.mapping))
        if outcome.failure is None and outcome.problems:
            writes.append(
                self._store.record_problem(
                    org,
                    appointment_id,
                    snapshot.version,
                    outcome.problems,
                    snapshot.organizer_staff_id,
                )
            )
        elif outcome.failure is None and _may_have_problem_row(mapping):
            writes.append(self._store.clear_problem(org, appointment_id))
        await asyncio.gather(*writes)

    async def _index_uid(
        self, org: str, appointment_id: str, uid: str, mapping: EventMapping
    ) -> None:
        """A meeting's UID indexed only now, not before the create was sent (as an EWS create's
        is, with its note): the meeting of an earlier pass whose worker died, or this pass's
        own, whose UID came only with the create's answer (Graph chooses it). A sync may have
        read an attendee's copy meanwhile and taken it for busy time: each such item is marked
        for its mailbox's next sync, before the mapping is stored, so that a worker that dies
        in between leaves the same work to the next pass (which still finds the UID new)."""
        await self._store.remember_uid(org, uid, appointment_id, mapping.generation)
        await self._store.recheck_copies(org, uid, mapping.attendee_staff_ids)

    async def _connection_unavailable(
        self,
        org: str,
        appointment_id: str,
        snapshot: AppointmentSnapshot,
        mapping: EventMapping | None,
        writer: MappingWriter,
        unavailable: ConnectionUnavailable,
    ) -> ApplyReport:
        if unavailable.disabled:
            if await self._store.park(
                org, appointment_id, unavailable.connection_id, snapshot.organizer_staff_id
            ):
                return ApplyReport(ApplyDisposition.PARKED, str(unavailable))
            again = AppointmentChanged(
                org=org, appointment_id=appointment_id, version=snapshot.version
            )
            await self._store.requeue(again, timedelta(0))
            return ApplyReport(ApplyDisposition.REQUEUED, "the connection was enabled meanwhile")
        problem = str(unavailable)
        writes = [
            self._store.record_problem(
                org, appointment_id, snapshot.version, problem, snapshot.organizer_staff_id
            )
        ]
        if mapping is not None:
            writes.append(writer.write(mapping.model_copy(update={"last_error": problem})))
        await asyncio.gather(*writes)
        return ApplyReport(ApplyDisposition.PROBLEM, problem)

    async def _read_first(
        self, org: str, appointment_id: str, snapshot: AppointmentSnapshot, plan: ReconcilePlan
    ) -> ApplyReport:
        """A newer snapshot met an Outlook change the mailbox sync has not read: the sync reads
        the organizer's mailbox now (and reports the change), and the snapshot comes back after
        ``READ_FIRST_DELAY`` to be written."""
        assert plan.organizer is not None
        await asyncio.gather(
            self._store.request_sync(org, plan.organizer.staff_id, "an Outlook change to read"),
            self._store.requeue(
                AppointmentChanged(
                    org=org,
                    appointment_id=appointment_id,
                    version=snapshot.version,
                    staff_ids=[staff.staff_id for staff in snapshot.staff],
                ),
                READ_FIRST_DELAY,
            ),
        )
        return ApplyReport(
            ApplyDisposition.REQUEUED,
            "an Outlook change the mailbox sync has not read yet is read first",
            READ_FIRST_DELAY.total_seconds(),
        )

    async def _mailbox_refused(
        self,
        org: str,
        appointment_id: str,
        snapshot: AppointmentSnapshot,
        failure: CalendarError,
        reason: str,
        directory: Mapping[str, MailboxRef],
    ) -> ApplyReport:
        """A mailbox the connection may not open (or that Exchange does not know): the
        appointment's problem and that mailbox's health say why, and the change comes back
        after ``MAILBOX_REFUSED_RETRY`` (access granted meanwhile, it is applied then) instead of
        failing its way to the poison queue. Other appointments and mailboxes go on."""
        address = (failure.mailbox or "").lower()
        refused = [staff for staff, ref in directory.items() if ref.address.lower() == address]
        await asyncio.gather(
            self._store.record_problem(org, appointment_id, snapshot.version, reason),
            *(self._store.note_mailbox_refused(org, staff_id, reason) for staff_id in refused),
        )
        await self._store.requeue(
            AppointmentChanged(
                org=org,
                appointment_id=appointment_id,
                version=snapshot.version,
                staff_ids=[staff.staff_id for staff in snapshot.staff],
            ),
            MAILBOX_REFUSED_RETRY,
        )
        return ApplyReport(ApplyDisposition.PROBLEM, reason, MAILBOX_REFUSED_RETRY.total_seconds())

    async def _after_failure(
        self, org: str, appointment_id: str, snapshot: AppointmentSnapshot, failure: CalendarError
    ) -> ApplyReport | LookAgain:
        if failure.retry_after_seconds is not None:
            metrics.exchange_throttled(org, "apply")
            # The throttled try is counted before the message is re-queued: a crash in between
            # leaves the host's redelivery, and never a re-queued change nobody can see.
            throttled = await self._store.count_throttled_try(
                org, appointment_id, snapshot.version, str(failure), snapshot.organizer_staff_id
            )
            seconds = failure.retry_after_seconds
            await self._store.requeue(
                AppointmentChanged(
                    org=org,
                    appointment_id=appointment_id,
                    version=snapshot.version,
                    staff_ids=[staff.staff_id for staff in snapshot.staff],
                ),
                # A queue cannot hide a message longer than MAX_VISIBILITY_DELAY.
                timedelta(seconds=max(1.0, min(seconds, _MAX_DELAY_SECONDS))),
            )
            detail = (
                f"{failure}; throttled {throttled.throttled_tries} time(s) since "
                f"{throttled.throttled_since:%Y-%m-%dT%H:%M:%SZ}"
            )
            return ApplyReport(ApplyDisposition.REQUEUED, detail, seconds)
        if failure.look_again:
            return LOOK_AGAIN
        raise AppointmentApplyFailed(f"{type(failure).__name__}: {failure}")


def _change_told(outcome: ApplyOutcome) -> str:
    """What a pass's told changes were read from: the meeting it learned was removed."""
    uid = outcome.mapping.uid if outcome.mapping is not None else None
    return f"removed\n{uid}"


def _staff_to_look_up(snapshot: AppointmentSnapshot, mapping: EventMapping | None) -> list[str]:
    """Everyone the snapshot names, and whom the mapping still involves."""
    wanted = [s.staff_id for s in snapshot.staff]
    if mapping is not None:
        # The mapping's organizer (a handover reaches them), who declined (still listed on the
        # organizer's item until the next write), and the attendees of a meeting this pass
        # cancels (their copies, should it be gone already).
        declined = [*mapping.declined_staff_ids, *mapping.answered_declines]
        for staff_id in [mapping.organizer_staff_id, *declined, *copy_holders(snapshot, mapping)]:
            if staff_id not in wanted:
                wanted.append(staff_id)
    return wanted


def _connection_refusing(
    failure: AuthenticationFailed,
    directory: Mapping[str, MailboxRef],
    snapshot: AppointmentSnapshot,
) -> str | None:
    """The connection whose credentials were refused: that of the mailbox the failed call
    named, else the organizer's (None: neither is known; the failure is retried as any)."""
    named = (failure.mailbox or "").lower()
    for ref in directory.values():
        if ref.address.lower() == named:
            return ref.connection_id
    organizer = directory.get(snapshot.organizer_staff_id)
    return organizer.connection_id if organizer is not None else None


def _may_have_problem_row(mapping: EventMapping | None) -> bool:
    """Whether an ApplyProblems row can exist: only when the last pass had a problem, which it
    either put on the mapping, or could not (no mapping yet, or a pass that died after its
    pending-create note, which carries no item id)."""
    return mapping is None or mapping.last_error is not None or mapping.item_id is None


def _connections_needed(
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    directory: Mapping[str, MailboxRef],
    connections: Mapping[str, ConnectionRecord],
) -> dict[str, ConnectionRecord]:
    """The connections this pass may call: those of the mailboxes the engine may reach (the
    organizer's and, for a handover or a cancellation, the mapped event's, through the
    connection that mailbox is on now). Attendees are only addresses on the organizer's
    event."""
    found: dict[str, ConnectionRecord] = {}
    for mailbox in mailboxes_called(snapshot, mapping, directory):
        record = connections.get(mailbox.connection_id)
        if record is None:
            raise ConnectionUnavailable(mailbox.connection_id, disabled=False)
        if not record.enabled:
            raise ConnectionUnavailable(mailbox.connection_id, disabled=True)
        if record.health is Health.AUTH_FAILED:
            raise ConnectionUnavailable(mailbox.connection_id, disabled=False, auth_failed=True)
        found[mailbox.connection_id] = record
    return found
