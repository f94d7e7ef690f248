"""Where the convergence machine kills a worker: between two steps of one invocation, each
step told apart by the request it makes (to Exchange through EWS or Graph, to Azurite's tables
or queues), seen by the test's relays (``tests.e2e.holding_proxy``).

Each point names the worker, what is done when it dies and what is not; the request that is
held is the first one of its kind the dying instance makes once the network is armed:

- **apply, pending note → create**: the mapping pointing at the organizer's mailbox without an
  item id is stored; the create (EWS CreateItem, Graph POST events) never reaches Exchange.
- **apply, Exchange write → mapping**: Exchange carried out the create, update or cancel
  (CreateItem, UpdateItem, DeleteItem; POST, PATCH, DELETE of an event) and its answer is lost
  with the worker; the mapping does not know.
- **apply, mapping → message settled**: every effect is stored; the queue message is not
  deleted, so the change runs again.
- **sync, rows → cursor**: busy blocks, item rows, mappings, outbox rows and their delivery
  messages are written; the cursor (the ``Mailboxes`` row) is not, so the page is read again
  (from a cursor Exchange reports nothing after for an item made and deleted since).
- **sync, outbox rows → deliveries queued**: the events to tell are in the outbox; their
  ``webhook-deliveries`` messages are not sent (the page read again sends them).
- **delivery, webhook sent → outbox settled**: the booking platform received the webhook; its
  ``Outbox`` row is not marked delivered, so it is sent again under the same id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from shared.queues import APPOINTMENT_CHANGES, WEBHOOK_DELIVERIES
from tests.e2e.holding_proxy import HoldRule, Request

_EWS_WRITE = re.compile(rb"<(?:\w+:)?(CreateItem|UpdateItem|DeleteItem)\b")
_TABLE_WRITES = frozenset({"PUT", "PATCH", "MERGE", "POST", "DELETE"})


@dataclass(frozen=True)
class KillPoint:
    """``work``: what the machine does to get a worker there ("booking": a booking change;
    "outlook": a staff member's own event and a sync of their mailbox)."""

    name: str
    work: str
    hold: Callable[[str], HoldRule]  # the hold, given the world's table and queue prefix


def _ews_operation(request: Request) -> str | None:
    if request.service != "ews" or request.method != "POST":
        return None
    found = _EWS_WRITE.search(request.body)
    return found.group(1).decode() if found else None


def _graph_event_write(request: Request) -> bool:
    return (
        request.service == "graph"
        and request.method in ("POST", "PATCH", "DELETE")
        and "/events" in request.path
    )


def exchange_create(request: Request) -> bool:
    """An event created: EWS CreateItem of a calendar item, Graph POST .../events."""
    if _ews_operation(request) == "CreateItem":
        return b"CalendarItem" in request.body
    return (
        _graph_event_write(request)
        and request.method == "POST"
        and (request.path.rstrip("/").endswith("/events"))
    )


def exchange_write(request: Request) -> bool:
    """An event created, updated or cancelled, through EWS or Graph."""
    return _ews_operation(request) is not None or _graph_event_write(request)


def table_write(prefix: str, table: str, *, update: bool = False) -> Callable[[Request], bool]:
    """A write to one of calbridge's tables (``update``: of an existing row, under its ETag)."""
    name = prefix + table

    def matches(request: Request) -> bool:
        if request.service != "tables" or request.method not in _TABLE_WRITES:
            return False
        if update and request.headers.get("if-match") in (None, "*"):
            return False
        return f"/{name}(" in request.path or (
            request.path.endswith("/$batch") and f"/{name}(".encode() in request.body
        )

    return matches


_MARKS_WRITTEN_PAST = re.compile(rb'"writtenPast"\s*:\s*"')


def cursor_write(prefix: str) -> Callable[[Request], bool]:
    """The write of a mailbox row that stores a sync's cursor (not the one before a page's
    rows that marks them as written past the stored cursor)."""
    mailbox_write = table_write(prefix, "Mailboxes")
    return lambda r: mailbox_write(r) and not _MARKS_WRITTEN_PAST.search(r.body)


def queue_send(prefix: str, queue: str) -> Callable[[Request], bool]:
    path = f"/{prefix}{queue}/messages"
    return lambda r: r.service == "queues" and r.method == "POST" and r.path.endswith(path)


def queue_settle(prefix: str, queue: str) -> Callable[[Request], bool]:
    path = f"/{prefix}{queue}/messages/"
    return lambda r: r.service == "queues" and r.method == "DELETE" and path in r.path


KILL_POINTS: Final[dict[str, KillPoint]] = {
    point.name: point
    for point in (
        KillPoint(
            "apply: pending note stored, create not sent",
            "booking",
            lambda prefix: HoldRule("create", exchange_create),
        ),
        KillPoint(
            "apply: Exchange written, mapping not stored",
            "booking",
            lambda prefix: HoldRule("Exchange write", exchange_write, after=True),
        ),
        KillPoint(
            "apply: mapping stored, message not settled",
            "booking",
            lambda prefix: HoldRule("settle", queue_settle(prefix, APPOINTMENT_CHANGES)),
        ),
        KillPoint(
            "sync: rows written, cursor not stored",
            "outlook",
            lambda prefix: HoldRule("cursor", cursor_write(prefix)),
        ),
        KillPoint(
            "sync: outbox rows written, deliveries not queued",
            "outlook",
            lambda prefix: HoldRule("deliveries", queue_send(prefix, WEBHOOK_DELIVERIES)),
        ),
        KillPoint(
            "delivery: webhook sent, outbox row not settled",
            "outlook",
            lambda prefix: HoldRule("outbox", table_write(prefix, "Outbox", update=True)),
        ),
    )
}
