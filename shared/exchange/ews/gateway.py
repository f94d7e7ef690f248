"""``EwsCalendarGateway``: the calendar port over EWS (exchangelib 5.6), one per EWS connection.

exchangelib is synchronous: each port call runs its EWS request(s) on one of the connection's
own threads (``EwsConnection.executor``) so the port stays async, and under the connection's
call deadline (``within_deadline``); the exchangelib objects behind it (``EwsConnection``) are
built once and shared by those threads.

Requests per port call (the fewest that give the port what it promises):

==================  ===========================================================================
find_by_marker      1 FindItem, restricted to the marker (Exchange searches, not calbridge)
find_by_uid         1 FindItem, restricted to the meeting's clean global object id (EWS cannot
                    restrict on ``calendar:UID``; see ``properties``)
get_event           1 GetItem (the only read with attendees and organizer address)
list_events         1 FindItem with a CalendarView (occurrences expanded, no GetItem)
changes_since       SyncFolderItems (ids only, 512 changes a call, Exchange's maximum) until the
                    last item in range or ``max_changes``, then 1 GetItem for the changed
                    items of the page, all ids in one request (none when nothing changed: an
                    idle mailbox costs the one SyncFolderItems; n changes cost
                    ceil(n / 512) + 1 while n ≤ ``max_changes``)
create_event        1 CreateItem. The UID is set by calbridge (``calbridge_uid``), so CreateItem's
                    answer (id, change key) completes the ``EventRef``. EWS has no transaction
                    id: a create whose answer may have been lost is found by its marker before
                    it is tried again (the engine looks before every pending create). The UID
                    is known before the create (``planned_uid``, no request): the pending note
                    keeps it, so a meeting its organizer removed before the create's outcome
                    was stored is still known by its attendees' copies.
update_event        1 UpdateItem, by item id and change key. The UID comes back when this gateway
                    has seen the item (UIDs never change, so they are remembered per item id),
                    otherwise None: the caller keeps the one it stored.
cancel_event        1 DeleteItem (SendMeetingCancellations=SendToAllAndSaveCopy: a meeting's
                    attendees get cancellations, an appointment without attendees just goes;
                    MoveToDeletedItems, as Outlook does when an organizer cancels)
==================  ===========================================================================

Change keys: an update with a change key is sent with ``ConflictResolution=NeverOverwrite``: "if
there is a conflict, the UpdateItem operation fails and ErrorIrresolvableConflict will be
returned" ([MS-OXWSCORE] 3.1.4.9.4.1 ConflictResolutionType,
https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxwscore/0dc48948-2f1b-425a-9e53-0c247657ef12),
which becomes ``ChangeKeyConflict``: the caller looks at the item and decides again. Not
``AutoResolve`` (the default), which "will in most cases overwrite the existing value": an Outlook
move the mailbox sync has not read yet would be overwritten without anyone noticing, and never
reported. Without a change key the update overwrites (``AlwaysOverwrite``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo

from exchangelib import SHALLOW, CalendarItem, EWSDateTime, ItemId, Q
from exchangelib.errors import ErrorItemNotFound
from exchangelib.items import (
    ALL_OCCURRENCES,
    ALWAYS_OVERWRITE,
    HARD_DELETE,
    ID_ONLY,
    MOVE_TO_DELETED_ITEMS,
    NEVER_OVERWRITE,
    SAVE_ONLY,
    SEND_TO_ALL_AND_SAVE_COPY,
    SEND_TO_NONE,
)
from exchangelib.properties import CalendarView
from exchangelib.restriction import Restriction
from exchangelib.services import (
    CreateItem,
    DeleteItem,
    FindItem,
    GetItem,
    SyncFolderItems,
    UpdateItem,
)

from shared.exchange.accounts import account_for
from shared.exchange.budget import BudgetFor
from shared.exchange.common import within_deadline
from shared.exchange.ews.connection import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SERVER_BUILD,
    EwsConnection,
    EwsEndpoint,
)
from shared.exchange.ews.errors import calendar_error
from shared.exchange.ews.items import (
    DRAFT_FIELDS,
    FIND_FIELDS,
    GET_FIELDS,
    draft_values,
    event_from_item,
)
from shared.exchange.ews.logs import quieten_exchangelib
from shared.exchange.ews.properties import (
    CLEAN_GLOBAL_OBJECT_ID_FIELD,
    MARKER_FIELD,
    calbridge_uid,
    clean_global_object_id,
)
from shared.exchange.oauth import TokenAuthority, connection_credentials
from shared.exchange.port import (
    CalendarChanges,
    EventDraft,
    EventRef,
    ExchangeEvent,
    ReadWindow,
    live_first,
)
from shared.models import ConnectionConfig
from shared.observability import carried

logger = logging.getLogger(__name__)


class EwsConnectionNotSupported(ValueError):
    """The connection asks for something this adapter cannot do (yet); names the setting."""


T = TypeVar("T")

quieten_exchangelib()

# Changes read per SyncFolderItems call (Exchange's maximum for MaxChangesReturned).
SYNC_PAGE_SIZE: Final = 512
# How many item ids → UID this gateway remembers (UIDs are immutable; this only saves GetItems).
UID_MEMORY: Final = 4096


class EwsCalendarGateway:
    """The ``CalendarGateway`` port for one EWS connection (see the module docstring).

    A connection with several service accounts has one ``EwsConnection`` per account; each
    mailbox is served by one of them (``shared.exchange.accounts.account_for``). With delegate
    access every call first takes a slot of its account's shared budget (``budget_for``, see
    ``shared.exchange.budget``); impersonated calls are charged to each mailbox's own budget and
    take none."""

    def __init__(
        self,
        connection: EwsConnection | Sequence[EwsConnection],
        *,
        connection_id: str = "ews",
        budget_for: BudgetFor | None = None,
    ) -> None:
        connections = [connection] if isinstance(connection, EwsConnection) else list(connection)
        if not connections:
            raise ValueError("an EWS gateway needs at least one service account")
        self.connections = {c.endpoint.username.strip().lower(): c for c in connections}
        if len(self.connections) != len(connections):
            raise ValueError("each service account may be given once")
        # The first account's connection (the only one of a single-account connection).
        self.connection = connections[0]
        self.connection_id = connection_id
        self._budgets = (
            {
                name: budget_for(c.endpoint.username, c.endpoint.max_connections)
                for name, c in self.connections.items()
            }
            if budget_for is not None
            else {}
        )
        self._usernames = list(self.connections)
        self._uids: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def for_endpoint(
        cls, endpoint: EwsEndpoint, *, connection_id: str = "ews"
    ) -> EwsCalendarGateway:
        return cls(EwsConnection(endpoint), connection_id=connection_id)

    @classmethod
    def from_connection(
        cls,
        connection: ConnectionConfig,
        secret: str,
        *,
        connection_id: str = "ews",
        server_build: tuple[int, ...] = DEFAULT_SERVER_BUILD,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        account_secrets: Mapping[str, str] | None = None,
        budget_for: BudgetFor | None = None,
        authority: TokenAuthority | None = None,
    ) -> EwsCalendarGateway:
        """The gateway of an EWS connection; ``secret`` is the resolved password of its service
        account (``account_secrets``: those of each of its ``serviceAccounts``, by secret
        reference), or for OAuth its application's client secret or PEM certificate with key
        (tokens from ``authority``, Microsoft's by default). ``budget_for`` is used with
        delegate access only. Builds objects only: nothing is sent until the first port call."""
        if connection.kind != "ews":
            raise EwsConnectionNotSupported(f"kind: not an EWS connection ({connection.kind!r})")
        if connection.ews_url is None:
            raise EwsConnectionNotSupported("ewsUrl: an EWS connection needs the service URL")
        endpoint = functools.partial(
            EwsEndpoint,
            url=connection.ews_url,
            auth=connection.auth_type,
            access=connection.access_mode,
            authority=authority or TokenAuthority(),
            server_build=server_build,
            max_connections=max_connections,
        )
        if connection.auth_type == "oauth":
            # One application: its tokens, no password, no service accounts.
            oauth = connection_credentials(connection, secret, connection_id=connection_id)
            endpoints = [endpoint(username="", password="", oauth=oauth)]
        else:
            accounts = connection.accounts()
            if not accounts:
                raise EwsConnectionNotSupported("username: basic and ntlm need the service account")
            passwords = dict(account_secrets or {})
            if len(accounts) == 1:
                passwords.setdefault(accounts[0].secret_reference, secret)
            missing = [a.secret_reference for a in accounts if a.secret_reference not in passwords]
            if missing:
                raise EwsConnectionNotSupported(
                    f"serviceAccounts: no secret resolved for {', '.join(missing)}"
                )
            endpoints = [
                endpoint(
                    username=account.username,
                    password=passwords[account.secret_reference],
                    ntlm_version=connection.ntlm_version or "v2",
                )
                for account in accounts
            ]
        return cls(
            [EwsConnection(endpoint) for endpoint in endpoints],
            connection_id=connection_id,
            budget_for=budget_for if connection.access_mode == "delegate" else None,
        )

    def close(self) -> None:
        """Release the HTTP sessions (the gateway is unusable afterwards)."""
        for connection in self.connections.values():
            connection.close()

    def connection_for(self, mailbox: str) -> EwsConnection:
        """The service account's connection that serves ``mailbox``."""
        if len(self._usernames) == 1:
            return self.connection
        return self.connections[account_for(mailbox, self._usernames)]

    # --- plumbing ---------------------------------------------------------------------------
    async def _call(self, operation: str, mailbox: str, work: Callable[[EwsConnection], T]) -> T:
        """Run ``work`` (blocking exchangelib calls) on the threads of the mailbox's service
        account, within its deadline and, with delegate access, in a slot of the account's
        budget (held until the thread is done, even when the deadline gave up on it); failures
        become port errors."""
        connection = self.connection_for(mailbox)
        budget = self._budgets.get(connection.endpoint.username.strip().lower())
        try:
            slot = await budget.acquire() if budget is not None else None
            try:
                future = connection.executor.submit(carried(lambda: work(connection)))
            except BaseException:
                if slot is not None:
                    slot.release()
                raise
            if slot is not None:
                # Runs when the work ends, fails, or is dropped before it started.
                future.add_done_callback(lambda _: slot.release())
            return await within_deadline(
                asyncio.wrap_future(future),
                connection.endpoint.call_deadline_s,
                protocol="EWS",
                operation=operation,
                mailbox=mailbox,
            )
        except Exception as error:
            mapped = calendar_error(error, operation=operation, mailbox=mailbox)
            if mapped is None:
                raise
            logger.info("EWS %s for %s failed: %s", operation, mailbox, type(mapped).__name__)
            raise mapped from None

    def _remember_uid(self, item_id: str, uid: str | None) -> None:
        if not uid:
            return
        self._uids[item_id] = uid
        self._uids.move_to_end(item_id)
        while len(self._uids) > UID_MEMORY:
            self._uids.popitem(last=False)

    def _remember(self, events: list[ExchangeEvent]) -> list[ExchangeEvent]:
        for event in events:
            self._remember_uid(event.item_id, event.uid)
        return events

    @staticmethod
    def _results(results: Iterable[Any]) -> list[Any]:
        """exchangelib's service generators yield per-item errors as values: raise the first."""
        collected = list(results)
        for result in collected:
            if isinstance(result, Exception):
                raise result
        return collected

    def _find(
        self,
        connection: EwsConnection,
        mailbox: str,
        *,
        query: Q | None = None,
        view: CalendarView | None = None,
    ) -> list[ExchangeEvent]:
        """One FindItem on the mailbox's calendar with ``FIND_FIELDS``."""
        calendar = connection.calendar(mailbox)
        account = connection.account(mailbox)
        restriction = (
            Restriction(query, folders=[calendar], applies_to=Restriction.ITEMS)
            if query is not None
            else None
        )
        items = FindItem(account=account).call(
            folders=[calendar],
            additional_fields=FIND_FIELDS,
            restriction=restriction,
            order_fields=None,
            shape=ID_ONLY,
            query_string=None,
            depth=SHALLOW,
            calendar_view=view,
            max_items=None,
            offset=0,
        )
        return [event_from_item(item, mailbox) for item in self._results(items)]

    def _get(self, connection: EwsConnection, mailbox: str, item_id: str) -> ExchangeEvent | None:
        """One GetItem with ``GET_FIELDS``; None when the item does not exist."""
        account = connection.account(mailbox)
        try:
            [item] = self._results(
                GetItem(account=account).call(
                    items=[ItemId(id=item_id)], additional_fields=GET_FIELDS, shape=ID_ONLY
                )
            )
        except ErrorItemNotFound:
            return None
        return event_from_item(item, mailbox)

    # --- reading ------------------------------------------------------------------------------
    async def find_by_marker(self, mailbox: str, marker: str) -> list[ExchangeEvent]:
        def work(connection: EwsConnection) -> list[ExchangeEvent]:
            found = self._find(connection, mailbox, query=Q(**{MARKER_FIELD: marker}))
            # Exchange compares strings without regard to case; markers are exact.
            return live_first(event for event in found if event.marker == marker)

        return self._remember(await self._call("FindItem", mailbox, work))

    async def get_event(self, mailbox: str, item_id: str) -> ExchangeEvent | None:
        event = await self._call(
            "GetItem", mailbox, lambda connection: self._get(connection, mailbox, item_id)
        )
        if event is not None:
            self._remember_uid(event.item_id, event.uid)
        return event

    async def find_by_uid(self, mailbox: str, uid: str) -> ExchangeEvent | None:
        goid = clean_global_object_id(uid)

        def work(connection: EwsConnection) -> list[ExchangeEvent]:
            found = self._find(connection, mailbox, query=Q(**{CLEAN_GLOBAL_OBJECT_ID_FIELD: goid}))
            # The restriction is Exchange's; the check keeps a server that matched loosely from
            # handing over another meeting (hex UIDs compare by their bytes, not their case).
            return live_first(
                event
                for event in found
                if event.uid is None or clean_global_object_id(event.uid) == goid
            )

        found = self._remember(await self._call("FindItem", mailbox, work))
        return found[0] if found else None

    async def list_events(
        self, mailbox: str, start: datetime, end: datetime
    ) -> list[ExchangeEvent]:
        utc = ZoneInfo("UTC")
        view = CalendarView(
            start=EWSDateTime.from_datetime(start.astimezone(utc)),
            end=EWSDateTime.from_datetime(end.astimezone(utc)),
        )
        found = await self._call(
            "FindItem", mailbox, lambda connection: self._find(connection, mailbox, view=view)
        )
        return sorted(found, key=lambda event: event.start)

    async def changes_since(
        self,
        mailbox: str,
        cursor: str | None,
        *,
        max_changes: int = SYNC_PAGE_SIZE,
        window: ReadWindow | None = None,
    ) -> CalendarChanges:
        # SyncFolderItems reads the whole calendar folder: ``window`` is for windowed readers.
        def work(connection: EwsConnection) -> CalendarChanges:
            calendar = connection.calendar(mailbox)
            account = connection.account(mailbox)
            changed_ids: dict[str, None] = {}
            deleted: dict[str, None] = {}
            state, complete, read = cursor, False, 0
            # Ids only, up to 512 changes a call, until the last item in range or the page is
            # full; a later call's word on an item replaces an earlier one's.
            while not complete and read < max_changes:
                sync = SyncFolderItems(account=account)
                for change, item in sync.call(
                    folder=calendar,
                    shape=ID_ONLY,
                    additional_fields=set(),
                    sync_state=state,
                    ignore=None,
                    max_changes_returned=min(SYNC_PAGE_SIZE, max_changes - read),
                    sync_scope=None,
                ):
                    if isinstance(item, Exception):
                        raise item
                    read += 1
                    if change == SyncFolderItems.DELETE:
                        deleted[item.id] = None
                        changed_ids.pop(item.id, None)
                    elif change in (SyncFolderItems.CREATE, SyncFolderItems.UPDATE):
                        changed_ids[item.id] = None
                        deleted.pop(item.id, None)
                state, complete = sync.sync_state, bool(sync.includes_last_item_in_range)
            # The details of every changed item of the page in one GetItem (exchangelib would
            # split at 100 ids), never one request per item.
            changed: list[ExchangeEvent] = []
            if changed_ids:
                fetch = GetItem(account=account, chunk_size=max(len(changed_ids), 1))
                for result in fetch.call(
                    items=[ItemId(id=item_id) for item_id in changed_ids],
                    additional_fields=GET_FIELDS,
                    shape=ID_ONLY,
                ):
                    if isinstance(result, ErrorItemNotFound):
                        continue  # deleted between the two requests: the next page says so
                    if isinstance(result, Exception):
                        raise result
                    changed.append(event_from_item(result, mailbox))
            return CalendarChanges(
                changed=tuple(changed), deleted=tuple(deleted), cursor=state, complete=complete
            )

        changes = await self._call("SyncFolderItems", mailbox, work)
        self._remember(list(changes.changed))
        return changes

    # --- writing ------------------------------------------------------------------------------
    def planned_uid(self, mailbox: str, transaction_id: str) -> str:
        return calbridge_uid(mailbox, transaction_id)

    async def create_event(self, mailbox: str, draft: EventDraft, transaction_id: str) -> EventRef:
        uid = self.planned_uid(mailbox, transaction_id)

        def work(connection: EwsConnection) -> EventRef:
            calendar = connection.calendar(mailbox)
            account = connection.account(mailbox)
            item = CalendarItem(
                account=account, folder=calendar, uid=uid, **draft_values(draft, mailbox)
            )
            invitations = SEND_TO_ALL_AND_SAVE_COPY if item.required_attendees else SEND_TO_NONE
            created = CreateItem(account=account).get(
                items=[item],
                folder=calendar,
                message_disposition=SAVE_ONLY,
                send_meeting_invitations=invitations,
            )
            return EventRef(item_id=created.id, change_key=created.changekey, uid=uid)

        ref = await self._call("CreateItem", mailbox, work)
        self._remember_uid(ref.item_id, ref.uid)
        return ref

    async def update_event(
        self, mailbox: str, item_id: str, draft: EventDraft, change_key: str | None
    ) -> EventRef:
        def work(connection: EwsConnection) -> tuple[str, str | None]:
            calendar = connection.calendar(mailbox)
            account = connection.account(mailbox)
            item = CalendarItem(
                account=account,
                folder=calendar,
                id=item_id,
                changekey=change_key,
                **draft_values(draft, mailbox),
            )
            new_id, new_change_key = UpdateItem(account=account).get(
                items=[(item, list(DRAFT_FIELDS))],
                conflict_resolution=NEVER_OVERWRITE if change_key else ALWAYS_OVERWRITE,
                message_disposition=SAVE_ONLY,
                send_meeting_invitations_or_cancellations=SEND_TO_ALL_AND_SAVE_COPY,
                suppress_read_receipts=True,
            )
            return new_id, new_change_key

        new_id, new_change_key = await self._call("UpdateItem", mailbox, work)
        uid = self._uids.get(item_id) or self._uids.get(new_id)
        self._remember_uid(new_id, uid)
        return EventRef(item_id=new_id, change_key=new_change_key, uid=uid)

    async def cancel_event(self, mailbox: str, item_id: str) -> bool:
        return await self._delete(
            mailbox, item_id, MOVE_TO_DELETED_ITEMS, SEND_TO_ALL_AND_SAVE_COPY
        )

    async def delete_permanently(self, mailbox: str, item_id: str) -> None:
        await self._delete(mailbox, item_id, HARD_DELETE, SEND_TO_NONE)

    async def _delete(
        self, mailbox: str, item_id: str, delete_type: str, cancellations: str
    ) -> bool:
        """DeleteItem of one item; an item already gone is fine (deleting is idempotent), and
        False."""

        def work(connection: EwsConnection) -> bool:
            try:
                DeleteItem(account=connection.account(mailbox)).get(
                    items=[ItemId(id=item_id)],
                    delete_type=delete_type,
                    send_meeting_cancellations=cancellations,
                    affected_task_occurrences=ALL_OCCURRENCES,
                    suppress_read_receipts=True,
                    expect_result=None,
                )
            except ErrorItemNotFound:
                return False
            return True

        found = await self._call("DeleteItem", mailbox, work)
        self._uids.pop(item_id, None)
        return found
