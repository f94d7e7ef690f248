"""The simulated Exchange organization: mailboxes, calendar items, meeting semantics, change
tracking, faults and counters — independent of any protocol.

EWS (`sim/ews/`) and Graph (`sim/graph/`) are two views of this one store: each turns its wire
format into calls here and formats the results. Everything that Exchange decides on its own
(invitations landing in attendees' calendars, responses reaching the organizer, cancellations,
recurrence expansion, which items a calendar view returns, all-day items kept on midnights,
subject and location length limits, change keys, sync states) is decided here, once.

Thread safety: every public method takes ``self.lock`` (an RLock); the HTTP server is threaded.
Times are aware datetimes in UTC inside the store; protocols convert at the edge.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sim import extended, recurrence
from sim.extended import ExtendedValue

logger = logging.getLogger(__name__)

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


class Importance(StrEnum):
    LOW = "Low"
    NORMAL = "Normal"
    HIGH = "High"


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
    # The calendar's defaultOnlineMeetingProvider: what "make this an online meeting" uses when
    # no provider is named.
    default_online_meeting_provider: str = "teamsForBusiness"


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
    # Single-valued properties hold a string, multi-valued (...Array types) a tuple of them
    # (``sim.extended``).
    extended_properties: dict[ExtendedPropertyKey, ExtendedValue] = field(default_factory=dict)
    # The mailbox owner's own settings on their copy; an invitation does not carry them.
    categories: list[str] = field(default_factory=list)
    reminder_is_set: bool = True  # Exchange's default reminder: on, 15 minutes before
    reminder_minutes_before_start: int = 15
    culture: str = "en-US"
    # Settings of the meeting the organizer decides; invitations and updates carry them.
    importance: Importance = Importance.NORMAL
    response_requested: bool = True
    allow_new_time_proposal: bool = True
    conference_type: int = 0  # EWS ConferenceType: 0 NetMeeting, 1 NetShow, 2 Chat
    meeting_workspace_url: str = ""
    net_show_url: str = ""
    # An online meeting (Graph onlineMeetingProvider / onlineMeeting.joinUrl): once a provider
    # is set the store gives the meeting a join URL, and it stays online.
    online_meeting_provider: str = "unknown"
    online_meeting_join_url: str = ""
    is_meeting: bool = False  # has been sent to attendees
    meeting_request_was_sent: bool = False
    response_type: ResponseType = ResponseType.ORGANIZER  # this mailbox's own response
    deleted: bool = False  # soft-deleted (kept so sync can report the delete)

    @property
    def is_organizer(self) -> bool:
        return self.organizer is None or self.organizer.address == self.mailbox

    @property
    def is_online_meeting(self) -> bool:
        return bool(self.online_meeting_join_url)


@dataclass
class MeetingMessage:
    """A meeting message kept in one of a mailbox's mail folders — today the copy of a sent
    cancellation that Exchange saves in Sent Items (CancelCalendarItem with SendAndSaveCopy
    answers with its id)."""

    id: str
    mailbox: str
    folder: str
    item_class: str
    subject: str
    uid: str
    start: datetime | None
    end: datetime | None
    location: str
    recipients: list[Attendee]
    sent: datetime
    change_key: str
    original_start: datetime | None = None  # the cancelled occurrence's, for one occurrence


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
    semantics. Signatures may gain optional keyword arguments but must not otherwise change.

    Change log granularity follows the EWS calendar folder: only singles and recurring masters
    are folder items, so a change to one occurrence (made an exception, deleted, responded to)
    is logged as an UPDATE of its master. Sequence numbers are per mailbox, starting at 1.
    """

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.items: dict[str, CalendarItem] = {}
        self.changes: dict[str, list[Change]] = {}  # mailbox → its calendar's change log
        self.messages: dict[str, MeetingMessage] = {}  # saved meeting messages (Sent Items)
        self.faults: list[Fault] = []
        self.counters: Counter[tuple[str, str]] = Counter()  # (operation, mailbox) → requests
        # What each read asked Exchange to return: (operation, base shape, property paths).
        self.requested_shapes: list[tuple[str, str, frozenset[str]]] = []
        self.service_seconds = 0.0  # time the protocols spent serving requests
        self.service_requests = 0
        self.listeners: list[ChangeListener] = []
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        # Per-mailbox item index (insertion ordered) so a mailbox's calendar is not a full scan.
        self._mailbox_items: dict[str, dict[str, CalendarItem]] = {}
        # Sync tokens are signed with a per-process key; an epoch per mailbox lets a fault
        # invalidate every token issued so far.
        self._token_key = secrets.token_bytes(32)
        self._token_epochs: dict[str, int] = {}
        self._local = threading.local()

    # --- internal plumbing --------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the lock for a write; deliver the changes it logged to listeners after the
        outermost write releases the lock (listeners may call back into the store)."""
        with self.lock:
            depth: int = getattr(self._local, "depth", 0)
            if depth == 0:
                self._local.pending = []
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
                pending: list[tuple[str, Change]] = self._local.pending if depth == 0 else []
        for mailbox, change in pending:
            for listener in list(self.listeners):
                try:
                    listener(mailbox, change)
                except Exception:  # a broken listener must not undo a committed write
                    logger.exception("change listener failed for %s", mailbox)

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC)

    def _touch(self, item: CalendarItem) -> None:
        item.change_key = _new_change_key()
        item.last_modified = self._now()

    def _log(self, mailbox: str, item_id: str, kind: ChangeKind) -> None:
        log = self.changes.setdefault(mailbox, [])
        change = Change(seq=(log[-1].seq + 1) if log else 1, item_id=item_id, kind=kind)
        log.append(change)
        self._local.pending.append((mailbox, change))

    def _commit(self, item: CalendarItem, kind: ChangeKind) -> None:
        """New change key and a Change for the folder item that carries ``item``."""
        self._touch(item)
        folder_item = self.items[item.master_id] if item.master_id else item
        if folder_item is not item:
            self._touch(folder_item)
        self._log(item.mailbox, folder_item.id, kind)

    def _address(self, address: str) -> str:
        return self.mailbox(address).address

    def _live(self, item_id: str) -> CalendarItem:
        item = self.items.get(item_id)
        if item is None or item.deleted:
            raise SimError("ErrorItemNotFound", "The specified object was not found in the store.")
        return item

    def _check_owner(self, mailbox: str, item: CalendarItem) -> None:
        if item.mailbox != self._address(mailbox):
            # Exchange answers as if the item did not exist in the mailbox asked about.
            raise SimError("ErrorItemNotFound", "The specified object was not found in the store.")

    def _virtual_occurrence(self, master: CalendarItem, original_start: datetime) -> CalendarItem:
        assert master.start is not None
        assert master.end is not None
        occurrence = copy.copy(master)
        occurrence.id = self.occurrence_id(master.id, original_start)
        occurrence.start = original_start
        occurrence.end = _moved_end(master, original_start)
        occurrence.item_type = ItemType.OCCURRENCE
        occurrence.recurrence = None
        occurrence.modified_occurrences = {}
        occurrence.deleted_occurrences = []
        occurrence.master_id = master.id
        occurrence.original_start = original_start
        occurrence.organizer = copy.deepcopy(master.organizer)
        occurrence.required_attendees = copy.deepcopy(master.required_attendees)
        occurrence.optional_attendees = copy.deepcopy(master.optional_attendees)
        occurrence.extended_properties = dict(master.extended_properties)
        occurrence.categories = list(master.categories)
        return occurrence

    def _series_starts(self, master: CalendarItem, until: datetime | None) -> Iterator[datetime]:
        assert master.recurrence is not None
        assert master.start is not None
        return recurrence.occurrence_starts(
            master.recurrence, master.start, master.time_zone, until
        )

    def _is_pattern_start(self, master: CalendarItem, original_start: datetime) -> bool:
        until = original_start + timedelta(seconds=1)
        return any(start == original_start for start in self._series_starts(master, until))

    def _materialize(self, master: CalendarItem, original_start: datetime) -> CalendarItem:
        """The stored Exception for one occurrence (made from the master if there is none)."""
        existing = master.modified_occurrences.get(original_start)
        if existing is not None:
            return existing
        exception = self._virtual_occurrence(master, original_start)
        exception.item_type = ItemType.EXCEPTION
        exception.change_key = _new_change_key()
        self.items[exception.id] = exception
        master.modified_occurrences[original_start] = exception
        return exception

    def _resolve_for_write(self, mailbox: str, item_id: str) -> CalendarItem:
        """A stored item to change: occurrence ids become their master's Exception."""
        parsed = _parse_occurrence_id(item_id)
        if parsed is not None and item_id not in self.items:
            master_id, original_start = parsed
            self.get_item(item_id)  # raises for deleted / non-pattern occurrences
            master = self._live(master_id)
            self._check_owner(mailbox, master)
            return self._materialize(master, original_start)
        item = self._live(item_id)
        self._check_owner(mailbox, item)
        if item.master_id is not None:
            self._live(item.master_id)
        return item

    def _clear_exceptions(self, master: CalendarItem) -> None:
        for exception in master.modified_occurrences.values():
            exception.deleted = True
        master.modified_occurrences = {}
        master.deleted_occurrences = []

    def _prepare_series(self, item: CalendarItem) -> None:
        """Fill the range start from the item's start and move the item onto its first
        occurrence, as Exchange does when a series' start is not on a pattern day."""
        if item.recurrence is None or item.start is None or item.end is None:
            return
        try:
            recurrence.validate(item.recurrence)
            zone = ZoneInfo(item.time_zone)
        except (recurrence.RecurrenceError, ZoneInfoNotFoundError, ValueError) as error:
            raise SimError("ErrorCalendarInvalidRecurrence", str(error)) from error
        local = item.start.astimezone(zone)
        if item.recurrence.start_date is None:
            item.recurrence.start_date = local.date()
        first_day = next(recurrence.occurrence_dates(item.recurrence, local.date()), None)
        if first_day is None:
            raise SimError("ErrorCalendarInvalidRecurrence", "The recurrence has no occurrences.")
        if first_day != local.date():
            moved_start = recurrence.local_start(first_day, local.time(), zone)
            item.end = _moved_end(item, moved_start)
            item.start = moved_start

    def _attendee_mailboxes(self, item: CalendarItem) -> list[str]:
        """Attendees of the item that are mailboxes of this store (not the organizer)."""
        organizer = item.organizer.address if item.organizer else item.mailbox
        found: list[str] = []
        for attendee in iter_attendees(item):
            address = attendee.address.lower()
            if address in self.mailboxes and address != organizer and address not in found:
                found.append(address)
        return found

    def _copy_in(self, mailbox: str, uid: str) -> CalendarItem | None:
        for item in self._mailbox_items.get(mailbox, {}).values():
            if item.uid == uid and not item.deleted and item.master_id is None:
                return item
        return None

    def _make_copy(self, organizer_item: CalendarItem, mailbox: str) -> CalendarItem:
        now = self._now()
        attendee_copy = CalendarItem(
            id=_new_item_id(),
            mailbox=mailbox,
            uid=organizer_item.uid,
            item_type=organizer_item.item_type,
            created=now,
            response_type=ResponseType.NO_RESPONSE,
            free_busy=FreeBusy.TENTATIVE,
            is_meeting=True,
        )
        self._share_content(organizer_item, attendee_copy)
        self._store(attendee_copy)
        self._sync_occurrences(organizer_item, attendee_copy, reset_series=False)
        self._touch(attendee_copy)
        attendee_copy.created = attendee_copy.last_modified
        self._log(mailbox, attendee_copy.id, ChangeKind.CREATE)
        return attendee_copy

    @staticmethod
    def _share_content(source: CalendarItem, target: CalendarItem) -> None:
        for name in _MEETING_FIELDS:
            setattr(target, name, copy.deepcopy(getattr(source, name)))
        target.organizer = copy.deepcopy(source.organizer)

    def _sync_occurrences(
        self, organizer_master: CalendarItem, attendee_master: CalendarItem, *, reset_series: bool
    ) -> None:
        """Make an attendee's series match the organizer's exceptions and deleted occurrences."""
        if reset_series:
            self._clear_exceptions(attendee_master)
        attendee_master.deleted_occurrences = list(organizer_master.deleted_occurrences)
        for original_start, theirs in organizer_master.modified_occurrences.items():
            if theirs.deleted:
                continue
            mine = self._materialize(attendee_master, original_start)
            time_moved = (mine.start, mine.end) != (theirs.start, theirs.end)
            self._share_content(theirs, mine)
            mine.is_cancelled = theirs.is_cancelled
            if time_moved:
                mine.response_type = ResponseType.NO_RESPONSE
                mine.free_busy = FreeBusy.TENTATIVE
            self._touch(mine)
        for original_start in list(attendee_master.modified_occurrences):
            if original_start in attendee_master.deleted_occurrences:
                attendee_master.modified_occurrences.pop(original_start).deleted = True

    def _cancel_copy(self, attendee_copy: CalendarItem) -> None:
        if attendee_copy.is_cancelled:
            return
        attendee_copy.is_cancelled = True
        if not attendee_copy.subject.startswith(CANCELED_PREFIX):
            # The prefix does not lift the limit: the end of a long subject gives way.
            attendee_copy.subject = cut_to_limit(
                CANCELED_PREFIX + attendee_copy.subject, SUBJECT_LIMIT
            )
        attendee_copy.free_busy = FreeBusy.FREE
        self._commit(attendee_copy, ChangeKind.UPDATE)

    def _send_updates(
        self,
        organizer_item: CalendarItem,
        *,
        previous: list[str],
        send: SendMode,
        content_changed: bool,
        time_changed: bool,
        series_reset: bool,
    ) -> None:
        """Deliver an organizer's change to the attendees' calendars."""
        current = self._attendee_mailboxes(organizer_item)
        for address in previous:
            if address not in current:
                removed = self._copy_in(address, organizer_item.uid)
                if removed is not None:
                    self._cancel_copy(removed)
        notify_all = send in (SendMode.ONLY_TO_ALL, SendMode.ALL_AND_SAVE_COPY) or content_changed
        for address in current:
            if not (notify_all or address not in previous):
                continue  # SendOnlyToChanged: this attendee is not affected
            existing = self._copy_in(address, organizer_item.uid)
            if existing is None:
                # New attendee, or one who declined: the update arrives as a fresh request.
                self._make_copy(organizer_item, address)
            else:
                self._share_content(organizer_item, existing)
                existing.item_type = organizer_item.item_type
                existing.is_cancelled = organizer_item.is_cancelled
                if time_changed:
                    existing.response_type = ResponseType.NO_RESPONSE
                    existing.free_busy = FreeBusy.TENTATIVE
                self._sync_occurrences(organizer_item, existing, reset_series=series_reset)
                self._commit(existing, ChangeKind.UPDATE)
        if any(True for _ in iter_attendees(organizer_item)):
            organizer_item.is_meeting = True
        organizer_item.meeting_request_was_sent = True

    def _go_online(self, item: CalendarItem, provider: str) -> None:
        """Make the meeting an online meeting with ``provider``: it gets a join URL and, as in
        Graph, stays online with that provider (so on an online meeting this does nothing)."""
        if item.is_online_meeting or provider == "unknown":
            return
        item.online_meeting_provider = provider
        item.online_meeting_join_url = _join_url(provider)

    def _store(self, item: CalendarItem) -> None:
        self.items[item.id] = item
        self._mailbox_items.setdefault(item.mailbox, {})[item.id] = item

    def _organizer_item(self, attendee_item: CalendarItem) -> CalendarItem | None:
        if attendee_item.organizer is None:
            return None
        organizer = attendee_item.organizer.address.lower()
        if organizer not in self.mailboxes:
            return None
        return self._copy_in(organizer, attendee_item.uid)

    # --- mailboxes ------------------------------------------------------------------------
    def add_mailbox(self, mailbox: Mailbox) -> None:
        """Register a mailbox (address stored lower-case) with an empty calendar."""
        with self._writing():
            mailbox.address = mailbox.address.lower()
            self.mailboxes[mailbox.address] = mailbox
            self._mailbox_items.setdefault(mailbox.address, {})
            self.changes.setdefault(mailbox.address, [])

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox, case-insensitively; SimError("ErrorNonExistentMailbox") otherwise."""
        with self.lock:
            found = self.mailboxes.get(address.lower())
            if found is None:
                raise SimError(
                    "ErrorNonExistentMailbox",
                    f"No mailbox with such guid or SMTP address: {address}",
                )
            return found

    # --- reading ----------------------------------------------------------------------------
    def get_item(self, item_id: str, *, include_deleted: bool = False) -> CalendarItem:
        """An item by internal id, including occurrence ids (see ``occurrence_id``), which resolve
        to a virtual Occurrence item (or the stored Exception). Deleted items and deleted
        occurrences: SimError("ErrorItemNotFound") (unless ``include_deleted``, which returns
        soft-deleted stored items so a protocol can describe a removal)."""
        with self.lock:
            stored = self.items.get(item_id)
            if stored is not None:
                if include_deleted:
                    return stored
                if stored.master_id is not None:
                    self._live(stored.master_id)
                return self._live(item_id)
            parsed = _parse_occurrence_id(item_id)
            if parsed is None:
                raise SimError(
                    "ErrorItemNotFound", "The specified object was not found in the store."
                )
            master_id, original_start = parsed
            master = self._live(master_id)
            if (
                master.recurrence is None
                or original_start in master.deleted_occurrences
                or not self._is_pattern_start(master, original_start)
            ):
                raise SimError(
                    "ErrorItemNotFound", "The specified object was not found in the store."
                )
            return self._virtual_occurrence(master, original_start)

    def calendar_items(self, mailbox: str) -> list[CalendarItem]:
        """Live singles and recurring masters (not occurrences/exceptions) of a mailbox."""
        with self.lock:
            address = self._address(mailbox)
            return [
                item
                for item in self._mailbox_items.get(address, {}).values()
                if not item.deleted and item.master_id is None
            ]

    def calendar_view(self, mailbox: str, start: datetime, end: datetime) -> list[CalendarItem]:
        """What a calendar view between start and end returns (EWS CalendarView, Graph
        calendarView and its delta): singles, occurrences and exceptions that ``in_view`` admits
        (recurring masters expanded; deleted occurrences skipped; cancelled items included with
        is_cancelled). Sorted by start."""
        with self.lock:
            shown: list[CalendarItem] = []
            for item in self.calendar_items(mailbox):
                if item.start is None or item.end is None:
                    continue
                if item.recurrence is None:
                    if in_view(item.start, item.end, start, end):
                        shown.append(item)
                    continue
                for original_start in self._series_starts(item, end):
                    if not in_view(original_start, _moved_end(item, original_start), start, end):
                        continue
                    if original_start in item.deleted_occurrences:
                        continue
                    if original_start in item.modified_occurrences:
                        continue  # exceptions are placed by their own times below
                    shown.append(self._virtual_occurrence(item, original_start))
                for original_start, exception in item.modified_occurrences.items():
                    if exception.deleted or original_start in item.deleted_occurrences:
                        continue
                    assert exception.start is not None
                    assert exception.end is not None
                    if in_view(exception.start, exception.end, start, end):
                        shown.append(exception)
            shown.sort(key=lambda shown_item: (shown_item.start, shown_item.id))
            return shown

    @staticmethod
    def occurrence_id(master_id: str, original_start: datetime) -> str:
        """The internal id of one occurrence of a series (stable, derivable, parseable):
        ``<master id>.<original start, UTC, YYYYMMDDTHHMMSSZ>``."""
        return f"{master_id}{OCCURRENCE_SEPARATOR}{original_start.astimezone(UTC):{_OCC_FORMAT}}"

    def occurrence_by_index(self, master_id: str, index: int) -> CalendarItem:
        """The index-th (1-based) occurrence of a series (EWS OccurrenceItemId). Deleted
        occurrences keep their number: SimError("ErrorCalendarOccurrenceIsDeletedFromRecurrence");
        past the end: SimError("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange")."""
        with self.lock:
            master = self._live(master_id)
            if master.recurrence is None:
                raise SimError(
                    "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                    "The item is not a recurring master.",
                )
            if index >= 1:
                for position, original_start in enumerate(self._series_starts(master, None), 1):
                    if position < index:
                        continue
                    if original_start in master.deleted_occurrences:
                        raise SimError(
                            "ErrorCalendarOccurrenceIsDeletedFromRecurrence",
                            "The occurrence has been deleted from the recurrence.",
                        )
                    return self.get_item(self.occurrence_id(master.id, original_start))
            raise SimError(
                "ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                "The occurrence index is out of the recurrence range.",
            )

    def find_by_extended_property(
        self, mailbox: str, key: ExtendedPropertyKey, value: str | None = None
    ) -> list[CalendarItem]:
        """Live items of the mailbox (singles and masters) that carry the property (with this
        value if given)."""
        with self.lock:
            return [
                item
                for item in self.calendar_items(mailbox)
                if key in item.extended_properties
                and (value is None or item.extended_properties[key] == value)
            ]

    def find_by_uid(self, mailbox: str, uid: str) -> list[CalendarItem]:
        """Live items of the mailbox with this iCalendar UID (master/single first, then its
        stored exceptions)."""
        with self.lock:
            address = self._address(mailbox)
            found = [
                item
                for item in self._mailbox_items.get(address, {}).values()
                if item.uid == uid and not item.deleted
            ]
            found.sort(key=lambda item: item.master_id is not None)
            return found

    # --- writing (every write: new change_key, last_modified, a Change in the log) ---------
    def create_item(self, mailbox: str, item: CalendarItem, send: SendMode) -> CalendarItem:
        """Save a new item. The caller fills the content fields; the store assigns id, uid (if
        empty), change_key, created/last_modified, organizer (the mailbox, if None).
        With attendees and ``send`` not NONE: is_meeting=True, attendee responses on the
        organizer's item become Unknown (no response yet), and each attendee that is a mailbox
        of this store gets a copy (same uid, same content, organizer = this mailbox,
        response_type NoResponseReceived, free_busy Tentative, no extended properties — real
        Exchange does not send named properties to attendees — and the owner's own settings:
        no categories, the default reminder). Attendees outside the store are simply recorded.
        A recurrence makes it a RecurringMaster (range start defaults to the start's local date;
        the start moves onto the first occurrence). An ``online_meeting_provider`` other than
        "unknown" makes it an online meeting with a join URL. Extended property values are
        checked and written one way (``sim.extended``; SimError("ErrorInvalidExtendedPropertyValue")
        otherwise). As Exchange saves any item: subject and location are cut to SUBJECT_LIMIT /
        LOCATION_LIMIT (``cut_to_limit``), and an all-day item's start and end move onto
        midnights in its zone (``all_day_bounds``)."""
        with self._writing():
            owner = self.mailbox(mailbox)
            _check_times(item.start, item.end, item.time_zone)
            for name in _CHECKED_ON_CREATE:
                setattr(item, name, _coerce_field(name, getattr(item, name)))
            item.extended_properties = {
                key: value
                for key, value in _normalized_extended(item.extended_properties).items()
                if value is not None
            }
            provider = item.online_meeting_provider
            item.online_meeting_provider = "unknown"
            item.online_meeting_join_url = ""
            self._go_online(item, provider)
            item.id = _new_item_id()
            item.mailbox = owner.address
            item.uid = item.uid or _new_uid()
            item.deleted = False
            item.master_id = None
            item.original_start = None
            item.modified_occurrences = {}
            item.deleted_occurrences = []
            _keep_as_exchange_does(item)
            if item.organizer is None:
                item.organizer = Attendee(owner.address, owner.name, ResponseType.ORGANIZER)
            if item.is_organizer:
                item.response_type = ResponseType.ORGANIZER
            item.item_type = ItemType.SINGLE
            if item.recurrence is not None:
                item.recurrence = copy.deepcopy(item.recurrence)
                self._prepare_series(item)
                item.item_type = ItemType.RECURRING_MASTER
            has_attendees = any(True for _ in iter_attendees(item))
            sending = has_attendees and send != SendMode.NONE and item.is_organizer
            if sending:
                for attendee in iter_attendees(item):
                    attendee.response = ResponseType.UNKNOWN
                    attendee.response_time = None
            self._store(item)
            self._touch(item)
            item.created = item.last_modified
            self._log(owner.address, item.id, ChangeKind.CREATE)
            if sending:
                item.is_meeting = True
                self._send_updates(
                    item,
                    previous=[],
                    send=send,
                    content_changed=True,
                    time_changed=False,
                    series_reset=False,
                )
            return item

    def update_item(
        self,
        mailbox: str,
        item_id: str,
        changes: dict[str, object],
        *,
        change_key: str | None = None,
        send: SendMode = SendMode.NONE,
        extended: Mapping[ExtendedPropertyKey, str | Sequence[str] | None] | None = None,
        always_overwrite: bool = False,
    ) -> CalendarItem:
        """Change fields (keys are CalendarItem attribute names: subject, body, start, end,
        time_zone, is_all_day, location, sensitivity, free_busy, required_attendees,
        optional_attendees, recurrence, categories, importance, reminders, uid, ...) and
        extended properties (value None deletes; a list for a multi-valued type).
        A change_key that is not the item's current one (and not always_overwrite):
        SimError("ErrorIrresolvableConflict"). An occurrence id: the occurrence becomes an
        Exception of its master. Organizer of a meeting with ``send`` not NONE: the copies are
        updated (attendees' responses reset when time changes), added attendees get copies,
        removed attendees' copies are cancelled (is_cancelled, subject "Canceled: ...").

        Changing a series' time, time zone or pattern drops its exceptions and deleted
        occurrences (as Outlook warns it will). The changed item is kept as ``create_item``
        keeps a new one (length limits, all-day midnights). Unknown field names:
        SimError("ErrorInvalidPropertySet"). Returns the changed stored item (for an
        occurrence: its Exception).

        ``uid`` gives the meeting a new iCalendar UID (its exceptions follow; an occurrence's
        UID is its series': SimError("ErrorInvalidPropertySet")); copies attendees already have
        keep the old one, so a later update reaches them as a new meeting, as a new global object
        id does in Exchange. ``online_meeting_provider`` makes the meeting an online meeting;
        once online it stays online with its provider (later values are ignored)."""
        with self._writing():
            unknown = sorted(set(changes) - _UPDATABLE_FIELDS)
            if unknown:
                raise SimError(
                    "ErrorInvalidPropertySet", f"Cannot update field(s): {', '.join(unknown)}"
                )
            current = self.get_item(item_id)
            self._check_owner(mailbox, current)
            if change_key is not None and not always_overwrite and change_key != current.change_key:
                raise SimError(
                    "ErrorIrresolvableConflict",
                    "The send or update operation could not be performed because the change key "
                    "passed in the request does not match the current change key for the item.",
                )
            values = {name: _coerce_field(name, value) for name, value in changes.items()}
            if values.get("uid") == current.uid:
                del values["uid"]  # a full save sends the UID back unchanged
            normalized = _normalized_extended(extended or {})
            if "recurrence" in values and current.item_type in (
                ItemType.OCCURRENCE,
                ItemType.EXCEPTION,
            ):
                raise SimError(
                    "ErrorCalendarInvalidRecurrence", "An occurrence cannot have a recurrence."
                )
            if "uid" in values and current.item_type in (ItemType.OCCURRENCE, ItemType.EXCEPTION):
                raise SimError(
                    "ErrorInvalidPropertySet",
                    "An occurrence has its series' UID; change the UID of the recurring master.",
                )
            provider = values.pop("online_meeting_provider", None)
            if not current.is_organizer:
                # The organizer's settings are read-only on an attendee's copy (EWS:
                # AllowNewTimeProposal, ConferenceType, MeetingWorkspaceUrl, NetShowUrl).
                for name in _ORGANIZER_SETTINGS:
                    values.pop(name, None)
                provider = None
            new_start = values.get("start", current.start)
            new_end = values.get("end", current.end)
            new_zone = values.get("time_zone", current.time_zone)
            assert new_start is None or isinstance(new_start, datetime)
            assert new_end is None or isinstance(new_end, datetime)
            assert isinstance(new_zone, str)
            _check_times(new_start, new_end, new_zone)

            item = self._resolve_for_write(mailbox, item_id)
            was_attendees = self._attendee_mailboxes(item)
            time_before = (item.start, item.end, item.time_zone, item.is_all_day)
            series_before = copy.deepcopy(item.recurrence)
            content_before = {name: copy.deepcopy(getattr(item, name)) for name in _MEETING_FIELDS}
            for name, value in values.items():
                setattr(item, name, copy.deepcopy(value))
            if "uid" in values:
                for exception in item.modified_occurrences.values():
                    exception.uid = item.uid
            if isinstance(provider, str):
                self._go_online(item, provider)
            for key, ext_value in normalized.items():
                if ext_value is None:
                    item.extended_properties.pop(key, None)
                else:
                    item.extended_properties[key] = ext_value
            _keep_as_exchange_does(item)
            time_changed = (item.start, item.end, item.time_zone, item.is_all_day) != time_before
            series_reset = False
            if item.master_id is None:
                if item.recurrence is not None:
                    if "recurrence" not in values and time_changed and item.start is not None:
                        # Moving a series moves its range start along with it.
                        local = item.start.astimezone(ZoneInfo(item.time_zone))
                        item.recurrence.start_date = local.date()
                    elif "recurrence" in values and item.start is not None:
                        item.recurrence.start_date = None
                    self._prepare_series(item)
                    item.item_type = ItemType.RECURRING_MASTER
                    series_reset = time_changed or item.recurrence != series_before
                else:
                    series_reset = series_before is not None
                    item.item_type = ItemType.SINGLE
                if series_reset:
                    self._clear_exceptions(item)
            time_changed = time_changed or series_reset
            content_changed = any(
                getattr(item, name) != before for name, before in content_before.items()
            )
            self._commit(item, ChangeKind.UPDATE)
            if send != SendMode.NONE and item.is_organizer:
                master = self.items[item.master_id] if item.master_id else item
                if item is not master:
                    was_attendees = self._attendee_mailboxes(master)
                self._send_updates(
                    master,
                    previous=was_attendees if master.meeting_request_was_sent else [],
                    send=send,
                    content_changed=content_changed,
                    time_changed=time_changed and item is master,
                    series_reset=series_reset,
                )
            return item

    def delete_item(self, mailbox: str, item_id: str, send: SendMode = SendMode.NONE) -> None:
        """Delete (soft: kept as deleted so sync reports it). Organizer of a meeting with send
        not NONE: each attendee copy is cancelled. An occurrence id: the occurrence is added to
        the master's deleted_occurrences (master updated; with send, the attendees' copies lose
        that occurrence too). An attendee deleting their copy of a meeting: only their copy goes
        (no response sent)."""
        with self._writing():
            current = self.get_item(item_id)
            self._check_owner(mailbox, current)
            sending = send != SendMode.NONE and current.is_organizer and current.is_meeting
            if current.master_id is not None and current.original_start is not None:
                master = self._live(current.master_id)
                self._delete_occurrence(master, current.original_start)
                if sending:
                    for address in self._attendee_mailboxes(master):
                        attendee_copy = self._copy_in(address, master.uid)
                        if attendee_copy is not None and attendee_copy.recurrence is not None:
                            self._delete_occurrence(attendee_copy, current.original_start)
                return
            item = self._live(item_id)
            item.deleted = True
            self._clear_exceptions(item)
            self._touch(item)
            self._log(item.mailbox, item.id, ChangeKind.DELETE)
            if sending:
                for address in self._attendee_mailboxes(item):
                    attendee_copy = self._copy_in(address, item.uid)
                    if attendee_copy is not None:
                        self._cancel_copy(attendee_copy)

    def _delete_occurrence(self, master: CalendarItem, original_start: datetime) -> None:
        if original_start not in master.deleted_occurrences:
            master.deleted_occurrences.append(original_start)
            master.deleted_occurrences.sort()
        exception = master.modified_occurrences.pop(original_start, None)
        if exception is not None:
            exception.deleted = True
        self._touch(master)
        self._log(master.mailbox, master.id, ChangeKind.UPDATE)

    def cancel_meeting(
        self,
        mailbox: str,
        item_id: str,
        comment: str = "",
        *,
        send: bool = True,
        save_copy: bool = False,
    ) -> MeetingMessage | None:
        """The organizer cancels (EWS CancelCalendarItem, Graph /cancel): the organizer's item is
        deleted and every attendee copy is cancelled (for an occurrence: the occurrence goes
        from the organizer's and the attendees' series). Not the organizer:
        SimError("ErrorInvalidOperation").

        The cancellation is a message to the attendees: when it is sent (``send``) it needs at
        least one recipient besides the organizer, else SimError("ErrorInvalidRecipients") and
        nothing changes. With ``save_copy`` the sent cancellation is kept in the organizer's
        Sent Items and returned (its subject "Canceled: ...", its recipients the attendees)."""
        with self._writing():
            current = self.get_item(item_id)
            self._check_owner(mailbox, current)
            if not current.is_organizer:
                raise SimError("ErrorInvalidOperation", "Only the organizer can cancel a meeting.")
            organizer = current.organizer.address.lower() if current.organizer else current.mailbox
            recipients = [
                copy.deepcopy(attendee)
                for attendee in iter_attendees(current)
                if attendee.address.lower() != organizer
            ]
            if send and not recipients:
                raise SimError(
                    "ErrorInvalidRecipients",
                    "At least one recipient isn't valid. A message can't be sent because it "
                    "contains no recipients.",
                )
            self.delete_item(mailbox, item_id, SendMode.ALL_AND_SAVE_COPY)
            if not save_copy:
                return None
            saved = MeetingMessage(
                id=_new_item_id(),
                mailbox=current.mailbox,
                folder="sentitems",
                item_class="IPM.Schedule.Meeting.Canceled",
                subject=CANCELED_PREFIX + current.subject,
                uid=current.uid,
                start=current.start,
                end=current.end,
                location=current.location,
                recipients=recipients,
                sent=self._now(),
                change_key=_new_change_key(),
                original_start=current.original_start,
            )
            self.messages[saved.id] = saved
            return saved

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
        (organizer's item gets a new change key and a Change) — unless the organizer asked for
        no responses (``response_requested`` False on the meeting): then no response is sent.
        Decline removes the attendee's copy (deleted) and returns None. The organizer responding:
        SimError("ErrorInvalidOperation"). For an occurrence id the response applies to that
        occurrence only (an Exception on both sides; a decline deletes the occurrence from the
        attendee's series)."""
        if response not in (ResponseType.ACCEPT, ResponseType.TENTATIVE, ResponseType.DECLINE):
            raise SimError("ErrorInvalidRequest", f"Cannot respond with {response}.")
        with self._writing():
            current = self.get_item(item_id)
            self._check_owner(mailbox, current)
            if current.is_organizer:
                raise SimError(
                    "ErrorInvalidOperation", "The organizer cannot respond to their own meeting."
                )
            address = current.mailbox
            now = self._now()
            result: CalendarItem | None
            if response == ResponseType.DECLINE:
                if current.master_id is not None and current.original_start is not None:
                    self._delete_occurrence(self._live(current.master_id), current.original_start)
                else:
                    item = self._live(item_id)
                    item.deleted = True
                    self._clear_exceptions(item)
                    self._touch(item)
                    self._log(address, item.id, ChangeKind.DELETE)
                result = None
            else:
                item = self._resolve_for_write(mailbox, item_id)
                item.response_type = response
                item.free_busy = (
                    FreeBusy.BUSY if response == ResponseType.ACCEPT else FreeBusy.TENTATIVE
                )
                self._commit(item, ChangeKind.UPDATE)
                result = item
            # MS-OXOCAL 3.1.4.8.4: no Meeting Response when the request's PidTagResponseRequested
            # is FALSE, so the organizer's item never hears of it.
            if send_response and current.response_requested:
                self._record_response(current, address, response, now)
            return result

    def _record_response(
        self, attendee_item: CalendarItem, address: str, response: ResponseType, when: datetime
    ) -> None:
        organizer_item = self._organizer_item(attendee_item)
        if organizer_item is None:
            return
        target = organizer_item
        if attendee_item.original_start is not None and organizer_item.recurrence is not None:
            if attendee_item.original_start in organizer_item.deleted_occurrences:
                return
            target = self._materialize(organizer_item, attendee_item.original_start)
        for attendee in iter_attendees(target):
            if attendee.address.lower() == address:
                attendee.response = response
                attendee.response_time = when
        self._commit(target, ChangeKind.UPDATE)

    # --- change tracking --------------------------------------------------------------------
    def current_seq(self, mailbox: str) -> int:
        """The sequence number of the mailbox's latest change (0 when none)."""
        with self.lock:
            log = self.changes.get(self._address(mailbox), [])
            return log[-1].seq if log else 0

    def changes_since(self, mailbox: str, seq: int) -> list[Change]:
        """The mailbox's changes with seq > the given one, oldest first (not collapsed)."""
        with self.lock:
            log = self.changes.get(self._address(mailbox), [])
            # seq n sits at index n-1: the log is dense per mailbox.
            return list(log[max(seq, 0) :])

    def encode_sync_state(self, mailbox: str, seq: int, **extra: str) -> str:
        """An opaque, tamper-evident token (EWS SyncState, Graph delta/skip token) for a
        position in a mailbox's change log; ``extra`` carries protocol data (e.g. a delta window).
        URL-safe base64 without padding, so it fits a query string as is."""
        with self.lock:
            address = self._address(mailbox)
            payload = json.dumps(
                {"m": address, "s": seq, "e": self._token_epochs.get(address, 0), "x": extra},
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
            packed = zlib.compress(payload)
            mac = hmac.new(self._token_key, packed, hashlib.sha256).digest()[:_MAC_BYTES]
            return base64.urlsafe_b64encode(mac + packed).decode().rstrip("=")

    def decode_sync_state(self, mailbox: str, token: str) -> tuple[int, dict[str, str]]:
        """Position and extra data of a token. Garbage, another mailbox's token, or a token
        invalidated by ``invalidate_sync_states``: SimError("ErrorInvalidSyncStateData")."""
        invalid = SimError(
            "ErrorInvalidSyncStateData",
            "Synchronization state data is corrupt or otherwise invalid.",
        )
        with self.lock:
            address = self._address(mailbox)
            try:
                raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            except (ValueError, TypeError):
                raise invalid from None
            mac, packed = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
            expected = hmac.new(self._token_key, packed, hashlib.sha256).digest()[:_MAC_BYTES]
            if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, expected):
                raise invalid
            try:
                payload = json.loads(zlib.decompress(packed))
            except (zlib.error, ValueError):
                raise invalid from None
            if (
                not isinstance(payload, dict)
                or payload.get("m") != address
                or payload.get("e") != self._token_epochs.get(address, 0)
                or not isinstance(payload.get("s"), int)
                or payload["s"] > self.current_seq(address)
            ):
                raise invalid
            return payload["s"], {str(k): str(v) for k, v in payload.get("x", {}).items()}

    def invalidate_sync_states(self, mailbox: str) -> None:
        """Every token issued so far for this mailbox becomes invalid (fault injection)."""
        with self.lock:
            address = self._address(mailbox)
            self._token_epochs[address] = self._token_epochs.get(address, 0) + 1

    def add_listener(self, listener: ChangeListener) -> None:
        """Call ``listener(mailbox, change)`` after each committed change (outside the lock)."""
        with self.lock:
            self.listeners.append(listener)

    def remove_listener(self, listener: ChangeListener) -> None:
        with self.lock:
            if listener in self.listeners:
                self.listeners.remove(listener)

    # --- faults and counters ----------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        """Arm a fault (matched in the order added). ``remaining`` None or >= 1."""
        if fault.remaining is not None and fault.remaining < 1:
            raise SimError("ErrorInvalidRequest", "A fault must hit at least once.")
        with self.lock:
            fault.mailbox = fault.mailbox.lower()
            self.faults.append(fault)

    def clear_faults(self, mailbox: str | None = None) -> None:
        """Disarm every fault, or only those aimed at one mailbox."""
        with self.lock:
            if mailbox is None:
                self.faults.clear()
            else:
                self.faults = [f for f in self.faults if f.mailbox != mailbox.lower()]

    def take_fault(self, mailbox: str, operation: str) -> Fault | None:
        """The first active fault matching (mailbox or "*", operation or "*"); consumes one of
        its ``remaining`` hits. Protocols call this once per request, after parsing it.
        A fault's operation also matches without its protocol prefix ("SyncFolderItems" hits
        "ews:SyncFolderItems")."""
        with self.lock:
            address = mailbox.lower()
            bare = operation.split(":", 1)[-1]
            for fault in self.faults:
                if fault.mailbox not in ("*", address):
                    continue
                if fault.operation not in ("*", operation, bare):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self.faults.remove(fault)
                return fault
            return None

    def count(self, operation: str, mailbox: str) -> None:
        """Count one request (operation as the protocol names it, e.g. "ews:SyncFolderItems",
        "graph:delta")."""
        with self.lock:
            self.counters[(operation, mailbox.lower())] += 1

    def record_shape(self, operation: str, base: str, properties: Iterable[str]) -> None:
        """Note what a read asked for (its base shape and property paths): tests check that a
        client never asks for what it must not read, such as an event's body."""
        with self.lock:
            self.requested_shapes.append((operation, base, frozenset(properties)))

    def counter_snapshot(self) -> dict[str, dict[str, int]]:
        """{operation: {mailbox: n}}."""
        with self.lock:
            snapshot: dict[str, dict[str, int]] = {}
            for (operation, mailbox), n in sorted(self.counters.items()):
                snapshot.setdefault(operation, {})[mailbox] = n
            return snapshot

    def reset_counters(self) -> None:
        with self.lock:
            self.counters.clear()
            self.requested_shapes.clear()
            self.service_seconds = 0.0
            self.service_requests = 0

    def add_service_time(self, seconds: float) -> None:
        """Time the protocols spent serving one request (read by benchmarks)."""
        with self.lock:
            self.service_seconds += seconds
            self.service_requests += 1

    def service_time(self) -> dict[str, float]:
        with self.lock:
            return {
                "seconds": self.service_seconds,
                "requests": self.service_requests,
            }


# --- helpers -------------------------------------------------------------------------------------

CANCELED_PREFIX = "Canceled: "
OCCURRENCE_SEPARATOR = "."
_OCC_FORMAT = "%Y%m%dT%H%M%SZ"
_MAC_BYTES = 16
_MIDNIGHT = time_of_day(0)
# Exchange keeps at most 255 characters of a subject
# (https://learn.microsoft.com/exchange/client-developer/web-service-reference/subject) and of a
# location (https://learn.microsoft.com/javascript/api/outlook/office.location, setAsync); a
# longer value is cut, whichever protocol wrote it (``cut_to_limit``).
SUBJECT_LIMIT = 255
LOCATION_LIMIT = 255
ONLINE_MEETING_PROVIDERS = ("unknown", "teamsForBusiness", "skypeForBusiness", "skypeForConsumer")
# types.xsd ReminderMinutesBeforeStartType: 0 to 2629800 (five years), or the marker
# 0x5AE980E1 that MS-OXOCAL gives a reminder delta nobody set.
MAX_REMINDER_MINUTES = 2629800
REMINDER_UNSET_MARKER = 0x5AE980E1
# What an organizer's update carries to the attendees' copies (not free/busy, not responses,
# not the owner's categories, reminder or culture).
_MEETING_FIELDS = (
    "subject",
    "body",
    "body_type",
    "start",
    "end",
    "time_zone",
    "is_all_day",
    "location",
    "sensitivity",
    "recurrence",
    "required_attendees",
    "optional_attendees",
    "importance",
    "response_requested",
    "allow_new_time_proposal",
    "conference_type",
    "meeting_workspace_url",
    "net_show_url",
    "online_meeting_provider",
    "online_meeting_join_url",
)
_UPDATABLE_FIELDS = frozenset(
    {
        *_MEETING_FIELDS,
        "free_busy",
        "is_cancelled",
        "categories",
        "reminder_is_set",
        "reminder_minutes_before_start",
        "culture",
        "uid",
    }
) - {"online_meeting_join_url"}  # the store makes the join URL
_ENUM_FIELDS: dict[str, type[StrEnum]] = {
    "sensitivity": Sensitivity,
    "free_busy": FreeBusy,
    "importance": Importance,
}
# Settings only the organizer's item can change.
_ORGANIZER_SETTINGS = (
    "allow_new_time_proposal",
    "conference_type",
    "meeting_workspace_url",
    "net_show_url",
)
# Fields whose values create_item checks the way update_item does.
_CHECKED_ON_CREATE = (
    "sensitivity",
    "free_busy",
    "importance",
    "categories",
    "reminder_minutes_before_start",
    "conference_type",
    "online_meeting_provider",
)


def _new_item_id() -> str:
    return uuid.uuid4().hex


def _new_uid() -> str:
    # Exchange's iCalendar UIDs are hex global object ids with this fixed prefix.
    return "040000008200E00074C5B7101A82E00800000000" + uuid.uuid4().hex.upper()


def _join_url(provider: str) -> str:
    """A join link shaped like the provider's own."""
    token = uuid.uuid4().hex
    if provider == "teamsForBusiness":
        return f"https://teams.microsoft.com/l/meetup-join/19%3ameeting_{token}%40thread.v2/0"
    if provider == "skypeForBusiness":
        return f"https://meet.lync.com/contoso/{token[:8]}"
    return f"https://join.skype.com/{token[:12]}"


def _normalized_extended(
    values: Mapping[ExtendedPropertyKey, str | Sequence[str] | None],
) -> dict[ExtendedPropertyKey, ExtendedValue | None]:
    """Extended property values as the store keeps them (None: delete)."""
    normalized: dict[ExtendedPropertyKey, ExtendedValue | None] = {}
    for key, value in values.items():
        try:
            normalized[key] = None if value is None else extended.normalize(key.type, value)
        except extended.ExtendedValueError as error:
            raise SimError(
                "ErrorInvalidExtendedPropertyValue", f"Extended property {key.name}: {error}"
            ) from None
    return normalized


def _new_change_key() -> str:
    # Shaped like Exchange's: base64 of a small binary blob, different on every write.
    return base64.b64encode(b"\x10\x00\x00\x00" + secrets.token_bytes(14)).decode()


def _parse_occurrence_id(item_id: str) -> tuple[str, datetime] | None:
    master_id, separator, stamp = item_id.rpartition(OCCURRENCE_SEPARATOR)
    if not separator or not master_id:
        return None
    try:
        original_start = datetime.strptime(stamp, _OCC_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return master_id, original_start


def in_view(item_start: datetime, item_end: datetime, start: datetime, end: datetime) -> bool:
    """Whether a calendar view from ``start`` to ``end`` returns an item: Exchange leaves out
    items that end before the view's start and items that start on or after its end
    (https://learn.microsoft.com/exchange/client-developer/web-service-reference/calendarview).
    So an item ending exactly at the view's start is returned, one starting exactly at its end
    is not, and a zero-length item needs no rule of its own. Graph's calendarView is the same
    mailbox query and answers the same way."""
    return item_end >= start and item_start < end


def _moved_end(item: CalendarItem, new_start: datetime) -> datetime:
    """The end of ``item`` moved to start at ``new_start`` (an occurrence, or a series moved
    onto its first pattern day). An all-day item keeps its number of calendar days, ending at
    midnight in its zone even when a clock change lies between (its length in hours differs
    then); any other item keeps its length."""
    assert item.start is not None
    assert item.end is not None
    if not item.is_all_day:
        return new_start + (item.end - item.start)
    zone = ZoneInfo(item.time_zone)
    days = (item.end.astimezone(zone).date() - item.start.astimezone(zone).date()).days
    new_day = new_start.astimezone(zone).date() + timedelta(days=days)
    return recurrence.local_start(new_day, _MIDNIGHT, zone)


def all_day_bounds(start: datetime, end: datetime, time_zone: str) -> tuple[datetime, datetime]:
    """Where Exchange puts an all-day item that was sent with these times: the start moves down
    and the end up to midnight in the item's zone; midnights stay
    (https://learn.microsoft.com/exchange/client-developer/exchange-web-services/how-to-create-all-day-events-by-using-ews-in-exchange).
    Midnights are compared as instants, so a zone whose midnight falls in a clock change gets
    the same answer the second time."""
    zone = ZoneInfo(time_zone)
    start_day = start.astimezone(zone).date()
    end_day = end.astimezone(zone).date()
    if end != recurrence.local_start(end_day, _MIDNIGHT, zone):
        end_day += timedelta(days=1)
    return (
        recurrence.local_start(start_day, _MIDNIGHT, zone),
        recurrence.local_start(end_day, _MIDNIGHT, zone),
    )


def cut_to_limit(text: str, limit: int) -> str:
    """The longest start of ``text`` that fits ``limit`` characters as Exchange counts them.
    Exchange (.NET) and Outlook's JavaScript API count UTF-16 code units, so a character outside
    the Basic Multilingual Plane (most emoji) takes two; such a character is dropped whole
    rather than split, since half of it could not be sent back as XML or JSON text."""
    if len(text) <= limit // 2:
        return text  # fits whatever the characters are
    used = 0
    for index, character in enumerate(text):
        used += 2 if ord(character) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text


def _keep_as_exchange_does(item: CalendarItem) -> None:
    """What Exchange does to every item it saves, whichever protocol wrote it: subject and
    location cut to their limits, an all-day item's times moved onto midnights."""
    item.subject = cut_to_limit(item.subject, SUBJECT_LIMIT)
    item.location = cut_to_limit(item.location, LOCATION_LIMIT)
    if item.is_all_day and item.start is not None and item.end is not None:
        item.start, item.end = all_day_bounds(item.start, item.end, item.time_zone)


def _check_times(start: datetime | None, end: datetime | None, time_zone: str) -> None:
    for value in (start, end):
        if value is not None and value.tzinfo is None:
            raise SimError("ErrorInvalidRequest", "Times in the store must be timezone-aware.")
    if start is not None and end is not None and end < start:
        raise SimError(
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "The end date is earlier than the start date.",
        )
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise SimError("ErrorTimeZone", f"Unknown time zone {time_zone!r}.") from error


def _coerce_field(name: str, value: object) -> object:
    enum_type = _ENUM_FIELDS.get(name)
    if enum_type is not None and value is not None:
        try:
            return enum_type(str(value))
        except ValueError as error:
            raise SimError("ErrorInvalidPropertySet", f"Invalid {name}: {value!r}") from error
    invalid = SimError("ErrorInvalidValueForProperty", f"Invalid {name}: {value!r}")
    if name == "categories":
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise invalid
        return [str(category) for category in value]
    if name == "reminder_minutes_before_start":
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid
        if not 0 <= value <= MAX_REMINDER_MINUTES and value != REMINDER_UNSET_MARKER:
            raise invalid
    if name == "conference_type" and value not in (0, 1, 2):
        raise invalid
    if name == "online_meeting_provider" and value not in ONLINE_MEETING_PROVIDERS:
        raise invalid
    if name == "uid":
        if not isinstance(value, str) or not value.strip():
            raise invalid
        return value.strip()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise SimError("ErrorInvalidRequest", f"{name} must be timezone-aware.")
        return value.astimezone(UTC)
    return value


class InjectedFault(Exception):
    """Raised by a protocol handler for a fault the HTTP layer carries out (reset, 500, 503,
    401): the server turns it into the wire behaviour."""

    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.kind)
        self.fault = fault


# Faults whose wire behaviour is the same for every protocol (the HTTP layer carries them out).
TRANSPORT_FAULTS = frozenset({"http_500", "http_503", "reset", "unauthorized"})


def carry_out_common_fault(fault: Fault) -> None:
    """What every protocol does with a fault that is not its own: a slow one delays the answer,
    a transport one is raised as ``InjectedFault`` for the server; any other kind (the other
    protocol's) leaves the request alone."""
    if fault.kind == "slow":
        time.sleep(fault.delay_s)
    elif fault.kind in TRANSPORT_FAULTS:
        raise InjectedFault(fault)


def iter_attendees(item: CalendarItem) -> Iterable[Attendee]:
    """Required then optional attendees."""
    yield from item.required_attendees
    yield from item.optional_attendees
