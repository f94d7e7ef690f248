"""The calendar port: what calbridge needs from an Exchange connection, and nothing more.

``CalendarGateway`` is implemented once per protocol (EWS with exchangelib, Graph with
msgraph-sdk) and by the in-memory ``FakeCalendarGateway``; one gateway serves one connection and
takes the mailbox (an SMTP address) on every call. Its models are plain pydantic models — no SDK
type crosses this line — and one contract test suite (``tests/contract``) holds every
implementation to the same behaviour.

Meeting semantics are Exchange's, not ours: creating an event with attendees sends invitations
(each attendee's calendar gets its own copy with the same iCalendar UID); updating it sends
updates (added attendees are invited, removed ones get cancellations); cancelling a meeting sends
cancellations. Calbridge never reads event bodies, so ``ExchangeEvent`` has no body.

Errors are typed, one class per condition, raised the same way by every adapter. What the apply
worker does with each (``shared.apply.service``):

==========================  ========================================================
error                       the worker
==========================  ========================================================
``RetryAfter``              re-queues the message after ``retry_after_seconds``
                            (EWS ErrorServerBusy BackOffMilliseconds, Graph 429
                            Retry-After) and counts the throttled try — never sleeps
``ChangeKeyConflict``,      looks again at once (``look_again``): the item changed
``EventNotFound``           since the change key the mapping holds, or was deleted; the
                            mapping is marked in doubt, so the next pass looks it up
``AccessDenied``,           records the problem, marks that mailbox ``access_denied``
``MailboxNotFound``         with the reason (``mailbox_refusal``) and re-queues the
                            change for much later: one mailbox, not the connection
``AuthenticationFailed``    marks the connection ``auth_failed`` and parks the change
                            until the connection recovers (``shared.connections``)
anything else               fails the message: the host redelivers it after its
                            visibility timeout and, after ``maxDequeueCount`` tries,
                            moves it to the poison queue with the reason in
                            ``DeadLetters``.
==========================  ========================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, ClassVar, Protocol, runtime_checkable

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.exchange.marker_property import written_stamp
from shared.models import EmailAddress, TimeZoneName


class ResponseType(StrEnum):
    """An attendee's answer to a meeting request, as the organizer's item records it."""

    NONE = "none"
    ACCEPTED = "accepted"
    TENTATIVE = "tentative"
    DECLINED = "declined"


class ShowAs(StrEnum):
    """Free/busy status of an event (EWS LegacyFreeBusyStatus, Graph showAs)."""

    FREE = "free"
    TENTATIVE = "tentative"
    BUSY = "busy"
    OOF = "oof"
    WORKING_ELSEWHERE = "working_elsewhere"
    UNKNOWN = "unknown"


class Sensitivity(StrEnum):
    NORMAL = "normal"
    PERSONAL = "personal"
    PRIVATE = "private"
    CONFIDENTIAL = "confidential"


class ItemType(StrEnum):
    """EWS CalendarItemType / Graph event type, in neutral words."""

    SINGLE = "single"
    OCCURRENCE = "occurrence"
    EXCEPTION = "exception"
    SERIES_MASTER = "series_master"


class RecurrencePattern(StrEnum):
    """How a series repeats (Graph's recurrencePatternType names; EWS's *Recurrence elements)."""

    DAILY = "daily"
    WEEKLY = "weekly"
    ABSOLUTE_MONTHLY = "absoluteMonthly"
    RELATIVE_MONTHLY = "relativeMonthly"
    ABSOLUTE_YEARLY = "absoluteYearly"
    RELATIVE_YEARLY = "relativeYearly"


WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
WEEK_INDEXES: tuple[str, ...] = ("first", "second", "third", "fourth", "last")


def _lower(value: str) -> str:
    return value.lower()


def _once_each(addresses: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addresses))


# Addresses as Exchange reports them: not validated as email (Exchange may report an X500 or an
# external address), only normalised so comparisons are case-insensitive like SMTP's.
ReportedAddress = Annotated[str, AfterValidator(_lower)]


class PortModel(BaseModel):
    """Base of the port's models: immutable, unknown fields refused; built on first use
    (``defer_build``, as ``shared.models.CamelModel``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)


class EventDraft(PortModel):
    """What calbridge wants an event to say. Built by ``shared.engine.content``.

    ``body_text`` carries client details: it is left out of ``repr`` so a logged draft or action
    never leaks it.
    """

    subject: Annotated[str, Field(min_length=1, max_length=255)]
    start: AwareDatetime
    end: AwareDatetime
    time_zone: TimeZoneName
    location: str | None = None
    body_text: str = Field(default="", repr=False)
    required_attendees: Annotated[tuple[EmailAddress, ...], AfterValidator(_once_each)] = ()
    show_as: ShowAs = ShowAs.BUSY
    marker: str

    @model_validator(mode="after")
    def _ends_after_start(self) -> EventDraft:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    @property
    def written(self) -> str:
        """The ``CalbridgeWritten`` value every write of this draft sets on the item (its
        times), in the same request as the rest."""
        return written_stamp(self.start, self.end)

    def invitees(self, mailbox: str) -> tuple[str, ...]:
        """The attendees to invite when the event is written to ``mailbox``: the draft's
        required attendees (lower case, once each, in draft order), never the mailbox's owner,
        who is the organizer. Every implementation of the port writes exactly these."""
        owner = mailbox.strip().lower()
        return tuple(address for address in self.required_attendees if address != owner)


class Recurrence(PortModel):
    """A series' rule as its master holds it (EWS ``Recurrence``, Graph
    ``patternedRecurrence``). Kept as read, never interpreted: occurrences are read expanded by
    Exchange (CalendarView), which alone knows the exceptions.

    ``days_of_week``: lower-case English day names (EWS's "Weekday" is Monday to Friday, as
    Graph gives it); ``index``: first … fourth, last; a range with neither ``end_date`` nor
    ``occurrences`` has no end.
    """

    pattern: RecurrencePattern
    interval: Annotated[int, Field(ge=1)] = 1
    days_of_week: tuple[str, ...] = ()
    day_of_month: Annotated[int, Field(ge=1, le=31)] | None = None
    month: Annotated[int, Field(ge=1, le=12)] | None = None
    index: str | None = None
    first_day_of_week: str | None = None
    start_date: date
    end_date: date | None = None
    occurrences: Annotated[int, Field(ge=1)] | None = None


class Attendee(PortModel):
    address: ReportedAddress
    response: ResponseType = ResponseType.NONE


class ExchangeEvent(PortModel):
    """One calendar item as a mailbox's owner sees it (organizer's item or an attendee's copy).

    No body: calbridge never reads it. Subject and location stay out of ``repr`` because a
    private event's details must not reach a log line.
    """

    item_id: str
    change_key: str | None = None
    uid: str | None = None
    subject: str = Field(default="", repr=False)
    start: AwareDatetime
    end: AwareDatetime
    is_all_day: bool = False
    location: str | None = Field(default=None, repr=False)
    organizer: ReportedAddress | None = None
    attendees: tuple[Attendee, ...] = ()
    is_cancelled: bool = False
    marker: str | None = None
    # The times calbridge's last write gave the item (``EventDraft.written``), as read back.
    written: str | None = None
    show_as: ShowAs = ShowAs.BUSY
    sensitivity: Sensitivity = Sensitivity.NORMAL
    item_type: ItemType = ItemType.SINGLE
    last_modified: AwareDatetime | None = None
    # A series master's rule (None for anything else, and where a read cannot return it:
    # EWS FindItem never does).
    recurrence: Recurrence | None = None

    @property
    def attendee_addresses(self) -> tuple[str, ...]:
        return tuple(attendee.address for attendee in self.attendees)

    @property
    def shows_written(self) -> bool:
        """The item is at the times calbridge's last write gave it (an Outlook move since would
        show other times; the write's stamp stays as it was)."""
        return self.written is not None and self.written == written_stamp(self.start, self.end)

    @property
    def is_recurring(self) -> bool:
        """A series master, an occurrence or an exception (EWS IsRecurring)."""
        return self.item_type is not ItemType.SINGLE

    @property
    def is_live(self) -> bool:
        """Still on the calendar as a meeting that takes place."""
        return not self.is_cancelled


class ReadWindow(PortModel):
    """The span of time a reader that tracks a calendar view (Graph's calendarView delta) is
    asked to cover when it starts reading afresh (a ``None`` cursor)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ends_after_start(self) -> ReadWindow:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def holds(self, start: datetime, end: datetime) -> bool:
        """Whether an item from ``start`` to ``end`` lies (at least partly) in the window."""
        return start < self.end and end > self.start


class CalendarChanges(PortModel):
    """One page of what changed in a mailbox's calendar since a cursor (``changes_since``).

    ``changed``: items created or updated, read with the same fields as every other read, never
    the body. A reader of the whole calendar folder (EWS SyncFolderItems) reports single events
    and series masters (occurrences and exceptions are read by expanding their series over a
    window with ``list_events``); a reader of a calendar view (Graph calendarView delta,
    ``windowed``) reports single events, occurrences and exceptions inside its window, each
    under its own id, and never a series master. ``deleted``: ids of items gone from the
    calendar — for a windowed reader, also of items that left its window (an item moved past
    it). ``cursor``: where the next page starts; store it only once every effect of this page
    is durable. ``complete``: no more changes after this page right now.
    """

    changed: tuple[ExchangeEvent, ...] = ()
    deleted: tuple[str, ...] = ()
    cursor: str
    complete: bool
    windowed: bool = False


class EventRef(PortModel):
    """What a write returns: the organizer's item as the connection names it now."""

    item_id: str
    change_key: str | None = None
    uid: str | None = None


def live_first(events: Iterable[ExchangeEvent]) -> list[ExchangeEvent]:
    """The order of ``find_by_marker`` and ``find_by_uid`` answers, the same for every
    implementation: live items before cancelled ones, then by start, then by item id. Which of
    two duplicates the engine keeps (the first) therefore never depends on the adapter."""
    return sorted(events, key=lambda event: (event.is_cancelled, event.start, event.item_id))


# --- errors -------------------------------------------------------------------------------------


class CalendarError(Exception):
    """A failure of a calendar call. Messages name mailboxes and ids, never event content."""

    # The calendar changed between our read and our write: observe again and re-decide at once.
    look_again: ClassVar[bool] = False

    def __init__(self, message: str, *, mailbox: str | None = None) -> None:
        super().__init__(message)
        self.mailbox = mailbox

    @property
    def retry_after_seconds(self) -> float | None:
        """How long to wait before retrying, when the server said so."""
        return None


class RetryAfter(CalendarError):
    """Exchange is throttling: EWS ErrorServerBusy (BackOffMilliseconds), Graph 429 Retry-After."""

    def __init__(self, seconds: float, *, mailbox: str | None = None, detail: str = "") -> None:
        text = f"throttled, retry after {seconds:g} s" + (f" ({detail})" if detail else "")
        super().__init__(text, mailbox=mailbox)
        self.seconds = seconds

    @property
    def retry_after_seconds(self) -> float | None:
        return self.seconds


class ExchangeUnavailable(CalendarError):
    """The server failed or could not be reached (5xx, connection reset, timeout)."""


class ChangeKeyConflict(CalendarError):
    """The item changed since the change key we hold was read (EWS ErrorIrresolvableConflict,
    Graph 409/412)."""

    look_again = True


class EventNotFound(CalendarError):
    """The item to change no longer exists (EWS ErrorItemNotFound, Graph 404)."""

    look_again = True


class MailboxNotFound(CalendarError):
    """No such mailbox on this connection (EWS ErrorNonExistentMailbox, Graph 404 on the user)."""


class AccessDenied(CalendarError):
    """The connection may not open this mailbox's calendar (EWS ErrorAccessDenied /
    ErrorImpersonateUserDenied, Graph 403)."""


def mailbox_refusal(error: CalendarError) -> str | None:
    """Why Exchange will not let the connection at a mailbox, for that mailbox's health (an
    error of one mailbox, not of the connection); None for any other error."""
    if isinstance(error, AccessDenied):
        return (
            "the connection's service account may not open this mailbox's calendar (grant it "
            f"impersonation or delegate access): {error}"
        )
    if isinstance(error, MailboxNotFound):
        return f"Exchange has no such mailbox (check the address or the connection): {error}"
    return None


class SyncStateInvalid(CalendarError):
    """The stored cursor is no longer accepted (EWS ErrorInvalidSyncStateData, Graph 410 /
    syncStateNotFound): read the mailbox again from the beginning."""


class AuthenticationFailed(CalendarError):
    """The connection's credentials were refused (HTTP 401, token endpoint refusal)."""


class SubscriptionGone(CalendarError):
    """The change-notification subscription no longer exists on the server (Graph 404)."""


# --- the port -----------------------------------------------------------------------------------


@runtime_checkable
class CalendarGateway(Protocol):
    """One Exchange connection's calendars. ``mailbox`` is an SMTP address on every call."""

    async def find_by_marker(self, mailbox: str, marker: str) -> list[ExchangeEvent]:
        """Every event in the mailbox's calendar carrying this marker (normally none or one: the
        organizer's item calbridge made). Live items first. Attendee copies never match: Exchange
        does not copy named properties to attendees. A list, not one item, so that a duplicate
        left by two racing creates is seen and can be cancelled."""
        ...

    async def get_event(self, mailbox: str, item_id: str) -> ExchangeEvent | None:
        """The item, or None when it was deleted or never existed."""
        ...

    async def find_by_uid(self, mailbox: str, uid: str) -> ExchangeEvent | None:
        """The mailbox's item with this iCalendar UID (an attendee's copy), live first."""
        ...

    async def create_event(self, mailbox: str, draft: EventDraft, transaction_id: str) -> EventRef:
        """Create the event in the mailbox (its owner is the organizer) and send invitations to
        the draft's attendees. Where the protocol has an idempotency key (Graph
        ``transactionId``, the fake), a create repeated with the same ``transaction_id`` returns
        the event made the first time instead of making a second one. EWS has none: a caller
        that may repeat a create (its answer lost) looks for the marker first, as the engine
        does for every pending create."""
        ...

    async def update_event(
        self, mailbox: str, item_id: str, draft: EventDraft, change_key: str | None
    ) -> EventRef:
        """Make the item say what the draft says and send updates to all attendees (added ones are
        invited, removed ones get cancellations), in one request addressed by ``item_id``.
        ``change_key`` None overwrites; a stale one raises ``ChangeKeyConflict`` (nothing
        changes); a missing item raises ``EventNotFound``. The returned ``uid`` may be None when
        the adapter cannot know it without another request (the item's UID never changes)."""
        ...

    async def cancel_event(self, mailbox: str, item_id: str) -> bool:
        """A meeting with attendees: cancel it, sending cancellations (copies are cancelled, the
        organizer's item goes). Without attendees: delete it. Already gone: no error, and False
        (nothing was sent: an organizer who deleted it in Outlook may have sent nothing either)."""
        ...

    async def list_events(
        self, mailbox: str, start: datetime, end: datetime
    ) -> list[ExchangeEvent]:
        """The calendar view between start and end as the owner sees it (occurrences expanded,
        cancelled items still on the calendar included), sorted by start."""
        ...


@runtime_checkable
class CalendarReader(Protocol):
    """The read side of one connection's calendars: what changed, page by page. Implemented by
    the EWS adapter (SyncFolderItems), the Graph adapter (calendarView delta) and the fake."""

    async def changes_since(
        self,
        mailbox: str,
        cursor: str | None,
        *,
        max_changes: int = 512,
        window: ReadWindow | None = None,
    ) -> CalendarChanges:
        """The next page of changes after ``cursor`` (None: every item, as changes from an empty
        calendar), at most ``max_changes`` of them. ``window``: the span a windowed reader
        covers from a ``None`` cursor on (a cursor carries its own); readers of the whole
        calendar ignore it. Raises ``SyncStateInvalid`` when the cursor is no longer
        accepted."""
        ...


@runtime_checkable
class ChosenUids(Protocol):
    """The protocol lets calbridge choose a new event's iCalendar UID (EWS sets it on
    CreateItem; Graph assigns its own): a create repeated with the same ``transaction_id``
    carries the UID its first attempt did. So the meeting a create may have made before its
    answer was lost (or its worker died) can be known by its UID, in its attendees' copies,
    even once the organizer has removed it. Implemented by the EWS adapter."""

    def planned_uid(self, mailbox: str, transaction_id: str) -> str:
        """The UID ``create_event(mailbox, draft, transaction_id)`` gives the event."""
        ...


@runtime_checkable
class PermanentDeletion(Protocol):
    """Deleting an item for good rather than to Deleted Items (EWS DeleteItem ``HardDelete``,
    Graph ``permanentDelete``): the connection test writes a test event and must leave nothing
    behind, not even in Deleted Items. Implemented by both adapters and the fake."""

    async def delete_permanently(self, mailbox: str, item_id: str) -> None:
        """Delete the item without sending anything and without keeping it in Deleted Items.
        Already gone: no error."""
        ...


class SubscriptionRef(PortModel):
    """A change-notification subscription on one mailbox's calendar, as the server keeps it."""

    subscription_id: Annotated[str, Field(min_length=1, max_length=256)]
    expires_at: AwareDatetime


@runtime_checkable
class ChangeSubscriptions(Protocol):
    """Push: the server tells calbridge when a mailbox's calendar changes (Graph change
    notifications on ``users/{mailbox}/events``). Implemented by the Graph adapter and the fake.

    A notification names the subscription and carries its ``client_state`` back, so the
    receiver can tell a real one from a forgery; it says only that something changed, and the
    reader (``changes_since``) finds out what."""

    async def subscribe(
        self,
        mailbox: str,
        *,
        notification_url: str,
        lifecycle_url: str,
        client_state: str,
        expires_at: datetime,
    ) -> SubscriptionRef:
        """A new subscription to the mailbox's events (created, updated, deleted). The server
        first checks that both URLs answer its validation request."""
        ...

    async def renew_subscription(
        self, subscription_id: str, expires_at: datetime
    ) -> SubscriptionRef:
        """Move the subscription's expiry; ``SubscriptionGone`` when the server no longer has
        it."""
        ...

    async def reauthorize_subscription(self, subscription_id: str) -> None:
        """Answer the server's ``reauthorizationRequired``: notifications go on."""
        ...

    async def unsubscribe(self, subscription_id: str) -> None:
        """Delete the subscription; one the server no longer has is no error."""
        ...


async def cancel_copy(gateway: CalendarGateway, mailbox: str, uid: str) -> None:
    """Make sure an attendee's copy of the meeting ``uid`` is cancelled in ``mailbox``: for an
    organizer's meeting that went without sending cancellations (deleted in Outlook so), whose
    copies Exchange would otherwise leave on the attendees' calendars."""
    copy = await gateway.find_by_uid(mailbox, uid)
    if copy is not None and copy.is_live:
        await gateway.cancel_event(mailbox, copy.item_id)
