"""Carry out a ``ReconcilePlan`` through the calendar port; no storage, no queues.

``apply_appointment`` is one pass of the booking → Exchange direction for one appointment:
observe (marker lookups, only where the mapping cannot be trusted; then, for a pending create
whose meeting the marker did not find, its attendees' copies by UID), decide
(``reconcile_appointment``), execute the actions in order, and compute the mapping to store
(``mapping_after``). The caller — the apply worker, or a test —
stores the mapping (with its ETag) and decides about redelivery from ``ApplyOutcome.failure``
(``CalendarError.retry_after_seconds`` / ``look_again``).

``before_write`` is how the caller makes writes crash-safe and race-safe: it must store the
mapping it is given durably, under the ETag of the mapping the pass read (an exception from it,
an ETag conflict say, aborts the pass before the write). It is awaited with
``pending_create(plan, action)`` right before each create: a worker that dies after the create
but before storing the outcome then leaves a mapping that points where the event is. A pass that
looked at Exchange (the mapping could not be trusted) also stores ``write_intent(plan)`` before
its first write that is not a create: a pass that read the mapping before another stored
anything writes nothing from that stale read.

Execution stops at the first failed action: actions are ordered so that stopping early never
leaves two live events (a handover cancels the old event before creating the new one), and every
action is safe to repeat when the message comes back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from shared.engine.reconcile import (
    ActionResult,
    CancelCopy,
    CancelEvent,
    Completed,
    Copies,
    CopyLookup,
    CreateEvent,
    Failed,
    MarkerLookup,
    Observation,
    ReconcilePlan,
    RecordProblem,
    UpdateEvent,
    Written,
    copy_lookups,
    describe_error,
    mapping_after,
    observation_for,
    pending_create,
    reconcile_appointment,
    write_intent,
)
from shared.exchange.port import (
    CalendarError,
    CalendarGateway,
    ChosenUids,
    ExchangeEvent,
    cancel_copy,
)
from shared.models import AppointmentSnapshot, EventMapping, MailboxRef

MailboxGateway = Callable[[MailboxRef], CalendarGateway]
"""The gateway of the connection a mailbox is on (``MailboxRef.connection_id``)."""

CopyGateway = Callable[[MailboxRef], CalendarGateway | None]
"""The gateway to reach an attendee's copy through (None: its connection may not be called
now — disabled, refusing its credentials — and the copy is left)."""

BeforeWrite = Callable[[EventMapping], Awaitable[None]]
"""Stores a mapping durably before a write (see the module docstring)."""


async def observe(gateway_for: MailboxGateway, lookups: tuple[MarkerLookup, ...]) -> Observation:
    """Carry out the engine's lookups: mailbox address → marker events found there."""
    found: dict[str, list[ExchangeEvent]] = {}
    for lookup in lookups:
        gateway = gateway_for(lookup.mailbox)
        events = await gateway.find_by_marker(lookup.mailbox.address, lookup.marker)
        found[lookup.mailbox.address] = events
    return found


async def observe_copies(gateway_for: CopyGateway, lookups: tuple[CopyLookup, ...]) -> Copies:
    """Carry out the engine's copy lookups: attendee's address → their copy of the meeting (an
    attendee whose connection may not be called now is not looked at)."""
    found: dict[str, ExchangeEvent] = {}
    for lookup in lookups:
        gateway = gateway_for(lookup.mailbox)
        if gateway is None:
            continue
        copy = await gateway.find_by_uid(lookup.mailbox.address, lookup.uid)
        if copy is not None:
            found[lookup.mailbox.address] = copy
    return found


def planned_uid(gateway: CalendarGateway, action: CreateEvent) -> str | None:
    """The UID the create gives its event, where the protocol lets calbridge choose it."""
    if isinstance(gateway, ChosenUids):
        return gateway.planned_uid(action.mailbox.address, action.transaction_id)
    return None


async def execute_plan(
    gateway_for: MailboxGateway,
    plan: ReconcilePlan,
    before_write: BeforeWrite | None = None,
    *,
    looked: bool = False,
    copy_gateway_for: CopyGateway | None = None,
) -> tuple[ActionResult, ...]:
    """Run the plan's actions in order; one result per action attempted, ending at the first
    ``Failed``. ``looked``: the plan was decided from a look at Exchange. Errors other than
    ``CalendarError`` (bugs, a failing ``before_write``) propagate."""
    results: list[ActionResult] = []
    guarded = not looked  # a write decided from the mapping alone is guarded by change keys
    for action in plan.actions:
        uid = (
            planned_uid(gateway_for(action.mailbox), action)
            if isinstance(action, CreateEvent)
            else None
        )
        if before_write is not None and not isinstance(action, RecordProblem):
            if isinstance(action, CreateEvent):
                await before_write(pending_create(plan, action, uid))
            elif not guarded and (intent := write_intent(plan)) is not None:
                await before_write(intent)
            guarded = True
        try:
            if isinstance(action, RecordProblem):
                results.append(Completed())
            elif isinstance(action, CreateEvent):
                gateway = gateway_for(action.mailbox)
                ref = await gateway.create_event(
                    action.mailbox.address, action.draft, action.transaction_id
                )
                results.append(Written(ref))
            elif isinstance(action, UpdateEvent):
                gateway = gateway_for(action.mailbox)
                ref = await gateway.update_event(
                    action.mailbox.address, action.item_id, action.draft, action.change_key
                )
                results.append(Written(ref))
            elif isinstance(action, CancelEvent):
                gateway = gateway_for(action.mailbox)
                if not await gateway.cancel_event(action.mailbox.address, action.item_id):
                    await _cancel_copies(action, copy_gateway_for or gateway_for)
                results.append(Completed())
            elif isinstance(action, CancelCopy):
                # A connection that may not be called now leaves it (the caller notes it).
                copy_gateway = (copy_gateway_for or gateway_for)(action.mailbox)
                if copy_gateway is not None:
                    await copy_gateway.cancel_event(action.mailbox.address, action.item_id)
                results.append(Completed())
        except CalendarError as error:
            results.append(Failed(error, planned_uid=uid))
            break
    return tuple(results)


async def _cancel_copies(action: CancelEvent, gateway_for: CopyGateway) -> None:
    """The cancelled meeting was gone already (deleted in Outlook, perhaps without sending
    cancellations): its attendees' copies are made sure of."""
    if action.uid is None:
        return
    for mailbox in action.copies:
        gateway = gateway_for(mailbox)
        if gateway is not None:
            await cancel_copy(gateway, mailbox.address, action.uid)


@dataclass(frozen=True)
class ApplyOutcome:
    """One pass over one appointment: what was decided, what happened, what to store."""

    plan: ReconcilePlan | None  # None when the observation itself failed
    results: tuple[ActionResult, ...]
    mapping: EventMapping | None  # the mapping to store (None: nothing to store)
    failure: CalendarError | None  # why the pass stopped (how the worker goes on: port.py)

    @property
    def problems(self) -> str:
        """What keeps Exchange from showing the snapshot fully ("" when nothing does)."""
        if self.plan is None:
            return ""
        return "; ".join(problem.message for problem in self.plan.problems)


async def apply_appointment(
    gateway_for: MailboxGateway,
    org: str,
    appointment_id: str,
    snapshot: AppointmentSnapshot,
    mapping: EventMapping | None,
    directory: Mapping[str, MailboxRef],
    before_write: BeforeWrite | None = None,
    *,
    look_first: bool = False,
    copy_gateway_for: CopyGateway | None = None,
) -> ApplyOutcome:
    """Observe (only where the mapping cannot be trusted, or ``look_first``), decide, execute
    and record for one appointment snapshot."""
    lookups = observation_for(
        org, appointment_id, snapshot, mapping, directory, look_first=look_first
    )
    try:
        observed = await observe(gateway_for, lookups)
        copies = await observe_copies(
            copy_gateway_for or gateway_for, copy_lookups(snapshot, mapping, observed, directory)
        )
    except CalendarError as error:
        # Nothing was decided or written; the mapping stays, noting why (as after a failed action).
        noted = None
        if mapping is not None:
            noted = mapping.model_copy(update={"last_error": describe_error(error)})
        return ApplyOutcome(plan=None, results=(), mapping=noted, failure=error)
    plan = reconcile_appointment(
        org, appointment_id, snapshot, mapping, observed, directory, copies
    )
    results = await execute_plan(
        gateway_for, plan, before_write, looked=bool(lookups), copy_gateway_for=copy_gateway_for
    )
    failure = next((r.error for r in results if isinstance(r, Failed)), None)
    return ApplyOutcome(
        plan=plan, results=results, mapping=mapping_after(plan, results), failure=failure
    )
