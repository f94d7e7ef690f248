"""Rules of the calendar port that every implementation applies the same way because each is
written once: who is invited, which of several items comes first, how free/busy and the time
zone are spelt for EWS and Graph."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.exchange.common import FREE_BUSY_SPELLINGS, event_show_as
from shared.exchange.ews.items import draft_values, staff_attendees
from shared.exchange.fake import FakeExchange
from shared.exchange.graph.events import create_body
from shared.exchange.port import EventDraft, ExchangeEvent, ShowAs, live_first
from shared.timezones import windows_zone_name

START = datetime(2031, 5, 6, 15, tzinfo=UTC)


def draft(attendees: tuple[str, ...] = (), zone: str = "Europe/Berlin") -> EventDraft:
    return EventDraft(
        subject="Advice",
        start=START,
        end=START + timedelta(minutes=30),
        time_zone=zone,
        required_attendees=attendees,
        marker="calbridge/1/acme/apt-1",
    )


def test_invitees_are_the_attendees_once_each_in_order_never_the_organizer() -> None:
    made = draft(("Bob@Bank.test", "olga@bank.test", "bob@bank.test", "cy@bank.test"))
    assert made.required_attendees == ("bob@bank.test", "olga@bank.test", "cy@bank.test")
    assert made.invitees("OLGA@bank.test") == ("bob@bank.test", "cy@bank.test")
    # What each implementation writes is exactly that list.
    ews = [a.mailbox.email_address for a in staff_attendees(made, "olga@bank.test")]
    graph = [
        a["emailAddress"]["address"] for a in create_body(made, "olga@bank.test", "t")["attendees"]
    ]
    fake = FakeExchange(["olga@bank.test", "bob@bank.test", "cy@bank.test"])
    ref = fake.create_event("olga@bank.test", made, "t")
    written = fake.get_event("olga@bank.test", ref.item_id)
    assert written is not None
    assert ews == graph == list(written.attendee_addresses) == ["bob@bank.test", "cy@bank.test"]


def event(item_id: str, hour: int, *, cancelled: bool = False) -> ExchangeEvent:
    start = START.replace(hour=hour)
    return ExchangeEvent(
        item_id=item_id, start=start, end=start + timedelta(hours=1), is_cancelled=cancelled
    )


def test_live_items_come_first_then_by_start_then_by_id() -> None:
    found = [event("b", 9), event("z", 8, cancelled=True), event("a", 9), event("c", 10)]
    assert [e.item_id for e in live_first(found)] == ["a", "b", "c", "z"]


@pytest.mark.parametrize("show_as", list(ShowAs))
def test_free_busy_is_spelt_from_one_table_and_read_back_the_same_either_way(
    show_as: ShowAs,
) -> None:
    ews, graph = FREE_BUSY_SPELLINGS[show_as]
    made = draft().model_copy(update={"show_as": show_as})
    assert draft_values(made, "olga@bank.test")["legacy_free_busy_status"] == ews
    assert create_body(made, "olga@bank.test", "t")["showAs"] == graph
    assert event_show_as(ews) is event_show_as(graph) is show_as


@pytest.mark.parametrize("zone", ["Europe/Zurich", "America/Vancouver", "Asia/Kolkata", "UTC"])
def test_ews_and_graph_name_a_zone_by_the_same_windows_name(zone: str) -> None:
    windows = windows_zone_name(zone)
    assert windows is not None
    made = draft(zone=zone)
    assert draft_values(made, "olga@bank.test")["start"].tzinfo.ms_id == windows
    assert create_body(made, "olga@bank.test", "t")["start"]["timeZone"] == windows
