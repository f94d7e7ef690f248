"""``calendarView/delta()``: rounds of change tracking over a time window.

A delta token names a *snapshot*: for every event that was in the window when the token was
issued, a fingerprint of what the client was sent. The next round compares the window now with
that snapshot — new or changed fingerprints are sent as events, ids that left the window
(deleted, cancelled-and-removed, declined, moved elsewhere) as ``@removed`` — so a round returns
exactly what changed since the token, however it changed. Snapshots and the pages of a round in
progress live in this tracker (bounded; an evicted one is a 410, as Graph forgets old tokens).

Tokens themselves come from ``ExchangeStore.encode_sync_state`` (tamper-evident, per mailbox,
invalidated by ``invalidate_sync_states``) carrying the window and the snapshot or page
position; when the mailbox's change log has not moved since the token, nothing is recomputed.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from sim.graph.errors import GraphError
from sim.store import CalendarItem, ExchangeStore, SimError

Fingerprint = tuple[object, ...]


def _fingerprint(item: CalendarItem) -> Fingerprint:
    # The change key alone is not enough for virtual occurrences, whose content follows the
    # master: include what a client shows.
    return (
        item.change_key,
        item.last_modified,
        item.start,
        item.end,
        item.subject,
        item.is_cancelled,
        item.response_type,
        item.free_busy,
        item.sensitivity,
        item.location,
    )


@dataclass
class DeltaEntry:
    item_id: str  # internal id (occurrence ids included)
    removed: bool


@dataclass
class DeltaRound:
    """One computed round: every entry to send, and the snapshot its deltaLink will name."""

    mailbox: str
    start: str
    end: str
    seq: int
    entries: list[DeltaEntry]
    snapshot_id: str
    options: dict[str, str]  # query options of the first request, carried in every token


@dataclass
class DeltaPage:
    entries: list[DeltaEntry]
    next_token: str | None  # a skip token when more pages follow
    delta_token: str | None  # the round's delta token on its last page


def sync_state_gone(detail: str) -> GraphError:
    return GraphError(
        410,
        "syncStateNotFound",
        f"The sync state is not valid ({detail}); start a new round with startDateTime and "
        "endDateTime.",
    )


class DeltaTracker:
    """Snapshots and rounds for every mailbox's calendarView delta."""

    def __init__(self, store: ExchangeStore, *, max_snapshots: int = 5000, max_rounds: int = 500):
        self.store = store
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, dict[str, Fingerprint]] = OrderedDict()
        self._rounds: OrderedDict[str, DeltaRound] = OrderedDict()
        self._max_snapshots = max_snapshots
        self._max_rounds = max_rounds
        self._ids = itertools.count(1)

    # --- the three kinds of request ------------------------------------------------------------

    def start_round(
        self,
        mailbox: str,
        start: datetime,
        end: datetime,
        page_size: int,
        options: dict[str, str] | None = None,
    ) -> DeltaPage:
        """A first request (window given): every event in the window. ``options`` (e.g. a
        $select) travel in the round's tokens, as Graph encodes the first request's options."""
        return self._compute(
            mailbox, start.isoformat(), end.isoformat(), {}, page_size, options or {}
        )

    def options(self, mailbox: str, token: str) -> dict[str, str]:
        """The first request's options carried by a delta or skip token."""
        _, extra = self._decode(mailbox, token)
        return {k[4:]: v for k, v in extra.items() if k.startswith("opt_")}

    def continue_from_delta(self, mailbox: str, token: str, page_size: int) -> DeltaPage:
        """A deltaLink followed: what changed since its snapshot."""
        seq, extra = self._decode(mailbox, token)
        if extra.get("kind") != "delta":
            raise sync_state_gone("not a delta token")
        with self._lock:
            snapshot = self._snapshots.get(extra.get("snap", ""))
            if snapshot is not None:
                self._snapshots.move_to_end(extra["snap"])
        if snapshot is None:
            raise sync_state_gone("the delta token has expired")
        if self.store.current_seq(mailbox) == seq:
            return DeltaPage([], None, token)  # idle poll: nothing can have changed
        options = {k[4:]: v for k, v in extra.items() if k.startswith("opt_")}
        return self._compute(
            mailbox,
            extra["start"],
            extra["end"],
            snapshot,
            page_size,
            options,
            previous_id=extra["snap"],
        )

    def continue_from_skip(self, mailbox: str, token: str, page_size: int) -> DeltaPage:
        """A nextLink followed: the next page of a round in progress."""
        _, extra = self._decode(mailbox, token)
        if extra.get("kind") != "skip":
            raise sync_state_gone("not a skip token")
        with self._lock:
            round_ = self._rounds.get(extra.get("round", ""))
        if round_ is None:
            raise sync_state_gone("the round has expired")
        return self._page(extra["round"], round_, int(extra.get("offset", "0")), page_size)

    # --- internals -----------------------------------------------------------------------------

    def _decode(self, mailbox: str, token: str) -> tuple[int, dict[str, str]]:
        try:
            return self.store.decode_sync_state(mailbox, token)
        except SimError as error:
            raise sync_state_gone(error.message) from None

    def _compute(
        self,
        mailbox: str,
        start_text: str,
        end_text: str,
        previous: dict[str, Fingerprint],
        page_size: int,
        options: dict[str, str],
        *,
        previous_id: str | None = None,
    ) -> DeltaPage:
        start = datetime.fromisoformat(start_text)
        end = datetime.fromisoformat(end_text)
        with self.store.lock:
            seq = self.store.current_seq(mailbox)
            visible = self.store.calendar_view(mailbox, start, end)
            current = {item.id: _fingerprint(item) for item in visible}
        changed = [
            DeltaEntry(item.id, removed=False)
            for item in visible
            if previous.get(item.id) != current[item.id]
        ]
        gone = [DeltaEntry(item_id, removed=True) for item_id in previous if item_id not in current]
        with self._lock:
            if previous_id is not None and not changed and not gone:
                snapshot_id = previous_id  # changes elsewhere in the mailbox: same snapshot
            else:
                snapshot_id = str(next(self._ids))
                self._snapshots[snapshot_id] = current
                while len(self._snapshots) > self._max_snapshots:
                    self._snapshots.popitem(last=False)
            round_id = str(next(self._ids))
            round_ = DeltaRound(
                mailbox, start_text, end_text, seq, changed + gone, snapshot_id, options
            )
            self._rounds[round_id] = round_
            while len(self._rounds) > self._max_rounds:
                self._rounds.popitem(last=False)
        return self._page(round_id, round_, 0, page_size)

    def _page(self, round_id: str, round_: DeltaRound, offset: int, page_size: int) -> DeltaPage:
        entries = round_.entries[offset : offset + page_size]
        carried = {f"opt_{name}": value for name, value in round_.options.items()}
        following = offset + len(entries)
        if following < len(round_.entries):
            token = self.store.encode_sync_state(
                round_.mailbox,
                round_.seq,
                kind="skip",
                start=round_.start,
                end=round_.end,
                round=round_id,
                offset=str(following),
                **carried,
            )
            return DeltaPage(entries, token, None)
        token = self.store.encode_sync_state(
            round_.mailbox,
            round_.seq,
            kind="delta",
            start=round_.start,
            end=round_.end,
            snap=round_.snapshot_id,
            **carried,
        )
        return DeltaPage(entries, None, token)
