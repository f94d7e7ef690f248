"""JSON ``$batch``: several GETs on one mailbox in one round trip.

https://learn.microsoft.com/graph/json-batching — up to 20 requests per batch; each request has
its own status, headers and body in the answer (a 200 for the batch says nothing about what is
in it). Graph hands up to four requests of a batch to the mailbox at once, so a batch holds as
many of the mailbox's concurrency slots as it has requests, at most four
(``session.MailboxSlots``). A throttled request inside the batch throttles the whole read:
``RetryAfter`` with the longest delay asked for, and the worker re-queues.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from shared.exchange.common import DEFAULT_RETRY_AFTER_S, parse_retry_after
from shared.exchange.graph.errors import reply_error
from shared.exchange.graph.events import PREFER_UTC, UnreadableEvent
from shared.exchange.graph.session import MAILBOX_CONCURRENCY, GraphReply
from shared.exchange.port import RetryAfter

if TYPE_CHECKING:
    from shared.exchange.graph.gateway import GraphCalendarGateway
    from shared.exchange.graph.session import GraphSession

MAX_BATCH: Final = 20


async def get_many(
    gateway: GraphCalendarGateway,
    session: GraphSession,
    mailbox: str,
    paths: Mapping[str, str],
    *,
    operation: str,
) -> dict[str, GraphReply]:
    """GET each path (relative to the Graph base URL, e.g. ``/users/{m}/events/{id}?...``),
    ``MAX_BATCH`` per ``$batch`` request; the answers by the caller's keys."""
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation

    keys = list(paths)
    answers: dict[str, GraphReply] = {}
    for first in range(0, len(keys), MAX_BATCH):
        chunk = keys[first : first + MAX_BATCH]
        requests = [
            {
                "id": str(number),
                "method": "GET",
                "url": paths[key],
                "headers": {"Prefer": PREFER_UTC},
            }
            for number, key in enumerate(chunk)
        ]
        info = RequestInformation(Method.POST)
        info.url = f"{gateway.endpoints.graph_url.rstrip('/')}/$batch"
        info.headers.try_add("Accept", "application/json")
        info.set_stream_content(json.dumps({"requests": requests}).encode(), "application/json")
        reply = await gateway._send(
            session,
            info,
            operation=operation,
            mailbox=mailbox,
            slots=min(len(chunk), MAILBOX_CONCURRENCY),
        )
        if not reply.ok:
            raise reply_error(reply, operation=operation, mailbox=mailbox)
        inner = _inner_replies(reply, operation=operation, mailbox=mailbox)
        throttled = [answer for answer in inner.values() if answer.status == 429]
        if throttled:
            delays = [parse_retry_after(a.headers.get("retry-after")) for a in throttled]
            known = [delay for delay in delays if delay is not None]
            raise RetryAfter(
                max(known) if known else DEFAULT_RETRY_AFTER_S,
                mailbox=mailbox,
                detail=f"Graph {operation} for {mailbox}: HTTP 429 inside $batch",
            )
        for number, key in enumerate(chunk):
            answer = inner.get(str(number))
            if answer is None:
                raise UnreadableEvent(
                    f"Graph {operation} for {mailbox}: $batch answer without request {number}",
                    mailbox=mailbox,
                )
            answers[key] = answer
    return answers


def _inner_replies(reply: GraphReply, *, operation: str, mailbox: str) -> dict[str, GraphReply]:
    document = reply.document if isinstance(reply.document, dict) else {}
    responses = document.get("responses")
    if not isinstance(responses, list):
        raise UnreadableEvent(
            f"Graph {operation} for {mailbox}: $batch answer without responses", mailbox=mailbox
        )
    found: dict[str, GraphReply] = {}
    for entry in responses:
        if not isinstance(entry, dict) or not isinstance(entry.get("status"), int):
            continue
        headers: Any = entry.get("headers")
        found[str(entry.get("id"))] = GraphReply(
            status=entry["status"],
            headers={str(k).lower(): str(v) for k, v in headers.items()}
            if isinstance(headers, dict)
            else {},
            document=entry.get("body"),
        )
    return found
