"""Which items a calendar view returns at its edges, through EWS (exchangelib's view(), a FindItem
with a CalendarView) and Graph (msgraph-sdk's calendarView).

Exchange's rule, from the CalendarView element
(https://learn.microsoft.com/exchange/client-developer/web-service-reference/calendarview):
StartDate — "All calendar items that have an end time that is before StartDate will not be
returned"; EndDate — "All calendar items that have a start time that is on or after EndDate will
not be returned", and "EndDate must be greater than or equal to StartDate". So a view returns
exactly the items with end >= StartDate and start < EndDate:

- an item that ends exactly at the view's start is returned;
- an item that starts exactly at the view's end is not;
- a zero-length item follows the same rule: returned at the view's start, not at its end;
- a zero-length view (StartDate = EndDate) returns what runs across that instant, not what
  starts at it.

Graph's calendarView reads the same mailbox the same way; its page does not spell the edges out
(https://learn.microsoft.com/graph/api/user-list-calendarview), and an event that ends exactly
at startDateTime is returned (reported in
https://github.com/microsoftgraph/microsoft-graph-docs/issues/18024: an event 2022-08-11T00:00 to
2022-08-12T00:00 comes back for startDateTime=2022-08-12T00:00:00).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.protocol import close_connections
from exchangelib.recurrence import DailyPattern, NumberedPattern, Recurrence
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)

from sim.server import RunningSimulator
from tests.sim.conftest import CARA, exchangelib_account
from tests.sim.graph_clients import GraphSession, graph_session

UTC = EWSTimeZone("UTC")
VIEW_START = EWSDateTime(2027, 6, 7, 9, 0, tzinfo=UTC)
VIEW_END = EWSDateTime(2027, 6, 7, 12, 0, tzinfo=UTC)

# (subject, start, end) around the view 09:00-12:00 UTC on 7 June 2027, and whether Exchange
# returns it.
ITEMS = [
    ("ends before the start", (7, 0), (8, 59), False),
    ("ends at the start", (8, 0), (9, 0), True),
    ("zero length at the start", (9, 0), (9, 0), True),
    ("zero length inside", (10, 0), (10, 0), True),
    ("across the whole view", (8, 0), (13, 0), True),
    ("starts a minute before the end", (11, 59), (12, 30), True),
    ("zero length at the end", (12, 0), (12, 0), False),
    ("starts at the end", (12, 0), (13, 0), False),
]
RETURNED = [subject for subject, _, _, returned in ITEMS if returned]


def at(hour: int, minute: int = 0, day: int = 7) -> EWSDateTime:
    return EWSDateTime(2027, 6, day, hour, minute, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols() -> Iterator[None]:
    yield
    close_connections()


@pytest.fixture(scope="module", autouse=True)
def responses_are_schema_valid(simulator: RunningSimulator) -> Iterator[None]:
    yield
    assert simulator.ews.schema_failures == []


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


@pytest.fixture(scope="module")
def cara(simulator: RunningSimulator) -> Any:
    """Cara's calendar holds the items around the view (and nothing else on that day)."""
    account = exchangelib_account(simulator, CARA)
    for subject, start, end, _ in ITEMS:
        CalendarItem(
            account=account,
            folder=account.calendar,
            subject=subject,
            start=at(*start),
            end=at(*end),
        ).save()
    return account


def ews_view(account: Any, start: EWSDateTime, end: EWSDateTime) -> list[str]:
    return [item.subject for item in account.calendar.view(start=start, end=end).only("subject")]


def graph_view(graph: GraphSession, start: str, end: str) -> list[str]:
    config = RequestConfiguration(
        query_parameters=CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
            start_date_time=start, end_date_time=end
        )
    )
    answer = graph.run(
        graph.app.users.by_user_id(CARA).calendar_view.get(request_configuration=config)
    )
    return [event.subject for event in answer.value]


def test_ews_calendar_view_returns_what_ends_at_or_after_its_start_and_starts_before_its_end(
    cara: Any,
) -> None:
    assert sorted(ews_view(cara, VIEW_START, VIEW_END)) == sorted(RETURNED)


def test_graph_calendar_view_draws_the_same_edges(cara: Any, graph: GraphSession) -> None:
    shown = graph_view(graph, "2027-06-07T09:00:00Z", "2027-06-07T12:00:00Z")

    assert sorted(shown) == sorted(RETURNED)


def test_ews_zero_length_view_returns_what_runs_across_its_instant(cara: Any) -> None:
    # StartDate = EndDate is allowed; nothing starts before 10:00 and ends at or after it except
    # the item across the whole view. The zero-length item at 10:00 starts "on EndDate".
    assert ews_view(cara, at(10), at(10)) == ["across the whole view"]


def test_occurrences_follow_the_same_rule(simulator: RunningSimulator, graph: GraphSession) -> None:
    account = exchangelib_account(simulator, CARA)
    CalendarItem(
        account=account,
        folder=account.calendar,
        subject="daily 08:00-09:00",
        start=at(8, day=14),
        end=at(9, day=14),
        recurrence=Recurrence(
            pattern=DailyPattern(interval=1),
            boundary=NumberedPattern(start=datetime.date(2027, 6, 14), number=3),
        ),
    ).save()

    # A view from 09:00 on the 15th: that day's occurrence ends at its start and is returned;
    # the 16th's starts at 08:00 the next day, at the view's end, and is not.
    ews = [
        item.start
        for item in account.calendar.view(start=at(9, day=15), end=at(8, day=16)).only(
            "subject", "start"
        )
        if item.subject == "daily 08:00-09:00"
    ]
    assert ews == [at(8, day=15)]
    graph_shown = graph_view(graph, "2027-06-15T09:00:00Z", "2027-06-16T08:00:00Z")
    assert graph_shown.count("daily 08:00-09:00") == 1
