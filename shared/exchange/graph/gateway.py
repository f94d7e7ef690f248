"""``GraphCalendarGateway``: the calendar port over Microsoft Graph (msgraph-sdk request builders,
raw JSON answers); ``GraphCalendarGateway.from_connection`` makes one from a Graph connection.

Requests per port call (Graph requests; token requests come on top, once per token lifetime):

=================  ========  ==========================================================
call               requests  what
=================  ========  ==========================================================
find_by_marker     1 (+p)    GET users/{m}/events?$filter=<marker>&$expand=<marker>
get_event          1         GET users/{m}/events/{id}
find_by_uid        1 (+p)    GET users/{m}/events?$filter=iCalUId eq '…'
create_event       1         POST users/{m}/events with transactionId
update_event       1         PATCH users/{m}/events/{id} (If-Match: the change key)
cancel_event       1         DELETE users/{m}/events/{id}
list_events        1 (+p)    GET users/{m}/calendarView (p: one per further page)
changes_since      1 (+1)    GET calendarView/delta page [+ one $batch of up to 20 marker
                             reads when the page has organizer single events] (``delta``)
subscribe, renew…  1         POST / PATCH / DELETE subscriptions (``subscriptions``)
=================  ========  ==========================================================

Every read selects ``events.EVENT_FIELDS`` (never the body) and asks for UTC times. Errors are
the port's (see ``graph.errors``); nothing here sleeps or retries. Requests hold one of the
mailbox's concurrency slots while in flight (``session.MailboxSlots``: at most four).

Writes are addressed by id, nothing is read first:

- **update**: a PATCH with every property the draft governs. With a change key it carries
  ``If-Match: W/"<changeKey>"`` (an event's ``@odata.etag`` is its change key in that form).
  Graph's "Update event" page lists no If-Match header; Exchange Online answers a stale one with
  412 ``ErrorIrresolvableConflict`` ("the change key passed in the request does not match the
  current change key for the item", as reported on
  https://learn.microsoft.com/answers/questions/271870), which becomes ``ChangeKeyConflict``. A
  server that ignored the header would let the PATCH overwrite, which is what the page itself
  documents. A missing item is 404 → ``EventNotFound``.
- **cancel**: "If the event is a meeting, deleting the event on the organizer's calendar sends a
  cancellation message to the meeting attendees"
  (https://learn.microsoft.com/graph/api/event-delete); an appointment without attendees, or an
  attendee's copy, just goes. Already gone (404) is quiet.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from shared.exchange.common import DEFAULT_CALL_DEADLINE_S, within_deadline
from shared.exchange.graph import delta, subscriptions
from shared.exchange.graph.errors import exception_error, is_missing_item, reply_error
from shared.exchange.graph.events import (
    EVENT_FIELDS,
    MARKER_EXPANSION,
    PREFER_UTC,
    UnreadableEvent,
    create_body,
    event_from_graph,
    update_body,
)
from shared.exchange.graph.session import (
    DEFAULT_TIMEOUT_S,
    GraphClientPool,
    GraphCredentials,
    GraphEndpoints,
    GraphReply,
    GraphSession,
)
from shared.exchange.marker_property import graph_marker_filter
from shared.exchange.oauth import connection_credentials
from shared.exchange.port import (
    CalendarChanges,
    CalendarError,
    EventDraft,
    EventRef,
    ExchangeEvent,
    ReadWindow,
    SubscriptionRef,
    live_first,
)
from shared.models import ConnectionConfig

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

DEFAULT_PAGE_SIZE: Final = 100


def _odata_string(value: str) -> str:
    """A string literal for $filter (OData doubles single quotes)."""
    return "'" + value.replace("'", "''") + "'"


def _query_instant(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("calendar view bounds must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class GraphCalendarGateway:
    """One Graph connection (app-only OAuth) as a ``CalendarGateway``.

    Use it from one event loop and ``await aclose()`` it there when done (see
    ``graph.session`` on loops). ``page_size`` is the ``odata.maxpagesize`` asked for;
    ``timeout_s`` bounds each network read, ``call_deadline_s`` each request as a whole, token
    included (either running out is ``ExchangeUnavailable``).
    """

    def __init__(
        self,
        credentials: GraphCredentials,
        endpoints: GraphEndpoints | None = None,
        *,
        connection_id: str = "graph",
        page_size: int = DEFAULT_PAGE_SIZE,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        call_deadline_s: float = DEFAULT_CALL_DEADLINE_S,
    ) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        if timeout_s <= 0 or call_deadline_s <= 0:
            raise ValueError("timeouts must be positive")
        self.call_deadline_s = call_deadline_s
        self.connection_id = connection_id
        self.endpoints = endpoints or GraphEndpoints()
        self.page_size = page_size
        self._pool = GraphClientPool(credentials, self.endpoints, timeout_s=timeout_s)

    @classmethod
    def from_connection(
        cls,
        connection: ConnectionConfig,
        secret: str,
        endpoints: GraphEndpoints | None = None,
        *,
        connection_id: str = "graph",
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> GraphCalendarGateway:
        """The gateway of a Graph connection; ``secret`` is the resolved client secret (or PEM
        certificate with its key, for ``credentialType`` certificate) and ``endpoints`` where
        Graph is (``GraphEndpoints.from_settings``; default: Microsoft's)."""
        if connection.kind != "graph":
            raise ValueError(f"not a Graph connection (kind {connection.kind!r})")
        credentials = connection_credentials(connection, secret, connection_id=connection_id)
        return cls(credentials, endpoints, connection_id=connection_id, page_size=page_size)

    async def aclose(self) -> None:
        await self._pool.close()

    # --- plumbing ---------------------------------------------------------------------------

    async def _send(
        self,
        session: GraphSession,
        info: RequestInformation,
        *,
        operation: str,
        mailbox: str,
        slots: int = 1,
    ) -> GraphReply:
        """One request under the call deadline, holding ``slots`` of the mailbox's concurrency
        slots (a ``$batch`` holds more than one), errors translated to the port's."""
        try:
            return await within_deadline(
                session.send_for(mailbox, info, slots=slots),
                self.call_deadline_s,
                protocol="Graph",
                operation=operation,
                mailbox=mailbox,
            )
        except CalendarError:
            raise
        except Exception as error:
            translated = exception_error(error, operation=operation, mailbox=mailbox)
            if translated is None:
                raise
            raise translated from error

    async def _expect_ok(
        self, session: GraphSession, info: RequestInformation, *, operation: str, mailbox: str
    ) -> GraphReply:
        reply = await self._send(session, info, operation=operation, mailbox=mailbox)
        if not reply.ok:
            raise reply_error(reply, operation=operation, mailbox=mailbox)
        return reply

    @staticmethod
    def _events_query(builder: Any, *, filter: str) -> RequestInformation:
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        query = builder.EventsRequestBuilderGetQueryParameters(
            filter=filter, select=list(EVENT_FIELDS), expand=[MARKER_EXPANSION]
        )
        info: RequestInformation = builder.to_get_request_information(
            RequestConfiguration(query_parameters=query)
        )
        return info

    def _prefer(self, info: RequestInformation) -> RequestInformation:
        info.headers.try_add("Prefer", PREFER_UTC)
        info.headers.add("Prefer", f"odata.maxpagesize={self.page_size}")
        return info

    async def _collect(
        self, session: GraphSession, info: RequestInformation, *, operation: str, mailbox: str
    ) -> list[ExchangeEvent]:
        """Every event of a collection answer, following ``@odata.nextLink`` pages."""
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        events: list[ExchangeEvent] = []
        while True:
            reply = await self._expect_ok(session, info, operation=operation, mailbox=mailbox)
            document = reply.document if isinstance(reply.document, dict) else {}
            values = document.get("value")
            if not isinstance(values, list):
                raise UnreadableEvent(
                    f"Graph {operation} for {mailbox}: answer without a value list",
                    mailbox=mailbox,
                )
            events.extend(event_from_graph(value) for value in values)
            next_link = document.get("@odata.nextLink")
            if not isinstance(next_link, str) or not next_link:
                return events
            info = self._prefer(RequestInformation(Method.GET))
            info.url = next_link
            info.headers.try_add("Accept", "application/json")

    @staticmethod
    def _json_request(
        method_name: str,
        builder: Any,
        body: dict[str, Any] | None,
        *,
        if_match: str | None = None,
    ) -> RequestInformation:
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        info = RequestInformation(
            Method[method_name], builder.url_template, builder.path_parameters
        )
        info.headers.try_add("Accept", "application/json")
        info.headers.try_add("Prefer", PREFER_UTC)
        if if_match:
            info.headers.try_add("If-Match", if_match)
        if body is not None:
            info.set_stream_content(json.dumps(body).encode(), "application/json")
        return info

    @staticmethod
    def _ref(reply: GraphReply, *, operation: str, mailbox: str) -> EventRef:
        document = reply.document if isinstance(reply.document, dict) else {}
        item_id = document.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise UnreadableEvent(f"Graph {operation} for {mailbox}: no event id in the answer")
        uid = document.get("uid") or document.get("iCalUId")
        return EventRef(
            item_id=item_id,
            change_key=document.get("changeKey") or None,
            uid=uid if isinstance(uid, str) and uid else None,
        )

    async def _read_item(
        self, session: GraphSession, mailbox: str, item_id: str, *, operation: str
    ) -> tuple[ExchangeEvent, dict[str, Any]] | None:
        """The item and its raw JSON, or None when it does not exist (mailbox errors raise)."""
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        builder = session.users.by_user_id(mailbox).events.by_event_id(item_id)
        query = builder.EventItemRequestBuilderGetQueryParameters(
            select=list(EVENT_FIELDS), expand=[MARKER_EXPANSION]
        )
        info = builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        info.headers.try_add("Prefer", PREFER_UTC)
        reply = await self._send(session, info, operation=operation, mailbox=mailbox)
        if not reply.ok:
            if is_missing_item(reply):
                return None
            raise reply_error(reply, operation=operation, mailbox=mailbox)
        document = reply.document if isinstance(reply.document, dict) else {}
        return event_from_graph(document), document

    # --- the port ---------------------------------------------------------------------------

    async def find_by_marker(self, mailbox: str, marker: str) -> list[ExchangeEvent]:
        session = self._pool.session()
        builder = session.users.by_user_id(mailbox).events
        info = self._prefer(self._events_query(builder, filter=graph_marker_filter(marker)))
        found = await self._collect(session, info, operation="find_by_marker", mailbox=mailbox)
        # The filter already matched; the check guards against a server that ignores $filter.
        return live_first(event for event in found if event.marker == marker)

    async def get_event(self, mailbox: str, item_id: str) -> ExchangeEvent | None:
        session = self._pool.session()
        read = await self._read_item(session, mailbox, item_id, operation="get_event")
        return read[0] if read else None

    async def find_by_uid(self, mailbox: str, uid: str) -> ExchangeEvent | None:
        session = self._pool.session()
        builder = session.users.by_user_id(mailbox).events
        query = self._events_query(builder, filter=f"iCalUId eq {_odata_string(uid)}")
        found = await self._collect(
            session, self._prefer(query), operation="find_by_uid", mailbox=mailbox
        )
        matching = live_first(event for event in found if event.uid == uid)
        return matching[0] if matching else None

    async def create_event(self, mailbox: str, draft: EventDraft, transaction_id: str) -> EventRef:
        session = self._pool.session()
        builder = session.users.by_user_id(mailbox).events
        info = self._json_request("POST", builder, create_body(draft, mailbox, transaction_id))
        reply = await self._expect_ok(session, info, operation="create_event", mailbox=mailbox)
        return self._ref(reply, operation="create_event", mailbox=mailbox)

    async def update_event(
        self, mailbox: str, item_id: str, draft: EventDraft, change_key: str | None
    ) -> EventRef:
        session = self._pool.session()
        builder = session.users.by_user_id(mailbox).events.by_event_id(item_id)
        etag = f'W/"{change_key}"' if change_key else None
        info = self._json_request("PATCH", builder, update_body(draft, mailbox), if_match=etag)
        reply = await self._expect_ok(session, info, operation="update_event", mailbox=mailbox)
        return self._ref(reply, operation="update_event", mailbox=mailbox)

    async def cancel_event(self, mailbox: str, item_id: str) -> bool:
        session = self._pool.session()
        item = session.users.by_user_id(mailbox).events.by_event_id(item_id)
        info = self._json_request("DELETE", item, None)
        reply = await self._send(session, info, operation="cancel_event", mailbox=mailbox)
        if reply.ok:
            return True
        if is_missing_item(reply):
            return False
        raise reply_error(reply, operation="cancel_event", mailbox=mailbox)

    async def delete_permanently(self, mailbox: str, item_id: str) -> None:
        session = self._pool.session()
        action = session.users.by_user_id(mailbox).events.by_event_id(item_id).permanent_delete
        info = self._json_request("POST", action, None)
        reply = await self._send(session, info, operation="delete_permanently", mailbox=mailbox)
        if not reply.ok and not is_missing_item(reply):
            raise reply_error(reply, operation="delete_permanently", mailbox=mailbox)

    async def list_events(
        self, mailbox: str, start: datetime, end: datetime
    ) -> list[ExchangeEvent]:
        from kiota_abstractions.base_request_configuration import RequestConfiguration

        session = self._pool.session()
        builder = session.users.by_user_id(mailbox).calendar_view
        query = builder.CalendarViewRequestBuilderGetQueryParameters(
            start_date_time=_query_instant(start),
            end_date_time=_query_instant(end),
            select=list(EVENT_FIELDS),
            expand=[MARKER_EXPANSION],
        )
        info = self._prefer(
            builder.to_get_request_information(RequestConfiguration(query_parameters=query))
        )
        events = await self._collect(session, info, operation="list_events", mailbox=mailbox)
        return sorted(events, key=lambda event: event.start)

    # --- the read side: changes and their notifications (``delta``, ``subscriptions``) ------

    async def changes_since(
        self,
        mailbox: str,
        cursor: str | None,
        *,
        max_changes: int = 512,
        window: ReadWindow | None = None,
    ) -> CalendarChanges:
        return await delta.read_changes(
            self, mailbox, cursor, max_changes=max_changes, window=window
        )

    async def subscribe(
        self,
        mailbox: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> SubscriptionRef:
        return await subscriptions.subscribe(
            self,
            mailbox,
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=expires_at,
        )

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime
    ) -> SubscriptionRef:
        return await subscriptions.renew(self, subscription_id, expires_at)

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        await subscriptions.reauthorize(self, subscription_id)

    async def unsubscribe(self, subscription_id: str) -> None:
        await subscriptions.unsubscribe(self, subscription_id)
