"""Graph change-notification subscriptions and their delivery.

``SubscriptionBook`` holds the subscriptions (create with the validation handshake, renew,
delete, reauthorize, lifecycle events) and turns store changes into notifications;
``NotificationSender`` is the background thread that POSTs them to subscribers, batching what is
pending per notification URL and retrying with backoff when a subscriber answers non-2xx or
cannot be reached. When every retry has failed the subscription gets a ``missed`` lifecycle
notification (if it has a lifecycle URL), as Graph does. The sender counts its POSTs, and tests
can wait until it is idle (everything handed to it delivered or given up) instead of sleeping.

Rules kept from Graph: the validation handshake (POST ``?validationToken=...``, a 200
``text/plain`` echo within 10 s, for the notification URL and the lifecycle URL) decides whether
a subscription is created; Outlook resources live at most 10,080 minutes; clientState is echoed
in every notification; notifications carry ids, never event content.

One difference, on purpose: Graph posts only to ``https`` URLs reachable from the internet; the
simulator posts to ``http`` too, since every subscriber of a local run (the Functions runner,
the tests' receiver) listens on plain HTTP on loopback.
"""

from __future__ import annotations

import functools
import heapq
import http.client
import itertools
import json
import logging
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from sim.graph import timezones
from sim.graph.errors import GraphError, bad_request
from sim.graph.ids import event_id, user_object_id
from sim.store import Change, ChangeKind, ExchangeStore, SimError

logger = logging.getLogger(__name__)

MAX_LIFETIME = timedelta(minutes=10080)
CHANGE_TYPES = {"created", "updated", "deleted"}
LIFECYCLE_EVENTS = {"reauthorizationRequired", "subscriptionRemoved", "missed"}
_CHANGE_TYPE = {
    ChangeKind.CREATE: "created",
    ChangeKind.UPDATE: "updated",
    ChangeKind.DELETE: "deleted",
}
_RESOURCE = re.compile(
    r"^/?(?:(?P<me>me)|users/(?P<user>[^/]+)|users\('(?P<quoted>[^']+)'\))"
    r"/(?P<path>events|calendar/events)/?$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard the sender tries: delays between attempts (one retry per entry), the time a
    subscriber has to answer, and the validation handshake's time limit."""

    retry_delays_s: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
    timeout_s: float = 3.0
    validation_timeout_s: float = 10.0


@dataclass
class Subscription:
    id: str
    resource: str
    mailbox: str
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    creator: str  # the principal's name: only its creator sees and changes it
    application_id: str
    tenant_id: str
    latest_tls: str = "v1_2"
    include_resource_data: bool = False
    missed_reported: bool = False

    def json(self, base_url: str) -> dict[str, Any]:
        return {
            "@odata.context": f"{base_url}/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(
                t for t in ("created", "updated", "deleted") if t in self.change_types
            ),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": timezones.format_utc(self.expiration),
            "creatorId": self.creator,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": self.latest_tls,
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


# --- delivery --------------------------------------------------------------------------------


@dataclass(order=True)
class _Attempt:
    due: float
    order: int
    url: str = field(compare=False)
    notifications: list[dict[str, Any]] = field(compare=False)
    tries: int = field(compare=False, default=0)
    on_give_up: Callable[[], None] | None = field(compare=False, default=None)


class NotificationSender:
    """One background thread delivering notification batches with retries."""

    def __init__(self, policy: DeliveryPolicy) -> None:
        self.policy = policy
        self._queue: list[_Attempt] = []
        self._order = itertools.count()
        # Wakes the sender thread for new work, and tests waiting for it to be idle.
        self._wake = threading.Condition()
        self._closed = False
        self._posting = False  # batches taken off the queue are being posted
        self._posts = 0
        self._thread = threading.Thread(target=self._run, name="graph-notifications", daemon=True)
        self._thread.start()

    def send(
        self,
        url: str,
        notification: dict[str, Any],
        on_give_up: Callable[[], None] | None = None,
    ) -> None:
        """Queue one notification; ones for the same URL that are due together go in one POST."""
        with self._wake:
            self._queue.append(
                _Attempt(time.monotonic(), next(self._order), url, [notification], 0, on_give_up)
            )
            heapq.heapify(self._queue)
            self._wake.notify_all()

    @property
    def posts(self) -> int:
        """POSTs of notification batches so far, failed ones and retries included."""
        with self._wake:
            return self._posts

    def wait_until_idle(self, timeout_s: float) -> bool:
        """Wait until nothing is queued or being posted: every notification handed over so far
        was delivered or given up. False when ``timeout_s`` passes first."""
        with self._wake:
            return self._wake.wait_for(lambda: not self._queue and not self._posting, timeout_s)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._thread.join(timeout=5)

    def _due_batches(self) -> list[_Attempt]:
        """Wait until something is due; take everything due, merged per URL and try count."""
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                if self._queue and self._queue[0].due <= now:
                    break
                timeout = (self._queue[0].due - now) if self._queue else None
                self._wake.wait(timeout)
            if self._closed:
                return []
            due: list[_Attempt] = []
            while self._queue and self._queue[0].due <= time.monotonic():
                due.append(heapq.heappop(self._queue))
            self._posting = True
        merged: dict[tuple[str, int], _Attempt] = {}
        for attempt in due:
            key = (attempt.url, attempt.tries)
            if key in merged:
                merged[key].notifications.extend(attempt.notifications)
                previous = merged[key].on_give_up
                extra = attempt.on_give_up
                if extra is not None:
                    merged[key].on_give_up = _both(previous, extra)
            else:
                merged[key] = attempt
        return list(merged.values())

    def _run(self) -> None:
        while True:
            batches = self._due_batches()
            if not batches:
                if self._closed:
                    return
                continue
            for batch in batches:
                with self._wake:
                    self._posts += 1
                if self._post(batch.url, batch.notifications):
                    continue
                if batch.tries < len(self.policy.retry_delays_s):
                    delay = self.policy.retry_delays_s[batch.tries]
                    with self._wake:
                        heapq.heappush(
                            self._queue,
                            _Attempt(
                                time.monotonic() + delay,
                                next(self._order),
                                batch.url,
                                batch.notifications,
                                batch.tries + 1,
                                batch.on_give_up,
                            ),
                        )
                    continue
                logger.warning(
                    "dropping %d notification(s) for %s after %d attempts",
                    len(batch.notifications),
                    batch.url,
                    batch.tries + 1,
                )
                if batch.on_give_up is not None:
                    batch.on_give_up()
            with self._wake:
                self._posting = False
                self._wake.notify_all()

    def _post(self, url: str, notifications: list[dict[str, Any]]) -> bool:
        body = json.dumps({"value": notifications}).encode()
        try:
            status, _, _ = post(url, body, "application/json; charset=utf-8", self.policy.timeout_s)
        except OSError as error:
            logger.info("subscriber %s unreachable: %s", url, error)
            return False
        if not 200 <= status < 300:
            logger.info("subscriber %s answered %s", url, status)
            return False
        return True


def post(url: str, body: bytes, content_type: str, timeout_s: float) -> tuple[int, str, bytes]:
    """POST to a subscriber: (status, content type, body). OSError when it cannot be reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"{url!r} is not an http(s) URL")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout_s, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        connection.request(
            "POST",
            target,
            body=body,
            headers={"Content-Type": content_type, "User-Agent": "Microsoft-Graph-Simulator"},
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    except http.client.HTTPException as error:
        raise OSError(str(error)) from error
    finally:
        connection.close()


def _both(first: Callable[[], None] | None, second: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        if first is not None:
            first()
        second()

    return run


def validate_endpoint(url: str, timeout_s: float) -> None:
    """Graph's validation handshake: the endpoint must echo the token, 200 text/plain."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise bad_request(f"{url!r} is not an http(s) URL", "InvalidRequest")
    token = (
        "Validation: Testing client application reachability for subscription "
        f"Request-Id: {uuid.uuid4()}"
    )
    separator = "&" if parts.query else "?"
    refusal = (
        f"Subscription validation request failed. Notification endpoint {url} must respond with "
        "200 OK and the validation token as text/plain."
    )
    try:
        status, content_type, answer = post(
            f"{url}{separator}validationToken={quote(token)}",
            b"",
            "text/plain; charset=utf-8",
            timeout_s,
        )
    except OSError as error:
        raise bad_request(
            f"{refusal} It could not be reached: {error}.", "ValidationError"
        ) from None
    if status != 200:
        raise bad_request(f"{refusal} It answered {status}.", "ValidationError")
    if answer.decode("utf-8", "replace") != token or not content_type.lower().startswith(
        "text/plain"
    ):
        raise bad_request(
            f"{refusal} It answered {content_type!r} with a different body.", "ValidationError"
        )


# --- the subscriptions -------------------------------------------------------------------------


class SubscriptionBook:
    """Every subscription of the organization, and the notifications their changes cause."""

    def __init__(
        self,
        store: ExchangeStore,
        *,
        resolve_user: Callable[[str], str],
        policy: DeliveryPolicy,
    ) -> None:
        """``resolve_user`` maps a user id/UPN in a resource to a mailbox address (or raises
        GraphError); access checks are the caller's."""
        self.store = store
        self.policy = policy
        self._resolve_user = resolve_user
        self._lock = threading.Lock()
        self._subscriptions: dict[str, Subscription] = {}
        self._sender = NotificationSender(policy)
        store.add_listener(self._on_change)

    def configure(self, policy: DeliveryPolicy) -> None:
        self.policy = policy
        self._sender.policy = policy

    @property
    def delivery_attempts(self) -> int:
        """Notification POSTs tried so far (lifecycle ones, failures and retries included)."""
        return self._sender.posts

    def wait_for_deliveries(self, timeout_s: float = 10.0) -> bool:
        """Wait until every notification the book has sent so far was delivered or given up
        (False when ``timeout_s`` passes first). Notifications of a store change are handed
        over while the change is written, so after a change this is the moment to look."""
        return self._sender.wait_until_idle(timeout_s)

    def close(self) -> None:
        self.store.remove_listener(self._on_change)
        self._sender.close()

    # --- requests --------------------------------------------------------------------------

    def resource_mailbox(self, resource: str, me: str | None) -> str:
        match = _RESOURCE.match(resource.strip())
        if match is None:
            raise bad_request(
                f"resource {resource!r} is not supported: use users/{{id}}/events or "
                "users/{id}/calendar/events",
                "InvalidRequest",
            )
        if match.group("me"):
            if me is None:
                raise bad_request("/me is only valid with delegated authentication", "BadRequest")
            return me
        return self._resolve_user(match.group("user") or match.group("quoted"))

    def create(
        self,
        body: dict[str, Any],
        *,
        mailbox: str,
        creator: str,
        application_id: str,
        tenant_id: str,
    ) -> Subscription:
        change_types = _change_types(body.get("changeType"))
        notification_url = _required_str(body, "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None and not isinstance(lifecycle_url, str):
            raise bad_request("lifecycleNotificationUrl must be a string", "InvalidRequest")
        client_state = body.get("clientState")
        if client_state is not None and (
            not isinstance(client_state, str) or len(client_state) > 128
        ):
            raise bad_request(
                "clientState must be a string of at most 128 characters", "InvalidRequest"
            )
        if body.get("includeResourceData"):
            raise bad_request(
                "includeResourceData (rich notifications) is not supported by this simulator",
                "InvalidRequest",
            )
        expiration = _expiration(body.get("expirationDateTime"))
        validate_endpoint(notification_url, self.policy.validation_timeout_s)
        if lifecycle_url:
            validate_endpoint(lifecycle_url, self.policy.validation_timeout_s)
        subscription = Subscription(
            id=str(uuid.uuid4()),
            resource=_required_str(body, "resource"),
            mailbox=mailbox,
            change_types=change_types,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url or None,
            client_state=client_state,
            expiration=expiration,
            creator=creator,
            application_id=application_id,
            tenant_id=tenant_id,
            latest_tls=str(body.get("latestSupportedTlsVersion") or "v1_2"),
        )
        with self._lock:
            self._subscriptions[subscription.id] = subscription
        return subscription

    def get(self, subscription_id: str, creator: str) -> Subscription:
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is not None and subscription.expiration <= datetime.now(UTC):
                del self._subscriptions[subscription_id]
                subscription = None
        if subscription is None or subscription.creator != creator:
            raise GraphError(
                404,
                "ResourceNotFound",
                f"The object was not found: subscription {subscription_id}.",
            )
        return subscription

    def list(self, creator: str) -> list[Subscription]:
        now = datetime.now(UTC)
        with self._lock:
            return [
                s
                for s in self._subscriptions.values()
                if s.creator == creator and s.expiration > now
            ]

    def update(self, subscription_id: str, creator: str, body: dict[str, Any]) -> Subscription:
        subscription = self.get(subscription_id, creator)
        allowed = {"expirationDateTime", "notificationUrl", "@odata.type"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise bad_request(
                f"only expirationDateTime and notificationUrl can be changed, not {unknown}",
                "InvalidRequest",
            )
        if "notificationUrl" in body:
            url = _required_str(body, "notificationUrl")
            validate_endpoint(url, self.policy.validation_timeout_s)
            subscription.notification_url = url
        if "expirationDateTime" in body:
            subscription.expiration = _expiration(body["expirationDateTime"])
        return subscription

    def delete(self, subscription_id: str, creator: str) -> None:
        self.get(subscription_id, creator)
        with self._lock:
            self._subscriptions.pop(subscription_id, None)

    def reauthorize(self, subscription_id: str, creator: str) -> None:
        self.get(subscription_id, creator)

    def mailbox_of(self, subscription_id: str) -> str | None:
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
        return subscription.mailbox if subscription else None

    # --- lifecycle ---------------------------------------------------------------------------

    def send_lifecycle(self, subscription_id: str, event: str) -> None:
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(
                f"lifecycle event must be one of {sorted(LIFECYCLE_EVENTS)}, not {event!r}"
            )
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None:
                raise SimError("ErrorItemNotFound", f"There is no subscription {subscription_id}.")
            if event == "subscriptionRemoved":
                del self._subscriptions[subscription_id]
        self._send_lifecycle(subscription, event)

    def _send_lifecycle(self, subscription: Subscription, event: str) -> None:
        if not subscription.lifecycle_url:
            return
        self._sender.send(
            subscription.lifecycle_url,
            {
                "subscriptionId": subscription.id,
                "subscriptionExpirationDateTime": timezones.format_utc(subscription.expiration),
                "tenantId": subscription.tenant_id,
                "clientState": subscription.client_state,
                "lifecycleEvent": event,
            },
        )

    def _report_missed(self, subscription_id: str) -> None:
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is None or subscription.missed_reported:
                return
            subscription.missed_reported = True
        self._send_lifecycle(subscription, "missed")

    # --- change notifications ---------------------------------------------------------------

    def _on_change(self, mailbox: str, change: Change) -> None:
        change_type = _CHANGE_TYPE[change.kind]
        now = datetime.now(UTC)
        with self._lock:
            targets = [
                s
                for s in self._subscriptions.values()
                if s.mailbox == mailbox and change_type in s.change_types and s.expiration > now
            ]
        if not targets:
            return
        if self._take_drop_fault(mailbox):
            logger.info("dropping notifications for %s (fault)", mailbox)
            return
        graph_id = event_id(change.item_id)
        resource = f"Users/{user_object_id(mailbox)}/Events/{graph_id}"
        resource_data: dict[str, Any] = {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": resource,
            "id": graph_id,
        }
        try:
            item = self.store.get_item(change.item_id, include_deleted=True)
            resource_data["@odata.etag"] = f'W/"{item.change_key}"'
        except SimError:
            pass
        for subscription in targets:
            self.store.count("graph:notification", mailbox)
            self._sender.send(
                subscription.notification_url,
                {
                    "subscriptionId": subscription.id,
                    "subscriptionExpirationDateTime": timezones.format_utc(subscription.expiration),
                    "changeType": change_type,
                    "resource": resource,
                    "resourceData": dict(resource_data),
                    "clientState": subscription.client_state,
                    "tenantId": subscription.tenant_id,
                },
                on_give_up=functools.partial(self._report_missed, subscription.id),
            )

    def _take_drop_fault(self, mailbox: str) -> bool:
        """Consume a ``drop_notifications`` fault aimed at this mailbox, if one is armed. Read
        directly so a notification never uses up a fault meant for a request."""
        with self.store.lock:
            for fault in self.store.faults:
                if fault.kind != "drop_notifications" or fault.mailbox not in ("*", mailbox):
                    continue
                if fault.operation not in ("*", "graph:notification", "notification"):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.store.faults.remove(fault)
                return True
        return False


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} is required", "InvalidRequest")
    return value.strip()


def _change_types(value: object) -> frozenset[str]:
    if not isinstance(value, str) or not value.strip():
        raise bad_request("changeType is required (created, updated, deleted)", "InvalidRequest")
    types = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(types - CHANGE_TYPES)
    if unknown:
        raise bad_request(
            f"changeType {', '.join(unknown)} is not one of created, updated, deleted",
            "InvalidRequest",
        )
    return frozenset(types)


def _expiration(value: object) -> datetime:
    if not isinstance(value, str):
        raise bad_request("expirationDateTime is required", "InvalidRequest")
    try:
        expiration = timezones.parse_date_time(value, "UTC")
    except ValueError as error:
        raise bad_request(f"expirationDateTime: {error}", "InvalidRequest") from None
    now = datetime.now(UTC)
    if expiration <= now:
        raise bad_request("Subscription expiration must be in the future.", "InvalidRequest")
    if expiration > now + MAX_LIFETIME:
        raise bad_request(
            f"Subscription expiration can only be {int(MAX_LIFETIME.total_seconds() // 60)} "
            "minutes in the future.",
            "InvalidRequest",
        )
    return expiration
