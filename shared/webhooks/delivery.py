"""The ``webhook-deliveries`` worker: deliver one outbox row to the organization's booking
platform, at least once.

One message names one outbox row. The worker signs the row's payload (``v1``: HMAC-SHA256 of
``"{t}.{body}"`` under the organization's signing secret) and POSTs it to the organization's
webhook URL — checked against the same address rules as Exchange URLs, redirects not followed.

- 2xx: delivered.
- 409 to ``appointment.rescheduled``: the platform refuses the Outlook move. Delivered (it was
  answered); the refusal is recorded in ``ApplyProblems``, the mapping forgets the move (and is
  marked in doubt, so the apply worker looks at the item), and the appointment is re-queued, so
  the apply worker moves the event back to the booked time.
- Anything else (another status, no answer, no webhook URL set): the try is counted and the
  message is re-queued with an exponential delay (never a sleep); after ``max_attempts`` the
  row is dead-lettered with the reason (``DeadLetters``), where a replay finds it.

A duplicate message is harmless: a delivered or dead-lettered row is not sent again, and rows
are written under their ETag.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.booking.signature import sign_webhook
from shared.config import SecretResolver, org_signing_secret_reference
from shared.exchange.endpoint_policy import (
    EndpointRefused,
    ExchangeEndpointPolicy,
    Resolver,
    resolve_host,
)
from shared.http.contract import SIGNATURE_HEADER
from shared.observability import carried, metrics
from shared.queues import (
    WEBHOOK_DELIVERIES,
    AppointmentChanged,
    QueueSender,
    WebhookDeliveryDue,
)
from shared.store import ConcurrencyConflict, Repositories
from shared.store.records import (
    REFUSED_RESCHEDULE_PROBLEM,
    ApplyProblemRecord,
    DeadLetterRecord,
    OutboxRecord,
)
from shared.store.threads import in_storage_thread
from shared.webhooks.events import APPOINTMENT_RESCHEDULED

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS: Final = 8
FIRST_RETRY_DELAY: Final = timedelta(seconds=15)
LONGEST_RETRY_DELAY: Final = timedelta(hours=1)
REQUEST_TIMEOUT_S: Final = 10.0
# Deliveries wait on the booking platform: threads of their own, so a slow platform holds
# neither storage nor Exchange calls.
_SENDERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook")


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    REFUSED = "refused"  # answered 409 to a reschedule: moved back
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"
    ALREADY_SETTLED = "already_settled"  # delivered or dead-lettered before; or no such row


@dataclass(frozen=True)
class DeliveryReport:
    outcome: DeliveryOutcome
    detail: str = ""


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer (a failed try), never followed: the checked URL is the only
    address the payload goes to."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)

# POST url, body, headers → HTTP status (raises OSError when there is no answer).
Poster = Callable[[str, bytes, dict[str, str]], int]


def post_json(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST with the standard library: one request, no retries, no redirects."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - checked by the endpoint policy
    try:
        with _OPENER.open(request, timeout=REQUEST_TIMEOUT_S) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


class WebhookDelivery:
    """Delivers outbox rows (the ``webhook-deliveries`` worker)."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        secrets: SecretResolver,
        *,
        endpoints: ExchangeEndpointPolicy | None = None,
        resolve: Resolver = resolve_host,
        post: Poster = post_json,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._secrets = secrets
        self._endpoints = endpoints or ExchangeEndpointPolicy()
        self._resolve = resolve
        self._post = post
        self._max_attempts = max_attempts
        self._now = now

    async def deliver(self, message: WebhookDeliveryDue) -> DeliveryReport:
        org, event_id = message.org, message.event_id
        found = await in_storage_thread(self._repos.outbox.get, org, event_id)
        if found is None or found.value.delivered_at or found.value.dead_lettered:
            return DeliveryReport(DeliveryOutcome.ALREADY_SETTLED)
        row, etag = found.value, found.etag
        started = time.monotonic()
        status, problem = await self._send(org, row)
        took = time.monotonic() - started
        try:
            if status is not None and 200 <= status < 300:
                await self._settle(org, row, etag, status)
                report = DeliveryReport(DeliveryOutcome.DELIVERED, f"HTTP {status}")
            elif status == 409 and row.event_type == APPOINTMENT_RESCHEDULED:
                await self._settle(org, row, etag, status)
                await in_storage_thread(self._move_back, org, row)
                report = DeliveryReport(DeliveryOutcome.REFUSED, "HTTP 409")
            else:
                reason = problem or f"the booking platform answered HTTP {status}"
                report = await self._failed(org, row, etag, reason)
        except ConcurrencyConflict:
            # Another delivery of the same row settled it meanwhile.
            return DeliveryReport(DeliveryOutcome.ALREADY_SETTLED, "settled meanwhile")
        log.info(
            "webhook %s",
            report.outcome,
            extra={"org": org, "event": event_id, "type": row.event_type},
        )
        metrics.webhook_delivery(org, row.event_type, report.outcome, took, status)
        return report

    async def _send(self, org: str, row: OutboxRecord) -> tuple[int | None, str]:
        settings = await in_storage_thread(self._repos.settings.settings_of, org)
        url = settings.webhook_url
        if url is None:
            return None, "no webhook URL is set for the organization"
        try:
            await asyncio.get_running_loop().run_in_executor(
                _SENDERS, carried(self._endpoints.check, url, resolve=self._resolve)
            )
        except EndpointRefused as refused:
            return None, f"the webhook URL {refused}"
        secret = await in_storage_thread(self._secrets.resolve, org_signing_secret_reference(org))
        body = row.payload.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_webhook(secret, body, int(time.time())),
        }
        try:
            status = await asyncio.get_running_loop().run_in_executor(
                _SENDERS, carried(self._post, url, body, headers)
            )
        except OSError as failure:
            return None, f"no answer from the booking platform ({type(failure).__name__})"
        return status, ""

    async def _settle(self, org: str, row: OutboxRecord, etag: str, status: int) -> None:
        settled = row.model_copy(
            update={
                "attempts": row.attempts + 1,
                "delivered_at": self._now(),
                "answer_status": status,
                "last_error": None,
                "next_attempt_at": None,
            }
        )
        await in_storage_thread(self._repos.outbox.put, org, row.event_id, settled, etag)

    async def _failed(self, org: str, row: OutboxRecord, etag: str, reason: str) -> DeliveryReport:
        attempts = row.attempts + 1
        if attempts >= self._max_attempts:
            dead = row.model_copy(
                update={
                    "attempts": attempts,
                    "dead_lettered": True,
                    "last_error": reason[:2000],
                    "next_attempt_at": None,
                }
            )
            await in_storage_thread(self._repos.outbox.put, org, row.event_id, dead, etag)
            await in_storage_thread(self._dead_letter, org, row, reason, attempts)
            return DeliveryReport(DeliveryOutcome.DEAD_LETTERED, reason)
        delay = min(FIRST_RETRY_DELAY * 2 ** (attempts - 1), LONGEST_RETRY_DELAY)
        retried = row.model_copy(
            update={
                "attempts": attempts,
                "next_attempt_at": self._now() + delay,
                "last_error": reason[:2000],
            }
        )
        await in_storage_thread(self._repos.outbox.put, org, row.event_id, retried, etag)
        await in_storage_thread(
            self._queue.send,
            WebhookDeliveryDue(org=org, event_id=row.event_id),
            visibility_delay=delay,
        )
        return DeliveryReport(DeliveryOutcome.RETRYING, reason)

    def _dead_letter(self, org: str, row: OutboxRecord, reason: str, attempts: int) -> None:
        self._repos.dead_letters.record(
            org,
            DeadLetterRecord(
                queue=WEBHOOK_DELIVERIES,
                subject_id=row.event_id,
                message=WebhookDeliveryDue(org=org, event_id=row.event_id).model_dump(
                    mode="json", by_alias=True
                ),
                reason=reason[:2000],
                dequeue_count=attempts,
                failed_at=self._now(),
            ),
        )

    def _move_back(self, org: str, row: OutboxRecord) -> None:
        """The platform refused an Outlook move: the mapping forgets it and the appointment is
        applied again, which moves the event back to the booked time."""
        appointment_id = str(json.loads(row.payload)["data"]["appointmentId"])
        applied = 0
        for _ in range(3):
            current = self._repos.event_map.get(org, appointment_id)
            if current is None:
                return
            applied = current.value.applied_version
            # In doubt: the item is not where the mapping's draft says, so the apply pass looks
            # at it before deciding (it trusts a mapping otherwise, and would write nothing).
            forgot = current.value.model_copy(
                update={"outlook_start": None, "outlook_end": None, "in_doubt": True}
            )
            try:
                self._repos.event_map.put(org, appointment_id, forgot, current.etag)
                break
            except ConcurrencyConflict:
                continue
        stored = self._repos.appointments.get(org, appointment_id)
        version = stored.value.version if stored is not None else applied
        organizer = stored.value.organizer_staff_id if stored is not None else None
        self._repos.problems.record(
            org,
            ApplyProblemRecord(
                appointment_id=appointment_id,
                version=version,
                problem=f"{REFUSED_RESCHEDULE_PROBLEM}: moved back to the booked time",
                recorded_at=self._now(),
                organizer_staff_id=organizer,
            ),
        )
        self._queue.send(
            AppointmentChanged(org=org, appointment_id=appointment_id, version=version)
        )
