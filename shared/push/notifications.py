"""``NotificationIntake``: the service behind Graph's notification and lifecycle URLs.

Graph posts to them (https://learn.microsoft.com/graph/change-notifications-delivery-webhooks):

- **the validation handshake** — a POST with ``?validationToken=…`` when a subscription is made
  (for both URLs): answered 200 ``text/plain`` with the decoded token and nothing else, within
  Graph's 10 seconds;
- **change notifications** — ``{"value": [...]}``, each naming its subscription and carrying the
  subscription's ``clientState`` back. Each must name a subscription of this organization
  (``Subscriptions``) and carry its clientState: its SHA-256 is compared, in constant time, with
  the one hash stored (the clientState itself is never kept). A notification says only that the
  mailbox changed; the sync finds out what. A valid one claims the mailbox's pending mark and,
  if no sync is pending yet, queues one ``mailbox-sync`` (a burst for one mailbox is one sync);
  either way it is counted, so a sync already running runs once more. The answer is 202, well
  inside Graph's 3 seconds: a row read per subscription, a row write and at most one message per
  mailbox;
- **lifecycle notifications** (https://learn.microsoft.com/graph/change-notifications-lifecycle-events),
  checked the same way: ``reauthorizationRequired`` and ``subscriptionRemoved`` queue work for
  the subscription worker (``mailbox-subscriptions``), ``missed`` a sync of the mailbox.

A body in which no notification passes the checks changes nothing and is refused with 403 (a
forgery, or a subscription calbridge has deleted). Nothing from a request is reflected but the
validation token, as plain text. This module imports no Exchange SDK: the endpoint must answer
fast even in a fresh process.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import ValidationError

from shared.http.answers import HttpAnswer, Refusal, refuse, text_answer, unavailable
from shared.http.contract import GraphNotification, GraphNotificationBatch
from shared.http.requests import check_json, gate
from shared.mailbox_sync.pending import claim_sync, release_claim
from shared.queues import (
    MailboxSyncRequested,
    QueueSender,
    QueueUnavailable,
    SubscriptionWork,
)
from shared.store import Repositories, StoreError, UnstorableEntity
from shared.store.records import SubscriptionRecord

log = logging.getLogger(__name__)

# Graph chooses how many notifications a POST carries: a generous limit of our own.
MAX_NOTIFICATION_BYTES: Final = 1024 * 1024
# Graph's tokens are a sentence and a request id; anything longer is not Graph's.
MAX_VALIDATION_TOKEN: Final = 1024
NOTIFIED: Final = "notification"
MISSED: Final = "missed notifications"
# Graph's lifecycle events and the subscription worker's answer to each (``missed``: a sync).
_LIFECYCLE_ACTIONS: Final[dict[str, Literal["reauthorize", "recreate"]]] = {
    "reauthorizationRequired": "reauthorize",
    "subscriptionRemoved": "recreate",
}


def client_state_hash(client_state: str) -> str:
    """What ``Subscriptions`` keeps of a subscription's clientState."""
    return hashlib.sha256(("calbridge-client-state\0" + client_state).encode()).hexdigest()


class NotificationIntake:
    """Takes Graph's notifications for one organization per URL (``.../graph/.../{org}``)."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._now = now

    # --- the two URLs ---------------------------------------------------------------------------

    def notifications(self, *, org: str, validation_token: str | None, body: bytes) -> HttpAnswer:
        try:
            gate(org, body, MAX_NOTIFICATION_BYTES)
            if validation_token is not None:
                return _handshake(validation_token, body)
            valid = self._valid(org, body)
            mailboxes = {record.staff_id for _, record in valid}
            queued = sum(self._notify(org, staff_id, NOTIFIED) for staff_id in sorted(mailboxes))
            log.info(
                "graph notifications",
                extra={"org": org, "valid": len(valid), "mailboxes": len(mailboxes)},
            )
            return HttpAnswer(202, {"accepted": len(valid), "syncsQueued": queued})
        except Refusal as refusal:
            return refusal.answer

    def lifecycle(self, *, org: str, validation_token: str | None, body: bytes) -> HttpAnswer:
        try:
            gate(org, body, MAX_NOTIFICATION_BYTES)
            if validation_token is not None:
                return _handshake(validation_token, body)
            valid = self._valid(org, body)
            for notification, record in valid:
                self._lifecycle_event(org, notification, record)
            return HttpAnswer(202, {"accepted": len(valid)})
        except Refusal as refusal:
            return refusal.answer

    # --- checks ---------------------------------------------------------------------------------

    def _valid(self, org: str, body: bytes) -> list[tuple[GraphNotification, SubscriptionRecord]]:
        """The notifications that name one of the organization's subscriptions with its
        clientState; 400 for a body that is not Graph's (or names a key twice: which one
        counts would be up to the parser), 403 when none passes."""
        check_json(body)
        try:
            batch = GraphNotificationBatch.model_validate_json(body)
        except ValidationError:
            raise refuse(
                400, "bad_request", 'the body is not a Graph notification batch {"value": [...]}'
            ) from None
        subscriptions: dict[str, SubscriptionRecord | None] = {}
        valid: list[tuple[GraphNotification, SubscriptionRecord]] = []
        for notification in batch.value:
            subscription_id = notification.subscription_id
            if subscription_id not in subscriptions:
                subscriptions[subscription_id] = self._subscription(org, subscription_id)
            record = subscriptions[subscription_id]
            if record is None or not _client_state_matches(record, notification.client_state):
                continue
            valid.append((notification, record))
        if not valid:
            log.warning("graph notifications refused: no known subscription with its clientState")
            raise refuse(
                403,
                "forbidden",
                "no notification names a subscription of this organization with its clientState",
            )
        return valid

    def _subscription(self, org: str, subscription_id: str) -> SubscriptionRecord | None:
        try:
            found = self._repos.subscriptions.get(org, subscription_id)
        except UnstorableEntity:
            # An id too long to be a row key (up to 256 characters may encode past Table
            # Storage's 1,024): no subscription of ours has it. A forgery, not an outage.
            return None
        except StoreError as error:
            raise unavailable("storage") from error
        return found.value if found is not None else None

    # --- effects --------------------------------------------------------------------------------

    def _notify(self, org: str, staff_id: str, reason: str) -> bool:
        """Count a notification for the mailbox and queue a sync unless one is pending; True
        when one was queued."""
        now = self._now()
        try:
            claimed = claim_sync(self._repos, org, staff_id, now, notice=True)
        except StoreError as error:
            raise unavailable("storage") from error
        if not claimed:
            return False
        try:
            self._queue.send(MailboxSyncRequested(org=org, staff_id=staff_id, reason=reason))
        except QueueUnavailable as error:
            # Graph delivers again after a failed answer: leave no mark that would hide it then.
            release_claim(self._repos, org, staff_id, now)
            raise unavailable("the work queue") from error
        return True

    def _lifecycle_event(
        self, org: str, notification: GraphNotification, record: SubscriptionRecord
    ) -> None:
        event = (notification.lifecycle_event or "").strip()
        log.info("graph lifecycle event %s for %s/%s", event, org, record.staff_id)
        if event == "missed":
            self._notify(org, record.staff_id, MISSED)
            return
        action = _LIFECYCLE_ACTIONS.get(event)
        if action is None:
            return  # an event this version does not know: nothing to do
        work = SubscriptionWork(
            org=org,
            staff_id=record.staff_id,
            action=action,
            subscription_id=record.subscription_id,
        )
        try:
            self._queue.send(work)
        except QueueUnavailable as error:
            raise unavailable("the work queue") from error


def _handshake(token: str, body: bytes) -> HttpAnswer:
    """Graph's token (a sentence and a request id) back as plain text, as Graph requires; a
    request Graph would not send (a body: Graph's handshake has none; a token too long, or
    with a control character such as a line break) is refused rather than reflected."""
    if body:
        raise refuse(400, "bad_request", "a validation request (validationToken) has no body")
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        raise refuse(400, "bad_request", "validationToken must be 1 to 1024 characters")
    if not token.isprintable():
        raise refuse(400, "bad_request", "validationToken must be printable text")
    return text_answer(200, token)


def _client_state_matches(record: SubscriptionRecord, client_state: str | None) -> bool:
    presented = client_state_hash(client_state or "")
    return hmac.compare_digest(presented.encode(), record.client_state_hash.encode())
