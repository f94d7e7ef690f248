"""A series' rule reads the same through EWS and Graph: each pattern a staff member can make in
Outlook, with its range, normalised to the port's ``Recurrence`` (only the parts the pattern
uses), and nothing but the series master carries one.

What the protocols return follows Microsoft's documentation: EWS ``Recurrence``
(https://learn.microsoft.com/exchange/client-developer/web-service-reference/recurrence-recurrencetype)
and Graph ``patternedRecurrence``
(https://learn.microsoft.com/graph/api/resources/patternedrecurrence), which fills every
pattern field whatever the type.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest

from shared.exchange.port import ItemType, Recurrence, RecurrencePattern
from sim.ews.calendar_items import ews_item_id
from sim.graph.ids import event_id
from sim.people import Outlook
from sim.store import Recurrence as StoreRecurrence
from tests.adapters.test_marker_cross_protocol import ORGANIZER, Protocols, both_protocols

START = datetime(2032, 1, 5, 14, tzinfo=UTC)  # a Monday


@pytest.fixture(scope="module")
def protocols() -> Iterator[Protocols]:
    with both_protocols(validate_ews=True) as opened:
        yield opened


CASES = [
    (
        StoreRecurrence(pattern="daily", interval=2, start_date=START.date(), count=10),
        Recurrence(
            pattern=RecurrencePattern.DAILY, interval=2, start_date=START.date(), occurrences=10
        ),
    ),
    (
        StoreRecurrence(
            pattern="weekly",
            days_of_week=["Monday", "Thursday"],
            first_day_of_week="Monday",
            start_date=START.date(),
            end_date=date(2032, 6, 30),
        ),
        Recurrence(
            pattern=RecurrencePattern.WEEKLY,
            days_of_week=("monday", "thursday"),
            first_day_of_week="monday",
            start_date=START.date(),
            end_date=date(2032, 6, 30),
        ),
    ),
    (
        StoreRecurrence(pattern="absoluteMonthly", day_of_month=5, start_date=START.date()),
        Recurrence(
            pattern=RecurrencePattern.ABSOLUTE_MONTHLY, day_of_month=5, start_date=START.date()
        ),
    ),
    (
        StoreRecurrence(
            pattern="relativeMonthly",
            interval=3,
            days_of_week=["Monday"],
            week_index="First",
            start_date=START.date(),
            count=4,
        ),
        Recurrence(
            pattern=RecurrencePattern.RELATIVE_MONTHLY,
            interval=3,
            days_of_week=("monday",),
            index="first",
            start_date=START.date(),
            occurrences=4,
        ),
    ),
    (
        StoreRecurrence(
            pattern="absoluteYearly", day_of_month=5, month=1, start_date=START.date(), count=3
        ),
        Recurrence(
            pattern=RecurrencePattern.ABSOLUTE_YEARLY,
            day_of_month=5,
            month=1,
            start_date=START.date(),
            occurrences=3,
        ),
    ),
    (
        StoreRecurrence(
            pattern="relativeYearly",
            days_of_week=["Monday"],
            week_index="Last",
            month=1,
            start_date=START.date(),
            count=2,
        ),
        Recurrence(
            pattern=RecurrencePattern.RELATIVE_YEARLY,
            days_of_week=("monday",),
            index="last",
            month=1,
            start_date=START.date(),
            occurrences=2,
        ),
    ),
]


@pytest.mark.parametrize(("made", "read"), CASES, ids=[c[1].pattern.value for c in CASES])
def test_a_series_rule_reads_the_same_through_both_protocols(
    protocols: Protocols, made: StoreRecurrence, read: Recurrence
) -> None:
    p = protocols
    series = Outlook(p.simulator.store, ORGANIZER).create_event(
        f"Series {read.pattern.value}",
        START,
        START + timedelta(hours=1),
        time_zone="UTC",
        recurrence=made,
    )

    through_ews = p.run(p.ews.get_event(ORGANIZER, ews_item_id(series)))
    through_graph = p.run(p.graph.get_event(ORGANIZER, event_id(series.id)))

    assert through_ews is not None
    assert through_graph is not None
    assert through_ews.item_type is through_graph.item_type is ItemType.SERIES_MASTER
    assert through_ews.recurrence == read
    assert through_graph.recurrence == read


def test_single_events_and_occurrences_carry_no_rule(protocols: Protocols) -> None:
    p = protocols
    owner = Outlook(p.simulator.store, ORGANIZER)
    single = owner.create_event("One-off", START, START + timedelta(hours=1), time_zone="UTC")
    owner.create_event(
        "Weekly stand-up",
        START,
        START + timedelta(minutes=15),
        time_zone="UTC",
        recurrence=StoreRecurrence(
            pattern="weekly", days_of_week=["Monday"], start_date=START.date(), count=3
        ),
    )

    ews_single = p.run(p.ews.get_event(ORGANIZER, ews_item_id(single)))
    assert ews_single is not None
    assert ews_single.recurrence is None
    graph_single = p.run(p.graph.get_event(ORGANIZER, event_id(single.id)))
    assert graph_single is not None
    assert graph_single.recurrence is None
    window = (START - timedelta(hours=1), START + timedelta(days=15))
    for gateway in (p.ews, p.graph):
        occurrences = [
            event
            for event in p.run(gateway.list_events(ORGANIZER, *window))
            if event.subject == "Weekly stand-up"
        ]
        assert len(occurrences) == 3
        assert all(event.recurrence is None for event in occurrences)
