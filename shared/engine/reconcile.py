"""Booking → Exchange: decide what to write so the organizer's calendar shows the appointment.

Pure: no I/O, no SDK, no Azure. The apply worker gathers the inputs, calls
``reconcile_appointment``, executes the plan's actions in order through the calendar port
(``shared.apply.executor``), then stores ``mapping_after(plan, results)``.

The algorithm
-------------
1. **Observe** (``observation_for``), only where the stored mapping cannot be trusted: a
   pending create (its answer may have been lost), a mapping ``in_doubt`` (a write was refused
   as a conflict, its item was missing, its answer was lost), a mailbox that moved to another
   connection (the ids are the old connection's), or a pass after another worker wrote the
   mapping meanwhile (``look_first``). Then the appointment's marker is looked up in the snapshot
   organizer's mailbox, and in the mapping's mailbox when the mapping's event may still be live
   somewhere else; what is found there (``observed``: address → events) is the truth about those
   mailboxes. Otherwise nothing is read: the mapping names the item, its change key (kept current
   by the mailbox sync) and what was written, so a change costs exactly one request.
2. **Decide** (``reconcile_appointment``), level-triggered: make Exchange match the snapshot,
   whatever happened before; never replay a diff.
   - A snapshot older than the mapping's ``applied_version`` is a stale message: do nothing.
   - Booked: first name the situation (``classify``: fresh, continuing, pending create, handover,
     cancelled in Outlook) and what the lookup found in the organizer's mailbox (the mapped item,
     another of ours, nothing); one table (``_BOOKED``) maps the pair to what is written and why. In
     words: exactly one live event in the organizer's mailbox. An event already there carrying the
     marker is adopted (updated), never duplicated: that makes a create retried after a lost answer
     idempotent (with the deterministic ``transaction_id`` as a second guard, which Graph honours).
     It is updated when the draft says something new, when Exchange shows another time (an
     Outlook move the booking platform answered with a newer snapshot: the platform is the
     system of record and wins), or when the set of attendees we could invite changed; otherwise
     nothing is written. No live event → create. Extra live events with the marker (two racing
     creates) are cancelled. A trusted mapping's update is addressed by its item id and guarded
     by its change key.
   - **Outlook changes nobody has seen yet**: when a lookup finds the mapped item changed since
     the change key the mapping holds (or gone), the mailbox sync has not read that change. A
     snapshot that is not newer than the applied one never writes over it (Outlook wins until
     the booking platform answers, as for a move the sync has reported): nothing is written, and
     the sync reports it. A newer snapshot is the platform's word and is written — but not
     before the sync has had the chance to read the change (``OUTLOOK_CHANGE_READ_FIRST``: the
     worker asks for the organizer's mailbox to be read and comes back), or calbridge's write
     would hide the move, decline or deletion from it for good. It comes back until the sync
     has read the change (the mapping then holds its change key), at most ``READ_FIRST_WAITS``
     times per change: a mailbox that cannot be read does not hold the booking back for ever.
     A mailbox moved to another connection: the mapped item is found by its meeting's UID
     under the new connection's id, and the change key the mapping holds is the old
     connection's; what the sync would tell of the item (a move, a decline: the sync's own rule)
     is the unseen change there, so one made around the administrator's move is told before a
     newer snapshot is written, never overwritten unseen.
   - **A meeting removed before its create was recorded**: a worker that dies between its create
     and storing the outcome leaves the pending note; should the organizer cancel or delete the
     meeting in Outlook before the message comes back, the marker finds nothing. Where the
     protocol lets calbridge choose the UID (EWS: ``ChosenUids``), the note keeps it, and the
     attendees invited are asked for a copy by it (``copy_lookups``): a copy says the create
     happened, so the removal is told as the organizer's cancellation and nothing is
     re-created (``REMOVED_IN_OUTLOOK``). Without attendees, or over Graph (which chooses the
     UID itself and lists no deleted event), nothing tells the two apart: created again.
   - Handover: the organizer changed (removed themselves, or was reassigned, or their mailbox
     moved to another address): cancel the old event in the old mailbox first (Exchange cancels
     its copies), then create (or adopt) the event in the new organizer's mailbox with the
     remaining staff as attendees. Executing stops at the first failure, so a half-done
     handover never leaves two live events.
   - Cancelled: cancel the mapped event and every live marker event in the mailboxes observed.
     A cancellation that arrives before any event was written is still recorded (a tombstone
     mapping without item id), so an older "booked" message delivered later creates nothing.
   - Booked at a version the mapping already recorded as cancelled: the organizer cancelled in
     Outlook and the booking platform has not answered yet; nothing is re-created.
   - A staff member without a known mailbox: the organizer → nothing can be written, a
     ``RecordProblem`` says why; a secondary → the event is written without them, and recorded.
   - **A decline stands**: a secondary who declined in Outlook (the mailbox sync recorded it)
     is left off the attendees of every write while the snapshot still names them, for an
     update reaches every attendee the item lists, one who declined as a new invitation. No
     write is made for a decline alone, and none when the booking platform answers it with a
     snapshot that no longer names them (``answered_declines``): the organizer's item keeps
     showing the decline, and nothing reaches the one who declined. The next write the
     appointment needs anyway (a new time, a new title) leaves them off the item. Named again
     after the platform dropped them, they are invited afresh.
3. **Record**: the new mapping comes from what the executor reports, never from what the plan
   hoped (``mapping_after``). All actions done → ``applied_version`` advances to the snapshot's.
   A failure → the previous mapping stays (plus ``last_error``), so the redelivered message
   re-decides from the same ground; every action is idempotent (cancelling what is gone is
   quiet, a create finds its earlier attempt by marker or transaction id).
   A create may take effect even when its answer is lost (timeout, crash). So before a create
   the executor stores ``pending_create(plan, action)`` — the mapping pointing at the target
   mailbox with no item id yet — and a failed create leaves that same pending mapping. The
   next pass then looks in that mailbox: it adopts the event there, or, if the organizer has
   changed meanwhile, cancels it. No event is ever written where the mapping does not point.
   An event found for the very snapshot it was created from is adopted as it is, without a
   write and without a change key (``ADOPTED_AS_IT_IS``): whatever differs from the draft — a
   time, a title, an attendee's decline — was changed in Outlook since, and the mailbox sync
   reports it; writing the draft again would undo it unseen. Found for a newer snapshot, it is
   adopted the same way at the version it was made for, and the newer snapshot waits for the
   mailbox sync to read it (``OUTLOOK_CHANGE_READ_FIRST``): a lookup does not show attendees'
   answers, and the newer draft would invite one who declined afresh.

Echo rule: every write's new change key lands in the mapping; the Exchange → booking direction
treats a change whose change key equals the stored one as our own write, never as a user's.
Every write also stamps its times on the item (``EventDraft.written``, in the same request), so
a write whose mapping is not stored yet (or was overtaken by a concurrent delivery) is known as
calbridge's too (``shared.engine.outlook``). The
write path never stores a change key it did not write itself (a key seen in a lookup would hide
that change from the mailbox sync).

Errors: action failures are recorded in ``EventMapping.last_error``; how the worker goes on after
each is said in ``shared.exchange.port``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from shared.engine.content import attendee_mailboxes, draft_digest, event_draft
from shared.engine.marker import marker_for
from shared.engine.outlook import AppointmentCancelled, OutlookEvent, organizer_item_changed
from shared.exchange.port import (
    CalendarError,
    EventDraft,
    EventRef,
    ExchangeEvent,
    ExchangeUnavailable,
)
from shared.models import AppointmentSnapshot, AppointmentStatus, EventMapping, MailboxRef

# --- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateEvent:
    """Create the event in the organizer's mailbox (invitations go to the draft's attendees)."""

    mailbox: MailboxRef
    draft: EventDraft
    transaction_id: str


@dataclass(frozen=True)
class UpdateEvent:
    """Make an existing organizer's item say what the draft says (updates go to attendees)."""

    mailbox: MailboxRef
    item_id: str
    change_key: str | None
    draft: EventDraft


@dataclass(frozen=True)
class CancelEvent:
    """Cancel (meeting) or delete (no attendees) an item; quiet when it is already gone. Found
    gone, the meeting ``uid``'s copies in ``copies`` are made sure of: the organizer may have
    deleted it in Outlook without sending cancellations."""

    mailbox: MailboxRef
    item_id: str
    uid: str | None = None
    copies: tuple[MailboxRef, ...] = ()


@dataclass(frozen=True)
class CancelCopy:
    """Cancel an attendee's copy of a meeting whose organizer's item is gone, deleted in Outlook
    without sending cancellations before calbridge stored its id: Exchange leaves the copy on
    the attendee's calendar. Through the attendee's own connection; quiet when it is gone."""

    mailbox: MailboxRef
    item_id: str
    uid: str


@dataclass(frozen=True)
class RecordProblem:
    """Something that keeps the calendar from matching the snapshot fully; no Exchange call."""

    staff_id: str
    message: str


ExchangeAction = CreateEvent | UpdateEvent | CancelEvent | CancelCopy
Action = ExchangeAction | RecordProblem


class PlanReason(StrEnum):
    """Why the plan is what it is (for logs and tests)."""

    STALE = "stale"
    UP_TO_DATE = "up_to_date"
    CREATE = "create"
    RECREATE = "recreate"
    ADOPT = "adopt"
    UPDATE = "update"
    HANDOVER = "handover"
    CANCEL = "cancel"
    NOTHING_TO_CANCEL = "nothing_to_cancel"
    CANCELLED_IN_EXCHANGE = "cancelled_in_exchange"
    ORGANIZER_UNKNOWN = "organizer_unknown"
    # A lookup found the mapped item changed (or gone) in Outlook since the change key the
    # mapping holds, and the snapshot is not newer: left for the mailbox sync to report.
    OUTLOOK_CHANGE_UNSEEN = "outlook_change_unseen"
    # The same, and the snapshot is newer: it is written once the mailbox sync has read (and
    # reported) the change, or on the next pass if the sync still has not (``read_first``).
    OUTLOOK_CHANGE_READ_FIRST = "outlook_change_read_first"
    # A pending create's event found for the very snapshot it was created from: adopted as it
    # is, without a write; whatever Outlook changed since is the mailbox sync's to report.
    ADOPTED_AS_IT_IS = "adopted_as_it_is"
    # A pending create made its meeting (its attendees hold copies by the UID it was given)
    # and the organizer's item is gone: cancelled or deleted in Outlook before the create's
    # outcome was stored. Told as the organizer's cancellation; nothing is re-created; the live
    # copies a deletion without cancellations left are cancelled (``CancelCopy``).
    REMOVED_IN_OUTLOOK = "removed_in_outlook"


@dataclass(frozen=True)
class ReconcilePlan:
    """An ordered list of actions plus what ``mapping_after`` needs to record their outcome.

    ``organizer`` is the mailbox the appointment's event lives in once the plan is done (None
    when it is unknown); ``generation`` the mapping generation the plan's event belongs to.
    """

    org: str
    appointment_id: str
    version: int
    status: AppointmentStatus
    previous: EventMapping | None
    reason: PlanReason
    actions: tuple[Action, ...] = ()
    organizer: MailboxRef | None = None
    attendee_staff_ids: tuple[str, ...] = ()
    generation: int = 0
    # The snapshot's booked times (a booked snapshot's plan): recorded once it is applied.
    booked: tuple[datetime, datetime] | None = None
    # OUTLOOK_CHANGE_READ_FIRST: the unseen change the write waits for.
    read_first: str | None = None
    # A booked plan: the declines the snapshot has not answered yet (None: as recorded).
    standing_declines: tuple[str, ...] | None = None
    # ADOPTED_AS_IT_IS: the event adopted, and the digest of the draft it was made from;
    # OUTLOOK_CHANGE_READ_FIRST: a pending create's event, adopted at the version it was made for.
    adopted: ExchangeEvent | None = None
    adopted_digest: str | None = None
    # Outlook-side changes this pass learned and the booking platform is told of, once the
    # mapping is stored (REMOVED_IN_OUTLOOK: no mailbox sync can tell it, the item is gone).
    told: tuple[OutlookEvent, ...] = ()

    @property
    def exchange_actions(self) -> tuple[ExchangeAction, ...]:
        return tuple(a for a in self.actions if not isinstance(a, RecordProblem))

    @property
    def problems(self) -> tuple[RecordProblem, ...]:
        return tuple(a for a in self.actions if isinstance(a, RecordProblem))


@dataclass(frozen=True)
class MarkerLookup:
    """The observation the engine needs: the marker's events in this mailbox."""

    mailbox: MailboxRef
    marker: str


@dataclass(frozen=True)
class CopyLookup:
    """A second look, after the marker's: the copy of the meeting ``uid`` in an attendee's
    mailbox (see ``copy_lookups``)."""

    mailbox: MailboxRef
    uid: str


# --- executor results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """A create or update succeeded; the organizer's item is now ``ref``."""

    ref: EventRef


@dataclass(frozen=True)
class Completed:
    """A cancel succeeded (or found nothing to cancel), or a problem was recorded."""


@dataclass(frozen=True)
class Failed:
    """The action raised; the executor stops at the first failure. ``planned_uid``: the UID a
    failed create would have given its event (``ChosenUids``), kept while it may have made it."""

    error: CalendarError
    planned_uid: str | None = None


ActionResult = Written | Completed | Failed

# --- decisions ---------------------------------------------------------------------------------

# How many times a newer snapshot comes back for one Outlook change the mailbox sync has not
# read (``READ_FIRST_DELAY`` apart in the apply worker: about two minutes in all).
READ_FIRST_WAITS: Final = 8

_TRANSACTION_NAMESPACE = uuid.UUID("3b0f6a52-9d4e-4f1b-8c27-5e90a1d3c6f8")

Observation = Mapping[str, Sequence[ExchangeEvent]]
"""What the ``observation_for`` lookups found: mailbox address → marker events there. A mailbox
that was not looked at is absent (an empty list means: looked, found nothing); a trusted mapping's
mailbox is not looked at."""

Copies = Mapping[str, ExchangeEvent]
"""What the ``copy_lookups`` found: attendee's address → their copy of the meeting (live or
cancelled); an attendee without one, or not looked at, is absent."""


def transaction_id(org: str, appointment_id: str, organizer_staff_id: str, generation: int) -> str:
    """The create's idempotency key (Graph ``transactionId``): the same for every retry of one
    create, different for each new event of the appointment (new organizer or generation)."""
    name = f"{org}/{appointment_id}/{organizer_staff_id}/{generation}"
    return str(uuid.uuid5(_TRANSACTION_NAMESPACE, name))


def _is_stale(snapshot: AppointmentSnapshot, mapping: EventMapping | None) -> bool:
    return mapping is not None and snapshot.version < mapping.applied_version


def _mapping_mailbox(mapping: EventMapping, directory: Mapping[str, MailboxRef]) -> MailboxRef:
    """The mailbox the mapping's event was written to. The staff member's current connection
    when they still live at that address (a mailbox that moved connections keeps its events),
    otherwise the connection the mapping recorded."""
    current = directory.get(mapping.organizer_staff_id)
    if current is not None and current.address == mapping.mailbox:
        return current
    return MailboxRef(
        staff_id=mapping.organizer_staff_id,
        connection_id=mapping.connection_id,
        address=mapping.mailbox,
        time_zone=current.time_zone if current else "UTC",
    )


def _elsewhere(mapping: EventMapping | None, organizer: MailboxRef | None) -> bool:
    """The mapping's event may be live in a mailbox other than the snapshot organizer's."""
    return (
        mapping is not None
        and not mapping.cancelled
        and (organizer is None or mapping.mailbox != organizer.address)
    )


def trusted(mapping: EventMapping | None, directory: Mapping[str, MailboxRef]) -> bool:
    """Whether the mapping says what Exchange holds, so a pass may write without looking.

    No mapping: nothing was ever created (a pending create is stored before any create). Not
    trusted: a pending create (its answer may be lost), a mapping ``in_doubt``, and an item id
    issued by a connection its mailbox has left."""
    if mapping is None:
        return True
    if mapping.in_doubt:
        return False
    if mapping.cancelled:
        return True
    if mapping.item_id is None:
        return False
    current = directory.get(mapping.organizer_staff_id)
    return not (
        current is not None
        and current.address == mapping.mailbox
        and current.connection_id != mapping.connection_id
    )


def observation_for(
    org: str,
    appointment_id: str,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    directory: Mapping[str, MailboxRef],
    *,
    look_first: bool = False,
) -> tuple[MarkerLookup, ...]:
    """Where to look before deciding, when the mapping cannot be ``trusted`` (or ``look_first``:
    another worker wrote the mapping during this message's last pass): the marker in the snapshot
    organizer's mailbox, and in the mapping's mailbox while its event may be live there. Nothing
    for a stale message or a trusted mapping."""
    if _is_stale(snapshot, mapping):
        return ()
    if not look_first and trusted(mapping, directory):
        return ()
    marker = marker_for(org, appointment_id)
    organizer = directory.get(snapshot.organizer_staff_id)
    lookups = [MarkerLookup(organizer, marker)] if organizer else []
    if mapping is not None and _elsewhere(mapping, organizer):
        lookups.append(MarkerLookup(_mapping_mailbox(mapping, directory), marker))
    return tuple(lookups)


def copy_lookups(
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    observed: Observation,
    directory: Mapping[str, MailboxRef],
) -> tuple[CopyLookup, ...]:
    """Where to look next when the marker's lookup found nothing of a pending create whose UID
    is known (``ChosenUids``): the attendees it invited, for a copy of its meeting. A copy
    says the create happened and its organizer removed the meeting in Outlook before its
    outcome was stored (``REMOVED_IN_OUTLOOK``); no copy, that it never happened (or made
    nothing but the organizer's item, which is gone too: a meeting without attendees leaves no
    trace to tell it by). Nothing in every other case: this is the one path that costs a
    request per attendee, and it follows only a create whose outcome is unknown."""
    if snapshot.status is not AppointmentStatus.BOOKED or mapping is None or mapping.uid is None:
        return ()
    organizer = directory.get(snapshot.organizer_staff_id)
    if organizer is None or classify(snapshot, mapping, organizer) is not Situation.PENDING_CREATE:
        return ()
    if organizer.address not in observed or _live(observed, organizer.address):
        return ()
    return tuple(
        CopyLookup(directory[staff_id], mapping.uid)
        for staff_id in mapping.attendee_staff_ids
        if staff_id in directory
    )


def mailboxes_called(
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    directory: Mapping[str, MailboxRef],
) -> tuple[MailboxRef, ...]:
    """Every mailbox (on the connection it is reached through) that a pass over ``snapshot``
    may look at or write to: the snapshot organizer's, and the mapping's while its event may be
    live. A mailbox that moved connections is reached through its current one, so the
    connection it left is not needed any more."""
    if _is_stale(snapshot, mapping):
        return ()
    organizer = directory.get(snapshot.organizer_staff_id)
    if organizer is None and snapshot.status is AppointmentStatus.BOOKED:
        return ()  # nothing can be written: only the problem is recorded
    mailboxes = [organizer] if organizer is not None else []
    if mapping is not None and not mapping.cancelled:
        mailboxes.append(_mapping_mailbox(mapping, directory))
    return tuple(mailboxes)


def _live(observed: Observation, address: str) -> list[ExchangeEvent]:
    return [event for event in observed.get(address, ()) if event.is_live]


def _cancel_mapped_and_found(
    mapping: EventMapping,
    where: MailboxRef,
    observed: Observation,
    directory: Mapping[str, MailboxRef],
) -> list[Action]:
    """Cancel everything of ours in the mapping's mailbox: each live marker event found there,
    and the mapped item itself if the lookup did not list it (quiet if it is gone; then its
    attendees' copies are made sure of). The mapped id is only named on the connection that
    issued it."""
    found = _live(observed, where.address)
    actions: list[Action] = [CancelEvent(where, event.item_id) for event in found]
    if (
        mapping.item_id is not None
        and where.connection_id == mapping.connection_id
        and all(event.item_id != mapping.item_id for event in found)
    ):
        copies = tuple(directory[s] for s in mapping.attendee_staff_ids if s in directory)
        actions.insert(0, CancelEvent(where, mapping.item_id, mapping.uid, copies))
    return actions


def copy_holders(snapshot: AppointmentSnapshot, mapping: EventMapping | None) -> list[str]:
    """The staff whose copies of the mapping's meeting a pass over ``snapshot`` may have to
    cancel: its attendees, when the pass cancels it (a cancellation or a hand-over)."""
    if mapping is None or mapping.cancelled:
        return []
    if (
        snapshot.status is AppointmentStatus.BOOKED
        and snapshot.organizer_staff_id == mapping.organizer_staff_id
    ):
        return []
    return list(mapping.attendee_staff_ids)


def reconcile_appointment(
    org: str,
    appointment_id: str,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    observed: Observation,
    directory: Mapping[str, MailboxRef],
    copies: Copies | None = None,
) -> ReconcilePlan:
    """The actions that make Exchange show ``snapshot`` (see the module docstring for the rules).

    ``observed``: what the ``observation_for`` lookups found.
    ``directory``: staff id → mailbox, for every staff member whose mailbox is known.
    ``copies``: what the ``copy_lookups`` found (none asked for: None).
    """
    if _is_stale(snapshot, mapping):
        return ReconcilePlan(
            org, appointment_id, snapshot.version, snapshot.status, mapping, PlanReason.STALE
        )
    organizer = directory.get(snapshot.organizer_staff_id)
    if snapshot.status is AppointmentStatus.CANCELLED:
        return _cancellation(org, appointment_id, snapshot, mapping, observed, organizer, directory)
    if organizer is None:
        problem = RecordProblem(
            snapshot.organizer_staff_id,
            f"organizer {snapshot.organizer_staff_id} has no known mailbox: nothing was written",
        )
        return ReconcilePlan(
            org,
            appointment_id,
            snapshot.version,
            snapshot.status,
            mapping,
            PlanReason.ORGANIZER_UNKNOWN,
            (problem,),
        )
    return _booking(
        org, appointment_id, snapshot, mapping, observed, organizer, directory, copies or {}
    )


def _cancellation(
    org: str,
    appointment_id: str,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    observed: Observation,
    organizer: MailboxRef | None,
    directory: Mapping[str, MailboxRef],
) -> ReconcilePlan:
    actions: list[Action] = []
    if mapping is not None and not mapping.cancelled:
        actions.extend(
            _cancel_mapped_and_found(
                mapping, _mapping_mailbox(mapping, directory), observed, directory
            )
        )
    if organizer is not None and not _same_mailbox_live(mapping, organizer):
        actions.extend(
            CancelEvent(organizer, e.item_id) for e in _live(observed, organizer.address)
        )
    return ReconcilePlan(
        org,
        appointment_id,
        snapshot.version,
        snapshot.status,
        mapping,
        PlanReason.CANCEL if actions else PlanReason.NOTHING_TO_CANCEL,
        tuple(actions),
        organizer=organizer,
        generation=mapping.generation if mapping else 1,
    )


def _same_mailbox_live(mapping: EventMapping | None, organizer: MailboxRef) -> bool:
    """The mapping's (possibly live) event is in the organizer's own mailbox."""
    return mapping is not None and not mapping.cancelled and mapping.mailbox == organizer.address


class Situation(StrEnum):
    """How the stored mapping stands to the organizer's mailbox: named before deciding."""

    FRESH = "fresh"  # nothing of ours known there: no mapping, a re-booking after a
    # cancellation, or a pending create through the connection the mailbox has left
    CONTINUING = "continuing"  # the mapping's item, written there through this connection
    MOVED = "moved"  # the mapping's item, known by the ids of the connection the mailbox has
    # left (an administrator moved it); found again by the meeting's UID under its new id
    PENDING_CREATE = "pending_create"  # a create there whose outcome is unknown (no item id)
    HANDOVER = "handover"  # the mapping's event is live in another mailbox
    CANCELLED_IN_OUTLOOK = "cancelled_in_outlook"  # cancelled in Outlook at this very version


class Found(StrEnum):
    """What the marker lookup found live in the organizer's mailbox."""

    MAPPED = "mapped"  # the mapping's own item
    OTHER = "other"  # another event with the marker (the first in ``live_first`` order)
    NOTHING = "nothing"


class Generation(StrEnum):
    SAME = "same"  # the event the mapping's generation made (or is making)
    NEXT = "next"  # a new event: a new transaction id for its create


def classify(
    snapshot: AppointmentSnapshot, mapping: EventMapping | None, organizer: MailboxRef
) -> Situation:
    """The situation of a booked snapshot (see ``Situation``)."""
    if mapping is None:
        return Situation.FRESH
    if mapping.cancelled and snapshot.version <= mapping.applied_version:
        return Situation.CANCELLED_IN_OUTLOOK
    if _elsewhere(mapping, organizer):
        return Situation.HANDOVER
    if _same_mailbox_live(mapping, organizer) and mapping.connection_id == organizer.connection_id:
        return Situation.PENDING_CREATE if mapping.item_id is None else Situation.CONTINUING
    if _same_mailbox_live(mapping, organizer) and mapping.item_id is not None:
        return Situation.MOVED
    return Situation.FRESH


# The booked decision table: situation and what is found → why, and which generation the event
# belongs to. Nothing found → create; something found → update it (the mapped item only when it
# differs from the draft). A handover first cancels the old event; every other live event with
# the marker in the organizer's mailbox is cancelled (two racing creates).
_BOOKED: Final[Mapping[tuple[Situation, Found], tuple[PlanReason, Generation]]] = {
    (Situation.FRESH, Found.NOTHING): (PlanReason.CREATE, Generation.NEXT),
    (Situation.FRESH, Found.OTHER): (PlanReason.ADOPT, Generation.NEXT),
    (Situation.CONTINUING, Found.MAPPED): (PlanReason.UPDATE, Generation.SAME),
    (Situation.CONTINUING, Found.OTHER): (PlanReason.ADOPT, Generation.NEXT),
    (Situation.CONTINUING, Found.NOTHING): (PlanReason.RECREATE, Generation.NEXT),
    (Situation.MOVED, Found.MAPPED): (PlanReason.UPDATE, Generation.SAME),
    (Situation.MOVED, Found.OTHER): (PlanReason.ADOPT, Generation.NEXT),
    (Situation.MOVED, Found.NOTHING): (PlanReason.RECREATE, Generation.NEXT),
    (Situation.PENDING_CREATE, Found.OTHER): (PlanReason.ADOPT, Generation.SAME),
    (Situation.PENDING_CREATE, Found.NOTHING): (PlanReason.CREATE, Generation.SAME),
    (Situation.HANDOVER, Found.OTHER): (PlanReason.HANDOVER, Generation.NEXT),
    (Situation.HANDOVER, Found.NOTHING): (PlanReason.HANDOVER, Generation.NEXT),
}


def _booking(
    org: str,
    appointment_id: str,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    observed: Observation,
    organizer: MailboxRef,
    directory: Mapping[str, MailboxRef],
    copies: Copies,
) -> ReconcilePlan:
    def plan(
        reason: PlanReason,
        actions: list[Action],
        generation: int,
        read_first: str | None = None,
        adopted: ExchangeEvent | None = None,
        told: tuple[OutlookEvent, ...] = (),
    ) -> ReconcilePlan:
        return ReconcilePlan(
            org,
            appointment_id,
            snapshot.version,
            snapshot.status,
            mapping,
            reason,
            tuple(actions),
            organizer=organizer,
            attendee_staff_ids=attendee_ids,
            generation=generation,
            booked=(snapshot.start, snapshot.end),
            read_first=read_first,
            standing_declines=declined,
            adopted=adopted,
            adopted_digest=draft_digest(draft) if reason is PlanReason.ADOPTED_AS_IT_IS else None,
            told=told,
        )

    declined = _standing_declines(snapshot, mapping)
    invited = [
        ref for ref in attendee_mailboxes(snapshot, directory) if ref.staff_id not in declined
    ]
    attendee_ids = tuple(ref.staff_id for ref in invited)
    actions: list[Action] = [
        RecordProblem(
            staff_id,
            f"secondary staff member {staff_id} has no known mailbox: left out of the event",
        )
        for staff_id in snapshot.secondary_staff_ids
        if staff_id not in directory
    ]
    looked = organizer.address in observed
    here = _live(observed, organizer.address)
    situation = classify(snapshot, mapping, organizer)
    newer = mapping is None or snapshot.version > mapping.applied_version
    if situation is Situation.CANCELLED_IN_OUTLOOK:
        assert mapping is not None
        # The booking platform has the next word: nothing is re-created.
        actions.extend(CancelEvent(organizer, event.item_id) for event in here)
        return plan(PlanReason.CANCELLED_IN_EXCHANGE, actions, mapping.generation)

    if situation is Situation.HANDOVER:
        assert mapping is not None
        actions.extend(
            _cancel_mapped_and_found(
                mapping, _mapping_mailbox(mapping, directory), observed, directory
            )
        )
    mapped_id = mapping.item_id if situation is Situation.CONTINUING and mapping else None
    if situation is Situation.MOVED:
        assert mapping is not None
        # The mapped item under the id the mailbox's new connection gives it: the live event of
        # the mapping's meeting (its UID is the same through every connection).
        mapped_id = next((e.item_id for e in here if mapping.uid and e.uid == mapping.uid), None)
    keep: ExchangeEvent | None = None
    if mapped_id is not None and not looked:
        # A trusted mapping: its item is there as calbridge wrote it, plus what the mailbox
        # sync recorded since (change key, an Outlook move).
        found = Found.MAPPED
    else:
        keep = next((e for e in here if e.item_id == mapped_id), here[0] if here else None)
        actions.extend(CancelEvent(organizer, e.item_id) for e in here if e is not keep)
        if keep is None:
            found = Found.NOTHING
        else:
            found = Found.MAPPED if keep.item_id == mapped_id else Found.OTHER

    reason, which = _BOOKED[(situation, found)]
    if mapping is None:
        generation = 1
    else:
        generation = mapping.generation + (1 if which is Generation.NEXT else 0)
    held = _outlook_move_held(snapshot, mapping, found)
    draft = event_draft(org, appointment_id, snapshot, directory, attendees=invited, times=held)
    booked = (
        draft
        if held is None
        else event_draft(org, appointment_id, snapshot, directory, attendees=invited)
    )
    # The attendees the organizer's item lists (as the last write named them): a draft that
    # differs from the last one only in its attendees is judged by ``_attendees_differ``.
    listed = (
        tuple(directory[s].address for s in mapping.attendee_staff_ids if s in directory)
        if mapping is not None
        else ()
    )
    if found is Found.MAPPED:
        assert mapping is not None
        assert mapped_id is not None
        if keep is not None and _unread_change(
            appointment_id, situation, keep, mapping, snapshot, directory
        ):
            # Changed in Outlook since the sync last read it, and the sync has not said so yet.
            if not newer:
                return plan(PlanReason.OUTLOOK_CHANGE_UNSEEN, actions, generation)
            unseen = keep.change_key or f"changed\n{keep.item_id}"
            if _read_first(mapping, unseen):
                # A newer snapshot will be written; the staff member's change is read (and
                # reported) first, or it would pass for calbridge's own write.
                return plan(PlanReason.OUTLOOK_CHANGE_READ_FIRST, actions, generation, unseen)
        if keep is None:
            needed = _trusted_differs(draft, booked, snapshot, mapping, attendee_ids, listed)
        else:
            needed = _differs(keep, draft, booked, snapshot, mapping, attendee_ids, listed)
        if not needed:
            return plan(PlanReason.UP_TO_DATE, actions, generation)
        change_key = keep.change_key if keep is not None else mapping.change_key
        actions.append(UpdateEvent(organizer, mapped_id, change_key, draft))
        return plan(reason, actions, generation)
    if keep is None:
        if situation in (Situation.CONTINUING, Situation.MOVED):
            # The mapped item is gone and the sync has not said so (an Outlook deletion): a
            # snapshot that is not newer does not re-create it; a newer one does, once the sync
            # has read (and reported) the deletion.
            assert mapping is not None
            if not newer:
                return plan(PlanReason.OUTLOOK_CHANGE_UNSEEN, actions, mapping.generation)
            unseen = f"gone\n{mapping.item_id}"
            if _read_first(mapping, unseen):
                return plan(
                    PlanReason.OUTLOOK_CHANGE_READ_FIRST, actions, mapping.generation, unseen
                )
        if situation is Situation.PENDING_CREATE and _made_meeting(mapping, copies):
            # The create happened (its attendees hold copies) and the organizer's item is gone:
            # the organizer cancelled or deleted it in Outlook. Creating it again would bring
            # back the appointment she removed, and no mailbox sync can tell of an item whose id
            # calbridge never stored: told here. The live copies a deletion without
            # cancellations left are cancelled here too, before the mapping says so (a sync
            # that read one as the live meeting's copy would not read it again).
            assert mapping is not None
            assert mapping.uid is not None
            actions.extend(
                CancelCopy(ref, copy.item_id, mapping.uid)
                for staff_id in mapping.attendee_staff_ids
                if (ref := directory.get(staff_id)) is not None
                and (copy := copies.get(ref.address)) is not None
                and copy.is_live
                and copy.uid == mapping.uid
            )
            cancelled = AppointmentCancelled(appointment_id, by=mapping.organizer_staff_id)
            return plan(PlanReason.REMOVED_IN_OUTLOOK, actions, generation, told=(cancelled,))
        create_id = transaction_id(org, appointment_id, organizer.staff_id, generation)
        actions.append(CreateEvent(organizer, draft, create_id))
        return plan(reason, actions, generation)
    if (
        situation is Situation.PENDING_CREATE
        and not newer
        and (_shows_otherwise(keep, draft) or _same_attendees(mapping, attendee_ids))
    ):
        # The pending create made this very draft there (its answer was lost, or its worker
        # died before storing it, or it is storing it now): what differs was changed in Outlook
        # since — a time, a title, or an attendee's answer that the event's time and title do
        # not show. Writing the draft again would undo it unseen (an update invites an attendee
        # who declined afresh); adopted as it is, the mailbox sync reports it. (Attendees known
        # since the create, a staff member's mailbox found meanwhile, still need the write.)
        return plan(PlanReason.ADOPTED_AS_IT_IS, actions, generation, adopted=keep)
    if situation is Situation.PENDING_CREATE and newer:
        assert mapping is not None
        unseen = keep.change_key or f"changed\n{keep.item_id}"
        if mapping.booked_start is not None and _read_first(mapping, unseen):
            # The pending create's event, found for a newer snapshot: whether an attendee
            # answered it since (a lookup does not show answers) or the organizer moved it is
            # known once the mailbox sync has read it, and the newer draft would undo either
            # unseen (an update invites one who declined afresh). Adopted at the version it was
            # made for, the sync judges it as the staff member's; the snapshot is written then.
            # (A note stored before any create records no booked times: nothing of its pass.)
            return plan(
                PlanReason.OUTLOOK_CHANGE_READ_FIRST, actions, generation, unseen, adopted=keep
            )
    actions.append(UpdateEvent(organizer, keep.item_id, keep.change_key, draft))
    return plan(reason, actions, generation)


def _unread_change(
    appointment_id: str,
    situation: Situation,
    event: ExchangeEvent,
    mapping: EventMapping,
    snapshot: AppointmentSnapshot,
    directory: Mapping[str, MailboxRef],
) -> bool:
    """Whether the mapped item as looked up holds an Outlook change the mailbox sync has not
    read: a change key other than the one the mapping holds. For a mailbox moved to another
    connection, whose change keys are not the old connection's, a change the sync would tell,
    judged by the sync's own rule (a move, a decline)."""
    if situation is not Situation.MOVED:
        return event.change_key != mapping.change_key
    attendees = {
        directory[staff_id].address: staff_id
        for staff_id in snapshot.secondary_staff_ids
        if staff_id in directory
    }
    adopted = mapping.model_copy(update={"item_id": event.item_id})
    return bool(organizer_item_changed(appointment_id, event, adopted, snapshot, attendees).events)


def _made_meeting(mapping: EventMapping | None, copies: Copies) -> bool:
    """An attendee holds a copy of the meeting the mapping's pending create was to make."""
    return (
        mapping is not None
        and mapping.uid is not None
        and any(copy.uid == mapping.uid for copy in copies.values())
    )


def _same_attendees(mapping: EventMapping | None, attendee_ids: tuple[str, ...]) -> bool:
    """Whether the pending create invited exactly the staff this pass would invite."""
    return mapping is not None and tuple(mapping.attendee_staff_ids) == attendee_ids


def _shows_otherwise(event: ExchangeEvent, draft: EventDraft) -> bool:
    """The event shows another time, title or location than the draft."""
    return (
        (event.start, event.end) != (draft.start, draft.end)
        or event.subject != draft.subject
        or (event.location or None) != (draft.location or None)
    )


def _read_first(mapping: EventMapping, unseen: str) -> bool:
    """Whether a newer snapshot waits (again) for the mailbox sync to read the Outlook change
    ``unseen``: a change it has not waited for yet, or one it waited for fewer than
    ``READ_FIRST_WAITS`` times (the sync that was asked may not have run yet: a message behind
    others, a worker that died holding it, throttling)."""
    return mapping.read_first != unseen or mapping.read_first_waits < READ_FIRST_WAITS


def _standing_declines(
    snapshot: AppointmentSnapshot, mapping: EventMapping | None
) -> tuple[str, ...]:
    """Secondaries who declined in Outlook and whom the snapshot still names: the booking
    platform has not answered their decline (by dropping them) yet, so they stay uninvited."""
    if mapping is None:
        return ()
    named = set(snapshot.secondary_staff_ids)
    return tuple(staff_id for staff_id in mapping.declined_staff_ids if staff_id in named)


def _outlook_move_held(
    snapshot: AppointmentSnapshot, mapping: EventMapping | None, found: Found
) -> tuple[datetime, datetime] | None:
    """Where the organizer moved the mapped event in Outlook, while the booking platform has not
    answered with a newer snapshot: that time stays (a redelivered or older snapshot must not
    move it back)."""
    if (
        found is Found.MAPPED
        and mapping is not None
        and mapping.outlook_start is not None
        and mapping.outlook_end is not None
        and snapshot.version <= mapping.applied_version
    ):
        return mapping.outlook_start, mapping.outlook_end
    return None


def _new_content(
    draft: EventDraft,
    booked: EventDraft,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping,
    listed: tuple[str, ...],
) -> bool:
    """The draft says something the last write did not, attendees aside (``listed``: those the
    item lists): the last write's digest is neither the draft's nor (while an Outlook move is
    held) the booked draft's, with either attendee list. A mapping from before drafts were
    digested: a newer snapshot."""
    if mapping.draft_digest is None:
        return snapshot.version > mapping.applied_version
    drafts = (draft,) if booked is draft else (draft, booked)
    as_listed = [
        d.model_copy(update={"required_attendees": listed})
        for d in drafts
        if d.required_attendees != listed
    ]
    return mapping.draft_digest not in {draft_digest(d) for d in (*drafts, *as_listed)}


def _trusted_differs(
    draft: EventDraft,
    booked: EventDraft,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping,
    attendee_ids: tuple[str, ...],
    listed: tuple[str, ...],
) -> bool:
    """The mapped item needs an update, judged from the mapping alone: new content, an Outlook
    move the mailbox sync recorded that the draft's time does not keep (the platform answered
    it with a newer snapshot), or other attendees to invite. Title and location edited in
    Outlook are restored by the next draft that says something new."""
    shown = (mapping.outlook_start, mapping.outlook_end)
    moved = mapping.outlook_start is not None and shown != (draft.start, draft.end)
    return (
        _new_content(draft, booked, snapshot, mapping, listed)
        or moved
        or _attendees_differ(mapping, attendee_ids)
    )


def _attendees_differ(mapping: EventMapping, attendee_ids: tuple[str, ...]) -> bool:
    """Staff to invite or to take off the organizer's item — not counting those who declined
    and are still listed there, declined: a write for them alone would reach them."""
    declined = {*mapping.declined_staff_ids, *mapping.answered_declines}
    listed = tuple(staff_id for staff_id in mapping.attendee_staff_ids if staff_id not in declined)
    return listed != attendee_ids


def _differs(
    event: ExchangeEvent,
    draft: EventDraft,
    booked: EventDraft,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    attendee_ids: tuple[str, ...],
    listed: tuple[str, ...],
) -> bool:
    """The mapped item, as a lookup found it, needs an update: new content, a time moved in
    Outlook (the booking platform is the system of record and wins), title or location edited
    in Outlook, or other attendees to invite."""
    if mapping is None:
        return True
    return (
        _new_content(draft, booked, snapshot, mapping, listed)
        or event.start != draft.start
        or event.end != draft.end
        or event.subject != draft.subject
        or (event.location or None) != (draft.location or None)
        or _attendees_differ(mapping, attendee_ids)
    )


# --- recording ---------------------------------------------------------------------------------


def describe_error(error: CalendarError) -> str:
    """How a failure is recorded on the mapping (``last_error``): its kind and its message,
    which names mailboxes and ids, never content."""
    return f"{type(error).__name__}: {error}"


def _describe(failure: Failed) -> str:
    return describe_error(failure.error)


def _mapping_in(mailbox: MailboxRef, **fields: Any) -> EventMapping:
    """A mapping to an event (to be) in ``mailbox``, reached through its connection."""
    return EventMapping(
        organizer_staff_id=mailbox.staff_id,
        mailbox=mailbox.address,
        connection_id=mailbox.connection_id,
        **fields,
    )


def pending_create(
    plan: ReconcilePlan, action: CreateEvent, uid: str | None = None
) -> EventMapping:
    """The mapping to store right before ``action`` runs: it points at the mailbox the event is
    about to be created in, without an item id (with the UID the create gives its event, when
    the protocol lets calbridge choose it). Should the answer be lost (or the worker die), the
    next pass looks there and adopts or cancels what it finds."""
    previous = plan.previous
    return _mapping_in(
        action.mailbox,
        item_id=None,
        uid=uid,
        applied_version=max(plan.version, previous.applied_version if previous else 0),
        attendee_staff_ids=list(plan.attendee_staff_ids),
        generation=plan.generation,
        last_error=previous.last_error if previous else None,
        # The times the create gives its event: what the mailbox sync measures an Outlook move
        # by, should the event be adopted for a newer snapshot (read first).
        **_booked_times(plan, previous, True),
    )


def write_intent(plan: ReconcilePlan) -> EventMapping | None:
    """The mapping a pass that looked at Exchange stores before its first write, under the ETag
    of the mapping it decided from. Another pass that stored anything since (a pending create,
    its outcome) makes that store fail, so this pass looks again instead of writing what it
    decided from a stale read: over an event that pass made and a staff member changed since,
    say, which would then pass for calbridge's own write. Should the worker die after it, the
    mapping still names every event it named, and is looked at (``in_doubt``) on the next pass.
    None: no mapping and no organizer to point at (nothing to guard)."""
    previous = plan.previous
    if previous is not None:
        return previous.model_copy(update={"in_doubt": True})
    if plan.organizer is None:
        return None
    # Nothing was ever stored: a pending note where the plan writes, applying no version yet
    # (the next pass looks there and writes the snapshot).
    return _mapping_in(
        plan.organizer,
        item_id=None,
        applied_version=0,
        attendee_staff_ids=list(plan.attendee_staff_ids),
        generation=plan.generation,
        in_doubt=True,
    )


def mapping_after(plan: ReconcilePlan, results: Sequence[ActionResult]) -> EventMapping | None:
    """The mapping to store once the executor has run ``plan`` and reported ``results`` (one per
    action, in order; fewer when it stopped at a failure). None: nothing to store."""
    previous = plan.previous
    if plan.reason is PlanReason.STALE:
        return previous
    complete = len(results) == len(plan.actions) and not any(isinstance(r, Failed) for r in results)
    problems = "; ".join(p.message for p in plan.problems) or None

    current = previous
    wrote = False
    cancelled_item: str | None = None
    failure: Failed | None = None
    for action, result in zip(plan.actions, results, strict=False):
        if isinstance(result, Failed):
            failure = result
            if isinstance(action, CreateEvent):
                # The create may have happened even though it failed: remember where (and the
                # UID it gave its event, unless it certainly made nothing).
                doubtful = _leaves_doubt(result.error)
                current = pending_create(plan, action, result.planned_uid if doubtful else None)
            break
        if isinstance(action, CreateEvent | UpdateEvent) and isinstance(result, Written):
            wrote = True
            current = _mapping_in(
                action.mailbox,
                item_id=result.ref.item_id,
                change_key=result.ref.change_key,
                uid=result.ref.uid or _known_uid(previous, action),
                applied_version=plan.version if complete else _applied(previous),
                attendee_staff_ids=list(plan.attendee_staff_ids),
                generation=plan.generation,
                draft_digest=draft_digest(action.draft),
                **_kept_from_outlook(plan, previous),
                **_booked_times(plan, previous, complete),
            )
        elif isinstance(action, CancelEvent):
            cancelled_item = action.item_id

    if not complete:
        if current is None:
            return None
        reason = _describe(failure) if failure else "not every action was carried out"
        # A pending create (no item id) is looked at anyway; a mapped item may have changed.
        doubt = current.in_doubt or (
            current.item_id is not None and failure is not None and _leaves_doubt(failure.error)
        )
        return current.model_copy(update={"last_error": reason, "in_doubt": doubt})

    if plan.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST:
        assert previous is not None
        # Not applied yet: looked at again (in doubt) once the mailbox sync has read the change.
        waits = previous.read_first_waits + 1 if previous.read_first == plan.read_first else 1
        waiting: dict[str, object] = {
            "read_first": plan.read_first,
            "read_first_waits": waits,
            "in_doubt": True,
        }
        if plan.adopted is not None:
            # A pending create's event, without a change key: the sync judges what it shows.
            adopted = plan.adopted
            waiting |= {"item_id": adopted.item_id, "uid": adopted.uid, "change_key": None}
        return previous.model_copy(update=waiting)

    if plan.status is AppointmentStatus.CANCELLED:
        if previous is not None:
            return previous.model_copy(
                update={
                    "cancelled": True,
                    "applied_version": max(previous.applied_version, plan.version),
                    "last_error": problems,
                    "in_doubt": False,
                }
            )
        if plan.organizer is None:
            return None
        return _mapping_in(
            plan.organizer,
            item_id=cancelled_item,
            applied_version=plan.version,
            cancelled=True,
            generation=plan.generation,
        )

    if wrote:
        assert current is not None
        return current.model_copy(update={"last_error": problems})
    if plan.reason is PlanReason.ADOPTED_AS_IT_IS:
        assert plan.adopted is not None
        assert plan.organizer is not None
        # No change key: calbridge has not written the item since it changed, so the mailbox
        # sync judges it as the staff member's change (an adopted key would pass for an echo).
        return _mapping_in(
            plan.organizer,
            item_id=plan.adopted.item_id,
            change_key=None,
            uid=plan.adopted.uid,
            applied_version=plan.version,
            attendee_staff_ids=list(plan.attendee_staff_ids),
            generation=plan.generation,
            draft_digest=plan.adopted_digest,
            last_error=problems,
            **_kept_from_outlook(plan, previous),
            **_booked_times(plan, previous, True),
        )
    if previous is None:
        return None
    if plan.reason is PlanReason.REMOVED_IN_OUTLOOK:
        # As a cancellation the mailbox sync read: nothing is re-created at this version; a
        # newer one (the booking platform booking it again) makes a new event. The UID stays:
        # the copies a deletion without cancellations left are known by it.
        return previous.model_copy(
            update={
                "cancelled": True,
                "applied_version": max(previous.applied_version, plan.version),
                "last_error": problems,
                "in_doubt": False,
            }
        )
    if plan.reason is PlanReason.ORGANIZER_UNKNOWN:
        # Nothing was written: the snapshot is not applied yet.
        return previous.model_copy(update={"last_error": problems})
    # Nothing needed writing (or an Outlook change is left for the mailbox sync): whatever made
    # the mapping doubtful was looked at.
    return previous.model_copy(
        update={
            "applied_version": max(previous.applied_version, plan.version),
            "last_error": problems,
            "in_doubt": False,
            "declined_staff_ids": _declines_after(plan, previous),
            "answered_declines": _answered_after(plan, previous),
            **_booked_times(plan, previous, True),
        }
    )


def _booked_times(
    plan: ReconcilePlan, previous: EventMapping | None, applied: bool
) -> dict[str, datetime | None]:
    """The booked times the mapping records: the plan's snapshot's once it is applied (a
    snapshot at least as new as the last applied), else what was recorded before."""
    if (
        applied
        and plan.booked is not None
        and (previous is None or plan.version >= previous.applied_version)
    ):
        return {"booked_start": plan.booked[0], "booked_end": plan.booked[1]}
    if previous is None:
        return {}
    return {"booked_start": previous.booked_start, "booked_end": previous.booked_end}


def _leaves_doubt(error: CalendarError) -> bool:
    """A failure after which Exchange may not hold what the mapping says: the item changed or
    vanished (``look_again``), or the answer was lost (the write may have happened)."""
    return error.look_again or isinstance(error, ExchangeUnavailable)


def _kept_from_outlook(plan: ReconcilePlan, previous: EventMapping | None) -> dict[str, object]:
    """What the mapping keeps of Outlook-side changes across calbridge's write: the declines
    the snapshot has not answered, and (the same event) an Outlook move the snapshot did not
    answer (it was not newer)."""
    if previous is None:
        return {}
    kept: dict[str, object] = {"declined_staff_ids": _declines_after(plan, previous)}
    if previous.generation != plan.generation:
        return kept
    if plan.version <= previous.applied_version:
        kept |= {"outlook_start": previous.outlook_start, "outlook_end": previous.outlook_end}
    return kept


def _declines_after(plan: ReconcilePlan, previous: EventMapping) -> list[str]:
    """The declines the mapping keeps: those the plan's snapshot has not answered."""
    if plan.standing_declines is None:
        return list(previous.declined_staff_ids)
    return list(plan.standing_declines)


def _answered_after(plan: ReconcilePlan, previous: EventMapping) -> list[str]:
    """After a plan that wrote nothing: the declines the snapshot answered (it no longer names
    them) whose decliners the organizer's item still lists."""
    if plan.standing_declines is None:
        return list(previous.answered_declines)
    standing = set(plan.standing_declines)
    return [
        staff_id
        for staff_id in dict.fromkeys([*previous.answered_declines, *previous.declined_staff_ids])
        if staff_id not in standing
        and staff_id not in plan.attendee_staff_ids
        and staff_id in previous.attendee_staff_ids
    ]


def _known_uid(previous: EventMapping | None, action: CreateEvent | UpdateEvent) -> str | None:
    """The UID of the item an update wrote, when the adapter did not return it (EWS answers an
    UpdateItem with the id and change key only): an item's UID never changes."""
    if (
        isinstance(action, UpdateEvent)
        and previous is not None
        and previous.item_id == action.item_id
    ):
        return previous.uid
    return None


def _applied(previous: EventMapping | None) -> int:
    return previous.applied_version if previous is not None else 0
