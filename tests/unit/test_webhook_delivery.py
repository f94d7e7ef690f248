"""The webhook-deliveries worker on in-memory storage, with the booking platform played by a
recording stand-in: signatures, retries with exponential backoff by re-queueing, dead letters
after the last try, duplicates ignored, and URLs the endpoint policy refuses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from shared.config import org_signing_secret_reference
from shared.exchange.endpoint_policy import ExchangeEndpointPolicy
from shared.models import OrgSettings
from shared.queues import WEBHOOK_DELIVERIES, MemoryQueueSender, WebhookDeliveryDue
from shared.store import Repositories
from shared.store.memory import memory_repositories
from shared.webhooks.delivery import DeliveryOutcome, DeliveryReport, WebhookDelivery
from shared.webhooks.events import busy_time_row
from shared.webhooks.sweep import OVERDUE_AFTER, WebhookSweep

ORG = "acme"
SECRET = "acme-signing-secret"
NOW = datetime(2031, 1, 1, tzinfo=UTC)


class Platform:
    """Records what it is sent and answers with the statuses it is given, in order."""

    def __init__(self, *statuses: int | OSError) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []

    def __call__(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        self.requests.append((url, body, headers))
        answer = self.statuses.pop(0) if self.statuses else 200
        if isinstance(answer, OSError):
            raise answer
        return answer


class Secrets:
    def resolve(self, reference: str) -> str:
        assert reference == org_signing_secret_reference(ORG)
        return SECRET


def setup(
    platform: Platform, url: str | None = "https://booking.acme.example/hooks"
) -> tuple[Repositories, MemoryQueueSender, WebhookDelivery, WebhookDeliveryDue]:
    repos = memory_repositories()
    queue = MemoryQueueSender()
    repos.settings.put(ORG, OrgSettings(webhook_url=url), None)
    delivery = WebhookDelivery(
        repos,
        queue,
        Secrets(),
        endpoints=ExchangeEndpointPolicy(),
        resolve=lambda host: ["20.1.2.3"],
        post=platform,
        max_attempts=3,
        now=lambda: NOW,
    )
    row = busy_time_row(ORG, "ann", (NOW, NOW + timedelta(hours=1)), "page-1", NOW)
    repos.outbox.add(ORG, row)
    return repos, queue, delivery, WebhookDeliveryDue(org=ORG, event_id=row.event_id)


def deliver(delivery: WebhookDelivery, message: WebhookDeliveryDue) -> DeliveryReport:
    return asyncio.run(delivery.deliver(message))


def test_a_delivery_is_signed_over_timestamp_and_body_and_happens_once() -> None:
    platform = Platform(200)
    repos, _, delivery, message = setup(platform)
    assert deliver(delivery, message).outcome is DeliveryOutcome.DELIVERED
    [(url, body, headers)] = platform.requests
    assert url == "https://booking.acme.example/hooks"
    stamp, digest = headers["X-Calbridge-Signature"].removeprefix("t=").split(",v1=")
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert digest == expected
    # A duplicate message sends nothing more.
    assert deliver(delivery, message).outcome is DeliveryOutcome.ALREADY_SETTLED
    assert len(platform.requests) == 1
    stored = repos.outbox.get(ORG, message.event_id)
    assert stored is not None
    assert stored.value.answer_status == 200


def test_failures_are_retried_with_growing_delays_then_dead_lettered() -> None:
    platform = Platform(503, ConnectionResetError(), 500)
    repos, queue, delivery, message = setup(platform)
    assert deliver(delivery, message).outcome is DeliveryOutcome.RETRYING
    assert deliver(delivery, message).outcome is DeliveryOutcome.RETRYING
    delays = [sent.visibility_delay for sent in queue.sent if sent.queue == WEBHOOK_DELIVERIES]
    assert delays == [timedelta(seconds=15), timedelta(seconds=30)]
    report = deliver(delivery, message)
    assert report.outcome is DeliveryOutcome.DEAD_LETTERED
    assert "HTTP 500" in report.detail
    stored = repos.outbox.get(ORG, message.event_id)
    assert stored is not None
    assert (stored.value.attempts, stored.value.dead_lettered) == (3, True)
    [letter] = repos.dead_letters.of_org(ORG)
    assert (letter.queue, letter.subject_id) == (WEBHOOK_DELIVERIES, message.event_id)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (None, "no webhook URL"),
        ("https://169.254.169.254/latest", "cloud metadata"),
    ],
)
def test_a_url_that_cannot_be_used_is_a_failed_try_and_nothing_is_sent(
    url: str | None, why: str
) -> None:
    platform = Platform()
    repos, _, delivery, message = setup(platform, url=None)
    if url is not None:
        # Stored before a policy existed, or by hand: refused when sending.
        current = repos.settings.get(ORG)
        assert current is not None
        repos.settings.put(ORG, OrgSettings.model_construct(webhook_url=url), current.etag)
    report = deliver(delivery, message)
    assert report.outcome is DeliveryOutcome.RETRYING
    assert why in report.detail
    assert platform.requests == []


# --- the outbox sweep ---------------------------------------------------------------------------


def sweep_at(repos: Repositories, queue: MemoryQueueSender, moment: datetime) -> int:
    return WebhookSweep(repos, queue, now=lambda: moment).run()


def test_a_row_whose_delivery_was_never_queued_is_queued_by_the_sweep_once() -> None:
    # The row is in the outbox (made at NOW) and no message was sent for it: the worker that
    # wrote it died before queueing, or the queue refused the message.
    repos, queue, _, message = setup(Platform(200))
    assert sweep_at(repos, queue, NOW + OVERDUE_AFTER - timedelta(seconds=1)) == 0
    later = NOW + OVERDUE_AFTER + timedelta(seconds=1)
    assert sweep_at(repos, queue, later) == 1
    assert queue.bodies(WEBHOOK_DELIVERIES) == [message.model_dump(mode="json", by_alias=True)]
    # Its message is out: the next sweeps leave it alone until that one is overdue in turn.
    assert sweep_at(repos, queue, later + timedelta(minutes=5)) == 0
    assert sweep_at(repos, queue, later + OVERDUE_AFTER + timedelta(seconds=1)) == 1


def test_delivered_dead_lettered_and_retrying_rows_are_left_to_their_worker() -> None:
    repos, queue, delivery, message = setup(Platform(200))
    deliver(delivery, message)
    settled = repos.outbox.get(ORG, message.event_id)
    assert settled is not None
    assert settled.value.next_attempt_at is None
    assert sweep_at(repos, queue, NOW + timedelta(days=1)) == 0

    repos, queue, delivery, message = setup(Platform(500, 500, 500))
    for _ in range(3):
        deliver(delivery, message)
    dead = repos.outbox.get(ORG, message.event_id)
    assert dead is not None
    assert dead.value.dead_lettered
    queue.sent.clear()
    assert sweep_at(repos, queue, NOW + timedelta(days=1)) == 0

    # Retrying: its next try is due after its backoff, so it is overdue only after that.
    repos, queue, delivery, message = setup(Platform(500))
    deliver(delivery, message)
    retrying = repos.outbox.get(ORG, message.event_id)
    assert retrying is not None
    due = retrying.value.next_attempt_at
    assert due is not None
    assert due > NOW
    assert sweep_at(repos, queue, due + OVERDUE_AFTER - timedelta(seconds=1)) == 0


def test_a_replayed_row_is_due_at_once_and_swept_if_its_message_is_lost() -> None:
    repos, queue, delivery, message = setup(Platform(500, 500, 500))
    for _ in range(3):
        deliver(delivery, message)
    row = repos.outbox.get(ORG, message.event_id)
    assert row is not None
    replayed_at = NOW + timedelta(days=2)
    repos.outbox.put(ORG, message.event_id, row.value.tried_afresh(replayed_at), row.etag)
    queue.sent.clear()
    assert sweep_at(repos, queue, replayed_at + OVERDUE_AFTER + timedelta(seconds=1)) == 1
