"""``GET /api/orgs/{org}/status``: the organization's health at a glance, read from storage
only (never from Exchange).

Per connection: kind, enabled, health and last error, its resync progress and the changes parked
on it. Per mailbox: last successful sync, lag, health, last error, held, resyncing, pending and
dead-lettered work, refused reschedules and (Graph) the subscription's expiry. Then the
organization's dead letters and newest errors.

Every read is one partition of the organization, filtered by the table service where the table
grows (the outbox: delivered rows are never read), and the reads run side by side on the storage
threads: one round of queries, then one round of point reads naming the organizer of the
appointments that have work waiting (capped at :data:`MAX_ATTRIBUTED`). What the answer carries
are ids, times, counts and the error texts calbridge stored, which never hold a secret, an
event's content or a client's details.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from shared.admin.service import storage_refusals
from shared.http.answers import HttpAnswer, Refusal, json_answer
from shared.http.contract import (
    ConnectionStatus,
    DeadLetteredWork,
    DeadLetterEntry,
    MailboxStatus,
    OrgStatus,
    PendingWork,
    ResyncProgress,
    StatusError,
)
from shared.models import Health
from shared.observability import carried
from shared.queues import APPOINTMENT_CHANGES, WEBHOOK_DELIVERIES
from shared.store import Repositories
from shared.store.records import (
    REFUSED_RESCHEDULE_PROBLEM,
    ApplyProblemRecord,
    ConnectionRecord,
    DeadLetterRecord,
    MailboxRecord,
    OutboxRecord,
    ParkedChangeRecord,
    SubscriptionRecord,
)
from shared.store.threads import storage_executor

log = logging.getLogger(__name__)

T = TypeVar("T")

# Appointments with work waiting whose organizer is looked up (one point read each, side by
# side); beyond this the work is still counted for the organization, not for a mailbox.
MAX_ATTRIBUTED = 500
# Entries in the answer's lists.
NEWEST_ERRORS = 25
DEAD_LETTERS_SHOWN = 100
# A webhook whose next try was due longer ago than this is no longer looked for as "being
# retried" (its delivery message is long gone); never-tried and dead-lettered rows always are.
RETRY_LOOKBACK = timedelta(days=7)
# Answers of the status route are never kept by a browser or a proxy.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff"}


@dataclass(frozen=True)
class _Rows:
    """One organization's rows, as the status reads them."""

    connections: list[ConnectionRecord]
    mailboxes: list[MailboxRecord]
    subscriptions: list[SubscriptionRecord]
    parked: list[ParkedChangeRecord]
    problems: list[ApplyProblemRecord]
    dead_letters: list[DeadLetterRecord]
    webhooks_waiting: list[OutboxRecord]  # never tried or being retried
    webhooks_dead: list[OutboxRecord]


@dataclass
class _Tally:
    parked: int = 0
    problems: int = 0
    webhooks: int = 0
    dead_letters: int = 0
    dead_webhooks: int = 0
    refused: int = 0

    def pending(self) -> PendingWork:
        return PendingWork(
            parked=self.parked, apply_problems=self.problems, undelivered_webhooks=self.webhooks
        )

    def dead(self) -> DeadLetteredWork:
        return DeadLetteredWork(dead_letters=self.dead_letters, webhooks=self.dead_webhooks)


@dataclass
class _Tallies:
    """Counts per staff member and for the whole organization."""

    org: _Tally = field(default_factory=_Tally)
    staff: dict[str, _Tally] = field(default_factory=dict)

    def add(self, staff_id: str | None, what: str) -> None:
        tallies = [self.org]
        if staff_id is not None:
            tallies.append(self.staff.setdefault(staff_id, _Tally()))
        for tally in tallies:
            setattr(tally, what, getattr(tally, what) + 1)

    def of(self, staff_id: str) -> _Tally:
        return self.staff.get(staff_id) or _Tally()


def _submit(call: Callable[..., T], *args: Any) -> Future[T]:
    return storage_executor().submit(carried(call, *args))


def _webhook_staff(row: OutboxRecord) -> str | None:
    """The staff member an outbound event concerns, from its payload's ids (never its times)."""
    try:
        data = json.loads(row.payload).get("data", {})
    except (ValueError, AttributeError):
        return None
    staff = data.get("staffId") or data.get("by") if isinstance(data, dict) else None
    return staff if isinstance(staff, str) else None


def _is_refused_reschedule(problem: ApplyProblemRecord) -> bool:
    return problem.problem.startswith(REFUSED_RESCHEDULE_PROBLEM)


class StatusReader:
    """The service behind ``GET .../status``; ``authenticate`` is the admin API's key check
    (``AdminApi.authenticate``), raising a ``Refusal``."""

    def __init__(
        self,
        repositories: Repositories,
        authenticate: Callable[[str, str | None], None],
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._authenticate = authenticate
        self._now = now

    def get_status(self, *, org: str, admin_key: str | None) -> HttpAnswer:
        try:
            self._authenticate(org, admin_key)
            with storage_refusals("the status"):
                status = self.read(org)
            return json_answer(200, status, NO_STORE)
        except Refusal as refusal:
            return refusal.answer

    # --- reading ------------------------------------------------------------------------------

    def read(self, org: str) -> OrgStatus:
        now = self._now()
        rows = self._rows(org, now)
        organizers = self._organizers(org, rows)
        tallies = self._tally(rows, organizers)
        subscriptions: dict[str, SubscriptionRecord] = {}
        for subscription in rows.subscriptions:
            kept = subscriptions.get(subscription.staff_id)
            if kept is None or subscription.expires_at > kept.expires_at:
                subscriptions[subscription.staff_id] = subscription
        connections = {row.connection_id: row for row in rows.connections}
        mailboxes = sorted(rows.mailboxes, key=lambda row: row.staff_id)
        return OrgStatus(
            org=org,
            generated_at=now,
            connections=[self._connection(row, mailboxes, rows.parked) for row in rows.connections],
            mailboxes=[
                self._mailbox(
                    row,
                    connections.get(row.connection_id),
                    tallies.of(row.staff_id),
                    subscriptions.get(row.staff_id),
                    now,
                )
                for row in mailboxes
            ],
            pending=tallies.org.pending(),
            dead_lettered=tallies.org.dead(),
            dead_letters=self._dead_letter_entries(rows, organizers),
            errors=self._errors(rows, mailboxes, organizers),
        )

    def _rows(self, org: str, now: datetime) -> _Rows:
        """Every partition the status needs, read side by side."""
        repos = self._repos
        connections = _submit(repos.connections.list_by_org, org)
        mailboxes = _submit(repos.mailboxes.status_of, org)
        subscriptions = _submit(repos.subscriptions.list_by_org, org)
        parked = _submit(repos.parked.list_by_org, org)
        problems = _submit(repos.problems.list_by_org, org)
        dead_letters = _submit(repos.dead_letters.of_org, org)
        never_tried = _submit(repos.outbox.never_tried, org)
        retried = _submit(repos.outbox.retried_since, org, now - RETRY_LOOKBACK)
        dead_webhooks = _submit(repos.outbox.dead_lettered, org)
        waiting = {row.event_id: row for row in never_tried.result()}
        waiting |= {row.event_id: row for row in retried.result() if not row.dead_lettered}
        return _Rows(
            connections=[row.value for row in connections.result().values()],
            mailboxes=mailboxes.result(),
            subscriptions=[row.value for row in subscriptions.result().values()],
            parked=[row.value for row in parked.result().values()],
            problems=[row.value for row in problems.result().values()],
            dead_letters=dead_letters.result(),
            webhooks_waiting=[row for row in waiting.values() if not row.dead_lettered],
            webhooks_dead=dead_webhooks.result(),
        )

    def _organizers(self, org: str, rows: _Rows) -> dict[str, str]:
        """appointment id → organizer staff id, for the appointments with work waiting: from
        the rows that name it, else read from the snapshot."""
        organizers: dict[str, str] = {}
        named: list[ParkedChangeRecord | ApplyProblemRecord] = [*rows.parked, *rows.problems]
        for row in named:
            if row.organizer_staff_id is not None:
                organizers[row.appointment_id] = row.organizer_staff_id
        wanted: list[str] = []
        for appointment_id in (
            *(row.appointment_id for row in rows.parked),
            *(row.appointment_id for row in rows.problems),
            *(
                letter.subject_id
                for letter in rows.dead_letters
                if letter.queue == APPOINTMENT_CHANGES
            ),
        ):
            if appointment_id not in organizers and appointment_id not in wanted:
                wanted.append(appointment_id)
        reads = {
            appointment_id: _submit(self._repos.appointments.get, org, appointment_id)
            for appointment_id in wanted[:MAX_ATTRIBUTED]
        }
        for appointment_id, read in reads.items():
            found = read.result()
            if found is not None:
                organizers[appointment_id] = found.value.organizer_staff_id
        return organizers

    @staticmethod
    def _letter_staff(letter: DeadLetterRecord, organizers: dict[str, str]) -> str | None:
        if letter.queue == APPOINTMENT_CHANGES:
            return organizers.get(letter.subject_id)
        staff = letter.message.get("staffId")
        return staff if isinstance(staff, str) else None

    def _tally(self, rows: _Rows, organizers: dict[str, str]) -> _Tallies:
        tallies = _Tallies()
        for parked in rows.parked:
            tallies.add(organizers.get(parked.appointment_id), "parked")
        for problem in rows.problems:
            staff = organizers.get(problem.appointment_id)
            tallies.add(staff, "refused" if _is_refused_reschedule(problem) else "problems")
        for letter in rows.dead_letters:
            # Webhooks are counted from the outbox, which knows whether one was replayed since.
            if letter.queue != WEBHOOK_DELIVERIES:
                tallies.add(self._letter_staff(letter, organizers), "dead_letters")
        for row in rows.webhooks_waiting:
            tallies.add(_webhook_staff(row), "webhooks")
        for row in rows.webhooks_dead:
            tallies.add(_webhook_staff(row), "dead_webhooks")
        return tallies

    @staticmethod
    def _connection(
        row: ConnectionRecord, mailboxes: list[MailboxRecord], parked: list[ParkedChangeRecord]
    ) -> ConnectionStatus:
        own = [mailbox for mailbox in mailboxes if mailbox.connection_id == row.connection_id]
        health = Health.DISABLED if not row.enabled else row.health or Health.OK
        return ConnectionStatus(
            connection_id=row.connection_id,
            kind=row.kind,
            enabled=row.enabled,
            health=health,
            last_error=row.health_detail if health is not Health.OK else None,
            mailboxes=len(own),
            resync=ResyncProgress(
                done=sum(1 for mailbox in own if mailbox.last_full_read_at is not None),
                total=len(own),
            ),
            parked=sum(1 for change in parked if change.connection_id == row.connection_id),
        )

    @staticmethod
    def _mailbox_health(row: MailboxRecord, connection: ConnectionRecord | None) -> Health | None:
        """The mailbox's own health, unless its connection's state decides for it."""
        if connection is not None and not connection.enabled:
            return Health.DISABLED
        if row.health is not None and row.health is not Health.OK:
            return row.health
        if connection is not None and connection.health not in (None, Health.OK):
            return connection.health
        return row.health

    def _mailbox(
        self,
        row: MailboxRecord,
        connection: ConnectionRecord | None,
        tally: _Tally,
        subscription: SubscriptionRecord | None,
        now: datetime,
    ) -> MailboxStatus:
        lag = None
        if row.last_sync_at is not None:
            lag = round(max((now - row.last_sync_at).total_seconds(), 0.0), 3)
        return MailboxStatus(
            staff_id=row.staff_id,
            mailbox=row.address,
            connection_id=row.connection_id,
            health=self._mailbox_health(row, connection),
            last_error=row.last_error,
            last_synced_at=row.last_sync_at,
            lag_seconds=lag,
            sync_pending_since=row.sync_pending_since,
            held=row.held,
            last_full_read_at=row.last_full_read_at,
            resyncing=row.last_full_read_at is None,
            pending=tally.pending(),
            dead_lettered=tally.dead(),
            refused_reschedules=tally.refused,
            subscription_expires_at=subscription.expires_at if subscription else None,
            subscription_error=row.subscription_error,
        )

    def _dead_letter_entries(
        self, rows: _Rows, organizers: dict[str, str]
    ) -> list[DeadLetterEntry]:
        failed_at = {
            letter.subject_id: letter.failed_at
            for letter in rows.dead_letters
            if letter.queue == WEBHOOK_DELIVERIES
        }
        entries = [
            DeadLetterEntry(
                queue=letter.queue,
                subject_id=letter.subject_id,
                staff_id=self._letter_staff(letter, organizers),
                reason=letter.reason,
                failed_at=letter.failed_at,
            )
            for letter in rows.dead_letters
            if letter.queue != WEBHOOK_DELIVERIES
        ]
        entries += [
            DeadLetterEntry(
                queue=WEBHOOK_DELIVERIES,
                subject_id=row.event_id,
                staff_id=_webhook_staff(row),
                reason=row.last_error or "dead-lettered",
                failed_at=failed_at.get(row.event_id),
            )
            for row in rows.webhooks_dead
        ]
        newest = _newest_first(entries, lambda entry: entry.failed_at, untimed_first=False)
        return newest[:DEAD_LETTERS_SHOWN]

    def _errors(
        self, rows: _Rows, mailboxes: list[MailboxRecord], organizers: dict[str, str]
    ) -> list[StatusError]:
        errors: list[StatusError] = []
        for connection in rows.connections:
            if connection.enabled and connection.health not in (None, Health.OK):
                errors.append(
                    StatusError(
                        source="connection",
                        connection_id=connection.connection_id,
                        message=connection.health_detail or str(connection.health),
                    )
                )
        for mailbox in mailboxes:
            for text in (mailbox.last_error, mailbox.held, mailbox.subscription_error):
                if text:
                    errors.append(
                        StatusError(
                            source="mailbox",
                            connection_id=mailbox.connection_id,
                            staff_id=mailbox.staff_id,
                            message=text,
                        )
                    )
        errors += [
            StatusError(
                at=problem.recorded_at,
                source="apply",
                staff_id=organizers.get(problem.appointment_id),
                subject_id=problem.appointment_id,
                message=problem.problem,
            )
            for problem in rows.problems
        ]
        errors += [
            StatusError(
                at=letter.failed_at,
                source="deadLetter",
                staff_id=self._letter_staff(letter, organizers),
                subject_id=letter.subject_id,
                message=f"{letter.queue}: {letter.reason}",
            )
            for letter in rows.dead_letters
        ]
        errors += [
            StatusError(
                at=row.next_attempt_at,
                source="webhook",
                staff_id=_webhook_staff(row),
                subject_id=row.event_id,
                message=f"{row.event_type}: {row.last_error}",
            )
            for row in rows.webhooks_waiting
            if row.last_error
        ]
        return _newest_first(errors, lambda error: error.at)[:NEWEST_ERRORS]


def _newest_first(
    items: Iterable[T], at: Callable[[T], datetime | None], *, untimed_first: bool = True
) -> list[T]:
    """The newest first; items without a time (current states) first, or last."""
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(
        items,
        key=lambda item: ((at(item) is None) == untimed_first, at(item) or oldest),
        reverse=True,
    )
