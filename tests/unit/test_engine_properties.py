"""Convergence properties of the booking → Exchange direction (Hypothesis).

One appointment, many snapshots: whatever order they arrive in, however often, with throttling,
server errors, lost answers, conflicting edits, workers dying before they record what they did
and organizers dragging the event around in Outlook, once the queue is drained the calendars
show exactly the newest snapshot: one live event in the newest organizer's calendar with the
newest subject, times and attendees, a live copy in each current secondary's calendar, nothing
live anywhere else — or nothing live at all when the newest snapshot is a cancellation.

The worker here is the real pass (``shared.apply.executor.apply_appointment``: observe, decide,
execute, record) over ``FakeCalendarGateway``, passing again at once when Exchange says the item
changed or vanished (as ``shared.apply.service`` does); the "table" is one attribute holding the
mapping. Staff live on two connections of one organization (as during a migration).

The write path trusts the mapping, and the mailbox sync keeps it current: ``mailbox_sync``
reads the organizer's item with the real rules of ``shared.engine.outlook`` and merges the
Outlook-side fields the way ``shared.mailbox_sync`` stores them; a move it reports is refused by
the booking platform (409), which makes the mapping forget the move, marks it in doubt and
queues the appointment again (``shared.webhooks.delivery``). Until the sync has read an Outlook
move, a snapshot that is not newer leaves it where the organizer put it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from shared.apply.executor import ApplyOutcome, apply_appointment
from shared.engine.marker import marker_for
from shared.engine.outlook import AppointmentRescheduled, organizer_item_changed
from shared.engine.reconcile import PlanReason
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import (
    CalendarError,
    CalendarGateway,
    ChangeKeyConflict,
    EventNotFound,
    ExchangeUnavailable,
    RetryAfter,
)
from shared.models import AppointmentSnapshot, EventMapping, MailboxRef
from tests.builders import mailbox, snapshot_document

ORG, APPOINTMENT = "acme", "appt-7"
MARKER = marker_for(ORG, APPOINTMENT)
KNOWN = ("ana", "ben", "cai", "dee")
UNKNOWN = "zed"  # a secondary whose mailbox calbridge does not know
CONNECTION = {"ana": "onprem", "ben": "onprem", "cai": "online", "dee": "online"}
DIRECTORY = {s: mailbox(s, connection_id=CONNECTION[s], time_zone="UTC") for s in KNOWN}
DAY0 = datetime(2031, 9, 1, 8, tzinfo=UTC)


@st.composite
def appointment_states(draw: st.DrawFn) -> dict[str, Any]:
    """The booking platform's view of the appointment at some moment (version added later)."""
    organizer = draw(st.sampled_from(KNOWN))
    others = [s for s in (*KNOWN, UNKNOWN) if s != organizer]
    secondaries = draw(st.lists(st.sampled_from(others), unique=True, max_size=3))
    start = DAY0 + timedelta(days=draw(st.integers(0, 2)), minutes=15 * draw(st.integers(0, 31)))
    minutes = draw(st.sampled_from([15, 30, 60, 90]))
    return snapshot_document(
        status=draw(st.sampled_from(["booked", "booked", "booked", "cancelled"])),
        organizer=organizer,
        secondaries=secondaries,
        start=start,
        minutes=minutes,
        time_zone="Europe/Madrid",
        title=draw(st.sampled_from(["Review", "Loan", "Pension"])),
        clients=({"name": "Ada Client", "email": "ada@client.example"},),
    )


class AppointmentPipeline:
    """The platform's snapshots, the queue's deliveries, one worker, one Exchange."""

    def __init__(self) -> None:
        self.exchange = FakeExchange(ref.address for ref in DIRECTORY.values())
        self.gateways = {
            connection: FakeCalendarGateway(
                self.exchange,
                connection_id=connection,
                reachable=[DIRECTORY[s].address for s in KNOWN if CONNECTION[s] == connection],
            )
            for connection in set(CONNECTION.values())
        }
        self.snapshots: list[AppointmentSnapshot] = []
        self.mapping: EventMapping | None = None
        # Changed in Outlook since the mailbox sync last read the organizer's item.
        self.unread_outlook_change = False
        # The last delivery met such a change with a newer snapshot: the worker asked for the
        # organizer's mailbox to be read and queued the change again (shared.apply.service).
        self.read_first = False

    def gateway_for(self, ref: MailboxRef) -> CalendarGateway:
        return self.gateways[ref.connection_id]

    def publish(self, state: dict[str, Any]) -> int:
        version = len(self.snapshots) + 1
        self.snapshots.append(AppointmentSnapshot.model_validate({**state, "version": version}))
        return version - 1

    @property
    def newest(self) -> AppointmentSnapshot:
        return self.snapshots[-1]

    async def _store_pending(self, pending: EventMapping) -> None:
        self.mapping = pending  # the durable write before a create

    def _pass(self, index: int) -> ApplyOutcome:
        return asyncio.run(
            apply_appointment(
                self.gateway_for,
                ORG,
                APPOINTMENT,
                self.snapshots[index],
                self.mapping,
                DIRECTORY,
                before_write=self._store_pending,
            )
        )

    def deliver(self, index: int, *, worker_dies: bool = False) -> CalendarError | None:
        """One delivery of the message for ``snapshots[index]``; the error that makes the queue
        deliver it again, if any. A dying worker records nothing after its Exchange calls. A
        changed or vanished item makes the worker pass again at once (at most three passes)."""
        for _ in range(3):
            outcome = self._pass(index)
            # Shown by --hypothesis-show-statistics: which rules the runs exercised.
            event(f"plan: {outcome.plan.reason}" if outcome.plan else "observation failed")
            if worker_dies or outcome.failure is None or not outcome.failure.look_again:
                break
            self.mapping = outcome.mapping
        if outcome.failure is not None:
            # Only the transient faults injected here: throttling, outages, a changed item.
            assert isinstance(
                outcome.failure,
                RetryAfter | ExchangeUnavailable | ChangeKeyConflict | EventNotFound,
            ), outcome.failure
        if not worker_dies:
            self.mapping = outcome.mapping
        self.read_first = (
            not worker_dies
            and outcome.plan is not None
            and outcome.plan.reason is PlanReason.OUTLOOK_CHANGE_READ_FIRST
        )
        return outcome.failure

    def mailbox_sync(self) -> bool:
        """The read path reads the mapped organizer's item; True when the booking platform's
        409 to a reported move queued the appointment again."""
        mapping = self.mapping
        if mapping is None or mapping.item_id is None or mapping.cancelled:
            # Nothing mapped to read (a pending create whose worker died: the next delivery
            # adopts the event as the organizer left it, and a later read reports the change).
            return False
        self.unread_outlook_change = False
        item = self.exchange.get_event(mapping.mailbox, mapping.item_id)
        if item is None:
            return False  # no Outlook deletions in this model: calbridge's own cancellation
        staff_by_address = {ref.address: staff for staff, ref in DIRECTORY.items()}
        verdict = organizer_item_changed(APPOINTMENT, item, mapping, self.newest, staff_by_address)
        if verdict.mapping is not None:
            fields = ("change_key", "cancelled", "outlook_start", "outlook_end")
            self.mapping = mapping.model_copy(
                update={name: getattr(verdict.mapping, name) for name in fields}
            )
        if not any(isinstance(e, AppointmentRescheduled) for e in verdict.events):
            return False
        assert self.mapping is not None
        self.mapping = self.mapping.model_copy(
            update={"outlook_start": None, "outlook_end": None, "in_doubt": True}
        )
        return True

    def live_events(self) -> dict[str, list[Any]]:
        return {
            mailbox: [e for e in self.exchange.calendar(mailbox) if e.is_live]
            for mailbox in self.exchange.mailboxes
        }

    def assert_calendars_show(self, snapshot: AppointmentSnapshot) -> None:
        live = self.live_events()
        if snapshot.status == "cancelled":
            assert live == {mailbox: [] for mailbox in live}, "a cancelled appointment is live"
            return
        organizer = DIRECTORY[snapshot.organizer_staff_id].address
        secondaries = [DIRECTORY[s].address for s in snapshot.secondary_staff_ids if s in DIRECTORY]
        [event] = live.pop(organizer)
        assert event.marker == MARKER
        assert event.organizer == organizer
        assert event.subject == snapshot.title
        assert (event.start, event.end) == (snapshot.start, snapshot.end)
        assert event.attendee_addresses == tuple(secondaries)
        for address in secondaries:
            [copy] = live.pop(address)
            assert copy.uid == event.uid
            assert copy.marker is None
            assert (copy.start, copy.end) == (snapshot.start, snapshot.end)
        assert live == {mailbox: [] for mailbox in live}, "a duplicate is live"

    def assert_mapping_records(self, snapshot: AppointmentSnapshot) -> None:
        assert self.mapping is not None
        assert self.mapping.applied_version == snapshot.version
        assert self.mapping.cancelled == (snapshot.status == "cancelled")
        if snapshot.status == "booked":
            [event] = [e for e in self.exchange.calendar(self.mapping.mailbox) if e.is_live]
            assert (self.mapping.item_id, self.mapping.change_key) == (
                event.item_id,
                event.change_key,
            )


@settings(max_examples=120, deadline=None)
@given(states=st.lists(appointment_states(), min_size=1, max_size=8), data=st.data())
def test_snapshots_delivered_in_any_order_and_any_number_of_times_converge_on_the_newest(
    states: list[dict[str, Any]], data: st.DataObject
) -> None:
    pipeline = AppointmentPipeline()
    messages = [pipeline.publish(state) for state in states]
    duplicates = data.draw(st.lists(st.sampled_from(messages), max_size=6), label="duplicates")
    order = data.draw(st.permutations(messages + duplicates), label="delivery order")

    for index in order:
        assert pipeline.deliver(index) is None

    pipeline.assert_calendars_show(pipeline.newest)
    pipeline.assert_mapping_records(pipeline.newest)


FAULTS: dict[str, tuple[CalendarError, bool]] = {
    "throttled": (RetryAfter(2), False),
    "server error": (ExchangeUnavailable("503 Service Unavailable"), False),
    "answer lost": (ExchangeUnavailable("timed out after the write"), True),
    "edited meanwhile": (ChangeKeyConflict("the item changed"), False),
}


class DeliveriesWithFaults(RuleBasedStateMachine):
    """The platform publishes versions, the queue delivers (and redelivers) them in any order,
    Exchange fails in every way the port names, workers die, organizers move events; faults are
    budgeted, so the run ends with a fault-free drain of the queue."""

    def __init__(self) -> None:
        super().__init__()
        self.pipeline = AppointmentPipeline()
        self.queue: list[int] = []
        self.fault_budget = 8
        self.worker_dies_next = False

    @rule(state=appointment_states())
    def platform_publishes_a_new_version(self, state: dict[str, Any]) -> None:
        self.queue.append(self.pipeline.publish(state))

    @precondition(lambda self: self.pipeline.snapshots)
    @rule(pick=st.integers(min_value=0, max_value=100))
    def queue_delivers_an_old_message_again(self, pick: int) -> None:
        self.queue.append(pick % len(self.pipeline.snapshots))

    @precondition(lambda self: self.queue)
    @rule(pick=st.integers(min_value=0, max_value=100))
    def worker_takes_a_message(self, pick: int) -> None:
        index = self.queue.pop(pick % len(self.queue))
        dies, self.worker_dies_next = self.worker_dies_next, False
        failure = self.pipeline.deliver(index, worker_dies=dies)
        if failure is not None or dies or self.pipeline.read_first:
            # Redelivered after the visibility timeout, or queued again to be written once the
            # mailbox sync (a rule of its own here: it may or may not run first) has read the
            # Outlook change.
            self.queue.append(index)
        elif (
            index == len(self.pipeline.snapshots) - 1
            and not self.exchange_faults_pending()
            and not self.pipeline.unread_outlook_change
        ):
            # Level-triggered: a clean pass over the newest version makes Exchange show it
            # (an Outlook move the sync has not read yet stays where the organizer put it).
            self.pipeline.assert_calendars_show(self.pipeline.newest)

    def exchange_faults_pending(self) -> bool:
        return self.pipeline.exchange.pending_faults > 0

    @precondition(lambda self: self.fault_budget > 0)
    @rule(
        operation=st.sampled_from(
            ["find_by_marker", "create_event", "update_event", "cancel_event"]
        ),
        kind=st.sampled_from(sorted(FAULTS)),
    )
    def exchange_fails_the_next_call(self, operation: str, kind: str) -> None:
        self.fault_budget -= 1
        error, after_effect = FAULTS[kind]
        self.pipeline.exchange.fail_next(operation, error, after_effect=after_effect)

    @precondition(lambda self: self.fault_budget > 0)
    @rule()
    def worker_will_die_before_recording(self) -> None:
        self.fault_budget -= 1
        self.worker_dies_next = True

    @precondition(lambda self: self.pipeline.snapshots)
    @rule(hours=st.integers(min_value=1, max_value=5))
    def organizer_moves_the_event_in_outlook(self, hours: int) -> None:
        ours = [
            (mailbox, event)
            for mailbox, events in self.pipeline.live_events().items()
            for event in events
            if event.marker == MARKER
        ]
        if not ours:
            return
        mailbox, event = ours[0]
        shift = timedelta(hours=hours)
        self.pipeline.exchange.move_as_organizer(
            mailbox, event.item_id, event.start + shift, event.end + shift
        )
        self.pipeline.unread_outlook_change = True

    @rule()
    def mailbox_sync_reads_the_organizers_calendar(self) -> None:
        if self.pipeline.mailbox_sync():
            # The booking platform refused the move (409): the appointment is applied again.
            self.queue.append(len(self.pipeline.snapshots) - 1)

    @invariant()
    def at_most_one_live_calbridge_event_per_mailbox(self) -> None:
        for events in self.pipeline.live_events().values():
            assert len([e for e in events if e.marker == MARKER]) <= 1

    def teardown(self) -> None:
        if not self.pipeline.snapshots:
            return
        self.pipeline.exchange.clear_faults()
        self.queue.append(len(self.pipeline.snapshots) - 1)  # at least once, eventually
        for _ in range(4):  # the sync runs every minute; the platform answers each move
            while self.queue:
                index = self.queue.pop(0)
                assert self.pipeline.deliver(index) is None
                if self.pipeline.read_first:
                    self.queue.append(index)
            if not self.pipeline.mailbox_sync():
                break
            self.queue.append(len(self.pipeline.snapshots) - 1)
        assert not self.queue
        self.pipeline.assert_calendars_show(self.pipeline.newest)
        self.pipeline.assert_mapping_records(self.pipeline.newest)


DeliveriesWithFaults.TestCase.settings = settings(
    max_examples=120, stateful_step_count=30, deadline=None
)
test_deliveries_with_faults_converge_once_faults_stop = DeliveriesWithFaults.TestCase
