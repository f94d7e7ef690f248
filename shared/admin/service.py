"""The organization administrator's API: connections to Exchange and where each staff member's
mailbox lives.

Authentication: the Functions host checks the function key (deployment gate); this service
then checks the administrator's key in ``X-Calbridge-Admin-Key`` in constant time against the
organization's own admin key (secret ``org-{org}-admin-key``) or the operator's key
(``CALBRIDGE_ADMIN_KEY``). An organization's key opens only that organization's rows: every read
and write below is keyed by the ``org`` of the path. An unknown organization and a wrong key get
the same 401.

Secrets never pass through here: a connection names a *secret reference* (a Key Vault secret
name); the secret itself is set in Key Vault by the operator.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from shared.config import SecretNotFound, SecretResolver, SecretUnavailable
from shared.connections import after_save
from shared.exchange.endpoint_policy import (
    EndpointRefused,
    ExchangeEndpointPolicy,
    Resolver,
    resolve_host,
)
from shared.http.answers import (
    ApiError,
    HttpAnswer,
    Refusal,
    ValidationProblem,
    invalid,
    json_answer,
    refuse,
    unavailable,
)
from shared.http.contract import (
    ADMIN_KEY_HEADER,
    ConnectionSaved,
    StaffMailboxAssignment,
    StaffSaved,
    WebhookReplayed,
)
from shared.http.requests import check_id, gate, parse_json_body
from shared.models import ConnectionConfig, Health, OrgSettings
from shared.queues import (
    QueueSender,
    QueueUnavailable,
    SubscriptionWork,
    WebhookDeliveryDue,
)
from shared.store import (
    ConcurrencyConflict,
    Repositories,
    StoreUnavailable,
    Versioned,
    decided_afresh,
)
from shared.store.records import ConnectionRecord, MailboxRecord

log = logging.getLogger(__name__)

# The names of calbridge's own per-organization keys (``org_admin_key_reference``,
# ``shared.config.org_signing_secret_reference``), in any case: Key Vault names ignore case.
_CALBRIDGE_KEY_REFERENCE = re.compile(
    r"org-.+-(?:admin-key|signing-secret)(?:-previous)?", re.IGNORECASE
)


@contextmanager
def storage_refusals(row: str) -> Iterator[None]:
    """Storage failures of an admin write as the answers the API documents: a row changed by
    someone else meanwhile is a 409 (send it again), storage that cannot be reached a 503."""
    try:
        yield
    except ConcurrencyConflict:
        raise refuse(409, "conflict", f"{row} changed meanwhile; send it again") from None
    except StoreUnavailable as exc:
        raise unavailable("storage") from exc


def org_admin_key_reference(org: str) -> str:
    """The secret reference of an organization's own admin key."""
    return f"org-{org}-admin-key"


def check_exchange_secret_reference(config: ConnectionConfig) -> None:
    """Refuse a connection whose secret reference names one of calbridge's own keys (any
    organization's admin key or signing secret): the workers send a connection's secret to the
    Exchange URL the administrator chose, so such a reference would hand that key out. Every
    service account's reference is checked."""
    named = (
        [
            (f"serviceAccounts[{index}].secretReference", account.secret_reference)
            for index, account in enumerate(config.service_accounts)
        ]
        if config.service_accounts is not None
        else [("secretReference", config.secret_reference or "")]
    )
    problems = [
        ValidationProblem(
            field=field,
            message=(
                f"{field} {reference!r} names a calbridge key (an admin key or a signing "
                "secret), not an Exchange credential"
            ),
        )
        for field, reference in named
        if _CALBRIDGE_KEY_REFERENCE.fullmatch(reference)
    ]
    if problems:
        raise invalid("the connection", problems)


class AdminApi:
    """The service behind the admin routes."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        secrets: SecretResolver,
        *,
        operator_key: str | None,
        max_request_bytes: int,
        endpoints: ExchangeEndpointPolicy | None = None,
        resolve: Resolver = resolve_host,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._endpoints = endpoints or ExchangeEndpointPolicy()
        self._resolve = resolve
        self._repos = repositories
        self._queue = queue
        self._secrets = secrets
        self._operator_key = operator_key
        self._max_request_bytes = max_request_bytes
        self._now = now

    # --- authentication -----------------------------------------------------------------------

    def authenticate(self, org: str, presented: str | None) -> None:
        """The key check of a request without a body (other admin services use it): raises a
        ``Refusal`` (404 for an invalid organization id, 401, 503)."""
        self._authenticate(org, presented, b"")

    def _authenticate(self, org: str, presented: str | None, body: bytes) -> None:
        gate(org, body, self._max_request_bytes)
        if not presented:
            raise refuse(401, "unauthorized", f"the {ADMIN_KEY_HEADER} header is missing")
        candidates = [self._operator_key] if self._operator_key else []
        try:
            with contextlib.suppress(SecretNotFound):
                candidates.append(self._secrets.resolve(org_admin_key_reference(org)))
        except SecretUnavailable as exc:
            log.warning("org %s: %s", org, exc)
            raise unavailable("the secret store") from exc
        # Compare against every candidate so the time taken says nothing about which exists.
        matched = False
        for key in candidates:
            matched |= hmac.compare_digest(presented.encode(), key.encode())
        if not matched:
            raise refuse(401, "unauthorized", f"the {ADMIN_KEY_HEADER} header does not match")

    # --- connections --------------------------------------------------------------------------

    def put_connection(
        self, *, org: str, connection_id: str, body: bytes, admin_key: str | None
    ) -> HttpAnswer:
        try:
            self._authenticate(org, admin_key, body)
            check_id("connectionId", connection_id)
            config = parse_json_body(body, ConnectionConfig, "the connection")
            check_exchange_secret_reference(config)
            self._check_endpoint(config)
            return self._save_connection(org, connection_id, config)
        except Refusal as refusal:
            return refusal.answer

    def _check_endpoint(self, config: ConnectionConfig) -> None:
        if config.ews_url is None:
            return
        try:
            self._endpoints.check(config.ews_url, resolve=self._resolve)
        except EndpointRefused as refused:
            problem = ValidationProblem(field="ewsUrl", message=f"ewsUrl {refused}")
            raise invalid("the connection", [problem]) from None

    def _write_connection(
        self, org: str, connection_id: str, config: ConnectionConfig
    ) -> tuple[Versioned[ConnectionRecord] | None, ConnectionRecord, bool]:
        """Read the connection's row, keep the health the workers found while the
        configuration stays, write it back under the ETag read. Returns the row as it was, the
        row written and whether the configuration stayed."""
        current = self._repos.connections.get(org, connection_id)
        # The health found by the workers stays while the configuration does; a changed
        # configuration (new credentials, URL) is tried afresh.
        unchanged = (
            current is not None
            and ConnectionConfig.model_validate(
                current.value.model_dump(include=set(ConnectionConfig.model_fields))
            )
            == config
        )
        kept = (
            {
                "health": current.value.health,
                "health_detail": current.value.health_detail,
                "failed_secret_fingerprint": current.value.failed_secret_fingerprint,
                "auth_retried_at": current.value.auth_retried_at,
            }
            if current is not None
            and unchanged
            # Saving refused credentials again retries them (the secret may have been
            # fixed in the secret store): no longer auth_failed.
            and current.value.health is not Health.AUTH_FAILED
            else {}
        )
        if not config.enabled:
            kept = {"health": Health.DISABLED}
        elif current is not None and current.value.health is Health.DISABLED:
            kept = {"health": Health.OK}
        record = ConnectionRecord(connection_id=connection_id, **config.model_dump(), **kept)
        self._repos.connections.put(org, connection_id, record, current.etag if current else None)
        return current, record, unchanged

    def _save_connection(
        self, org: str, connection_id: str, config: ConnectionConfig
    ) -> HttpAnswer:
        try:
            with storage_refusals(f"connection {connection_id!r}"):
                # A worker that wrote the row's health meanwhile does not refuse the save.
                current, record, unchanged = decided_afresh(
                    lambda: self._write_connection(org, connection_id, config)
                )
                change = after_save(
                    self._repos,
                    self._queue,
                    org,
                    current.value if current else None,
                    record,
                    self._now(),
                )
                requeued = change.requeued
                if config.kind == "graph" and config.enabled and not unchanged and not change.syncs:
                    # New credentials: its mailboxes' subscriptions are made (or renewed) now
                    # rather than at the next hourly round (the catch-up of a connection
                    # callable again asked for them already).
                    for staff_id, row in self._repos.mailboxes.list_by_org(org).items():
                        if row.value.connection_id == connection_id:
                            self._ask_for_subscription(org, staff_id)
        except QueueUnavailable as exc:
            # Saved, but parked changes stay parked (they are unparked only once queued): the
            # same request again requeues them.
            log.warning("connection %s/%s: requeue failed: %s", org, connection_id, exc)
            raise unavailable("the work queue") from exc
        log.info("connection %s/%s saved (kind %s)", org, connection_id, config.kind)
        saved = ConnectionSaved(
            connection_id=connection_id,
            created=current is None,
            requeued_parked_changes=requeued,
        )
        return json_answer(201 if current is None else 200, saved)

    # --- organization settings ----------------------------------------------------------------

    def put_settings(self, *, org: str, body: bytes, admin_key: str | None) -> HttpAnswer:
        try:
            self._authenticate(org, admin_key, body)
            settings = parse_json_body(body, OrgSettings, "the settings")
            if settings.webhook_url is not None:
                try:
                    self._endpoints.check(settings.webhook_url, resolve=self._resolve)
                except EndpointRefused as refused:
                    problem = ValidationProblem(field="webhookUrl", message=f"webhookUrl {refused}")
                    raise invalid("the settings", [problem]) from None
            with storage_refusals("the settings"):
                current = self._repos.settings.get(org)
                self._repos.settings.put(org, settings, current.etag if current else None)
            log.info("settings of org %s saved", org)
            return json_answer(201 if current is None else 200, settings)
        except Refusal as refusal:
            return refusal.answer

    def get_settings(self, *, org: str, admin_key: str | None) -> HttpAnswer:
        try:
            self._authenticate(org, admin_key, b"")
            with storage_refusals("the settings"):
                settings = self._repos.settings.settings_of(org)
            return json_answer(200, settings)
        except Refusal as refusal:
            return refusal.answer

    # --- webhooks -----------------------------------------------------------------------------

    def replay_webhook(self, *, org: str, event_id: str, admin_key: str | None) -> HttpAnswer:
        """Send a dead-lettered (or undelivered) event again: its tries start over."""
        try:
            self._authenticate(org, admin_key, b"")
            check_id("eventId", event_id)
            with storage_refusals(f"webhook {event_id!r}"):
                current = self._repos.outbox.get(org, event_id)
                if current is None:
                    raise refuse(404, "not_found", f"no webhook {event_id!r} in the outbox")
                if current.value.delivered_at is not None:
                    raise refuse(
                        409, "already_delivered", f"webhook {event_id!r} was delivered already"
                    )
                fresh = current.value.tried_afresh(self._now())
                self._repos.outbox.put(org, event_id, fresh, current.etag)
            try:
                self._queue.send(WebhookDeliveryDue(org=org, event_id=event_id))
            except QueueUnavailable as exc:
                raise unavailable("the work queue") from exc
            log.info("webhook %s/%s queued again", org, event_id)
            return json_answer(202, WebhookReplayed(event_id=event_id))
        except Refusal as refusal:
            return refusal.answer

    # --- staff --------------------------------------------------------------------------------

    def put_staff(
        self, *, org: str, staff_id: str, body: bytes, admin_key: str | None
    ) -> HttpAnswer:
        try:
            self._authenticate(org, admin_key, body)
            check_id("staffId", staff_id)
            assignment = parse_json_body(body, StaffMailboxAssignment, "the staff assignment")
            return self._save_staff(org, staff_id, assignment)
        except Refusal as refusal:
            return refusal.answer

    def _is_graph(self, org: str, connection_id: str) -> bool:
        found = self._repos.connections.get(org, connection_id)
        return found is not None and found.value.kind == "graph"

    def _ask_for_subscription(self, org: str, staff_id: str) -> None:
        """A Graph mailbox assigned, or one that left Graph: its change-notification
        subscription is made (or deleted) by the subscription worker. Should the message be
        lost, the hourly subscription timer finds the mailbox all the same."""
        try:
            self._queue.send(SubscriptionWork(org=org, staff_id=staff_id))
        except QueueUnavailable as exc:
            log.warning("staff %s/%s: subscription work not queued: %s", org, staff_id, exc)

    def _write_assignment(
        self, org: str, staff_id: str, assignment: StaffMailboxAssignment
    ) -> tuple[Versioned[MailboxRecord] | None, bool]:
        """Read the mailbox row, keep its sync state if the mailbox stays, write it back under
        the ETag read. Returns the row as it was and whether the mailbox stayed."""
        current = self._repos.mailboxes.get(org, staff_id)
        same_mailbox = current is not None and (
            current.value.connection_id == assignment.connection_id
            and current.value.address == assignment.mailbox
        )
        base = current.value.model_dump() if current is not None and same_mailbox else {}
        if base and current is not None and current.value.busy_time != assignment.busy_time:
            # The next sync reads the whole calendar again and decides its busy time anew.
            base["last_full_read_at"] = None
        if current is not None and not same_mailbox:
            # Moved (e.g. on-premises EWS → Graph after the mailbox moved): the next read
            # is a new baseline on the new connection, which adopts calbridge's events by
            # their marker and reports nothing already known.
            base = {"rebaseline": True}
        record = MailboxRecord(
            **{
                **base,
                "staff_id": staff_id,
                "connection_id": assignment.connection_id,
                "address": assignment.mailbox,
                "time_zone": assignment.time_zone,
                "busy_time": assignment.busy_time,
            }
        )
        self._repos.mailboxes.put(org, staff_id, record, current.etag if current else None)
        return current, same_mailbox

    def _save_staff(
        self, org: str, staff_id: str, assignment: StaffMailboxAssignment
    ) -> HttpAnswer:
        with storage_refusals(f"staff member {staff_id!r}"):
            connection = self._repos.connections.get(org, assignment.connection_id)
            if connection is None:
                raise Refusal(
                    422,
                    ApiError(
                        error="unknown_connection",
                        message=(
                            f"connectionId {assignment.connection_id!r} is not a connection of "
                            f"organization {org!r}"
                        ),
                    ),
                )
            # A sync that wrote the row meanwhile does not refuse the assignment.
            current, same_mailbox = decided_afresh(
                lambda: self._write_assignment(org, staff_id, assignment)
            )
            pushed = connection.value.kind == "graph" or (
                current is not None and self._is_graph(org, current.value.connection_id)
            )
        log.info("staff %s/%s assigned to connection %s", org, staff_id, assignment.connection_id)
        if pushed:
            self._ask_for_subscription(org, staff_id)
        saved = StaffSaved(
            staff_id=staff_id,
            connection_id=assignment.connection_id,
            mailbox=assignment.mailbox,
            created=current is None,
            # A new mailbox or connection starts its sync afresh: a sync state belongs to one
            # mailbox on one server.
            sync_reset=current is not None and not same_mailbox,
        )
        return json_answer(201 if current is None else 200, saved)
