"""``GraphService``: the Microsoft Graph v1.0 calendar API over the mailbox store.

Every request goes through the same steps, in Graph's order: find the route, resolve the user
(UPN, object id or ``me``) and check the caller may reach that mailbox, count the request, take
a per-app-per-mailbox concurrency slot (at most 4 in flight, the 5th is a 429
``ApplicationThrottled``), apply an injected fault, then run the route.

Routes (operation names, used for faults and counters, in brackets), under ``users/{id}`` or
``me``: GET the user [getUser], ``mailboxSettings`` [mailboxSettings]; ``events`` or
``calendar/events``: GET [listEvents], POST [createEvent]; ``events/{id}``: GET [getEvent],
PATCH [updateEvent], DELETE [deleteEvent]; ``events/{id}/cancel`` [cancel];
``events/{id}/permanentDelete`` [permanentDelete];
``events/{id}/accept|decline|tentativelyAccept`` [respond]; ``events/{id}/instances``
[instances]; ``calendarView`` [calendarView]; ``calendarView/delta()`` [delta]. At the root:
``subscriptions`` GET [listSubscriptions], POST [subscribe]; ``subscriptions/{id}`` GET
[getSubscription], PATCH [renewSubscription], DELETE [deleteSubscription];
``subscriptions/{id}/reauthorize`` [reauthorize]; ``$batch`` [batch]. Every name is prefixed
``graph:``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode

from sim.graph import events as event_format
from sim.graph import timezones
from sim.graph.batch import run_batch
from sim.graph.delta import DeltaPage, DeltaTracker, sync_state_gone
from sim.graph.errors import GraphError, bad_request, error_body
from sim.graph.ids import MalformedId, event_id, internal_event_id, user_object_id
from sim.graph.odata import (
    apply_select,
    parse_expand,
    parse_filter,
    parse_int,
    parse_prefer,
    parse_select,
)
from sim.graph.subscriptions import DeliveryPolicy, SubscriptionBook
from sim.store import (
    CalendarItem,
    ExchangeStore,
    Fault,
    InjectedFault,
    ResponseType,
    SendMode,
    SimError,
    carry_out_common_fault,
)
from sim.wire import Principal, SimRequest, SimResponse

logger = logging.getLogger(__name__)

JSON_TYPE = (
    "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; "
    "charset=utf-8"
)
DEFAULT_TENANT = "8f1d2c5e-6b7a-4c3d-9e0f-1a2b3c4d5e6f"
USER_TOKEN_APP_ID = "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"
DEFAULT_PAGE = 10
MAX_PAGE = 1000
_RESPONSES = {
    "accept": ResponseType.ACCEPT,
    "decline": ResponseType.DECLINE,
    "tentativelyaccept": ResponseType.TENTATIVE,
}


@dataclass
class Call:
    """One request on its way through a route."""

    request: SimRequest
    principal: Principal
    segments: list[str]  # the path after /v1.0, unquoted
    query: dict[str, str]  # lower-case names, "$" kept
    prefer: dict[str, str]
    view: event_format.EventView
    mailbox: str = ""  # resolved user's address ("" for routes without one)
    user_path: str = ""  # how the request named the user: "me" or "users/<id>"
    applied: list[str] = field(default_factory=list)  # Preference-Applied entries
    batch_slots: int = 0  # a $batch: the slots of its mailbox it holds (0: none were free)

    def option(self, name: str) -> str | None:
        return self.query.get(name.lower()) or self.query.get(name.lower().lstrip("$"))

    def json_body(self) -> Any:
        if not self.request.body.strip():
            return {}
        try:
            return json.loads(self.request.body)
        except ValueError as error:
            raise bad_request(
                f"the request body is not valid JSON: {error}", "BadRequest"
            ) from None


@dataclass
class Route:
    operation: str
    run: Callable[[Call], SimResponse]
    user_ref: str | None = None  # "me" or the id/UPN; None: no user in the path
    mailbox_hint: Callable[[Call], str] | None = None  # routes whose mailbox is not in the path


def json_response(
    status: int, payload: object, headers: dict[str, str] | None = None
) -> SimResponse:
    return SimResponse(status, json.dumps(payload).encode(), dict(headers or {}), JSON_TYPE)


def _service_root(public_url: str) -> str:
    base = public_url.rstrip("/")
    return base if base.endswith("/v1.0") else base + "/v1.0"


class GraphService:
    """Microsoft Graph over one ExchangeStore. ``public_url`` is the base clients see (with or
    without the trailing ``/v1.0``) and the base of every nextLink/deltaLink.

    ``client_tenants`` maps OAuth client ids to tenant ids (tenantId in notifications);
    ``delivery`` tunes notification retries; ``max_concurrent`` is Graph's per-app,
    per-mailbox concurrency limit."""

    def __init__(
        self,
        store: ExchangeStore,
        *,
        public_url: str,
        client_tenants: Mapping[str, str] | None = None,
        delivery: DeliveryPolicy | None = None,
        max_concurrent: int = 4,
        concurrency_retry_after_s: int = 1,
    ) -> None:
        self.store = store
        self.base_url = _service_root(public_url)
        self.client_tenants = dict(client_tenants or {})
        self.max_concurrent = max_concurrent
        self.concurrency_retry_after_s = concurrency_retry_after_s
        self._in_flight: dict[tuple[str, str], int] = {}
        self._in_flight_lock = threading.Lock()
        self._transactions: dict[tuple[str, str], str] = {}  # (mailbox, transactionId) → item id
        self._transaction_of: dict[str, str] = {}  # item id → transactionId
        self._users_by_object_id: dict[str, str] = {}
        self.delta = DeltaTracker(store)
        self.subscriptions = SubscriptionBook(
            store,
            resolve_user=self._resolve_user,
            policy=delivery or DeliveryPolicy(),
        )

    # --- lifecycle of the service ------------------------------------------------------------

    def close(self) -> None:
        self.subscriptions.close()

    def serve_behind(self, public_url: str) -> None:
        """Clients reach the service at ``public_url`` now (a proxy in front of it): every
        link it gives from here on names that root, as Graph's name the root clients call."""
        self.base_url = _service_root(public_url)

    def configure_delivery(self, policy: DeliveryPolicy) -> None:
        """Change how notifications are retried (tests use short delays)."""
        self.subscriptions.configure(policy)

    def send_lifecycle(self, subscription_id: str, event: str) -> None:
        """Send a lifecycle notification (``reauthorizationRequired``, ``subscriptionRemoved``,
        ``missed``) to the subscription's lifecycleNotificationUrl; ``subscriptionRemoved`` also
        removes the subscription. SimError("ErrorItemNotFound") for an unknown subscription,
        ValueError for an unknown event."""
        self.subscriptions.send_lifecycle(subscription_id, event)

    # --- entry point --------------------------------------------------------------------------

    def handle(self, request: SimRequest) -> SimResponse:
        return self._answer(request, in_batch=False)

    def handle_inner(self, request: SimRequest, *, batch_mailbox: str = "") -> SimResponse:
        """One request carried by a $batch (a nested $batch is refused). Requests on the
        batch's own mailbox run in the slots the batch holds (see ``execute``)."""
        return self._answer(request, in_batch=True, batch_mailbox=batch_mailbox)

    def _answer(
        self, request: SimRequest, *, in_batch: bool, batch_mailbox: str = ""
    ) -> SimResponse:
        request_id = str(uuid.uuid4())
        client_request_id = request.header("client-request-id") or request_id
        try:
            response = self.execute(request, in_batch=in_batch, batch_mailbox=batch_mailbox)
        except GraphError as error:
            response = SimResponse(
                error.status,
                error_body(error, request_id, client_request_id),
                dict(error.headers),
                JSON_TYPE,
            )
        except SimError as refusal:
            translated = GraphError.from_store(refusal)
            response = SimResponse(
                translated.status,
                error_body(translated, request_id, client_request_id),
                {},
                JSON_TYPE,
            )
        except InjectedFault:
            raise
        except Exception:
            logger.exception("Graph request %s %s failed", request.method, request.path)
            response = SimResponse(
                500,
                error_body(
                    GraphError(500, "InternalServerError", "The simulator failed on this request."),
                    request_id,
                    client_request_id,
                ),
                {},
                JSON_TYPE,
            )
        response.headers.setdefault("request-id", request_id)
        response.headers.setdefault("client-request-id", client_request_id)
        response.headers.setdefault("OData-Version", "4.0")
        return response

    def execute(
        self, request: SimRequest, *, in_batch: bool = False, batch_mailbox: str = ""
    ) -> SimResponse:
        """Route and run one request (raises GraphError / InjectedFault). $batch calls this for
        each request it carries.

        Concurrency (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits:
        four requests per app per mailbox): a request holds one slot of its mailbox while it
        runs, a 5th is a 429. Graph hands up to four requests of a $batch to the mailbox at once
        (https://learn.microsoft.com/answers/questions/1660054), so a batch holds as many slots
        of its mailbox as it has requests for it, at most four (as many as are free; none free:
        each of its requests is a 429), and those requests run in them."""
        principal = request.principal
        if principal is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        call = self._call(request, principal)
        route = self._route(call, in_batch=in_batch)
        if route.user_ref is not None:
            call.mailbox = self._authorize(principal, route.user_ref)
            call.user_path = "me" if route.user_ref == "me" else f"users/{route.user_ref}"
        elif route.mailbox_hint is not None:
            call.mailbox = route.mailbox_hint(call)
        self.store.count(route.operation, call.mailbox or "*")
        slot = (principal.name, call.mailbox)
        held = 0
        if route.operation == "graph:batch" and call.mailbox:
            held = self._take_batch_slots(slot, self._batch_requests_for(call))
            call.batch_slots = held
        elif call.mailbox and not (in_batch and call.mailbox == batch_mailbox):
            self._take_slot(slot)
            held = 1
        try:
            fault = self.store.take_fault(call.mailbox or "*", route.operation)
            if fault is not None:
                self._apply_fault(fault, route.operation)
            response = route.run(call)
        finally:
            if held:
                self._release_slot(slot, held)
        if call.applied:
            response.headers["Preference-Applied"] = ", ".join(call.applied)
        return response

    # --- request plumbing ----------------------------------------------------------------------

    def _call(self, request: SimRequest, principal: Principal) -> Call:
        path = request.path
        marker = path.lower().find("/v1.0")
        if marker >= 0:
            path = path[marker + len("/v1.0") :]
        segments = [unquote(part) for part in path.strip("/").split("/") if part]
        query = {name.lower(): values[0] for name, values in request.query.items() if values}
        prefer = parse_prefer(request.header("prefer"))
        view = event_format.EventView(base_url=self.base_url)
        applied: list[str] = []
        zone = prefer.get("outlook.timezone")
        if zone:
            try:
                timezones.resolve_zone(zone)
                view.zone = zone
                applied.append(f'outlook.timezone="{zone}"')
            except timezones.UnknownTimeZone:
                pass  # Graph falls back to UTC for a zone it does not know
        body_type = (prefer.get("outlook.body-content-type") or "").lower()
        if body_type in ("text", "html"):
            view.body_type = body_type
            applied.append(f'outlook.body-content-type="{body_type}"')
        return Call(request, principal, segments, query, prefer, view, applied=applied)

    def _route(self, call: Call, *, in_batch: bool) -> Route:
        method = call.request.method.upper()
        segments = call.segments
        lowered = [s.lower() for s in segments]
        if not segments:
            raise bad_request("Invalid request: no resource in the URL.")
        if lowered[0] == "$batch":
            if in_batch:
                raise bad_request("A $batch request cannot contain another $batch request.")
            self._method(method, "POST")
            return Route(
                "graph:batch", lambda c: run_batch(self, c), mailbox_hint=self._batch_mailbox
            )
        if lowered[0] == "subscriptions":
            return self._subscription_route(call, method, segments, lowered)
        if lowered[0] == "me":
            user_ref, rest, rest_lower = "me", segments[1:], lowered[1:]
        elif lowered[0] == "users" and len(segments) >= 2:
            user_ref, rest, rest_lower = segments[1], segments[2:], lowered[2:]
        else:
            raise bad_request(f"Resource not found for the segment '{segments[0]}'.")
        if rest_lower[:1] == ["calendar"] and rest_lower[1:2] in (["events"], ["calendarview"]):
            rest, rest_lower = rest[1:], rest_lower[1:]
        if not rest:
            self._method(method, "GET")
            return Route("graph:getUser", self._get_user, user_ref)
        if rest_lower == ["mailboxsettings"]:
            self._method(method, "GET")
            return Route("graph:mailboxSettings", self._get_mailbox_settings, user_ref)
        if rest_lower[0] == "events":
            return self._event_route(method, user_ref, rest, rest_lower)
        if rest_lower[0] == "calendarview":
            self._method(method, "GET")
            if len(rest) == 1:
                return Route("graph:calendarView", self._calendar_view, user_ref)
            if len(rest) == 2 and rest_lower[1] in ("delta()", "delta"):
                return Route("graph:delta", self._delta, user_ref)
        raise bad_request(f"Resource not found for the segment '{rest[-1]}'.")

    def _event_route(
        self, method: str, user_ref: str, rest: list[str], rest_lower: list[str]
    ) -> Route:
        if len(rest) == 1:
            self._method(method, "GET", "POST")
            if method == "GET":
                return Route("graph:listEvents", self._list_events, user_ref)
            return Route("graph:createEvent", self._create_event, user_ref)
        graph_id = rest[1]
        if len(rest) == 2:
            self._method(method, "GET", "PATCH", "DELETE")
            handlers = {
                "GET": ("graph:getEvent", self._get_event),
                "PATCH": ("graph:updateEvent", self._update_event),
                "DELETE": ("graph:deleteEvent", self._delete_event),
            }
            operation, run = handlers[method]
            return Route(operation, lambda c: run(c, graph_id), user_ref)
        if len(rest) == 3:
            action = rest_lower[2]
            if action == "cancel":
                self._method(method, "POST")
                return Route("graph:cancel", lambda c: self._cancel(c, graph_id), user_ref)
            if action == "permanentdelete":
                self._method(method, "POST")
                return Route(
                    "graph:permanentDelete",
                    lambda c: self._permanent_delete(c, graph_id),
                    user_ref,
                )
            if action in _RESPONSES:
                self._method(method, "POST")
                response = _RESPONSES[action]
                return Route(
                    "graph:respond", lambda c: self._respond(c, graph_id, response), user_ref
                )
            if action == "instances":
                self._method(method, "GET")
                return Route("graph:instances", lambda c: self._instances(c, graph_id), user_ref)
        raise bad_request(f"Resource not found for the segment '{rest[-1]}'.")

    def _subscription_route(
        self, call: Call, method: str, segments: list[str], lowered: list[str]
    ) -> Route:
        if len(segments) == 1:
            self._method(method, "GET", "POST")
            if method == "GET":
                return Route("graph:listSubscriptions", self._list_subscriptions)
            return Route(
                "graph:subscribe", self._create_subscription, mailbox_hint=self._subscribe_mailbox
            )
        subscription_id = segments[1]

        def owner(_: Call) -> str:
            return self.subscriptions.mailbox_of(subscription_id) or ""

        if len(segments) == 2:
            self._method(method, "GET", "PATCH", "DELETE")
            operations = {
                "GET": "graph:getSubscription",
                "PATCH": "graph:renewSubscription",
                "DELETE": "graph:deleteSubscription",
            }
            return Route(
                operations[method],
                lambda c: self._subscription(c, subscription_id),
                mailbox_hint=owner,
            )
        if len(segments) == 3 and lowered[2] == "reauthorize":
            self._method(method, "POST")
            return Route(
                "graph:reauthorize",
                lambda c: self._reauthorize(c, subscription_id),
                mailbox_hint=owner,
            )
        raise bad_request(f"Resource not found for the segment '{segments[-1]}'.")

    @staticmethod
    def _method(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise GraphError(
                405,
                "Request_BadRequest",
                f"The method {method} is not allowed here; use {', '.join(allowed)}.",
            )

    # --- users, access, throttling --------------------------------------------------------------

    def _resolve_user(self, user_ref: str) -> str:
        """A user id (UPN/address or object id) → mailbox address; 404 when there is none."""
        reference = user_ref.strip().lower()
        with self.store.lock:
            if reference in self.store.mailboxes:
                return reference
            if len(self._users_by_object_id) != len(self.store.mailboxes):
                self._users_by_object_id = {
                    user_object_id(address): address for address in self.store.mailboxes
                }
            found = self._users_by_object_id.get(reference)
        if found is None:
            raise GraphError(
                404, "ResourceNotFound", f"User '{user_ref}' was not found in this organization."
            )
        return found

    def _authorize(self, principal: Principal, user_ref: str) -> str:
        if user_ref == "me":
            if principal.kind != "user":
                raise bad_request(
                    "/me request is only valid with delegated authentication flow.", "BadRequest"
                )
            return self._resolve_user(principal.name)
        address = self._resolve_user(user_ref)
        if not principal.may_open(address):
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        return address

    def _concurrency_error(self) -> GraphError:
        return GraphError(
            429,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
            {"Retry-After": str(self.concurrency_retry_after_s)},
        )

    def _take_slot(self, slot: tuple[str, str]) -> None:
        with self._in_flight_lock:
            running = self._in_flight.get(slot, 0)
            if running >= self.max_concurrent:
                raise self._concurrency_error()
            self._in_flight[slot] = running + 1

    def _take_batch_slots(self, slot: tuple[str, str], wanted: int) -> int:
        """Up to ``min(wanted, max_concurrent)`` slots, as many as are free (0: none)."""
        with self._in_flight_lock:
            running = self._in_flight.get(slot, 0)
            granted = max(0, min(wanted, self.max_concurrent, self.max_concurrent - running))
            if granted:
                self._in_flight[slot] = running + granted
            return granted

    def _release_slot(self, slot: tuple[str, str], count: int = 1) -> None:
        with self._in_flight_lock:
            remaining = self._in_flight.get(slot, count) - count
            if remaining <= 0:
                self._in_flight.pop(slot, None)
            else:
                self._in_flight[slot] = remaining

    def in_flight(self, mailbox: str) -> int:
        """Requests of any app in flight on a mailbox (tests look at it)."""
        with self._in_flight_lock:
            return sum(n for (_, box), n in self._in_flight.items() if box == mailbox.lower())

    def _batch_requests_for(self, call: Call) -> int:
        """How many requests of a $batch address the batch's mailbox (its first user's)."""
        body = call.json_body()
        requests = body.get("requests") if isinstance(body, dict) else None
        count = 0
        for entry in requests if isinstance(requests, list) else []:
            url = entry.get("url") if isinstance(entry, dict) else None
            if not isinstance(url, str):
                continue
            parts = [unquote(p) for p in url.split("?", 1)[0].strip("/").split("/")]
            try:
                if parts[0].lower() == "me" and call.principal.kind == "user":
                    address = self._resolve_user(call.principal.name)
                elif parts[0].lower() == "users" and len(parts) > 1:
                    address = self._resolve_user(parts[1])
                else:
                    continue
            except GraphError:
                continue
            count += address == call.mailbox
        return count

    def _apply_fault(self, fault: Fault, operation: str) -> None:
        if fault.kind in ("throttle", "server_busy"):
            retry_after = (
                fault.retry_after if fault.kind == "throttle" else -(-fault.back_off_ms // 1000)
            )
            raise GraphError(
                429,
                "TooManyRequests",
                f"Too many requests; retry after {retry_after} second(s).",
                {"Retry-After": str(max(retry_after, 0))},
            )
        if fault.kind in ("expired_delta", "invalid_sync_state"):
            if operation == "graph:delta":
                raise sync_state_gone("the delta token has expired")
            return
        # drop_notifications acts on deliveries, not on requests.
        carry_out_common_fault(fault)

    # --- events ---------------------------------------------------------------------------------

    def _owner_name(self, mailbox: str) -> str:
        return self.store.mailbox(mailbox).name

    def _event(self, call: Call, item: CalendarItem) -> dict[str, Any]:
        return event_format.event_json(
            item,
            call.view,
            transaction_id=self._transaction_of.get(item.id),
            owner_name=self._owner_name(item.mailbox),
        )

    def _load(self, call: Call, graph_id: str) -> CalendarItem:
        try:
            internal = internal_event_id(graph_id)
        except MalformedId as error:
            raise bad_request(str(error), "ErrorInvalidIdMalformed") from None
        try:
            item = self.store.get_item(internal)
        except SimError as error:
            raise GraphError.from_store(error) from None
        if item.mailbox != call.mailbox:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        return item

    def _entity_context(self, call: Call) -> str:
        return f"{self.base_url}/$metadata#users('{quote(call.mailbox)}')/events/$entity"

    def _note_shape(self, operation: str, select: str | None) -> None:
        """Record what a read of events asked for: ``AllProperties`` without ``$select`` (Graph
        then returns every property, the body included), else the selected names."""
        selected = parse_select(select)
        if selected is None:
            self.store.record_shape(operation, "AllProperties", ())
        else:
            self.store.record_shape(operation, "Select", selected)

    def _shape(
        self, call: Call, items: list[CalendarItem], *, filtered: bool, operation: str
    ) -> list[dict[str, Any]]:
        call.view.expansions = parse_expand(call.option("$expand"))
        self._note_shape(operation, call.option("$select"))
        selected = parse_select(call.option("$select"))
        predicate = parse_filter(call.option("$filter")) if filtered else None
        shaped = []
        for item in items:
            event = self._event(call, item)
            if predicate is not None and not predicate(event_format.filter_document(item, event)):
                continue
            shaped.append(apply_select(event, selected))
        return shaped

    def _page_size(self, call: Call) -> int:
        top = parse_int("$top", call.option("$top"), minimum=1)
        if top is not None:
            return min(top, MAX_PAGE)
        preferred = call.prefer.get("odata.maxpagesize")
        if preferred is not None:
            size = parse_int("odata.maxpagesize", preferred, minimum=1) or DEFAULT_PAGE
            call.applied.append(f"odata.maxpagesize={min(size, MAX_PAGE)}")
            return min(size, MAX_PAGE)
        return DEFAULT_PAGE

    def _collection(self, call: Call, shaped: list[dict[str, Any]], context: str) -> SimResponse:
        size = self._page_size(call)
        skip = parse_int("$skip", call.option("$skip")) or 0
        page = shaped[skip : skip + size]
        payload: dict[str, Any] = {"@odata.context": context, "value": page}
        if skip + size < len(shaped):
            query = dict(call.query)
            query.pop("skip", None)
            query["$skip"] = str(skip + size)
            if "$top" in query or "top" in query:
                query.pop("top", None)
                query["$top"] = str(size)
            path = "/".join(quote(segment, safe="()$@'") for segment in call.segments)
            payload["@odata.nextLink"] = f"{self.base_url}/{path}?{urlencode(query, safe='$/:')}"
        return json_response(200, payload)

    def _list_events(self, call: Call) -> SimResponse:
        items = self.store.calendar_items(call.mailbox)
        order = call.option("$orderby")
        if order:
            items = _ordered(items, order)
        shaped = self._shape(call, items, filtered=True, operation="graph:listEvents")
        context = f"{self.base_url}/$metadata#users('{quote(call.mailbox)}')/events"
        return self._collection(call, shaped, context)

    def _get_event(self, call: Call, graph_id: str) -> SimResponse:
        item = self._load(call, graph_id)
        shaped = self._shape(call, [item], filtered=False, operation="graph:getEvent")[0]
        return json_response(200, {"@odata.context": self._entity_context(call), **shaped})

    def _online_by_default(self, call: Call, parsed: event_format.EventInput) -> None:
        """isOnlineMeeting without a provider: the calendar's defaultOnlineMeetingProvider."""
        if parsed.online_by_default:
            mailbox = self.store.mailbox(call.mailbox)
            parsed.fields["online_meeting_provider"] = mailbox.default_online_meeting_provider

    def _create_event(self, call: Call) -> SimResponse:
        parsed = event_format.parse_event(call.json_body(), creating=True)
        self._online_by_default(call, parsed)
        with self.store.lock:
            if parsed.transaction_id is not None:
                existing_id = self._transactions.get((call.mailbox, parsed.transaction_id))
                if existing_id is not None:
                    try:
                        existing = self.store.get_item(existing_id)
                        return self._created(call, existing)
                    except SimError:
                        pass  # the earlier event is gone: create a new one
            item = CalendarItem(id="", mailbox=call.mailbox)
            for name, value in parsed.fields.items():
                setattr(item, name, value)
            item.extended_properties = {
                key: value for key, value in parsed.extended.items() if value is not None
            }
            has_attendees = bool(item.required_attendees or item.optional_attendees)
            send = SendMode.ALL_AND_SAVE_COPY if has_attendees else SendMode.NONE
            try:
                created = self.store.create_item(call.mailbox, item, send)
            except SimError as error:
                raise GraphError.from_store(error) from None
            if parsed.transaction_id is not None:
                self._transactions[(call.mailbox, parsed.transaction_id)] = created.id
                self._transaction_of[created.id] = parsed.transaction_id
        return self._created(call, created)

    def _created(self, call: Call, item: CalendarItem) -> SimResponse:
        event = self._event(call, item)
        location = f"{self.base_url}/users('{quote(call.mailbox)}')/events('{event['id']}')"
        return json_response(
            201, {"@odata.context": self._entity_context(call), **event}, {"Location": location}
        )

    def _update_event(self, call: Call, graph_id: str) -> SimResponse:
        body = call.json_body()
        with self.store.lock:
            item = self._load(call, graph_id)
            parsed = event_format.parse_event(body, creating=False, current=item)
            self._online_by_default(call, parsed)
            expected = _etag_value(call.request.header("if-match"))
            if expected is not None and expected != item.change_key:
                raise GraphError(
                    412,
                    "ErrorIrresolvableConflict",
                    "The change key in If-Match does not match the event's current change key.",
                )
            adds_attendees = bool(
                parsed.fields.get("required_attendees") or parsed.fields.get("optional_attendees")
            )
            sends = item.is_organizer and (item.is_meeting or adds_attendees)
            try:
                updated = self.store.update_item(
                    call.mailbox,
                    item.id,
                    parsed.fields,
                    send=SendMode.ALL_AND_SAVE_COPY if sends else SendMode.NONE,
                    extended=parsed.extended or None,
                )
            except SimError as error:
                raise GraphError.from_store(error) from None
            shaped = self._event(call, updated)
        return json_response(200, {"@odata.context": self._entity_context(call), **shaped})

    def _delete_event(self, call: Call, graph_id: str) -> SimResponse:
        with self.store.lock:
            item = self._load(call, graph_id)
            # Outlook sends cancellations when an organizer deletes a meeting.
            sends = item.is_organizer and item.is_meeting
            try:
                self.store.delete_item(
                    call.mailbox,
                    item.id,
                    SendMode.ALL_AND_SAVE_COPY if sends else SendMode.NONE,
                )
            except SimError as error:
                raise GraphError.from_store(error) from None
        return SimResponse(204, b"", {}, "")

    def _permanent_delete(self, call: Call, graph_id: str) -> SimResponse:
        """``POST events/{id}/permanentDelete``: the event goes to the Purges folder of the
        dumpster, where no client can reach it; 204 without a body. (This store keeps no
        Deleted Items, so the item is simply gone; as for DELETE, an organizer's meeting sends
        its cancellations.)"""
        return self._delete_event(call, graph_id)

    def _action_body(self, call: Call) -> dict[str, Any]:
        body = call.json_body()
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        return {name.lower(): value for name, value in body.items()}

    def _cancel(self, call: Call, graph_id: str) -> SimResponse:
        body = self._action_body(call)
        comment = body.get("comment") or ""
        if not isinstance(comment, str):
            raise bad_request("Comment must be a string")
        item = self._load(call, graph_id)
        if not item.is_organizer:
            raise bad_request(
                "Your request can't be completed. You need to be an organizer to cancel a meeting.",
                "ErrorInvalidRequest",
            )
        try:
            # /cancel sends the cancellation, and Exchange keeps a copy in Sent Items.
            self.store.cancel_meeting(call.mailbox, item.id, comment, send=True, save_copy=True)
        except SimError as error:
            raise GraphError.from_store(error) from None
        return SimResponse(202, b"", {}, "")

    def _respond(self, call: Call, graph_id: str, response: ResponseType) -> SimResponse:
        body = self._action_body(call)
        comment = body.get("comment") or ""
        send_response = body.get("sendresponse", True)
        if not isinstance(comment, str) or not isinstance(send_response, bool):
            raise bad_request("Comment must be a string and SendResponse a boolean")
        item = self._load(call, graph_id)
        if item.is_organizer:
            raise bad_request(
                "Your request can't be completed. You can't respond to a meeting you organized.",
                "ErrorInvalidRequest",
            )
        try:
            self.store.respond(
                call.mailbox, item.id, response, send_response=send_response, comment=comment
            )
        except SimError as error:
            raise GraphError.from_store(error) from None
        return SimResponse(202, b"", {}, "")

    def _window(self, call: Call) -> tuple[datetime, datetime]:
        start_text = call.option("startDateTime")
        end_text = call.option("endDateTime")
        if not start_text or not end_text:
            raise bad_request(
                "This request requires a time window specified by the query string parameters "
                "StartDateTime and EndDateTime.",
                "ErrorInvalidParameter",
            )
        try:
            start = timezones.parse_instant(start_text)
            end = timezones.parse_instant(end_text)
        except ValueError as error:
            raise bad_request(
                f"startDateTime/endDateTime: {error}", "ErrorInvalidParameter"
            ) from None
        if end <= start:
            raise bad_request("endDateTime must be after startDateTime", "ErrorInvalidParameter")
        return start, end

    def _calendar_view(self, call: Call) -> SimResponse:
        start, end = self._window(call)
        items = self.store.calendar_view(call.mailbox, start, end)
        order = call.option("$orderby")
        if order:
            items = _ordered(items, order)
        shaped = self._shape(call, items, filtered=True, operation="graph:calendarView")
        context = f"{self.base_url}/$metadata#users('{quote(call.mailbox)}')/calendarView"
        return self._collection(call, shaped, context)

    def _instances(self, call: Call, graph_id: str) -> SimResponse:
        master = self._load(call, graph_id)
        start, end = self._window(call)
        items = [
            item
            for item in self.store.calendar_view(call.mailbox, start, end)
            if item.master_id == master.id
        ]
        shaped = self._shape(call, items, filtered=True, operation="graph:instances")
        context = (
            f"{self.base_url}/$metadata#users('{quote(call.mailbox)}')/events('{graph_id}')"
            "/instances"
        )
        return self._collection(call, shaped, context)

    # --- delta ----------------------------------------------------------------------------------

    def _delta(self, call: Call) -> SimResponse:
        for option in ("$filter", "$expand", "$orderby", "$search"):
            if call.option(option):
                raise bad_request(
                    f"The query parameter '{option}' is not supported with calendarView delta."
                )
        delta_token = call.option("$deltatoken")
        skip_token = call.option("$skiptoken")
        token = skip_token or delta_token
        # The first request's options (page size, $select) travel in the tokens, as in Graph;
        # a Prefer on a later request wins.
        options = self.delta.options(call.mailbox, token) if token else {}
        size = int(options.get("pagesize") or DEFAULT_PAGE)
        preferred = call.prefer.get("odata.maxpagesize")
        if preferred is not None:
            size = min(parse_int("odata.maxpagesize", preferred, minimum=1) or size, MAX_PAGE)
            call.applied.append(f"odata.maxpagesize={size}")
        page: DeltaPage
        if skip_token:
            page = self.delta.continue_from_skip(call.mailbox, skip_token, size)
        elif delta_token:
            page = self.delta.continue_from_delta(call.mailbox, delta_token, size)
        else:
            start, end = self._window(call)
            options = {"select": call.option("$select") or "", "pagesize": str(size)}
            page = self.delta.start_round(call.mailbox, start, end, size, options)
        self._note_shape("graph:delta", options.get("select") or None)
        selected = parse_select(options.get("select") or None)
        values: list[dict[str, Any]] = []
        with self.store.lock:
            for entry in page.entries:
                item = None
                if not entry.removed:
                    try:
                        item = self.store.get_item(entry.item_id)
                    except SimError:
                        item = None
                if item is None or item.mailbox != call.mailbox:
                    values.append(
                        {
                            "@odata.type": "#microsoft.graph.event",
                            "id": event_id(entry.item_id),
                            "@removed": {"reason": "deleted"},
                        }
                    )
                else:
                    values.append(apply_select(self._event(call, item), selected))
        payload: dict[str, Any] = {
            "@odata.context": f"{self.base_url}/$metadata#Collection(event)",
            "value": values,
        }
        link = f"{self.base_url}/{call.user_path}/calendarView/delta"
        if page.next_token is not None:
            payload["@odata.nextLink"] = f"{link}?$skiptoken={quote(page.next_token, safe='')}"
        else:
            assert page.delta_token is not None
            payload["@odata.deltaLink"] = f"{link}?$deltatoken={quote(page.delta_token, safe='')}"
        return json_response(200, payload)

    # --- users ------------------------------------------------------------------------------------

    def _get_user(self, call: Call) -> SimResponse:
        mailbox = self.store.mailbox(call.mailbox)
        return json_response(
            200,
            {
                "@odata.context": f"{self.base_url}/$metadata#users/$entity",
                "id": user_object_id(mailbox.address),
                "displayName": mailbox.name,
                "mail": mailbox.address,
                "userPrincipalName": mailbox.address,
                "businessPhones": [],
            },
        )

    def _get_mailbox_settings(self, call: Call) -> SimResponse:
        mailbox = self.store.mailbox(call.mailbox)
        return json_response(
            200,
            {
                "@odata.context": (
                    f"{self.base_url}/$metadata#users('{quote(mailbox.address)}')/mailboxSettings"
                ),
                "timeZone": timezones.windows_name(mailbox.time_zone),
            },
        )

    # --- subscriptions -------------------------------------------------------------------------

    def _subscribe_mailbox(self, call: Call) -> str:
        body = call.json_body()
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object", "InvalidRequest")
        resource = body.get("resource")
        if not isinstance(resource, str) or not resource.strip():
            raise bad_request("resource is required", "InvalidRequest")
        me = call.principal.name.lower() if call.principal.kind == "user" else None
        address = self.subscriptions.resource_mailbox(resource, me)
        if not call.principal.may_open(address):
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        return address

    def _create_subscription(self, call: Call) -> SimResponse:
        principal = call.principal
        application_id = principal.name if principal.kind == "app" else USER_TOKEN_APP_ID
        subscription = self.subscriptions.create(
            call.json_body(),
            mailbox=call.mailbox,
            creator=principal.name,
            application_id=application_id,
            tenant_id=self._tenant_of(call),
        )
        return json_response(201, subscription.json(self.base_url))

    def _tenant_of(self, call: Call) -> str:
        """The caller's tenant, as Graph knows it: the ``tid`` claim of the (already verified)
        bearer token, else the configured tenant of the client."""
        authorization = call.request.header("authorization") or ""
        scheme, _, token = authorization.partition(" ")
        parts = token.strip().split(".")
        if scheme.lower() == "bearer" and len(parts) == 3:
            try:
                claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
                if isinstance(claims, dict) and isinstance(claims.get("tid"), str):
                    return str(claims["tid"])
            except (ValueError, binascii.Error):
                pass
        return self.client_tenants.get(call.principal.name, DEFAULT_TENANT)

    def _list_subscriptions(self, call: Call) -> SimResponse:
        listed = [s.json(self.base_url) for s in self.subscriptions.list(call.principal.name)]
        for entry in listed:
            entry.pop("@odata.context", None)
        return json_response(
            200, {"@odata.context": f"{self.base_url}/$metadata#subscriptions", "value": listed}
        )

    def _subscription(self, call: Call, subscription_id: str) -> SimResponse:
        creator = call.principal.name
        method = call.request.method.upper()
        if method == "DELETE":
            self.subscriptions.delete(subscription_id, creator)
            return SimResponse(204, b"", {}, "")
        if method == "PATCH":
            body = call.json_body()
            if not isinstance(body, dict):
                raise bad_request("the request body must be a JSON object", "InvalidRequest")
            subscription = self.subscriptions.update(subscription_id, creator, body)
        else:
            subscription = self.subscriptions.get(subscription_id, creator)
        return json_response(200, subscription.json(self.base_url))

    def _reauthorize(self, call: Call, subscription_id: str) -> SimResponse:
        self.subscriptions.reauthorize(subscription_id, call.principal.name)
        return SimResponse(204, b"", {}, "")

    # --- $batch ---------------------------------------------------------------------------------

    def _batch_mailbox(self, call: Call) -> str:
        """The mailbox a batch's faults and counters are charged to: its first request's user."""
        body = call.json_body()
        requests = body.get("requests") if isinstance(body, dict) else None
        for entry in requests if isinstance(requests, list) else []:
            url = entry.get("url") if isinstance(entry, dict) else None
            if not isinstance(url, str):
                continue
            parts = [unquote(p) for p in url.split("?", 1)[0].strip("/").split("/")]
            try:
                if parts[0].lower() == "me" and call.principal.kind == "user":
                    return self._resolve_user(call.principal.name)
                if parts[0].lower() == "users" and len(parts) > 1:
                    return self._resolve_user(parts[1])
            except GraphError:
                continue
        return ""


def _etag_value(header: str | None) -> str | None:
    if not header or header.strip() == "*":
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


def _ordered(items: list[CalendarItem], order: str) -> list[CalendarItem]:
    keys: dict[str, Callable[[CalendarItem], Any]] = {
        "start/datetime": lambda item: item.start,
        "end/datetime": lambda item: item.end,
        "lastmodifieddatetime": lambda item: item.last_modified,
        "createddatetime": lambda item: item.created,
        "subject": lambda item: item.subject.lower(),
    }
    name, _, direction = order.strip().partition(" ")
    key = keys.get(name.lower())
    if key is None:
        raise bad_request(f"$orderby={order!r} is not supported; use one of {', '.join(keys)}")
    if direction.strip().lower() not in ("", "asc", "desc"):
        raise bad_request(f"$orderby direction must be asc or desc, not {direction!r}")
    return sorted(items, key=key, reverse=direction.strip().lower() == "desc")
