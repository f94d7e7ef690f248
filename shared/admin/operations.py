"""The administrator's connection operations: read connections back, pause and resume one for
maintenance, test it on every mailbox, resync a mailbox or a whole connection, and replay the
work that failed.

Authenticated like every admin route (``AdminApi._authenticate``: the organization's admin key
or the operator's); every read and write is keyed by the ``org`` of the path. Secrets never pass
through here: a connection is read back with its secret *reference*, never the secret, and the
connection test's answers name conditions, never credentials.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ValidationError

from shared.admin.service import AdminApi, storage_refusals
from shared.config import SecretNotFound, SecretUnavailable
from shared.connections import recover, set_enabled
from shared.exchange.endpoint_policy import EndpointRefused
from shared.exchange.gateways import Gateways, MissingSecret
from shared.exchange.port import CalendarError
from shared.exchange.probe import MailboxProbe, ProbeProblem, classify, probe_mailbox
from shared.http.admin_contract import (
    ConnectionList,
    ConnectionState,
    ConnectionTest,
    ConnectionView,
    MailboxTest,
    ReplayedItem,
    ReplayReport,
    ReplayRequest,
    ResyncQueued,
)
from shared.http.answers import HttpAnswer, Refusal, json_answer, refuse, unavailable
from shared.http.requests import check_id, parse_json_body
from shared.mailbox_sync.service import FULL_READ
from shared.models import ConnectionConfig, Health
from shared.queues import (
    APPOINTMENT_CHANGES,
    MAILBOX_SUBSCRIPTIONS,
    MAILBOX_SYNC,
    WEBHOOK_DELIVERIES,
    AppointmentChanged,
    MailboxSyncRequested,
    PoisonQueues,
    QueueSender,
    QueueUnavailable,
    SubscriptionWork,
    WebhookDeliveryDue,
)
from shared.store import ConcurrencyConflict, Repositories
from shared.store.records import ConnectionRecord, MailboxRecord
from shared.store.threads import in_storage_thread

log = logging.getLogger(__name__)

# The connection test answers within this (HTTP clients and the Functions front end give up
# later); mailboxes not tested by then are reported as such.
TEST_BUDGET_SECONDS: Final = 20.0
# Mailboxes tested at once: well below EWS's EWSMaxConcurrency (27) for a delegate account.
TEST_CONCURRENCY: Final = 8

_MESSAGE_OF_QUEUE: Final[dict[str, type[BaseModel]]] = {
    APPOINTMENT_CHANGES: AppointmentChanged,
    MAILBOX_SYNC: MailboxSyncRequested,
    MAILBOX_SUBSCRIPTIONS: SubscriptionWork,
    WEBHOOK_DELIVERIES: WebhookDeliveryDue,
}


def _subject_of(queue: str, message: BaseModel) -> str:
    """The id a dead letter of this queue is filed under."""
    if isinstance(message, AppointmentChanged):
        return message.appointment_id
    if isinstance(message, MailboxSyncRequested | SubscriptionWork):
        return message.staff_id
    assert isinstance(message, WebhookDeliveryDue)
    return message.event_id


class ConnectionAdmin:
    """The service behind the connection operations' routes."""

    def __init__(
        self,
        api: AdminApi,
        repositories: Repositories,
        queue: QueueSender,
        gateways: Gateways,
        poison: PoisonQueues,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        test_budget_seconds: float = TEST_BUDGET_SECONDS,
        test_concurrency: int = TEST_CONCURRENCY,
    ) -> None:
        self._api = api
        self._repos = repositories
        self._queue = queue
        self._gateways = gateways
        self._poison = poison
        self._now = now
        self._test_budget = test_budget_seconds
        self._test_concurrency = test_concurrency

    # --- reading connections back -------------------------------------------------------------

    def _view(
        self, record: ConnectionRecord, mailboxes: dict[str, MailboxRecord]
    ) -> ConnectionView:
        config = record.model_dump(include=set(ConnectionConfig.model_fields))
        own = [m for m in mailboxes.values() if m.connection_id == record.connection_id]
        return ConnectionView(
            **config,
            connection_id=record.connection_id,
            health=record.health,
            last_error=record.health_detail,
            mailboxes=len(own),
            mailboxes_read=sum(1 for m in own if m.last_full_read_at is not None),
        )

    def _mailboxes(self, org: str) -> dict[str, MailboxRecord]:
        return {k: v.value for k, v in self._repos.mailboxes.list_by_org(org).items()}

    def list_connections(self, *, org: str, admin_key: str | None) -> HttpAnswer:
        try:
            self._api._authenticate(org, admin_key, b"")
            with storage_refusals("the connections"):
                rows = self._repos.connections.list_by_org(org)
                mailboxes = self._mailboxes(org)
            views = [self._view(rows[key].value, mailboxes) for key in sorted(rows)]
            return json_answer(200, ConnectionList(connections=views))
        except Refusal as refusal:
            return refusal.answer

    def _connection(self, org: str, connection_id: str) -> ConnectionRecord:
        check_id("connectionId", connection_id)
        with storage_refusals(f"connection {connection_id!r}"):
            found = self._repos.connections.get(org, connection_id)
        if found is None:
            raise refuse(
                404,
                "unknown_connection",
                f"connection {connection_id!r} is not a connection of organization {org!r}",
            )
        return found.value

    def get_connection(self, *, org: str, connection_id: str, admin_key: str | None) -> HttpAnswer:
        try:
            self._api._authenticate(org, admin_key, b"")
            record = self._connection(org, connection_id)
            with storage_refusals("the mailboxes"):
                mailboxes = self._mailboxes(org)
            return json_answer(200, self._view(record, mailboxes))
        except Refusal as refusal:
            return refusal.answer

    # --- maintenance --------------------------------------------------------------------------

    def set_enabled(
        self,
        *,
        org: str,
        connection_id: str,
        enabled: bool,
        body: bytes,
        admin_key: str | None,
    ) -> HttpAnswer:
        """Disable: no call to the connection's Exchange from now on (the workers park and skip);
        enable: the parked changes are queued again and every mailbox catches up."""
        try:
            self._api._authenticate(org, admin_key, body)
            self._connection(org, connection_id)
            _refuse_a_body(body)
            try:
                with storage_refusals(f"connection {connection_id!r}"):
                    change = set_enabled(
                        self._repos, self._queue, org, connection_id, enabled, self._now()
                    )
            except QueueUnavailable as exc:
                # Saved; what could not be queued stays parked: the same request again goes on.
                raise unavailable("the work queue") from exc
            if change is None:
                raise refuse(404, "unknown_connection", f"connection {connection_id!r} is gone")
            record = change.connection
            state = ConnectionState(
                connection_id=connection_id,
                enabled=record.enabled,
                health=record.health,
                requeued_parked_changes=change.requeued,
                syncs_queued=change.syncs,
            )
            return json_answer(200, state)
        except Refusal as refusal:
            return refusal.answer

    # --- the connection test ------------------------------------------------------------------

    async def test_connection(
        self, *, org: str, connection_id: str, body: bytes, admin_key: str | None
    ) -> HttpAnswer:
        """Read and write each assigned mailbox's calendar (a test event made and removed at
        once), several mailboxes at a time, within ``TEST_BUDGET_SECONDS``. A test that reads a
        mailbox of an ``auth_failed`` connection recovers it."""

        def look_up() -> tuple[ConnectionRecord, list[tuple[str, MailboxRecord]]]:
            self._api._authenticate(org, admin_key, body)
            record = self._connection(org, connection_id)
            _refuse_a_body(body)
            with storage_refusals("the mailboxes"):
                assigned = sorted(
                    (staff_id, row)
                    for staff_id, row in self._mailboxes(org).items()
                    if row.connection_id == connection_id
                )
            return record, assigned

        try:
            # Secrets and storage are reached on the storage threads: the event loop is the
            # workers' too.
            record, assigned = await in_storage_thread(look_up)
        except Refusal as refusal:
            return refusal.answer
        results = await self._probe_all(org, record, [(s, m.address) for s, m in assigned])
        tests = [
            MailboxTest(
                staff_id=staff_id,
                mailbox=probe.mailbox,
                access_mode=_access_of(record),
                can_read=probe.can_read,
                can_write=probe.can_write,
                problem=probe.problem.value if probe.problem else None,
                detail=probe.detail,
            )
            for (staff_id, _), probe in zip(assigned, results, strict=True)
        ]
        health = record.health
        if any(t.can_read for t in tests) and record.health is Health.AUTH_FAILED:
            try:
                change = await in_storage_thread(
                    recover, self._repos, self._queue, org, connection_id, self._now()
                )
                health = change.connection.health if change else health
            except QueueUnavailable:
                log.warning("connection %s/%s: recovered, held work not queued", org, connection_id)
        log.info(
            "connection %s/%s tested: %d of %d mailboxes read and written",
            org,
            connection_id,
            sum(1 for t in tests if t.can_read and t.can_write),
            len(tests),
        )
        answer = ConnectionTest(
            connection_id=connection_id,
            kind=record.kind,
            auth_type=record.auth_type,
            access_mode=_access_of(record),
            ok=all(t.can_read and t.can_write and t.problem is None for t in tests),
            health=health,
            mailboxes=tests,
        )
        return json_answer(200, answer)

    async def _probe_all(
        self, org: str, record: ConnectionRecord, mailboxes: list[tuple[str, str]]
    ) -> list[MailboxProbe]:
        deadline = time.monotonic() + self._test_budget
        limit = asyncio.Semaphore(self._test_concurrency)
        try:
            gateway = self._gateways.for_connection(org, record)
        except Exception as error:
            # A gateway that cannot be built (no secret, a refused URL): every mailbox says why.
            detail = _gateway_problem(error)
            return [
                MailboxProbe(
                    mailbox=address,
                    can_read=False,
                    can_write=False,
                    problem=ProbeProblem.FAILED,
                    detail=detail,
                )
                for _, address in mailboxes
            ]

        async def one(address: str) -> MailboxProbe:
            async with limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    return MailboxProbe(
                        mailbox=address,
                        can_read=False,
                        can_write=False,
                        problem=ProbeProblem.TIMEOUT,
                        detail="not tested: the test's time limit was reached",
                    )
                try:
                    return await asyncio.wait_for(
                        probe_mailbox(gateway, address, self._now(), auth=record.auth_type),
                        timeout=left,
                    )
                except TimeoutError as error:
                    problem, detail = classify(error, auth=record.auth_type)
                    return MailboxProbe(
                        mailbox=address,
                        can_read=False,
                        can_write=False,
                        problem=problem,
                        detail=detail,
                    )

        return list(await asyncio.gather(*(one(address) for _, address in mailboxes)))

    # --- resync -------------------------------------------------------------------------------

    def _resync(self, org: str, staff_ids: list[str]) -> None:
        """Each mailbox is read in full on its next sync (``lastFullReadAt`` None until then),
        and that sync is queued now."""
        now = self._now()
        for staff_id in staff_ids:
            for _ in range(5):
                current = self._repos.mailboxes.get(org, staff_id)
                if current is None:
                    break
                reset = current.value.model_copy(
                    update={"last_full_read_at": None, "sync_pending_since": now}
                )
                try:
                    self._repos.mailboxes.put(org, staff_id, reset, current.etag)
                    break
                except ConcurrencyConflict:
                    continue  # a sync wrote the row meanwhile: read it again
            self._queue.send(MailboxSyncRequested(org=org, staff_id=staff_id, reason=FULL_READ))

    def resync_staff(
        self, *, org: str, staff_id: str, body: bytes, admin_key: str | None
    ) -> HttpAnswer:
        try:
            self._api._authenticate(org, admin_key, body)
            check_id("staffId", staff_id)
            _refuse_a_body(body)
            with storage_refusals(f"staff member {staff_id!r}"):
                found = self._repos.mailboxes.get(org, staff_id)
                if found is None:
                    raise refuse(
                        404,
                        "unknown_staff",
                        f"staff member {staff_id!r} has no mailbox in organization {org!r}",
                    )
                try:
                    self._resync(org, [staff_id])
                except QueueUnavailable as exc:
                    raise unavailable("the work queue") from exc
            log.info("mailbox %s/%s: full resync queued", org, staff_id)
            answer = ResyncQueued(connection_id=found.value.connection_id, staff_ids=[staff_id])
            return json_answer(202, answer)
        except Refusal as refusal:
            return refusal.answer

    def resync_connection(
        self, *, org: str, connection_id: str, body: bytes, admin_key: str | None
    ) -> HttpAnswer:
        try:
            self._api._authenticate(org, admin_key, body)
            self._connection(org, connection_id)
            _refuse_a_body(body)
            with storage_refusals(f"connection {connection_id!r}"):
                staff = sorted(
                    staff_id
                    for staff_id, row in self._mailboxes(org).items()
                    if row.connection_id == connection_id
                )
                try:
                    self._resync(org, staff)
                except QueueUnavailable as exc:
                    raise unavailable("the work queue") from exc
            log.info(
                "connection %s/%s: full resync of %d mailboxes", org, connection_id, len(staff)
            )
            return json_answer(202, ResyncQueued(connection_id=connection_id, staff_ids=staff))
        except Refusal as refusal:
            return refusal.answer

    # --- replay -------------------------------------------------------------------------------

    def replay(self, *, org: str, body: bytes, admin_key: str | None) -> HttpAnswer:
        """Send dead-lettered and poison work of the organization again: all of it, or the one
        item ``{"queue", "id"}`` names (404 when there is no such item)."""
        try:
            self._api._authenticate(org, admin_key, body)
            request = (
                ReplayRequest()
                if not body
                else parse_json_body(body, ReplayRequest, "the replay request")
            )
            with storage_refusals("the dead letters"):
                try:
                    replayed = self._replay(org, request)
                except QueueUnavailable as exc:
                    raise unavailable("the work queue") from exc
            if request.queue is not None and not replayed:
                raise refuse(
                    404,
                    "not_found",
                    f"no dead-lettered or poison item {request.id!r} of queue {request.queue!r}",
                )
            log.info("org %s: %d failed items replayed", org, len(replayed))
            report = ReplayReport(replayed=replayed, count=len(replayed), at=self._now())
            return json_answer(202, report)
        except Refusal as refusal:
            return refusal.answer

    def _replay(self, org: str, request: ReplayRequest) -> list[ReplayedItem]:
        done: dict[tuple[str, str], ReplayedItem] = {}
        queues = [request.queue] if request.queue else list(_MESSAGE_OF_QUEUE)
        for queue in queues:
            model = _MESSAGE_OF_QUEUE[queue]

            def handle(text: str, queue: str = queue, model: type[BaseModel] = model) -> bool:
                try:
                    message = model.model_validate_json(text)
                except ValidationError:
                    return False
                if getattr(message, "org", None) != org:
                    return False  # another organization's: left where it is
                subject = _subject_of(queue, message)
                if request.id is not None and subject != request.id:
                    return False
                if (queue, subject) not in done:
                    self._send_again(org, queue, message)
                    done[(queue, subject)] = ReplayedItem(queue=queue, id=subject, source="poison")
                return True

            self._poison.drain(queue, handle)
        for letter in self._repos.dead_letters.of_org(org):
            if letter.queue not in _MESSAGE_OF_QUEUE:
                continue
            if request.queue is not None and (letter.queue, letter.subject_id) != (
                request.queue,
                request.id,
            ):
                continue
            key = (letter.queue, letter.subject_id)
            if key not in done:
                model = _MESSAGE_OF_QUEUE[letter.queue]
                try:
                    message = model.model_validate(letter.message)
                except ValidationError:
                    continue
                self._send_again(org, letter.queue, message)
                done[key] = ReplayedItem(
                    queue=letter.queue, id=letter.subject_id, source="dead_letter"
                )
            self._repos.dead_letters.forget(org, letter.queue, letter.subject_id)
        for event_id, row in self._repos.outbox.list_by_org(org).items():
            # Webhooks the delivery worker gave up on (dead-lettered in the outbox itself).
            if not row.value.dead_lettered or row.value.delivered_at is not None:
                continue
            if request.queue is not None and (WEBHOOK_DELIVERIES, event_id) != (
                request.queue,
                request.id,
            ):
                continue
            key = (WEBHOOK_DELIVERIES, event_id)
            self._send_again(
                org, WEBHOOK_DELIVERIES, WebhookDeliveryDue(org=org, event_id=event_id)
            )
            if key not in done:
                done[key] = ReplayedItem(queue=WEBHOOK_DELIVERIES, id=event_id, source="outbox")
        return list(done.values())

    def _send_again(self, org: str, queue: str, message: BaseModel) -> None:
        if isinstance(message, AppointmentChanged):
            # The newest snapshot, whatever version failed.
            stored = self._repos.appointments.get(org, message.appointment_id)
            if stored is not None:
                message = message.model_copy(update={"version": stored.value.version})
        if isinstance(message, WebhookDeliveryDue):
            current = self._repos.outbox.get(org, message.event_id)
            if current is None or current.value.delivered_at is not None:
                return
            fresh = current.value.tried_afresh(self._now())
            self._repos.outbox.put(org, message.event_id, fresh, current.etag)
        self._queue.send(message)


def _access_of(record: ConnectionRecord) -> str:
    """How the connection opens mailboxes: EWS impersonation or delegate access; Graph's
    application permission."""
    return "application" if record.kind == "graph" else record.access_mode


def _gateway_problem(error: Exception) -> str:
    if isinstance(error, MissingSecret):
        return str(error)
    if isinstance(error, SecretNotFound):
        return "the connection's secret reference names no secret in the secret store"
    if isinstance(error, SecretUnavailable):
        return "the secret store could not be reached"
    if isinstance(error, EndpointRefused | CalendarError):
        return f"the connection cannot be set up: {error}"
    return f"the connection cannot be set up ({type(error).__name__})"


def _refuse_a_body(body: bytes) -> None:
    """A route that takes no body accepts none at all, or an empty JSON object; anything else
    is a 400 (whitespace alone is no JSON document)."""
    if body == b"":
        return
    try:
        empty = json.loads(body) == {}
    except (ValueError, RecursionError):
        empty = False
    if not empty:
        raise refuse(400, "unexpected_body", "this route takes no body (or {})")
