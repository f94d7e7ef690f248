"""What only the in-memory Exchange offers: fault injection, request counters, reachability and
the owner-side operations other tests use to play staff in Outlook."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from shared.engine.marker import marker_for
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import (
    AccessDenied,
    EventDraft,
    ExchangeUnavailable,
    ResponseType,
    RetryAfter,
    ShowAs,
)

ORGANIZER, AVA, BO = "org@bank.example", "ava@bank.example", "bo@bank.example"
START = datetime(2031, 1, 7, 14, tzinfo=UTC)
MARKER = marker_for("acme", "appt-1")


def meeting(attendees: tuple[str, ...] = (AVA, BO)) -> EventDraft:
    return EventDraft(
        subject="Review",
        start=START,
        end=START + timedelta(hours=1),
        time_zone="UTC",
        required_attendees=attendees,
        marker=MARKER,
    )


@pytest.fixture
def exchange() -> FakeExchange:
    return FakeExchange([ORGANIZER, AVA, BO])


def test_an_injected_fault_fails_the_call_before_it_takes_effect(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)
    exchange.fail_next("create_event", RetryAfter(12), mailbox=ORGANIZER)

    with pytest.raises(RetryAfter) as raised:
        asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))

    assert raised.value.retry_after_seconds == 12
    assert exchange.calendar(ORGANIZER) == []
    assert exchange.calendar(AVA) == []
    asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))  # the fault was used up
    assert len(exchange.calendar(ORGANIZER)) == 1


def test_a_fault_after_the_effect_loses_only_the_answer(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)
    exchange.fail_next("create_event", ExchangeUnavailable("reset"), after_effect=True)

    with pytest.raises(ExchangeUnavailable):
        asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))

    [event] = exchange.calendar(ORGANIZER)
    assert event.marker == MARKER
    assert len(exchange.calendar(AVA)) == 1


def test_faults_match_their_mailbox_and_operation_only(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)
    exchange.fail_next("find_by_marker", RetryAfter(1), mailbox=AVA, times=2)

    assert asyncio.run(gateway.find_by_marker(ORGANIZER, MARKER)) == []
    asyncio.run(gateway.list_events(AVA, START, START + timedelta(days=1)))
    for _ in range(2):
        with pytest.raises(RetryAfter):
            asyncio.run(gateway.find_by_marker(AVA, MARKER))
    assert asyncio.run(gateway.find_by_marker(AVA, MARKER)) == []
    assert exchange.pending_faults == 0


def test_an_unknown_operation_cannot_be_faulted(exchange: FakeExchange) -> None:
    with pytest.raises(ValueError, match="unknown operation"):
        exchange.fail_next("delete_everything", RetryAfter(1))


def test_requests_are_counted_per_operation_and_mailbox(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)

    asyncio.run(gateway.find_by_marker(ORGANIZER, MARKER))
    ref = asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))
    asyncio.run(gateway.cancel_event(ORGANIZER, ref.item_id))
    asyncio.run(gateway.find_by_uid(AVA, ref.uid or ""))

    assert exchange.request_count() == 4
    assert exchange.request_count("create_event") == 1
    assert exchange.request_count(mailbox=ORGANIZER) == 3
    assert exchange.request_count("find_by_uid", AVA) == 1


def test_a_connection_cannot_open_mailboxes_it_was_not_granted(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange, connection_id="onprem", reachable=[ORGANIZER])

    with pytest.raises(AccessDenied, match="onprem"):
        asyncio.run(gateway.find_by_marker(AVA, MARKER))
    assert asyncio.run(gateway.find_by_marker(ORGANIZER, MARKER)) == []


def test_item_ids_look_like_ews_ids_with_characters_table_keys_forbid(
    exchange: FakeExchange,
) -> None:
    gateway = FakeCalendarGateway(exchange)
    ids = [
        asyncio.run(gateway.create_event(ORGANIZER, meeting(()), f"tx-{n}")).item_id
        for n in range(20)
    ]

    assert len(set(ids)) == 20
    assert any("/" in item_id or "+" in item_id for item_id in ids)


def test_a_decline_takes_the_copy_away_and_the_organizer_sees_it(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)
    ref = asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))
    [copy] = exchange.calendar(AVA)

    exchange.respond(AVA, copy.item_id, ResponseType.DECLINED)

    assert exchange.calendar(AVA) == []
    [organizers] = exchange.calendar(ORGANIZER)
    responses = {a.address: a.response for a in organizers.attendees}
    assert responses == {AVA: ResponseType.DECLINED, BO: ResponseType.NONE}
    assert organizers.change_key != ref.change_key


def test_an_acceptance_shows_the_copy_as_busy(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)
    asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))
    [copy] = exchange.calendar(BO)
    assert copy.show_as is ShowAs.TENTATIVE

    exchange.respond(BO, copy.item_id, ResponseType.ACCEPTED)

    [accepted] = exchange.calendar(BO)
    assert accepted.show_as is ShowAs.BUSY


def test_the_organizer_moving_the_meeting_in_outlook_moves_copies_and_resets_answers(
    exchange: FakeExchange,
) -> None:
    gateway = FakeCalendarGateway(exchange)
    ref = asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))
    [copy] = exchange.calendar(AVA)
    exchange.respond(AVA, copy.item_id, ResponseType.ACCEPTED)
    later = START + timedelta(hours=3)

    exchange.move_as_organizer(ORGANIZER, ref.item_id, later, later + timedelta(hours=1))

    [organizers] = exchange.calendar(ORGANIZER)
    assert organizers.start == later
    assert {a.response for a in organizers.attendees} == {ResponseType.NONE}
    assert [c.start for c in exchange.calendar(AVA)] == [later]
    assert [c.start for c in exchange.calendar(BO)] == [later]


def test_deleting_a_meeting_in_outlook_cancels_it_for_the_attendees(
    exchange: FakeExchange,
) -> None:
    gateway = FakeCalendarGateway(exchange)
    ref = asyncio.run(gateway.create_event(ORGANIZER, meeting(), "tx-1"))

    exchange.delete_as_owner(ORGANIZER, ref.item_id)

    assert exchange.calendar(ORGANIZER) == []
    assert [c.is_cancelled for c in exchange.calendar(AVA)] == [True]
    assert exchange.calendar(AVA)[0].subject.startswith("Canceled: ")


def test_an_attendee_outside_the_organization_is_only_recorded(exchange: FakeExchange) -> None:
    gateway = FakeCalendarGateway(exchange)

    asyncio.run(gateway.create_event(ORGANIZER, meeting((AVA, "partner@elsewhere.example")), "t"))

    [organizers] = exchange.calendar(ORGANIZER)
    assert organizers.attendee_addresses == (AVA, "partner@elsewhere.example")
    assert not exchange.has_mailbox("partner@elsewhere.example")
