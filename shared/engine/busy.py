"""Busy time: which of a staff member's own Exchange events block their availability, and as what.

Pure: an event (a single event, or one occurrence or exception of a series) → the busy block it
makes, or none.

- Cancelled events, and events shown as Free or Working elsewhere, block nothing. Busy, Out of
  office, Tentative (an unanswered invitation included) and an unknown status block.
- Private and Confidential events block with no subject (and nothing else of theirs is kept).
- All-day events block whole days in the staff member's time zone: the days the event covers,
  from that zone's midnight to midnight, so a day-long event in another zone (or across a DST
  change) still blocks exactly the calendar days the staff member sees.
- A series is expanded to its occurrences over the horizon by the caller (``list_events``);
  each occurrence is a block of its own, keyed by the series' item id and the occurrence's start.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from shared.exchange.port import ExchangeEvent, ItemType, Sensitivity, ShowAs
from shared.models import BusyBlock

_NOT_BLOCKING = frozenset({ShowAs.FREE, ShowAs.WORKING_ELSEWHERE})
_PRIVATE = frozenset({Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL})


def blocks_time(event: ExchangeEvent) -> bool:
    """Whether the event makes its owner unavailable."""
    return not event.is_cancelled and event.show_as not in _NOT_BLOCKING and event.end > event.start


def occurrence_id(event: ExchangeEvent) -> str | None:
    """The occurrence part of a block's key: the occurrence's original start in UTC for a
    series' occurrence or exception, None for a single event."""
    if event.item_type in (ItemType.OCCURRENCE, ItemType.EXCEPTION):
        return event.start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return None


def busy_block(
    event: ExchangeEvent, time_zone: str, *, event_id: str | None = None
) -> BusyBlock | None:
    """The block ``event`` makes for a staff member in ``time_zone`` (None: it blocks nothing).
    ``event_id``: the id the block is filed under (a series' occurrences under the series')."""
    if not blocks_time(event):
        return None
    start, end = event.start, event.end
    if event.is_all_day:
        start, end = _whole_days(start, end, ZoneInfo(time_zone))
    private = event.sensitivity in _PRIVATE
    return BusyBlock(
        start=start.astimezone(UTC),
        end=end.astimezone(UTC),
        all_day=event.is_all_day,
        private=private,
        subject=None if private else (event.subject or None),
        event_id=event_id or event.item_id,
        occurrence_id=occurrence_id(event),
    )


def _whole_days(start: datetime, end: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The staff member's days an all-day event covers: it starts at a midnight of its own zone,
    which may not be the staff member's; the nearest date is the day meant."""
    days = max(1, round((end - start) / timedelta(days=1)))
    first = (start.astimezone(zone) + timedelta(hours=12)).date()
    begins = datetime.combine(first, time(0), tzinfo=zone)
    ends = datetime.combine(first + timedelta(days=days), time(0), tzinfo=zone)
    return begins, ends


def changed_window(
    before: Iterable[BusyBlock], after: Iterable[BusyBlock]
) -> tuple[datetime, datetime] | None:
    """The window a reader of busy time must look at again after ``before`` became ``after``
    (None when nothing changed)."""
    old = {_identity(block): block for block in before}
    new = {_identity(block): block for block in after}
    touched = [
        block
        for key in old.keys() | new.keys()
        if old.get(key) != new.get(key)
        for block in (old.get(key), new.get(key))
        if block is not None
    ]
    if not touched:
        return None
    return min(b.start for b in touched), max(b.end for b in touched)


def _identity(block: BusyBlock) -> tuple[str, str]:
    return block.event_id, block.occurrence_id or ""


def _content(block: BusyBlock) -> tuple[datetime, datetime, bool, bool, str | None]:
    return (block.start, block.end, block.all_day, block.private, block.subject)


def content_changed_window(
    before: Iterable[BusyBlock], after: Iterable[BusyBlock]
) -> tuple[datetime, datetime] | None:
    """Like ``changed_window``, but blocks are compared by what the booking platform sees
    (times, all-day, private, subject), not by the ids Exchange gave them: after a mailbox moved
    to another connection, the same busy time under new ids is no change."""
    old = Counter(_content(block) for block in before)
    new = Counter(_content(block) for block in after)
    touched = [*(old - new).elements(), *(new - old).elements()]
    if not touched:
        return None
    return min(t[0] for t in touched), max(t[1] for t in touched)
