"""An in-memory Exchange organization and a ``CalendarGateway`` over it, for tests.

A real implementation of the port, not a mock: ``FakeExchange`` keeps mailboxes and their
calendar items with Exchange's meeting semantics for everything the port exposes, and
``FakeCalendarGateway`` is one connection's view of it. The port contract suite
(``tests/contract``) holds it to the same behaviour as the EWS and Graph adapters.

Meeting semantics (as Exchange does them, and as the simulator in ``sim/`` does them):
- creating an event with attendees sends invitations: each attendee that is a mailbox here gets
  its own copy (same iCalendar UID, no marker — Exchange does not send named properties —,
  response none, shown as tentative until answered); other attendees are just recorded;
- updating sends updates: copies follow, added attendees get copies, removed attendees' copies
  are cancelled; a time change resets the responses;
- cancelling a meeting deletes the organizer's item and cancels every copy; an item without
  attendees is simply deleted; cancelling what is gone is quiet;
- every write gives the item a new change key; a stale change key → ``ChangeKeyConflict``;
- a create repeated with the same transaction id returns the first event (Graph transactionId).

Reading changes (``changes_since``) is SyncFolderItems-like by default: every item of the
calendar, whatever its time. ``FakeExchange(windowed=True)`` reads like Graph's calendarView
delta instead: from a ``None`` cursor only the items inside the window asked for, and later an
item moved out of that window is reported deleted (the cursor carries the window).
Change-notification subscriptions (``subscribe`` ...) are kept per id, as a server keeps them;
``drop_subscription`` stands for the server removing one.

Owner-side operations (``move_as_organizer``, ``delete_as_owner``, ``respond``,
``add_personal_event``) stand for what staff do in Outlook. Test hooks: ``fail_next`` injects
an error before (or after) an operation takes effect; ``requests`` counts calls per operation
and mailbox. Single-threaded (asyncio); ids are deterministic per instance so failing
Hypothesis examples replay exactly.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, TypeVar

from shared.exchange.port import (
    AccessDenied,
    Attendee,
    CalendarChanges,
    CalendarError,
    ChangeKeyConflict,
    EventDraft,
    EventNotFound,
    EventRef,
    ExchangeEvent,
    ItemType,
    MailboxNotFound,
    ReadWindow,
    ResponseType,
    Sensitivity,
    ShowAs,
    SubscriptionGone,
    SubscriptionRef,
    SyncStateInvalid,
    live_first,
)

OPERATIONS: Final = (
    "find_by_marker",
    "get_event",
    "find_by_uid",
    "create_event",
    "changes_since",
    "update_event",
    "cancel_event",
    "list_events",
    "subscribe",
    "renew_subscription",
    "reauthorize_subscription",
    "unsubscribe",
)
CANCELLED_PREFIX: Final = "Canceled: "

T = TypeVar("T")


@dataclass
class _Item:
    """One calendar item in one mailbox (each attendee's copy is its own item)."""

    item_id: str
    mailbox: str
    uid: str
    change_key: str
    created: int
    subject: str
    start: datetime
    end: datetime
    time_zone: str
    organizer: str
    location: str | None = None
    body_text: str = ""
    attendees: list[Attendee] = field(default_factory=list)
    marker: str | None = None
    written: str | None = None
    show_as: ShowAs = ShowAs.BUSY
    sensitivity: Sensitivity = Sensitivity.NORMAL
    is_all_day: bool = False
    is_cancelled: bool = False
    last_modified: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def is_organizers(self) -> bool:
        return self.organizer == self.mailbox

    def view(self) -> ExchangeEvent:
        return ExchangeEvent(
            item_id=self.item_id,
            change_key=self.change_key,
            uid=self.uid,
            subject=self.subject,
            start=self.start.astimezone(UTC),
            end=self.end.astimezone(UTC),
            is_all_day=self.is_all_day,
            location=self.location,
            organizer=self.organizer,
            attendees=tuple(self.attendees),
            is_cancelled=self.is_cancelled,
            marker=self.marker,
            written=self.written,
            show_as=self.show_as,
            sensitivity=self.sensitivity,
            item_type=ItemType.SINGLE,
            last_modified=self.last_modified,
        )


@dataclass
class FakeSubscription:
    """A change-notification subscription as the fake server keeps it."""

    subscription_id: str
    mailbox: str
    notification_url: str
    lifecycle_url: str
    client_state: str = field(repr=False)
    expires_at: datetime
    reauthorized: int = 0

    def ref(self) -> SubscriptionRef:
        return SubscriptionRef(subscription_id=self.subscription_id, expires_at=self.expires_at)


def _window_of(bounds: str) -> ReadWindow:
    start, _, end = bounds.partition("|")
    return ReadWindow(start=datetime.fromisoformat(start), end=datetime.fromisoformat(end))


@dataclass
class _Fault:
    operation: str
    error: CalendarError
    mailbox: str | None
    remaining: int
    after_effect: bool

    def matches(self, operation: str, mailbox: str) -> bool:
        return (
            self.remaining > 0
            and self.operation in ("*", operation)
            and self.mailbox in (None, mailbox)
        )


class FakeExchange:
    """An Exchange organization in memory: mailboxes, calendar items, meetings, faults."""

    def __init__(self, mailboxes: Iterable[str] = (), *, windowed: bool = False) -> None:
        self.windowed = windowed
        self.subscriptions: dict[str, FakeSubscription] = {}
        self._calendars: dict[str, dict[str, _Item]] = {}
        self._changed_at: dict[str, int] = {}
        self._removed: dict[str, list[tuple[int, str]]] = {}
        self._created_at: dict[str, int] = {}
        self._transactions: dict[tuple[str, str], str] = {}
        self._faults: list[_Fault] = []
        self._sequence = 0
        self.requests: Counter[tuple[str, str]] = Counter()
        for address in mailboxes:
            self.add_mailbox(address)

    # --- mailboxes --------------------------------------------------------------------------
    def add_mailbox(self, address: str) -> str:
        address = address.lower()
        self._calendars.setdefault(address, {})
        return address

    def has_mailbox(self, address: str) -> bool:
        return address.lower() in self._calendars

    @property
    def mailboxes(self) -> list[str]:
        return sorted(self._calendars)

    def _calendar(self, mailbox: str) -> dict[str, _Item]:
        calendar = self._calendars.get(mailbox.lower())
        if calendar is None:
            raise MailboxNotFound(f"no mailbox {mailbox}", mailbox=mailbox)
        return calendar

    # --- ids ----------------------------------------------------------------------------------
    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _token(self, kind: str) -> str:
        # Standard base64 like EWS ids: "/" and "+" included on purpose, so code that puts ids
        # in table keys or URLs meets them in tests.
        digest = hashlib.sha256(f"{kind}:{self._next()}".encode()).digest()
        return base64.b64encode(digest[:27]).decode()

    def _new_item_id(self) -> str:
        item_id = "AAMkAD" + self._token("item")
        self._created_at[item_id] = self._sequence
        return item_id

    def _new_change_key(self) -> str:
        key = "DwAAAB" + self._token("change")[:24]
        # When each change key was handed out: what ``changes_since`` orders changes by.
        self._changed_at[key] = self._sequence
        return key

    def _remove(self, mailbox: str, item_id: str) -> _Item | None:
        """Take an item off a calendar, noting when (``changes_since`` reports it deleted)."""
        item = self._calendar(mailbox).pop(item_id, None)
        if item is not None:
            self._removed.setdefault(mailbox.lower(), []).append((self._next(), item_id))
        return item

    def _new_uid(self) -> str:
        return (
            "040000008200E00074C5B7101A82E008"
            + hashlib.sha256(f"uid:{self._next()}".encode()).hexdigest()[:32].upper()
        )

    def _touch(self, item: _Item) -> None:
        item.change_key = self._new_change_key()
        item.last_modified = datetime.now(UTC)

    # --- faults and counters --------------------------------------------------------------
    def fail_next(
        self,
        operation: str,
        error: CalendarError,
        *,
        mailbox: str | None = None,
        times: int = 1,
        after_effect: bool = False,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` ("*": any) on ``mailbox`` (None: any)
        raise ``error``. ``after_effect``: the call takes effect first and then raises, as when
        the answer to a successful write is lost (timeout, reset)."""
        if operation != "*" and operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; expected one of {OPERATIONS}")
        self._faults.append(
            _Fault(operation, error, mailbox.lower() if mailbox else None, times, after_effect)
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    @property
    def pending_faults(self) -> int:
        return sum(fault.remaining for fault in self._faults)

    def request_count(self, operation: str | None = None, mailbox: str | None = None) -> int:
        """Calls made through gateways, by operation and/or mailbox (None: all)."""
        return sum(
            n
            for (op, box), n in self.requests.items()
            if operation in (None, op) and (mailbox is None or box == mailbox.lower())
        )

    def perform(self, operation: str, mailbox: str, effect: Callable[[], T]) -> T:
        """Run one gateway call: count it, apply a pending fault, carry out the effect."""
        mailbox = mailbox.lower()
        self.requests[(operation, mailbox)] += 1
        fault = next((f for f in self._faults if f.matches(operation, mailbox)), None)
        if fault is not None:
            fault.remaining -= 1
            self._faults = [f for f in self._faults if f.remaining > 0]
            if not fault.after_effect:
                raise fault.error
        result = effect()
        if fault is not None:
            raise fault.error
        return result

    # --- reading ------------------------------------------------------------------------------
    def calendar(self, mailbox: str) -> list[ExchangeEvent]:
        """Everything on the mailbox's calendar as its owner sees it (cancelled copies too)."""
        items = sorted(self._calendar(mailbox).values(), key=lambda i: (i.start, i.created))
        return [item.view() for item in items]

    def body_of(self, mailbox: str, item_id: str) -> str:
        """The item's body text, as the owner reads it in Outlook (calbridge never does)."""
        item = self._calendar(mailbox).get(item_id)
        if item is None:
            raise EventNotFound(f"no item {item_id} in {mailbox}", mailbox=mailbox)
        return item.body_text

    def find_by_marker(self, mailbox: str, marker: str) -> list[ExchangeEvent]:
        items = [i for i in self._calendar(mailbox).values() if i.marker == marker]
        return live_first(item.view() for item in items)

    def get_event(self, mailbox: str, item_id: str) -> ExchangeEvent | None:
        item = self._calendar(mailbox).get(item_id)
        return item.view() if item else None

    def find_by_uid(self, mailbox: str, uid: str) -> ExchangeEvent | None:
        found = live_first(i.view() for i in self._calendar(mailbox).values() if i.uid == uid)
        return found[0] if found else None

    def list_events(self, mailbox: str, start: datetime, end: datetime) -> list[ExchangeEvent]:
        # Exchange's CalendarView edges: an item ending exactly at the window's start is in it,
        # one starting exactly at its end is not.
        items = [i for i in self._calendar(mailbox).values() if i.start < end and i.end >= start]
        return [item.view() for item in sorted(items, key=lambda i: (i.start, i.created))]

    def changes_since(
        self,
        mailbox: str,
        cursor: str | None,
        max_changes: int,
        window: ReadWindow | None = None,
    ) -> CalendarChanges:
        """What changed since ``cursor`` (the sequence number of the last change reported, and
        for a windowed reader its window), in the order it happened, at most ``max_changes`` of
        it."""
        calendar = self._calendar(mailbox)
        since = 0
        if cursor is not None:
            number, _, bounds = cursor.partition("|")
            if not number.isdigit() or int(number) > self._sequence:
                raise SyncStateInvalid(f"sync state {cursor!r} is not valid", mailbox=mailbox)
            since = int(number)
            window = _window_of(bounds) if bounds else None
        if self.windowed and window is None:
            raise ValueError("a windowed reader starts from a window")
        window = window if self.windowed else None
        entries: list[tuple[int, str, _Item | None]] = [
            (self._changed_at[item.change_key], item.item_id, item)
            for item in calendar.values()
            if self._changed_at[item.change_key] > since
            and (window is None or since > 0 or window.holds(item.start, item.end))
        ]
        # Like Exchange, an item made and deleted since the cursor is not reported at all.
        entries += [
            (at, item_id, None)
            for at, item_id in self._removed.get(mailbox.lower(), [])
            if at > since
            and item_id not in calendar
            and (window is None or since > 0)
            and self._created_at.get(item_id, 0) <= since
        ]
        entries.sort(key=lambda entry: entry[0])
        page = entries[:max_changes]
        complete = len(page) == len(entries)

        def shown(item: _Item | None) -> bool:
            return item is not None and (window is None or window.holds(item.start, item.end))

        position = str(self._sequence if complete else page[-1][0])
        if window is not None:
            position += f"|{window.start.isoformat()}|{window.end.isoformat()}"
        return CalendarChanges(
            changed=tuple(item.view() for _, _, item in page if item is not None and shown(item)),
            deleted=tuple(item_id for _, item_id, item in page if not shown(item)),
            cursor=position,
            complete=complete,
            windowed=window is not None,
        )

    # --- change notifications --------------------------------------------------------------
    def subscribe(
        self,
        mailbox: str,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> SubscriptionRef:
        self._calendar(mailbox)
        subscription = FakeSubscription(
            subscription_id=f"sub-{self._next()}",
            mailbox=mailbox.lower(),
            notification_url=notification_url,
            lifecycle_url=lifecycle_url,
            client_state=client_state,
            expires_at=expires_at,
        )
        self.subscriptions[subscription.subscription_id] = subscription
        return subscription.ref()

    def _subscription(self, subscription_id: str) -> FakeSubscription:
        found = self.subscriptions.get(subscription_id)
        if found is None:
            raise SubscriptionGone(f"no subscription {subscription_id}")
        return found

    def renew_subscription(self, subscription_id: str, expires_at: datetime) -> SubscriptionRef:
        subscription = self._subscription(subscription_id)
        subscription.expires_at = expires_at
        return subscription.ref()

    def reauthorize_subscription(self, subscription_id: str) -> None:
        self._subscription(subscription_id).reauthorized += 1

    def unsubscribe(self, subscription_id: str) -> None:
        self.subscriptions.pop(subscription_id, None)

    def drop_subscription(self, subscription_id: str) -> None:
        """The server removes a subscription of its own accord (Graph ``subscriptionRemoved``)."""
        self.subscriptions.pop(subscription_id, None)

    # --- writing (organizer side, what the port does) ----------------------------------------
    def create_event(self, mailbox: str, draft: EventDraft, transaction_id: str) -> EventRef:
        calendar = self._calendar(mailbox)
        mailbox = mailbox.lower()
        earlier = self._transactions.get((mailbox, transaction_id))
        if earlier is not None and earlier in calendar:
            return self._ref(calendar[earlier])
        item = _Item(
            item_id=self._new_item_id(),
            mailbox=mailbox,
            uid=self._new_uid(),
            change_key=self._new_change_key(),
            created=self._next(),
            subject=draft.subject,
            start=draft.start,
            end=draft.end,
            time_zone=draft.time_zone,
            organizer=mailbox,
        )
        self._apply_draft(item, draft, reset_responses=True)
        calendar[item.item_id] = item
        self._transactions[(mailbox, transaction_id)] = item.item_id
        self._send_to_attendees(item, previous=())
        return self._ref(item)

    def update_event(
        self, mailbox: str, item_id: str, draft: EventDraft, change_key: str | None
    ) -> EventRef:
        item = self._calendar(mailbox).get(item_id)
        if item is None:
            raise EventNotFound(f"no item {item_id} in {mailbox}", mailbox=mailbox)
        if change_key is not None and change_key != item.change_key:
            raise ChangeKeyConflict(f"item {item_id} in {mailbox} has changed", mailbox=mailbox)
        previous = tuple(a.address for a in item.attendees)
        moved = item.start != draft.start or item.end != draft.end
        self._apply_draft(item, draft, reset_responses=moved)
        self._touch(item)
        if item.is_organizers:
            self._send_to_attendees(item, previous=previous, moved=moved)
        return self._ref(item)

    def delete_permanently(self, mailbox: str, item_id: str) -> None:
        """Gone for good, nothing sent (this fake keeps no Deleted Items either way)."""
        self._remove(mailbox, item_id)

    def cancel_event(self, mailbox: str, item_id: str) -> bool:
        item = self._remove(mailbox, item_id)
        if item is None:
            return False
        if item.is_organizers:
            for attendee in item.attendees:
                self._cancel_copy(attendee.address, item.uid)
        return True

    @staticmethod
    def _ref(item: _Item) -> EventRef:
        return EventRef(item_id=item.item_id, change_key=item.change_key, uid=item.uid)

    def _apply_draft(self, item: _Item, draft: EventDraft, *, reset_responses: bool) -> None:
        responses = {a.address: a.response for a in item.attendees}
        item.subject = draft.subject
        item.start = draft.start
        item.end = draft.end
        item.time_zone = draft.time_zone
        item.location = draft.location
        item.body_text = draft.body_text
        item.show_as = draft.show_as
        item.marker = draft.marker
        item.written = draft.written
        item.attendees = [
            Attendee(
                address=address,
                response=ResponseType.NONE
                if reset_responses
                else responses.get(address, ResponseType.NONE),
            )
            for address in draft.invitees(item.mailbox)
        ]

    def _copy_of(self, mailbox: str, uid: str) -> _Item | None:
        calendar = self._calendars.get(mailbox)
        if calendar is None:
            return None
        return next((i for i in calendar.values() if i.uid == uid and not i.is_organizers), None)

    def _send_to_attendees(
        self, item: _Item, *, previous: Iterable[str], moved: bool = False
    ) -> None:
        """Deliver invitations/updates to current attendees and cancellations to removed ones."""
        current = [a.address for a in item.attendees]
        for address in current:
            calendar = self._calendars.get(address)
            if calendar is None:
                continue  # not a mailbox of this organization: only recorded on the meeting
            copy = self._copy_of(address, item.uid)
            if copy is None:
                copy = _Item(
                    item_id=self._new_item_id(),
                    mailbox=address,
                    uid=item.uid,
                    change_key=self._new_change_key(),
                    created=self._next(),
                    subject=item.subject,
                    start=item.start,
                    end=item.end,
                    time_zone=item.time_zone,
                    organizer=item.mailbox,
                    show_as=ShowAs.TENTATIVE,
                )
                calendar[copy.item_id] = copy
            elif copy.is_cancelled or moved:
                copy.show_as = ShowAs.TENTATIVE  # a new request: unanswered again
            copy.is_cancelled = False
            copy.subject = item.subject
            copy.start = item.start
            copy.end = item.end
            copy.time_zone = item.time_zone
            copy.location = item.location
            copy.body_text = item.body_text
            copy.attendees = list(item.attendees)
            self._touch(copy)
        for address in previous:
            if address not in current:
                self._cancel_copy(address, item.uid)

    def _cancel_copy(self, address: str, uid: str) -> None:
        copy = self._copy_of(address, uid)
        if copy is None or copy.is_cancelled:
            return
        copy.is_cancelled = True
        copy.show_as = ShowAs.FREE
        copy.subject = CANCELLED_PREFIX + copy.subject
        self._touch(copy)

    # --- what staff do in Outlook --------------------------------------------------------------
    def add_personal_event(
        self,
        mailbox: str,
        subject: str,
        start: datetime,
        end: datetime,
        *,
        marker: str | None = None,
        sensitivity: Sensitivity = Sensitivity.NORMAL,
        show_as: ShowAs = ShowAs.BUSY,
    ) -> ExchangeEvent:
        """The owner puts an event of their own on the calendar (no attendees)."""
        calendar = self._calendar(mailbox)
        item = _Item(
            item_id=self._new_item_id(),
            mailbox=mailbox.lower(),
            uid=self._new_uid(),
            change_key=self._new_change_key(),
            created=self._next(),
            subject=subject,
            start=start,
            end=end,
            time_zone="UTC",
            organizer=mailbox.lower(),
            marker=marker,
            sensitivity=sensitivity,
            show_as=show_as,
        )
        calendar[item.item_id] = item
        return item.view()

    def move_as_organizer(self, mailbox: str, item_id: str, start: datetime, end: datetime) -> None:
        """The organizer drags the meeting to another time in Outlook (updates are sent)."""
        item = self._calendar(mailbox).get(item_id)
        if item is None:
            raise EventNotFound(f"no item {item_id} in {mailbox}", mailbox=mailbox)
        item.start, item.end = start, end
        item.attendees = [
            a.model_copy(update={"response": ResponseType.NONE}) for a in item.attendees
        ]
        self._touch(item)
        if item.is_organizers:
            previous = [a.address for a in item.attendees]
            self._send_to_attendees(item, previous=previous, moved=True)

    def delete_as_owner(self, mailbox: str, item_id: str) -> None:
        """The owner deletes the item in Outlook: an organizer's meeting is cancelled for
        everyone; an attendee's copy just goes (no response sent)."""
        calendar = self._calendar(mailbox)
        item = calendar.get(item_id)
        if item is None:
            raise EventNotFound(f"no item {item_id} in {mailbox}", mailbox=mailbox)
        if item.is_organizers:
            self.cancel_event(mailbox, item_id)
        else:
            self._remove(mailbox, item_id)

    def respond(self, mailbox: str, item_id: str, response: ResponseType) -> None:
        """An attendee answers the invitation (and sends the answer to the organizer). A decline
        takes the copy off their calendar."""
        calendar = self._calendar(mailbox)
        copy = calendar.get(item_id)
        if copy is None:
            raise EventNotFound(f"no item {item_id} in {mailbox}", mailbox=mailbox)
        if copy.is_organizers:
            raise ValueError("the organizer does not respond to their own meeting")
        if response is ResponseType.DECLINED:
            self._remove(mailbox, item_id)
        else:
            copy.show_as = ShowAs.BUSY if response is ResponseType.ACCEPTED else ShowAs.TENTATIVE
            self._touch(copy)
        organizer_calendar = self._calendars.get(copy.organizer, {})
        original = next(
            (i for i in organizer_calendar.values() if i.uid == copy.uid and i.is_organizers),
            None,
        )
        if original is not None:
            original.attendees = [
                a.model_copy(update={"response": response}) if a.address == mailbox.lower() else a
                for a in original.attendees
            ]
            self._touch(original)


class FakeCalendarGateway:
    """One connection to a ``FakeExchange``: the ``CalendarGateway`` port, in memory.

    ``reachable``: the mailboxes this connection may open (None: all) — others raise
    ``AccessDenied``, as a service account without impersonation rights would see.
    """

    def __init__(
        self,
        exchange: FakeExchange,
        *,
        connection_id: str = "fake",
        reachable: Iterable[str] | None = None,
    ) -> None:
        self.exchange = exchange
        self.connection_id = connection_id
        self._reachable = None if reachable is None else {a.lower() for a in reachable}

    def _perform(self, operation: str, mailbox: str, effect: Callable[[], T]) -> T:
        if self._reachable is not None and mailbox.lower() not in self._reachable:
            self.exchange.requests[(operation, mailbox.lower())] += 1
            raise AccessDenied(
                f"connection {self.connection_id} may not open {mailbox}", mailbox=mailbox
            )
        return self.exchange.perform(operation, mailbox, effect)

    async def find_by_marker(self, mailbox: str, marker: str) -> list[ExchangeEvent]:
        return self._perform(
            "find_by_marker", mailbox, lambda: self.exchange.find_by_marker(mailbox, marker)
        )

    async def get_event(self, mailbox: str, item_id: str) -> ExchangeEvent | None:
        return self._perform(
            "get_event", mailbox, lambda: self.exchange.get_event(mailbox, item_id)
        )

    async def find_by_uid(self, mailbox: str, uid: str) -> ExchangeEvent | None:
        return self._perform(
            "find_by_uid", mailbox, lambda: self.exchange.find_by_uid(mailbox, uid)
        )

    async def create_event(self, mailbox: str, draft: EventDraft, transaction_id: str) -> EventRef:
        return self._perform(
            "create_event",
            mailbox,
            lambda: self.exchange.create_event(mailbox, draft, transaction_id),
        )

    async def update_event(
        self, mailbox: str, item_id: str, draft: EventDraft, change_key: str | None
    ) -> EventRef:
        return self._perform(
            "update_event",
            mailbox,
            lambda: self.exchange.update_event(mailbox, item_id, draft, change_key),
        )

    async def cancel_event(self, mailbox: str, item_id: str) -> bool:
        return self._perform(
            "cancel_event", mailbox, lambda: self.exchange.cancel_event(mailbox, item_id)
        )

    async def delete_permanently(self, mailbox: str, item_id: str) -> None:
        self._perform(
            "delete_permanently",
            mailbox,
            lambda: self.exchange.delete_permanently(mailbox, item_id),
        )

    async def changes_since(
        self,
        mailbox: str,
        cursor: str | None,
        *,
        max_changes: int = 512,
        window: ReadWindow | None = None,
    ) -> CalendarChanges:
        return self._perform(
            "changes_since",
            mailbox,
            lambda: self.exchange.changes_since(mailbox, cursor, max_changes, window),
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
        return self._perform(
            "subscribe",
            mailbox,
            lambda: self.exchange.subscribe(
                mailbox, notification_url, lifecycle_url, client_state, expires_at
            ),
        )

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime
    ) -> SubscriptionRef:
        return self._perform(
            "renew_subscription",
            "*",
            lambda: self.exchange.renew_subscription(subscription_id, expires_at),
        )

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        self._perform(
            "reauthorize_subscription",
            "*",
            lambda: self.exchange.reauthorize_subscription(subscription_id),
        )

    async def unsubscribe(self, subscription_id: str) -> None:
        self._perform("unsubscribe", "*", lambda: self.exchange.unsubscribe(subscription_id))

    async def list_events(
        self, mailbox: str, start: datetime, end: datetime
    ) -> list[ExchangeEvent]:
        return self._perform(
            "list_events", mailbox, lambda: self.exchange.list_events(mailbox, start, end)
        )
