"""``changes_since`` over Graph: the calendarView delta of a mailbox's window.

https://learn.microsoft.com/graph/delta-query-events and
https://learn.microsoft.com/graph/api/event-delta — a round starts with
``GET users/{m}/calendarView/delta?startDateTime=…&endDateTime=…`` and follows
``@odata.nextLink`` pages to an ``@odata.deltaLink``, which starts the next round; the links are
opaque state tokens that carry the window and every query option of the first request, and are
what calbridge stores as the mailbox's cursor. A round reports single events, occurrences and
exceptions inside the window (never a series master: its occurrences come each under its own
id), and ``@removed`` for what left the window (deleted, declined, cancelled and removed, moved
past it). An expired token is 410 ``syncStateNotFound`` → ``SyncStateInvalid``.

Requests per page: 1 delta GET, asking only for ``events.EVENT_FIELDS`` (``$select``, never the
body) with ``Prefer: odata.maxpagesize`` = ``max_changes``; an idle mailbox costs that one GET.
Delta cannot ``$expand``, so the marker and written stamp (single-value extended properties) of
the organizer's single events on the page — the only items that can be calbridge's — are read
with one ``$batch`` of up to 20 GETs (``graph.batch``), none when the page has no such event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit

from shared.exchange.graph.batch import get_many
from shared.exchange.graph.errors import is_missing_item, reply_error
from shared.exchange.graph.events import (
    EVENT_FIELDS,
    MARKER_EXPANSION,
    PREFER_UTC,
    UnreadableEvent,
    event_from_graph,
    extended_fields,
)
from shared.exchange.port import (
    CalendarChanges,
    ExchangeEvent,
    ReadWindow,
    SyncStateInvalid,
)

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

    from shared.exchange.graph.gateway import GraphCalendarGateway
    from shared.exchange.graph.session import GraphSession

# Codes Graph answers an unusable delta or skip token with (besides status 410).
_STATE_GONE: Final = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})
# The most a page may hold, whatever the caller asks: Graph caps odata.maxpagesize itself.
MAX_PAGE: Final = 1000


def _instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a delta window must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def read_changes(
    gateway: GraphCalendarGateway,
    mailbox: str,
    cursor: str | None,
    *,
    max_changes: int,
    window: ReadWindow | None,
) -> CalendarChanges:
    """One page of the mailbox's calendarView delta after ``cursor`` (a nextLink or deltaLink),
    or the first page of a new round over ``window``."""
    if max_changes < 1:
        raise ValueError("max_changes must be at least 1")
    if cursor is not None and not _is_own_link(gateway, cursor):
        # Not a link of this Graph endpoint (a sync state of another protocol, a changed
        # endpoint): never sent anywhere, since it would carry the connection's token.
        raise SyncStateInvalid(
            f"Graph delta for {mailbox}: the stored cursor is not a delta link of this endpoint",
            mailbox=mailbox,
        )
    session = gateway._pool.session()
    info = _first_request(session, mailbox, window) if cursor is None else _link(cursor)
    info.headers.try_add("Prefer", PREFER_UTC)
    info.headers.add("Prefer", f"odata.maxpagesize={min(max_changes, MAX_PAGE)}")
    reply = await gateway._send(session, info, operation="delta", mailbox=mailbox)
    if not reply.ok:
        if reply.status == 410 or reply.error_code.lower() in _STATE_GONE:
            raise SyncStateInvalid(
                f"Graph delta for {mailbox}: HTTP {reply.status} {reply.error_code}".rstrip(),
                mailbox=mailbox,
            )
        raise reply_error(reply, operation="delta", mailbox=mailbox)
    document = reply.document if isinstance(reply.document, dict) else {}
    values = document.get("value")
    next_link = document.get("@odata.nextLink")
    delta_link = document.get("@odata.deltaLink")
    following = next_link if isinstance(next_link, str) and next_link else None
    finished = delta_link if isinstance(delta_link, str) and delta_link else None
    if not isinstance(values, list) or (following or finished) is None:
        raise UnreadableEvent(
            f"Graph delta for {mailbox}: an answer without a value list or a next link",
            mailbox=mailbox,
        )
    changed: dict[str, dict[str, Any]] = {}
    removed: dict[str, None] = {}
    for value in values:
        if not isinstance(value, dict) or not isinstance(value.get("id"), str):
            continue
        if "@removed" in value:
            removed[value["id"]] = None
            changed.pop(value["id"], None)
        else:
            changed[value["id"]] = value
            removed.pop(value["id"], None)
    markers, gone = await _markers(gateway, session, mailbox, changed)
    events: list[ExchangeEvent] = []
    for item_id, value in changed.items():
        if item_id in gone:
            removed[item_id] = None
            continue
        event = event_from_graph(value)
        if item_id in markers:
            event = event.model_copy(update=markers[item_id])
        events.append(event)
    cursor_after = following or finished
    assert cursor_after is not None
    return CalendarChanges(
        changed=tuple(events),
        deleted=tuple(removed),
        cursor=cursor_after,
        complete=following is None,
        windowed=True,
    )


def _first_request(
    session: GraphSession, mailbox: str, window: ReadWindow | None
) -> RequestInformation:
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    if window is None:
        raise ValueError("a calendarView delta round starts from a window")
    builder = session.users.by_user_id(mailbox).calendar_view.delta
    query = builder.DeltaRequestBuilderGetQueryParameters(
        start_date_time=_instant(window.start),
        end_date_time=_instant(window.end),
        select=list(EVENT_FIELDS),
    )
    info: RequestInformation = builder.to_get_request_information(
        RequestConfiguration(query_parameters=query)
    )
    return info


def _is_own_link(gateway: GraphCalendarGateway, link: str) -> bool:
    base = urlsplit(gateway.endpoints.graph_url)
    target = urlsplit(link)
    return (target.scheme, target.netloc) == (base.scheme, base.netloc) and target.path.startswith(
        base.path.rstrip("/") + "/"
    )


def _link(link: str) -> RequestInformation:
    """A nextLink or deltaLink, sent as Graph gave it."""
    from kiota_abstractions.method import Method
    from kiota_abstractions.request_information import RequestInformation

    info = RequestInformation(Method.GET)
    info.url = link
    info.headers.try_add("Accept", "application/json")
    return info


def _needs_marker(value: Mapping[str, Any]) -> bool:
    """Only an organizer's single event can be calbridge's (it writes no series, and attendees'
    copies carry no named properties)."""
    return bool(value.get("isOrganizer")) and value.get("type") in (None, "singleInstance")


async def _markers(
    gateway: GraphCalendarGateway,
    session: GraphSession,
    mailbox: str,
    changed: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, dict[str, str | None]], set[str]]:
    """The named properties (marker, written) of each changed event that may carry them (by
    id), and the ids found deleted since the delta page was made."""
    wanted = [item_id for item_id, value in changed.items() if _needs_marker(value)]
    if not wanted:
        return {}, set()
    query = f"$select=id&$expand={quote(MARKER_EXPANSION, safe='')}"
    user = quote(mailbox, safe="@")
    paths = {
        item_id: f"/users/{user}/events/{quote(item_id, safe='')}?{query}" for item_id in wanted
    }
    answers = await get_many(gateway, session, mailbox, paths, operation="delta markers")
    markers: dict[str, dict[str, str | None]] = {}
    gone: set[str] = set()
    for item_id, answer in answers.items():
        if answer.ok:
            document = answer.document if isinstance(answer.document, dict) else {}
            markers[item_id] = extended_fields(document)
        elif is_missing_item(answer):
            gone.add(item_id)
        else:
            raise reply_error(answer, operation="delta markers", mailbox=mailbox)
    return markers, gone
