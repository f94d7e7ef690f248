"""Change-notification subscriptions over Graph (``ChangeSubscriptions`` of the port).

https://learn.microsoft.com/graph/api/subscription-post-subscriptions — one subscription per
mailbox on ``users/{mailbox}/events`` for ``created,updated,deleted``, with a
``lifecycleNotificationUrl`` (https://learn.microsoft.com/graph/change-notifications-lifecycle-events)
and a ``clientState`` the receiver checks. Graph validates both URLs before it answers (a POST
with ``validationToken`` that must be echoed within 10 s), so the receiving endpoint must be up
while a subscription is made. Outlook resources live at most 10,080 minutes:
https://learn.microsoft.com/graph/api/resources/subscription#subscription-lifetime.

One request per call: POST ``subscriptions``; PATCH ``subscriptions/{id}`` (renew);
POST ``subscriptions/{id}/reauthorize``; DELETE ``subscriptions/{id}``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.exchange.graph.errors import reply_error
from shared.exchange.graph.events import UnreadableEvent
from shared.exchange.port import CalendarError, SubscriptionGone, SubscriptionRef

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

    from shared.exchange.graph.gateway import GraphCalendarGateway
    from shared.exchange.graph.session import GraphReply

CHANGE_TYPES = "created,updated,deleted"


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a subscription's expiry must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _request(
    gateway: GraphCalendarGateway, method: str, path: str, body: dict[str, Any] | None
) -> RequestInformation:
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation

    info = RequestInformation(Method[method])
    info.url = f"{gateway.endpoints.graph_url.rstrip('/')}/{path}"
    info.headers.try_add("Accept", "application/json")
    if body is not None:
        info.set_stream_content(json.dumps(body).encode(), "application/json")
    return info


def _ref(reply: GraphReply, *, operation: str) -> SubscriptionRef:
    document = reply.document if isinstance(reply.document, dict) else {}
    subscription_id = document.get("id")
    expires = document.get("expirationDateTime")
    if not isinstance(subscription_id, str) or not isinstance(expires, str):
        raise UnreadableEvent(f"Graph {operation}: no subscription id or expiry in the answer")
    try:
        expires_at = datetime.fromisoformat(expires.replace("Z", "+00:00"))
    except ValueError:
        raise UnreadableEvent(f"Graph {operation}: an unreadable expirationDateTime") from None
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    return SubscriptionRef(subscription_id=subscription_id, expires_at=expires_at)


def _gone(reply: GraphReply, subscription_id: str, operation: str) -> CalendarError:
    if reply.status == 404:
        return SubscriptionGone(
            f"Graph {operation}: subscription {subscription_id} no longer exists (HTTP 404)"
        )
    return reply_error(reply, operation=operation, mailbox="")


async def subscribe(
    gateway: GraphCalendarGateway,
    mailbox: str,
    *,
    notification_url: str,
    lifecycle_url: str,
    client_state: str,
    expires_at: datetime,
) -> SubscriptionRef:
    session = gateway._pool.session()
    body = {
        "changeType": CHANGE_TYPES,
        "notificationUrl": notification_url,
        "lifecycleNotificationUrl": lifecycle_url,
        "resource": f"users/{mailbox}/events",
        "expirationDateTime": _instant(expires_at),
        "clientState": client_state,
        "latestSupportedTlsVersion": "v1_2",
    }
    info = _request(gateway, "POST", "subscriptions", body)
    reply = await gateway._send(session, info, operation="subscribe", mailbox=mailbox)
    if not reply.ok:
        raise reply_error(reply, operation="subscribe", mailbox=mailbox)
    return _ref(reply, operation="subscribe")


async def renew(
    gateway: GraphCalendarGateway, subscription_id: str, expires_at: datetime
) -> SubscriptionRef:
    session = gateway._pool.session()
    path = f"subscriptions/{quote(subscription_id, safe='')}"
    info = _request(gateway, "PATCH", path, {"expirationDateTime": _instant(expires_at)})
    reply = await gateway._send(session, info, operation="renew subscription", mailbox="")
    if not reply.ok:
        raise _gone(reply, subscription_id, "renew subscription")
    return _ref(reply, operation="renew subscription")


async def reauthorize(gateway: GraphCalendarGateway, subscription_id: str) -> None:
    session = gateway._pool.session()
    path = f"subscriptions/{quote(subscription_id, safe='')}/reauthorize"
    info = _request(gateway, "POST", path, None)
    reply = await gateway._send(session, info, operation="reauthorize subscription", mailbox="")
    if not reply.ok:
        raise _gone(reply, subscription_id, "reauthorize subscription")


async def unsubscribe(gateway: GraphCalendarGateway, subscription_id: str) -> None:
    session = gateway._pool.session()
    path = f"subscriptions/{quote(subscription_id, safe='')}"
    info = _request(gateway, "DELETE", path, None)
    reply = await gateway._send(session, info, operation="delete subscription", mailbox="")
    if not reply.ok and reply.status != 404:
        raise reply_error(reply, operation="delete subscription", mailbox="")
