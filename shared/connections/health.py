"""Connection health transitions, written once for every caller.

A connection may be called when it is enabled and its credentials were not refused
(``calls_allowed``). The transitions:

- **disabled** (``set_enabled(False)``, or a PUT with ``"enabled": false``): health ``disabled``;
  the workers park what they would have written (``ParkedChanges``) and skip its mailboxes.
- **refused credentials** (``mark_auth_failed``, by the mailbox sync or the apply worker on a
  401): health ``auth_failed`` with a fingerprint of the secret that failed; the workers hold
  their work the same way.
- **callable again** (enabled, saved by the administrator, a successful test, or the slow retry
  — one mailbox read with the refused credentials every ``AUTH_RETRY_EVERY`` — succeeding):
  health ``ok``, every held change re-queued (the newest snapshot of each appointment is applied
  once: a parked row per appointment) and every mailbox of the connection read from its stored
  cursor, so what changed in Exchange meanwhile is caught up without a full read.

Each transition is told to the booking platform once as ``connection.health_changed``; the
event id names the transition and its time, so a retried transition is the same event.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from shared.config import SecretNotFound, SecretResolver, connection_secret_name
from shared.models import ConnectionConfig, Health
from shared.queues import (
    AppointmentChanged,
    MailboxSyncRequested,
    QueueSender,
    SubscriptionWork,
    WebhookDeliveryDue,
)
from shared.store import ConcurrencyConflict, Repositories, Versioned, decided_afresh
from shared.store.records import ConnectionRecord
from shared.webhooks.events import health_row

log = logging.getLogger(__name__)

# The reason of the one mailbox sync that tries refused credentials again (the slow retry): the
# only sync that calls an ``auth_failed`` connection.
AUTH_RETRY: Final = "auth retry"
# The reason of the syncs queued when a connection may be called again.
CATCH_UP: Final = "catch up"
AUTH_RETRY_EVERY: Final = timedelta(minutes=15)
_ATTEMPTS: Final = 5

_DETAILS: Final = {
    Health.OK: "calls to Exchange resumed",
    Health.DISABLED: "disabled by the administrator",
}


@dataclass(frozen=True)
class HealthChange:
    """What a transition did: the connection as written, whether its health changed (and an
    event was told), how many held changes were re-queued and mailbox syncs queued."""

    connection: ConnectionRecord
    changed: bool = False
    requeued: int = 0
    syncs: int = 0


def calls_allowed(connection: ConnectionRecord) -> bool:
    """Whether calbridge may call this connection's Exchange now."""
    return connection.enabled and connection.health is not Health.AUTH_FAILED


def secret_fingerprint(secret: str) -> str:
    """A digest that tells a changed secret from the one that failed, never the secret."""
    return hashlib.sha256(("calbridge-auth\0" + secret).encode()).hexdigest()[:32]


def connection_secrets_fingerprint(
    secrets: SecretResolver, org: str, connection: ConnectionConfig
) -> str | None:
    """``secret_fingerprint`` of every secret the connection uses (each service account's), so
    a change to any of them is noticed; None when one cannot be read."""
    try:
        resolved = [
            secrets.resolve(connection_secret_name(org, reference))
            for reference in connection.secret_references()
        ]
    except SecretNotFound:
        return None
    return secret_fingerprint("\0".join(resolved)) if resolved else None


def tell_health(
    repos: Repositories,
    queue: QueueSender,
    org: str,
    connection_id: str,
    health: Health,
    detail: str,
    now: datetime,
) -> None:
    """Keep a ``connection.health_changed`` event in the outbox, then queue its delivery."""
    row = health_row(
        org, connection_id, health.value, detail, f"{health.value}\n{now.isoformat()}", now
    )
    repos.outbox.add(org, row)
    queue.send(WebhookDeliveryDue(org=org, event_id=row.event_id))


def requeue_parked(repos: Repositories, queue: QueueSender, org: str, connection_id: str) -> int:
    """Changes held back for the connection go back to the queue, one message per appointment
    with its newest stored version. A row is forgotten only once its message is sent."""
    parked = repos.parked.parked_on(org, connection_id)
    for change in parked:
        stored = repos.appointments.get(org, change.appointment_id)
        if stored is not None:
            queue.send(
                AppointmentChanged(
                    org=org, appointment_id=change.appointment_id, version=stored.value.version
                )
            )
        # Queued again: the worker takes it from here (parked again if need be).
        repos.parked.unpark(org, change.appointment_id)
    return len(parked)


def catch_up(
    repos: Repositories,
    queue: QueueSender,
    org: str,
    connection_id: str,
    reason: str = CATCH_UP,
    *,
    pushed: bool = False,
) -> int:
    """Queue a sync of every mailbox of the connection: each reads on from its stored cursor
    (or in full when it has none), so nothing that changed in Exchange meanwhile is missed.
    ``pushed`` (a Graph connection): each mailbox's change-notification subscription, left to
    lapse meanwhile, is made or renewed too."""
    staff = [
        staff_id
        for staff_id, row in repos.mailboxes.list_by_org(org).items()
        if row.value.connection_id == connection_id
    ]
    for staff_id in staff:
        queue.send(MailboxSyncRequested(org=org, staff_id=staff_id, reason=reason))
        if pushed:
            queue.send(SubscriptionWork(org=org, staff_id=staff_id))
    return len(staff)


def after_save(
    repos: Repositories,
    queue: QueueSender,
    org: str,
    before: ConnectionRecord | None,
    after: ConnectionRecord,
    now: datetime,
) -> HealthChange:
    """What follows a connection's row being written: the event of a health change, and, when
    it may be called again, its held work re-queued and its mailboxes caught up."""
    changed = before is not None and before.health != after.health and after.health is not None
    if changed and after.health is not None:
        detail = after.health_detail or _DETAILS.get(after.health, after.health.value)
        tell_health(repos, queue, org, after.connection_id, after.health, detail, now)
    requeued = syncs = 0
    if calls_allowed(after):
        # Also when nothing changed: a requeue that failed half-way is finished by saving again.
        requeued = requeue_parked(repos, queue, org, after.connection_id)
        if before is not None and not calls_allowed(before):
            syncs = catch_up(repos, queue, org, after.connection_id, pushed=after.kind == "graph")
    return HealthChange(after, changed, requeued, syncs)


def _rewrite(
    repos: Repositories,
    org: str,
    connection_id: str,
    change: dict[str, object],
) -> tuple[ConnectionRecord, ConnectionRecord] | None:
    """Write ``change`` onto the connection's row under its ETag (read again on a conflict);
    None when there is no such connection. Returns (before, after)."""

    def attempt() -> tuple[ConnectionRecord, ConnectionRecord] | None:
        current = repos.connections.get(org, connection_id)
        if current is None:
            return None
        before = current.value
        after = before.model_copy(update=change)
        if after != before:
            repos.connections.put(org, connection_id, after, current.etag)
        return before, after

    return decided_afresh(attempt, _ATTEMPTS)


def set_enabled(
    repos: Repositories,
    queue: QueueSender,
    org: str,
    connection_id: str,
    enabled: bool,
    now: datetime,
) -> HealthChange | None:
    """Disable a connection for maintenance or enable it again (None: no such connection).
    Enabling is also a retry of refused credentials."""
    health = Health.OK if enabled else Health.DISABLED
    change: dict[str, object] = {"enabled": enabled, "health": health, "health_detail": None}
    if enabled:
        change |= {"failed_secret_fingerprint": None, "auth_retried_at": None}
    else:
        # Disabled while refusing credentials: the refusal is tried afresh when enabled.
        change |= {"failed_secret_fingerprint": None}
    written = _rewrite(repos, org, connection_id, change)
    if written is None:
        return None
    before, after = written
    result = after_save(repos, queue, org, before, after, now)
    log.info("connection %s/%s %s", org, connection_id, "enabled" if enabled else "disabled")
    return result


def recover(
    repos: Repositories, queue: QueueSender, org: str, connection_id: str, now: datetime
) -> HealthChange | None:
    """Refused credentials work again (a test or the slow retry read a mailbox): health ``ok``,
    held work re-queued, mailboxes caught up. Nothing happens to a connection that is not
    ``auth_failed``. None: no such connection."""
    current = repos.connections.get(org, connection_id)
    if current is None:
        return None
    if current.value.health is not Health.AUTH_FAILED:
        return HealthChange(current.value)
    change: dict[str, object] = {
        "health": Health.OK,
        "health_detail": None,
        "failed_secret_fingerprint": None,
        "auth_retried_at": None,
    }
    written = _rewrite(repos, org, connection_id, change)
    if written is None:
        return None
    before, after = written
    log.info("connection %s/%s: Exchange accepts its credentials again", org, connection_id)
    return after_save(repos, queue, org, before, after, now)


def mark_auth_failed(
    repos: Repositories,
    queue: QueueSender,
    secrets: SecretResolver | None,
    org: str,
    connection: Versioned[ConnectionRecord],
    detail: str,
    now: datetime,
) -> bool:
    """Exchange refused the connection's credentials (401): mark it ``auth_failed`` with a
    fingerprint of the refused secret (a changed secret is tried at once) and tell the booking
    platform, once per failure. False when it was marked already, or changed meanwhile."""
    record = connection.value
    if record.health is Health.AUTH_FAILED:
        return False
    fingerprint = (
        connection_secrets_fingerprint(secrets, org, record) if secrets is not None else None
    )
    failed = record.model_copy(
        update={
            "health": Health.AUTH_FAILED,
            "health_detail": detail[:2000],
            "failed_secret_fingerprint": fingerprint,
            "auth_retried_at": now,
        }
    )
    try:
        repos.connections.put(org, record.connection_id, failed, connection.etag)
    except ConcurrencyConflict:
        return False  # someone else changed it: their write stands
    log.warning("connection %s/%s: Exchange refused its credentials", org, record.connection_id)
    tell_health(
        repos,
        queue,
        org,
        record.connection_id,
        Health.AUTH_FAILED,
        "Exchange refused the connection's credentials",
        now,
    )
    return True
