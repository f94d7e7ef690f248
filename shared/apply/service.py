"""The apply worker's service: make Exchange show an appointment's latest stored snapshot.

One call per ``appointment-changes`` message. The message carries ids only: the service reads
the newest snapshot and the mapping, resolves the staff members' mailboxes and connections, runs
one pass of the engine through the calendar port (``shared.apply.executor.apply_appointment``)
and stores the resulting mapping with its ETag. Duplicate and out-of-order messages are harmless:
every pass reconciles to the newest stored snapshot.

What happens to the message (``ApplyDisposition``):

- ``done`` — Exchange matches the snapshot (or nothing was to be done); the message is deleted.
- ``requeued`` — Exchange throttled us (``RetryAfter``): a fresh message is queued with that
  visibility delay and this one completes. The worker never sleeps. Each throttled try is
  counted in ``ApplyProblems`` (since when, how many tries) and logged as a warning, so an
  appointment that Exchange throttles without end shows in the status and the logs.
- ``parked`` — a connection the pass needs is disabled for maintenance: no call is made, the
  appointment is recorded in ``ParkedChanges`` and re-queued when the connection is enabled.
- ``problem`` — a staff member has no known mailbox, or a connection is missing: recorded in
  ``ApplyProblems`` (and on the mapping's ``last_error`` when there is a mapping); the next
  snapshot or an admin fix re-triggers it. Nothing to retry.
- Anything else raises (``AppointmentApplyFailed`` for Exchange's refusals): the host makes the
  message visible again after its visibility timeout and, after ``maxDequeueCount`` tries,
  moves it to the poison queue. A calendar failure is recorded on the mapping at every try; every
  failure's reason is recorded in ``DeadLetters`` on the last try.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from shared.apply.executor import apply_appointment
from shared.engine.reconcile import mailboxes_called
from shared.exchange.gateways import Gateways
from shared.exchange.port import (
    CalendarError,
    CalendarGateway,
    ChangeKeyConflict,
    EventNotFound,
    RetryAfter,
)
from shared.models import AppointmentSnapshot, EventMapping, MailboxRef
from shared.queues import (
    APPOINTMENT_CHANGES,
    MAX_VISIBILITY_DELAY,
    AppointmentChanged,
    QueueSender,
)
from shared.store import ConcurrencyConflict, Repositories, Versioned
from shared.store.records import (
    ApplyProblemRecord,
    ConnectionRecord,
    DeadLetterRecord,
    ParkedChangeRecord,
)
from shared.store.threads import in_storage_thread

log = logging.getLogger(__name__)

# A change-key conflict or a vanished item means someone edited the calendar between our read
# and our write; so does an ETag conflict on the mapping. Re-observing at once settles it; more
# rounds than this means something keeps interfering, and the host's retry takes over.
MAX_PASSES = 3
_MAX_DELAY_SECONDS = MAX_VISIBILITY_DELAY.total_seconds()


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
    """A connection the pass needs is disabled or missing."""

    def __init__(self, connection_id: str, *, disabled: bool) -> None:
        state = "disabled" if disabled else "not configured"
        super().__init__(f"connection {connection_id!r} is {state}")
        self.connection_id = connection_id
        self.disabled = disabled


class AppointmentApplier:
    """Applies stored appointment snapshots to Exchange (the ``appointment-changes`` worker)."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        gateways: Gateways,
        *,
        max_dequeue_count: int = 5,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._gateways = gateways
        self._max_dequeue_count = max_dequeue_count
        self._now = now

    async def apply(self, message: AppointmentChanged, *, dequeue_count: int = 1) -> ApplyReport:
        """One delivery of one message (see the module docstring for the outcomes)."""
        org, appointment_id = message.org, message.appointment_id
        try:
            report = await self._apply_latest(org, appointment_id)
        except Exception as failure:
            # Whatever the cause (Exchange, storage, a secret that cannot be read), the last try
            # leaves its reason where the status API and a replay can find it.
            if dequeue_count >= self._max_dequeue_count:
                reason = (
                    str(failure)
                    if isinstance(failure, AppointmentApplyFailed)
                    else f"{type(failure).__name__}: {failure}"
                )
                await in_storage_thread(self._record_dead_letter, message, reason, dequeue_count)
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
        return report

    async def _apply_latest(self, org: str, appointment_id: str) -> ApplyReport:
        for _ in range(MAX_PASSES):
            # The two reads are independent: one storage round trip, not two.
            stored, current = await asyncio.gather(
                in_storage_thread(self._repos.appointments.get, org, appointment_id),
                in_storage_thread(self._repos.event_map.get, org, appointment_id),
            )
            if stored is None:
                return ApplyReport(ApplyDisposition.MISSING, "no snapshot stored")
            try:
                report = await self._one_pass(org, appointment_id, stored.value, current)
            except (ConcurrencyConflict, _Reobserve):
                continue
            return report
        raise AppointmentApplyFailed(
            f"appointment {appointment_id!r} kept changing during {MAX_PASSES} passes"
        )

    async def _one_pass(
        self,
        org: str,
        appointment_id: str,
        snapshot: AppointmentSnapshot,
        current: Versioned[EventMapping] | None,
    ) -> ApplyReport:
        mapping = current.value if current else None
        etag = current.etag if current else None
        # Staff mailboxes and the organization's connections (a handful of rows) in one round.
        directory, all_connections = await asyncio.gather(
            self._directory(org, snapshot, mapping),
            in_storage_thread(self._repos.connections.list_by_org, org),
        )
        try:
            connections = self._connections_needed(
                snapshot, mapping, directory, {k: v.value for k, v in all_connections.items()}
            )
        except ConnectionUnavailable as unavailable:
            if unavailable.disabled:
                await in_storage_thread(self._park, org, appointment_id, unavailable.connection_id)
                return ApplyReport(ApplyDisposition.PARKED, str(unavailable))
            return await in_storage_thread(
                self._record_problem,
                org,
                appointment_id,
                snapshot.version,
                mapping,
                etag,
                str(unavailable),
            )

        def gateway_for(mailbox: MailboxRef) -> CalendarGateway:
            return self._gateways.for_connection(org, connections[mailbox.connection_id])

        etag_box = [etag]

        async def before_create(pending: EventMapping) -> None:
            etag_box[0] = await in_storage_thread(
                self._repos.event_map.put, org, appointment_id, pending, etag_box[0]
            )

        outcome = await apply_appointment(
            gateway_for, org, appointment_id, snapshot, mapping, directory, before_create
        )
        writes: list[Awaitable[object]] = []
        if outcome.mapping is not None and outcome.mapping != mapping:
            writes.append(
                in_storage_thread(
                    self._repos.event_map.put, org, appointment_id, outcome.mapping, etag_box[0]
                )
            )
        failure = outcome.failure
        problems = outcome.plan.problems if outcome.plan is not None else ()
        text = "; ".join(p.message for p in problems)
        if failure is None and problems:
            writes.append(
                in_storage_thread(self._note_problem, org, appointment_id, snapshot.version, text)
            )
        elif failure is None and (
            mapping is None or mapping.last_error is not None or mapping.item_id is None
        ):
            # A problem row can only exist when the last pass had one: a pass that recorded a
            # problem either left no mapping or put the problem on it — or died after its
            # pending-create note (no item id yet), which carries no error.
            writes.append(in_storage_thread(self._repos.problems.clear, org, appointment_id))
        # Independent rows: written in one round.
        await asyncio.gather(*writes)
        if failure is None:
            if problems:
                return ApplyReport(ApplyDisposition.PROBLEM, text)
            return ApplyReport(ApplyDisposition.DONE)
        return await self._after_failure(org, appointment_id, snapshot, failure)

    def _note_problem(self, org: str, appointment_id: str, version: int, problem: str) -> None:
        self._repos.problems.record(
            org,
            ApplyProblemRecord(
                appointment_id=appointment_id,
                version=version,
                problem=problem[:2000],
                recorded_at=self._now(),
            ),
        )

    def _note_throttled(
        self, org: str, appointment_id: str, version: int, failure: RetryAfter
    ) -> ApplyProblemRecord:
        """Count one throttled try in ApplyProblems, keeping when the throttling began."""
        now = self._now()
        earlier = self._repos.problems.get(org, appointment_id)
        since = earlier.value.throttled_since if earlier is not None else None
        record = ApplyProblemRecord(
            appointment_id=appointment_id,
            version=version,
            problem=str(failure)[:2000],
            recorded_at=now,
            throttled_since=since or now,
            throttled_tries=(earlier.value.throttled_tries if since and earlier else 0) + 1,
        )
        self._repos.problems.record(org, record)
        return record

    async def _after_failure(
        self, org: str, appointment_id: str, snapshot: AppointmentSnapshot, failure: CalendarError
    ) -> ApplyReport:
        if isinstance(failure, RetryAfter):
            # The throttled try is counted before the message is re-queued: a crash in between
            # leaves the host's redelivery, and never a re-queued change nobody can see.
            throttled = await in_storage_thread(
                self._note_throttled, org, appointment_id, snapshot.version, failure
            )
            await in_storage_thread(
                self._queue.send,
                AppointmentChanged(
                    org=org, appointment_id=appointment_id, version=snapshot.version
                ),
                # A queue cannot hide a message longer than MAX_VISIBILITY_DELAY.
                visibility_delay=timedelta(
                    seconds=max(1.0, min(failure.seconds, _MAX_DELAY_SECONDS))
                ),
            )
            detail = (
                f"{failure}; throttled {throttled.throttled_tries} time(s) since "
                f"{throttled.throttled_since:%Y-%m-%dT%H:%M:%SZ}"
            )
            return ApplyReport(ApplyDisposition.REQUEUED, detail, failure.seconds)
        if isinstance(failure, ChangeKeyConflict | EventNotFound):
            raise _Reobserve
        raise AppointmentApplyFailed(f"{type(failure).__name__}: {failure}")

    async def _directory(
        self, org: str, snapshot: AppointmentSnapshot, mapping: EventMapping | None
    ) -> dict[str, MailboxRef]:
        """Staff id → mailbox for everyone the snapshot names, and the mapping's organizer
        (read in parallel)."""
        wanted = [s.staff_id for s in snapshot.staff]
        if mapping is not None and mapping.organizer_staff_id not in wanted:
            wanted.append(mapping.organizer_staff_id)
        records = await asyncio.gather(
            *(in_storage_thread(self._repos.mailboxes.get, org, staff_id) for staff_id in wanted)
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

    @staticmethod
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
        needed: list[str] = []
        for mailbox in mailboxes_called(snapshot, mapping, directory):
            if mailbox.connection_id not in needed:
                needed.append(mailbox.connection_id)
        found: dict[str, ConnectionRecord] = {}
        for connection_id in needed:
            record = connections.get(connection_id)
            if record is None:
                raise ConnectionUnavailable(connection_id, disabled=False)
            if not record.enabled:
                raise ConnectionUnavailable(connection_id, disabled=True)
            found[connection_id] = record
        return found

    def _park(self, org: str, appointment_id: str, connection_id: str) -> None:
        self._repos.parked.park(
            org,
            ParkedChangeRecord(
                appointment_id=appointment_id, connection_id=connection_id, parked_at=self._now()
            ),
        )

    def _record_problem(
        self,
        org: str,
        appointment_id: str,
        version: int,
        mapping: EventMapping | None,
        etag: str | None,
        problem: str,
    ) -> ApplyReport:
        self._note_problem(org, appointment_id, version, problem)
        if mapping is not None:
            self._repos.event_map.put(
                org, appointment_id, mapping.model_copy(update={"last_error": problem}), etag
            )
        return ApplyReport(ApplyDisposition.PROBLEM, problem)

    def _record_dead_letter(
        self, message: AppointmentChanged, reason: str, dequeue_count: int
    ) -> None:
        self._repos.dead_letters.record(
            message.org,
            DeadLetterRecord(
                queue=APPOINTMENT_CHANGES,
                subject_id=message.appointment_id,
                message=message.model_dump(mode="json", by_alias=True),
                reason=reason[:2000],
                dequeue_count=dequeue_count,
                failed_at=self._now(),
            ),
        )


class _Reobserve(Exception):
    """Internal: the calendar changed under us; run the pass again from fresh reads."""
