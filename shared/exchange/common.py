"""What the EWS and Graph adapters share, written once: protocol spellings → the port's enums,
HTTP statuses → the port's typed errors, ``Retry-After`` parsing, the deadline every port call
runs under, and time-zone helpers.

No SDK is imported here (exchangelib lives under ``ews/``, msgraph-sdk under ``graph/``), so both
adapters — and their tests — can use it without paying for the other's imports.

Spellings: EWS and Graph name the same Exchange values differently (EWS ``Accept``,
``RecurringMaster``, ``NoData``; Graph ``accepted``, ``seriesMaster``, ``unknown``). Each table
below is keyed by the lower-cased spelling of both protocols, so one lookup serves either
adapter; a value neither protocol documents maps to the safe default named in each function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Final, Literal, TypeVar
from zoneinfo import ZoneInfo

from shared.exchange.port import (
    AccessDenied,
    AuthenticationFailed,
    CalendarError,
    ChangeKeyConflict,
    EventNotFound,
    ExchangeUnavailable,
    ItemType,
    MailboxNotFound,
    Recurrence,
    RecurrencePattern,
    ResponseType,
    RetryAfter,
    Sensitivity,
    ShowAs,
)

# --- protocol spellings → port enums ------------------------------------------------------------

_RESPONSES: Final[Mapping[str, ResponseType]] = {
    # EWS ResponseTypeType
    "unknown": ResponseType.NONE,
    "organizer": ResponseType.NONE,
    "noresponsereceived": ResponseType.NONE,
    "accept": ResponseType.ACCEPTED,
    "tentative": ResponseType.TENTATIVE,
    "decline": ResponseType.DECLINED,
    # Graph responseType
    "none": ResponseType.NONE,
    "notresponded": ResponseType.NONE,
    "accepted": ResponseType.ACCEPTED,
    "tentativelyaccepted": ResponseType.TENTATIVE,
    "declined": ResponseType.DECLINED,
}

# Free/busy status, both ways and in both spellings: EWS LegacyFreeBusyType, Graph
# freeBusyStatus (the same words up to case, but for EWS NoData / Graph unknown).
FREE_BUSY_SPELLINGS: Final[Mapping[ShowAs, tuple[str, str]]] = {
    ShowAs.FREE: ("Free", "free"),
    ShowAs.TENTATIVE: ("Tentative", "tentative"),
    ShowAs.BUSY: ("Busy", "busy"),
    ShowAs.OOF: ("OOF", "oof"),
    ShowAs.WORKING_ELSEWHERE: ("WorkingElsewhere", "workingElsewhere"),
    ShowAs.UNKNOWN: ("NoData", "unknown"),
}
_SHOW_AS: Final[Mapping[str, ShowAs]] = {
    spelling.lower(): show_as
    for show_as, spellings in FREE_BUSY_SPELLINGS.items()
    for spelling in spellings
}


def ews_free_busy(show_as: ShowAs) -> str:
    """How EWS spells a free/busy status calbridge writes (LegacyFreeBusyStatus)."""
    return FREE_BUSY_SPELLINGS[show_as][0]


def graph_show_as(show_as: ShowAs) -> str:
    """How Graph spells a free/busy status calbridge writes (showAs)."""
    return FREE_BUSY_SPELLINGS[show_as][1]


_SENSITIVITIES: Final[Mapping[str, Sensitivity]] = {
    # the same four words in both protocols, up to case
    "normal": Sensitivity.NORMAL,
    "personal": Sensitivity.PERSONAL,
    "private": Sensitivity.PRIVATE,
    "confidential": Sensitivity.CONFIDENTIAL,
}

_ITEM_TYPES: Final[Mapping[str, ItemType]] = {
    # EWS CalendarItemTypeType
    "single": ItemType.SINGLE,
    "occurrence": ItemType.OCCURRENCE,
    "exception": ItemType.EXCEPTION,
    "recurringmaster": ItemType.SERIES_MASTER,
    # Graph eventType
    "singleinstance": ItemType.SINGLE,
    "seriesmaster": ItemType.SERIES_MASTER,
}


def _key(value: object) -> str:
    return value.strip().lower() if isinstance(value, str) else ""


def attendee_response(value: object) -> ResponseType:
    """An attendee's response in either protocol's spelling; unknown → ``NONE``."""
    return _RESPONSES.get(_key(value), ResponseType.NONE)


def event_show_as(value: object) -> ShowAs:
    """Free/busy status in either spelling. Absent → ``BUSY`` (Exchange's default for an
    appointment); present but unknown → ``UNKNOWN``."""
    if value is None or value == "":
        return ShowAs.BUSY
    return _SHOW_AS.get(_key(value), ShowAs.UNKNOWN)


_DAYS_MATTER: Final = frozenset(
    {
        RecurrencePattern.WEEKLY,
        RecurrencePattern.RELATIVE_MONTHLY,
        RecurrencePattern.RELATIVE_YEARLY,
    }
)
_Pattern = RecurrencePattern
_RELATIVE: Final = frozenset({_Pattern.RELATIVE_MONTHLY, _Pattern.RELATIVE_YEARLY})
_ABSOLUTE: Final = frozenset({_Pattern.ABSOLUTE_MONTHLY, _Pattern.ABSOLUTE_YEARLY})
_YEARLY: Final = frozenset({_Pattern.ABSOLUTE_YEARLY, _Pattern.RELATIVE_YEARLY})


def series_recurrence(
    pattern: RecurrencePattern,
    *,
    interval: int | None,
    days_of_week: tuple[str, ...],
    day_of_month: int | None,
    month: int | None,
    index: str | None,
    first_day_of_week: str | None,
    start_date: date,
    end_date: date | None,
    occurrences: int | None,
) -> Recurrence:
    """A series' rule with only the parts its pattern uses: Graph fills every field of every
    pattern (``dayOfMonth`` 0, ``index`` "first", ``firstDayOfWeek`` "sunday"), EWS only those
    its pattern element has, and the same rule must read the same through both. A yearly
    pattern repeats every year (EWS has no interval there; Graph says 1)."""
    return Recurrence(
        pattern=pattern,
        interval=1 if pattern in _YEARLY else max(1, interval or 1),
        days_of_week=days_of_week if pattern in _DAYS_MATTER else (),
        day_of_month=day_of_month if pattern in _ABSOLUTE and day_of_month else None,
        month=month if pattern in _YEARLY and month else None,
        index=index if pattern in _RELATIVE else None,
        first_day_of_week=first_day_of_week if pattern is RecurrencePattern.WEEKLY else None,
        start_date=start_date,
        end_date=end_date if occurrences is None else None,
        occurrences=occurrences,
    )


def event_sensitivity(value: object) -> Sensitivity:
    """Sensitivity in either spelling. Unknown → ``PRIVATE``: when in doubt, hide the details
    (a private event's subject must never leave Exchange)."""
    if value is None or value == "":
        return Sensitivity.NORMAL
    return _SENSITIVITIES.get(_key(value), Sensitivity.PRIVATE)


def event_item_type(value: object) -> ItemType:
    """Calendar item type in either spelling; absent or unknown → ``SINGLE``."""
    return _ITEM_TYPES.get(_key(value), ItemType.SINGLE)


# --- time ---------------------------------------------------------------------------------------


def utc(moment: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already (as both protocols send
    times when asked for UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def wall_clock(instant: datetime, zone: str) -> datetime:
    """The naive wall-clock time that ``instant`` shows in the IANA ``zone`` (what Graph's
    ``dateTimeTimeZone.dateTime`` carries next to the zone's name)."""
    return utc(instant).astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def in_zone(instant: datetime, zone: str) -> datetime:
    """``instant`` as an aware datetime in the IANA ``zone`` (same instant, local wall clock)."""
    return utc(instant).astimezone(ZoneInfo(zone))


# --- failures -----------------------------------------------------------------------------------

# When a server throttles without saying for how long.
DEFAULT_RETRY_AFTER_S: Final = 30.0


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (delta-seconds or an HTTP date);
    None when absent or unreadable. Never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


def error_for_http_status(
    status: int,
    detail: str,
    *,
    mailbox: str | None = None,
    missing: Literal["item", "mailbox"] = "item",
    retry_after: float | None = None,
) -> CalendarError:
    """The port error for an HTTP error status.

    ``detail`` becomes the message: callers build it from the operation, mailbox, status and
    protocol error code — never from the server's error text, which can quote request content.
    ``missing`` says what a 404 means for this request (the item, or the mailbox itself).

    401 → AuthenticationFailed; 403 → AccessDenied; 404 → EventNotFound / MailboxNotFound;
    409 and 412 → ChangeKeyConflict; 429 → RetryAfter (``retry_after`` or a default); 408 and
    5xx → ExchangeUnavailable; anything else → a plain, not retried CalendarError (a request
    Exchange refuses as malformed will not succeed by repeating it).
    """
    if status == 401:
        return AuthenticationFailed(detail, mailbox=mailbox)
    if status == 403:
        return AccessDenied(detail, mailbox=mailbox)
    if status == 404:
        if missing == "mailbox":
            return MailboxNotFound(detail, mailbox=mailbox)
        return EventNotFound(detail, mailbox=mailbox)
    if status in (409, 412):
        return ChangeKeyConflict(detail, mailbox=mailbox)
    if status == 429:
        seconds = DEFAULT_RETRY_AFTER_S if retry_after is None else retry_after
        return RetryAfter(seconds, mailbox=mailbox, detail=detail)
    if status == 408 or status >= 500:
        return ExchangeUnavailable(detail, mailbox=mailbox)
    return CalendarError(detail, mailbox=mailbox)


T = TypeVar("T")

# One port call (its requests, an NTLM handshake or a token request, the wait for a thread) ends
# by then, whatever the server does: ``ExchangeUnavailable``, and the host's redelivery takes over.
DEFAULT_CALL_DEADLINE_S: Final = 90.0


async def within_deadline(
    call: Awaitable[T], seconds: float, *, protocol: str, operation: str, mailbox: str
) -> T:
    """Await one port call's work, giving up after ``seconds``: a server that never answers (or
    a pool of threads all held by one) becomes ``ExchangeUnavailable``, which the host's
    redelivery retries, instead of an invocation that never ends. Both adapters use it, so no
    Exchange call is unbounded."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await call
    except TimeoutError:
        if not deadline.expired():
            raise
        raise ExchangeUnavailable(
            f"{protocol} {operation} for {mailbox}: no answer within {seconds:g} s",
            mailbox=mailbox,
        ) from None
