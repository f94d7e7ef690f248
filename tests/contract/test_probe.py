"""The connection test's probe (``shared.exchange.probe``) through every implementation of the
port: a mailbox that can be read and written says so and keeps nothing of the test; an unknown
mailbox, refused credentials, throttling and an outage are told apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.exchange.port import PermanentDeletion
from shared.exchange.probe import PROBE_MARKER_PREFIX, ProbeProblem, probe_draft, probe_mailbox
from tests.contract.worlds import CalendarWorld, ExchangeFault

NOW = datetime(2031, 5, 6, 9, 30, tzinfo=UTC)


def test_a_reachable_mailbox_is_read_and_written_and_the_test_leaves_nothing(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    before = world.calendar(world.organizer)
    probe = world.run(probe_mailbox(world.gateway, world.organizer, NOW, auth="ntlm"))
    assert (probe.can_read, probe.can_write, probe.problem) == (True, True, None)
    after = world.calendar(world.organizer)
    assert [e.item_id for e in after if not e.is_cancelled] == [
        e.item_id for e in before if not e.is_cancelled
    ]
    leftovers = world.run(world.gateway.list_events(world.organizer, NOW - timedelta(days=3), NOW))
    assert [e for e in leftovers if (e.marker or "").startswith(PROBE_MARKER_PREFIX)] == []


def test_an_unknown_mailbox_is_named_as_such(calendar_world: CalendarWorld) -> None:
    world = calendar_world
    probe = world.run(probe_mailbox(world.gateway, world.missing_mailbox, NOW, auth="ntlm"))
    assert (probe.can_read, probe.can_write) == (False, False)
    assert probe.problem is ProbeProblem.MAILBOX_NOT_FOUND


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (ExchangeFault.UNAUTHORIZED, ProbeProblem.AUTH_REFUSED),
        (ExchangeFault.THROTTLED, ProbeProblem.THROTTLED),
        (ExchangeFault.SERVER_ERROR, ProbeProblem.UNREACHABLE),
    ],
)
def test_a_failing_exchange_is_told_apart(
    calendar_world: CalendarWorld, fault: ExchangeFault, problem: ProbeProblem
) -> None:
    world = calendar_world
    world.inject(fault, world.organizer)
    try:
        probe = world.run(probe_mailbox(world.gateway, world.organizer, NOW, auth="basic"))
    finally:
        world.clear_faults()
    assert (probe.can_read, probe.can_write) == (False, False)
    assert probe.problem is problem
    assert probe.detail


def test_a_permanent_deletion_leaves_nothing_and_is_idempotent(
    calendar_world: CalendarWorld,
) -> None:
    world = calendar_world
    assert isinstance(world.gateway, PermanentDeletion)
    marker = f"{PROBE_MARKER_PREFIX}contract-{NOW.timestamp()}"
    draft = probe_draft(NOW).model_copy(update={"marker": marker})
    ref = world.run(world.gateway.create_event(world.organizer, draft, transaction_id=marker))
    world.run(world.gateway.delete_permanently(world.organizer, ref.item_id))
    assert all(event.item_id != ref.item_id for event in world.calendar(world.organizer))
    assert world.run(world.gateway.find_by_marker(world.organizer, marker)) == []
    world.run(world.gateway.delete_permanently(world.organizer, ref.item_id))  # gone: no error
