"""The simulated Exchange organization: mailboxes, calendar items, meeting semantics, change
tracking, faults and counters — independent of any protocol.

EWS (`sim/ews/`) and Graph (`sim/graph/`) are two views of this one store: each turns its wire
format into calls here and formats the results. Everything that Exchange decides on its own
(invitations landing in attendees' calendars, responses reaching the organizer, cancellations,
recurrence expansion, change keys, sync states) is decided here, once.

Thread safety: every public method takes ``self.lock`` (an RLock); the HTTP server is threaded.
Times are aware datetimes in UTC inside the store; protocols convert at the edge.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum

# --- vocabulary (values are the EWS enumeration spellings; Graph maps them at its edge) ---------


class ItemType(StrEnum):
    SINGLE = "Single"
    OCCURRENCE = "Occurrence"
    EXCEPTION = "Exception"
    RECURRING_MASTER = "RecurringMaster"


class ResponseType(StrEnum):
    UNKNOWN = "Unknown"
    ORGANIZER = "Organizer"
    TENTATIVE = "Tentative"
    ACCEPT = "Accept"
    DECLINE = "Decline"
    NO_RESPONSE = "NoResponseReceived"


class Sensitivity(StrEnum):
    NORMAL = "Normal"
    PERSONAL = "Personal"
    PRIVATE = "Private"
    CONFIDENTIAL = "Confidential"


class FreeBusy(StrEnum):
    FREE = "Free"
    TENTATIVE = "Tentative"
    BUSY = "Busy"
    OOF = "OOF"
    WORKING_ELSEWHERE = "WorkingElsewhere"
    NO_DATA = "NoData"


class SendMode(StrEnum):
    """Who hears about a change (EWS SendMeetingInvitations[OrCancellations] values)."""

    NONE = "SendToNone"
    ONLY_TO_ALL = "SendOnlyToAll"
    ONLY_TO_CHANGED = "SendOnlyToChanged"
    ALL_AND_SAVE_COPY = "SendToAllAndSaveCopy"
    CHANGED_AND_SAVE_COPY = "SendToChangedAndSaveCopy"


class ChangeKind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


# --- data ----------------------------------------------------------------------------------------


@dataclass
class Mailbox:
    address: str  # lower-case SMTP address
    name: str
    time_zone: str  # IANA
    password: str | None = None


@dataclass
class Attendee:
    address: str
    name: str = ""
    response: ResponseType = ResponseType.UNKNOWN
    response_time: datetime | None = None


@dataclass(frozen=True)
class ExtendedPropertyKey:
    """A named MAPI property: the same key whether set through EWS (PropertySetId + PropertyName
    + PropertyType) or Graph (``"String {guid} Name X"``). ``property_set_id`` is lower-case."""

    property_set_id: str
    name: str
    type: str = "String"


@dataclass
class Recurrence:
    """A recurrence pattern and range, in the series' time zone.

    pattern: "daily" | "weekly" | "absoluteMonthly" | "relativeMonthly" | "absoluteYearly" |
    "relativeYearly"; interval; days_of_week (["Monday", ...]) for weekly/relative patterns;
    day_of_month; month (1-12); week_index ("First".."Last") for relative patterns;
    first_day_of_week. Range: start_date; end_date (end-date range) or count (numbered range) or
    neither (no end).
    """

    pattern: str
    interval: int = 1
    days_of_week: list[str] = field(default_factory=list)
    day_of_month: int | None = None
    month: int | None = None
    week_index: str | None = None
    first_day_of_week: str = "Sunday"
    start_date: date | None = None
    end_date: date | None = None
    count: int | None = None


@dataclass
class CalendarItem:
    """One item in one mailbox's calendar (each attendee's copy is its own CalendarItem)."""

    id: str  # internal, opaque; protocols derive their own id formats from it
    mailbox: str
    subject: str = ""
    body: str = ""
    body_type: str = "Text"  # "Text" | "HTML"
    start: datetime | None = None  # UTC
    end: datetime | None = None  # UTC
    time_zone: str = "UTC"  # IANA zone the item was created in (start and end)
    is_all_day: bool = False
    location: str = ""
    sensitivity: Sensitivity = Sensitivity.NORMAL
    free_busy: FreeBusy = FreeBusy.BUSY
    organizer: Attendee | None = None
    required_attendees: list[Attendee] = field(default_factory=list)
    optional_attendees: list[Attendee] = field(default_factory=list)
    uid: str = ""
    change_key: str = ""
    created: datetime | None = None
    last_modified: datetime | None = None
    is_cancelled: bool = False
    item_type: ItemType = ItemType.SINGLE
    recurrence: Recurrence | None = None
    # On a master: original start (UTC) → exception item; original starts of deleted occurrences.
    modified_occurrences: dict[datetime, CalendarItem] = field(default_factory=dict)
    deleted_occurrences: list[datetime] = field(default_factory=list)
    # On an exception/occurrence: its master's id and its original start (UTC).
    master_id: str | None = None
    original_start: datetime | None = None
    extended_properties: dict[ExtendedPropertyKey, str] = field(default_factory=dict)
    is_meeting: bool = False  # has been sent to attendees
    meeting_request_was_sent: bool = False
    response_type: ResponseType = ResponseType.ORGANIZER  # this mailbox's own response
    deleted: bool = False  # soft-deleted (kept so sync can report the delete)

    @property
    def is_organizer(self) -> bool:
        return self.organizer is None or self.organizer.address == self.mailbox


@dataclass(frozen=True)
class Change:
    seq: int
    item_id: str
    kind: ChangeKind


@dataclass
class Fault:
    """An injected fault. ``operation`` is a protocol operation name ("SyncFolderItems",
    "CreateItem", "graph:GET events", "*" for any); ``mailbox`` an address or "*".

    kind: "server_busy" (EWS ErrorServerBusy, back_off_ms), "throttle" (Graph 429, retry_after),
    "http_500", "http_503", "reset" (drop the connection), "slow" (delay_s then answer normally),
    "unauthorized" (401), "invalid_sync_state", "expired_delta", "drop_notifications".
    ``remaining``: how many requests it still hits (None: until cleared).
    """

    kind: str
    operation: str = "*"
    mailbox: str = "*"
    remaining: int | None = 1
    back_off_ms: int = 1000
    retry_after: int = 1
    delay_s: float = 0.0


class SimError(Exception):
    """A store-level refusal; ``code`` is the EWS ResponseCode, protocols map it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


ChangeListener = Callable[[str, Change], None]


class ExchangeStore:
    """The organization's mailboxes and everything in them.

    THE CONTRACT: EWS (sim/ews/) and Graph (sim/graph/) rely on exactly these methods and
    semantics. Bodies marked ``...`` are to be implemented; signatures may gain optional keyword
    arguments but must not otherwise change.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.items: dict[str, CalendarItem] = {}
        self.changes: dict[str, list[Change]] = {}  # mailbox → its calendar's change log
        self.faults: list[Fault] = []
        self.counters: Counter[tuple[str, str]] = Counter()  # (operation, mailbox) → requests
        self.listeners: list[ChangeListener] = []

    # --- mailboxes ------------------------------------------------------------------------
    def add_mailbox(self, mailbox: Mailbox) -> None:
        """Register a mailbox (address stored lower-case) with an empty calendar."""
        raise NotImplementedError

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox, case-insensitively; SimError("ErrorNonExistentMailbox") otherwise."""
        raise NotImplementedError

    # --- reading ----------------------------------------------------------------------------
    def get_item(self, item_id: str) -> CalendarItem:
        """An item by internal id, including occurrence ids (see ``occurrence_id``), which resolve
        to a virtual Occurrence item (or the stored Exception). Deleted items and deleted
        occurrences: SimError("ErrorItemNotFound")."""
        raise NotImplementedError

    def calendar_items(self, mailbox: str) -> list[CalendarItem]:
        """Live singles and recurring masters (not occurrences/exceptions) of a mailbox."""
        raise NotImplementedError

    def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[CalendarItem]:
        """What Outlook shows between start and end: singles, occurrences and exceptions that
        overlap the window (recurring masters expanded; deleted occurrences skipped; cancelled
        items included with is_cancelled). Sorted by start."""
        raise NotImplementedError

    @staticmethod
    def occurrence_id(master_id: str, original_start: datetime) -> str:
        """The internal id of one occurrence of a series (stable, derivable, parseable)."""
        raise NotImplementedError

    def occurrence_by_index(self, master_id: str, index: int) -> CalendarItem:
        """The index-th (1-based) occurrence of a series (EWS OccurrenceItemId)."""
        raise NotImplementedError

    def find_by_extended_property(
        self, mailbox: str, key: ExtendedPropertyKey, value: str | None = None
    ) -> list[CalendarItem]:
        """Live items of the mailbox that carry the property (with this value if given)."""
        raise NotImplementedError

    def find_by_uid(self, mailbox: str, uid: str) -> list[CalendarItem]:
        """Live items of the mailbox with this iCalendar UID (master/single first)."""
        raise NotImplementedError

    # --- writing (every write: new change_key, last_modified, a Change in the log) ---------
    def create_item(self, mailbox: str, item: CalendarItem, send: SendMode) -> CalendarItem:
        """Save a new item. The caller fills the content fields; the store assigns id, uid (if
        empty), change_key, created/last_modified, organizer (the mailbox, if None).
        With attendees and ``send`` not NONE: is_meeting=True, attendee responses on the
        organizer's item become NoResponseReceived(Unknown), and each attendee that is a mailbox
        of this store gets a copy (same uid, same content, organizer = this mailbox,
        response_type NoResponseReceived, free_busy Tentative, no extended properties — real
        Exchange does not send named properties to attendees). Attendees outside the store are
        simply recorded."""
        raise NotImplementedError

    def update_item(
        self,
        mailbox: str,
        item_id: str,
        changes: dict[str, object],
        *,
        change_key: str | None = None,
        send: SendMode = SendMode.NONE,
        extended: dict[ExtendedPropertyKey, str | None] | None = None,
        always_overwrite: bool = False,
    ) -> CalendarItem:
        """Change fields (keys are CalendarItem attribute names: subject, body, start, end,
        time_zone, is_all_day, location, sensitivity, free_busy, required_attendees,
        optional_attendees, recurrence, ...) and extended properties (value None deletes).
        A change_key that is not the item's current one (and not always_overwrite):
        SimError("ErrorIrresolvableConflict"). An occurrence id: the occurrence becomes an
        Exception of its master. Organizer of a meeting with ``send`` not NONE: the copies are
        updated (attendees' responses reset when time changes), added attendees get copies,
        removed attendees' copies are cancelled (is_cancelled, subject "Canceled: ...")."""
        raise NotImplementedError

    def delete_item(self, mailbox: str, item_id: str, send: SendMode = SendMode.NONE) -> None:
        """Delete (soft: kept as deleted so sync reports it). Organizer of a meeting with send
        not NONE: each attendee copy is cancelled. An occurrence id: the occurrence is added to
        the master's deleted_occurrences (master updated). An attendee deleting their copy of a
        meeting: only their copy goes (no response sent)."""
        raise NotImplementedError

    def cancel_meeting(self, mailbox: str, item_id: str, comment: str = "") -> None:
        """The organizer cancels (EWS CancelCalendarItem, Graph /cancel): the organizer's item is
        deleted and every attendee copy is cancelled. Not the organizer:
        SimError("ErrorInvalidOperation")."""
        raise NotImplementedError

    def respond(
        self,
        mailbox: str,
        item_id: str,
        response: ResponseType,
        *,
        send_response: bool = True,
        comment: str = "",
    ) -> CalendarItem | None:
        """An attendee accepts / tentatively accepts / declines their copy. The copy's
        response_type and free_busy follow (Accept → Busy, Tentative → Tentative); with
        send_response the organizer's item records the attendee's response and response_time
        (organizer's item gets a new change key and a Change). Decline removes the attendee's
        copy (deleted) and returns None. The organizer responding: SimError("ErrorInvalidOperation")."""
        raise NotImplementedError

    # --- change tracking --------------------------------------------------------------------
    def current_seq(self, mailbox: str) -> int:
        """The sequence number of the mailbox's latest change (0 when none)."""
        raise NotImplementedError

    def changes_since(self, mailbox: str, seq: int) -> list[Change]:
        """The mailbox's changes with seq > the given one, oldest first (not collapsed)."""
        raise NotImplementedError

    def encode_sync_state(self, mailbox: str, seq: int, **extra: str) -> str:
        """An opaque, tamper-evident token (EWS SyncState, Graph delta/skip token) for a
        position in a mailbox's change log; ``extra`` carries protocol data (e.g. a delta window)."""
        raise NotImplementedError

    def decode_sync_state(self, mailbox: str, token: str) -> tuple[int, dict[str, str]]:
        """Position and extra data of a token. Garbage, another mailbox's token, or a token
        invalidated by ``invalidate_sync_states``: SimError("ErrorInvalidSyncStateData")."""
        raise NotImplementedError

    def invalidate_sync_states(self, mailbox: str) -> None:
        """Every token issued so far for this mailbox becomes invalid (fault injection)."""
        raise NotImplementedError

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(mailbox, change)`` after each committed change (outside the lock)."""
        raise NotImplementedError

    # --- faults and counters ----------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        raise NotImplementedError

    def clear_faults(self, mailbox: str | None = None) -> None:
        raise NotImplementedError

    def take_fault(self, mailbox: str, operation: str) -> Fault | None:
        """The first active fault matching (mailbox or "*", operation or "*"); consumes one of
        its ``remaining`` hits. Protocols call this once per request, after parsing it."""
        raise NotImplementedError

    def count(self, operation: str, mailbox: str) -> None:
        """Count one request (operation as the protocol names it, e.g. "ews:SyncFolderItems",
        "graph:delta")."""
        raise NotImplementedError

    def counter_snapshot(self) -> dict[str, dict[str, int]]:
        """{operation: {mailbox: n}}."""
        raise NotImplementedError

    def reset_counters(self) -> None:
        raise NotImplementedError


class InjectedFault(Exception):
    """Raised by a protocol handler for a fault the HTTP layer carries out (reset, 500, 503,
    401): the server turns it into the wire behaviour."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.kind)
        self.fault = fault


def iter_attendees(item: CalendarItem) -> Iterable[Attendee]:
    """Required then optional attendees."""
    yield from item.required_attendees
    yield from item.optional_attendees
