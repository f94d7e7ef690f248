"""All-day items as Exchange keeps them, through EWS (exchangelib, and raw SOAP where exchangelib
cannot say it) and Graph (msgraph-sdk).

What Microsoft documents:

- EWS moves an all-day item's times onto midnights: "When a request is received to create a new
  all-day event with non-midnight (in the time zone of the request or appointment) start and/or
  end times, those times get adjusted to midnight in the appropriate time zone": a non-midnight
  start goes to the midnight before it, a non-midnight end to the midnight after it
  (https://learn.microsoft.com/exchange/client-developer/exchange-web-services/how-to-create-all-day-events-by-using-ews-in-exchange).
  The zone is the item's: the StartTimeZone the client sent, or else the request's (without a
  TimeZoneContext, the mailbox's).
- Graph refuses what EWS adjusts: isAllDay "If true, regardless of whether it's a single-day or
  multi-day event, start and end time must be set to midnight and be in the same time zone"
  (https://learn.microsoft.com/graph/api/resources/event, isAllDay).
- Graph writes an all-day event's start and end as the midnights of its days, labelled with the
  zone the request asked for (``Prefer: outlook.timezone``, UTC without it), not converted into
  it: "All day events always return midnight-to-midnight regardless of time zone" (Microsoft's
  answer in https://github.com/microsoftgraph/microsoft-graph-docs/issues/1802).

exchangelib reads an all-day item's Start/End as dates (the end date is the last day, one less
than the midnight that ends it); fetching only start and end shows the instants themselves.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone
from exchangelib.protocol import close_connections
from kiota_abstractions.base_request_configuration import RequestConfiguration
from lxml import etree
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.calendar_view.calendar_view_request_builder import (
    CalendarViewRequestBuilder,
)

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, exchangelib_account
from tests.sim.graph_clients import GraphSession, graph_session

TORONTO = EWSTimeZone("America/Toronto")  # ann's and bob's mailbox zone
LONDON = EWSTimeZone("Europe/London")
UTC = datetime.UTC
UTC_ZONE = EWSTimeZone("UTC")
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"


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


def utc(month: int, day: int, hour: int = 0) -> datetime.datetime:
    return datetime.datetime(2027, month, day, hour, tzinfo=UTC)


def instants(account: Any, item_id: str) -> tuple[datetime.datetime, datetime.datetime]:
    """Start and End as the server sent them (is_all_day not fetched, so exchangelib leaves
    them datetimes)."""
    [raw] = account.fetch(ids=[(item_id, None)], only_fields=["start", "end"])
    return raw.start.astimezone(UTC_ZONE), raw.end.astimezone(UTC_ZONE)


def graph_view(
    graph: GraphSession, address: str, start: str, end: str, zone: str | None = None
) -> list[Any]:
    config = RequestConfiguration(
        query_parameters=CalendarViewRequestBuilder.CalendarViewRequestBuilderGetQueryParameters(
            start_date_time=start, end_date_time=end
        )
    )
    if zone is not None:
        config.headers.add("Prefer", f'outlook.timezone="{zone}"')
    answer = graph.run(
        graph.app.users.by_user_id(address).calendar_view.get(request_configuration=config)
    )
    return list(answer.value)


def soap_create(sim: RunningSimulator, address: str, calendar_item: str) -> str:
    """CreateItem sent by hand (as a client other than exchangelib may send it); the new id."""
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body><m:CreateItem SendMeetingInvitations="SendToNone">
    <m:Items><t:CalendarItem>{calendar_item}</t:CalendarItem></m:Items>
  </m:CreateItem></s:Body>
</s:Envelope>"""
    token = base64.b64encode(f"{address}:{PASSWORDS[address]}".encode()).decode()
    response = requests.post(
        sim.urls["ews"],
        data=body.encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    assert root.findtext(f".//{M}ResponseCode") == "NoError"
    return str(root.find(f".//{T}ItemId").get("Id"))


# --- EWS: times are moved onto midnights -----------------------------------------------------


def test_ews_moves_an_all_day_item_onto_midnights_in_the_zone_it_was_sent_in(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    ann = exchangelib_account(simulator, ANN)
    # Sent in London time to a mailbox in Toronto: London's midnights count, not Toronto's.
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Offsite, London clocks",
        start=EWSDateTime(2027, 2, 9, 13, 0, tzinfo=LONDON),
        end=EWSDateTime(2027, 2, 10, 9, 30, tzinfo=LONDON),
        is_all_day=True,
    )
    item.save()

    # Start down to the midnight before it, end up to the midnight after it (GMT = UTC in
    # February), whatever clock times were sent.
    assert instants(ann, item.id) == (utc(2, 9), utc(2, 11))
    fetched = ann.calendar.get(id=item.id)
    assert fetched.is_all_day is True
    assert fetched._start_timezone == LONDON
    assert (fetched.start, fetched.end) == (EWSDate(2027, 2, 9), EWSDate(2027, 2, 10))
    # Graph shows the same two midnights, in whatever zone it is asked for.
    [event] = [
        e
        for e in graph_view(
            graph, ANN, "2027-02-08T00:00:00Z", "2027-02-12T00:00:00Z", "Tokyo Standard Time"
        )
        if e.subject == "Offsite, London clocks"
    ]
    assert event.is_all_day is True
    assert (event.start.date_time, event.start.time_zone) == (
        "2027-02-09T00:00:00.0000000",
        "Tokyo Standard Time",
    )
    assert (event.end.date_time, event.end.time_zone) == (
        "2027-02-11T00:00:00.0000000",
        "Tokyo Standard Time",
    )


def test_ews_without_a_zone_uses_the_mailboxs_zone(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    # No StartTimeZone and no TimeZoneContext: the mailbox's zone (Toronto, UTC-5 in
    # February) is the item's. 18:00Z is 13:00 there, 15:00Z the next day is 10:00.
    item_id = soap_create(
        simulator,
        BOB,
        "<t:Subject>Closed for stocktaking</t:Subject>"
        "<t:Start>2027-02-09T18:00:00Z</t:Start><t:End>2027-02-10T15:00:00Z</t:End>"
        "<t:IsAllDayEvent>true</t:IsAllDayEvent>",
    )

    bob = exchangelib_account(simulator, BOB)
    assert instants(bob, item_id) == (utc(2, 9, 5), utc(2, 11, 5))
    fetched = bob.calendar.get(id=item_id)
    assert fetched.is_all_day is True
    assert (fetched.start, fetched.end) == (EWSDate(2027, 2, 9), EWSDate(2027, 2, 10))
    # Without Prefer, Graph labels the midnights UTC but does not convert them.
    [event] = [
        e
        for e in graph_view(graph, BOB, "2027-02-08T00:00:00Z", "2027-02-12T00:00:00Z")
        if e.subject == "Closed for stocktaking"
    ]
    assert event.is_all_day is True
    assert (event.start.date_time, event.start.time_zone) == ("2027-02-09T00:00:00.0000000", "UTC")
    assert (event.end.date_time, event.end.time_zone) == ("2027-02-11T00:00:00.0000000", "UTC")
    assert event.original_start_time_zone == "Eastern Standard Time"


def test_ews_keeps_midnights_that_were_sent(simulator: RunningSimulator) -> None:
    ann = exchangelib_account(simulator, ANN)
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Already midnights",
        start=EWSDateTime(2027, 2, 16, 0, 0, tzinfo=TORONTO),
        end=EWSDateTime(2027, 2, 18, 0, 0, tzinfo=TORONTO),
        is_all_day=True,
    )
    item.save()

    assert instants(ann, item.id) == (utc(2, 16, 5), utc(2, 18, 5))


def test_ews_marking_an_item_all_day_moves_it_onto_midnights(simulator: RunningSimulator) -> None:
    # The how-to above describes creation; an all-day item on midnights is what every client
    # relies on afterwards (Outlook, too, moves an appointment onto whole days when it is
    # marked all-day), so the same adjustment applies when an update makes the item all-day.
    ann = exchangelib_account(simulator, ANN)
    item = CalendarItem(
        account=ann,
        folder=ann.calendar,
        subject="Becomes a day off",
        start=EWSDateTime(2027, 2, 23, 10, 0, tzinfo=TORONTO),
        end=EWSDateTime(2027, 2, 23, 11, 0, tzinfo=TORONTO),
    )
    item.save()

    item.is_all_day = True
    item.save(update_fields=["is_all_day"])

    assert instants(ann, item.id) == (utc(2, 23, 5), utc(2, 24, 5))
    fetched = ann.calendar.get(id=item.id)
    assert (fetched.start, fetched.end) == (EWSDate(2027, 2, 23), EWSDate(2027, 2, 23))


def test_occurrences_of_an_all_day_series_stay_whole_days_across_a_clock_change(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    # Toronto's clocks go forward on 14 March 2027: that day is 23 hours long, and its
    # occurrence still runs midnight to midnight.
    event = Event(
        subject="Daily all-day series",
        is_all_day=True,
        start=DateTimeTimeZone(date_time="2027-03-13T00:00:00", time_zone="Eastern Standard Time"),
        end=DateTimeTimeZone(date_time="2027-03-14T00:00:00", time_zone="Eastern Standard Time"),
        recurrence=_daily(datetime.date(2027, 3, 13), 3),
    )
    graph.run(graph.app.users.by_user_id(CARA).events.post(event))

    occurrences = [
        e
        for e in graph_view(
            graph, CARA, "2027-03-12T00:00:00Z", "2027-03-20T00:00:00Z", "Eastern Standard Time"
        )
        if e.subject == "Daily all-day series"
    ]
    assert [(e.start.date_time[:10], e.end.date_time[:10]) for e in occurrences] == [
        ("2027-03-13", "2027-03-14"),
        ("2027-03-14", "2027-03-15"),
        ("2027-03-15", "2027-03-16"),
    ]
    cara = exchangelib_account(simulator, CARA)
    window = cara.calendar.view(
        start=EWSDateTime(2027, 3, 12, tzinfo=UTC_ZONE),
        end=EWSDateTime(2027, 3, 20, tzinfo=UTC_ZONE),
    )
    seen = [
        (o.start.astimezone(UTC_ZONE), o.end.astimezone(UTC_ZONE))
        for o in window.only("subject", "start", "end")
        if o.subject == "Daily all-day series"
    ]
    assert seen == [
        (utc(3, 13, 5), utc(3, 14, 5)),
        (utc(3, 14, 5), utc(3, 15, 4)),  # 23 hours: midnight EST to midnight EDT
        (utc(3, 15, 4), utc(3, 16, 4)),
    ]


def _daily(first: datetime.date, count: int) -> Any:
    from msgraph.generated.models.patterned_recurrence import PatternedRecurrence
    from msgraph.generated.models.recurrence_pattern import RecurrencePattern
    from msgraph.generated.models.recurrence_pattern_type import RecurrencePatternType
    from msgraph.generated.models.recurrence_range import RecurrenceRange
    from msgraph.generated.models.recurrence_range_type import RecurrenceRangeType

    return PatternedRecurrence(
        pattern=RecurrencePattern(type=RecurrencePatternType.Daily, interval=1),
        range=RecurrenceRange(
            type=RecurrenceRangeType.Numbered,
            start_date=first,
            number_of_occurrences=count,
            recurrence_time_zone="Eastern Standard Time",
        ),
    )


# --- Graph: midnights in one zone are required ------------------------------------------------


def _all_day_event(subject: str, start: DateTimeTimeZone, end: DateTimeTimeZone) -> Event:
    return Event(subject=subject, is_all_day=True, start=start, end=end)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(
            ("2027-04-06T13:00:00", "Eastern Standard Time"),
            ("2027-04-07T00:00:00", "Eastern Standard Time"),
            id="start-not-midnight",
        ),
        pytest.param(
            ("2027-04-06T00:00:00", "Eastern Standard Time"),
            ("2027-04-06T18:00:00", "Eastern Standard Time"),
            id="end-not-midnight",
        ),
        pytest.param(
            # London (summer time) and Lagos are both UTC+1 in April: the same instants, each
            # a midnight, but not "in the same time zone".
            ("2027-04-06T00:00:00", "GMT Standard Time"),
            ("2027-04-07T00:00:00", "W. Central Africa Standard Time"),
            id="midnights-in-two-zones",
        ),
    ],
)
def test_graph_refuses_an_all_day_event_off_midnight_or_across_zones(
    simulator: RunningSimulator,
    graph: GraphSession,
    start: tuple[str, str],
    end: tuple[str, str],
) -> None:
    event = _all_day_event(
        "Refused all-day",
        DateTimeTimeZone(date_time=start[0], time_zone=start[1]),
        DateTimeTimeZone(date_time=end[0], time_zone=end[1]),
    )

    with pytest.raises(ODataError) as refused:
        graph.run(graph.app.users.by_user_id(ANN).events.post(event))

    assert refused.value.response_status_code == 400
    assert simulator.person(ANN).find(subject="Refused all-day") == []


def test_graph_refuses_a_patch_that_leaves_an_all_day_event_off_midnight(
    graph: GraphSession,
) -> None:
    events = graph.app.users.by_user_id(ANN).events
    created = graph.run(
        events.post(
            _all_day_event(
                "Patched all-day",
                DateTimeTimeZone(
                    date_time="2027-04-13T00:00:00", time_zone="Eastern Standard Time"
                ),
                DateTimeTimeZone(
                    date_time="2027-04-14T00:00:00", time_zone="Eastern Standard Time"
                ),
            )
        )
    )

    with pytest.raises(ODataError) as refused:
        graph.run(
            events.by_event_id(created.id).patch(
                Event(
                    end=DateTimeTimeZone(
                        date_time="2027-04-14T12:00:00", time_zone="Eastern Standard Time"
                    )
                )
            )
        )

    assert refused.value.response_status_code == 400
    unchanged = graph.run(events.by_event_id(created.id).get())
    assert unchanged.end.date_time.startswith("2027-04-14T00:00:00")


def test_an_all_day_event_created_through_graph_reads_back_in_both_protocols(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    created = graph.run(
        graph.app.users.by_user_id(BOB).events.post(
            _all_day_event(
                "Two days off",
                DateTimeTimeZone(date_time="2027-04-20T00:00:00", time_zone="GMT Standard Time"),
                DateTimeTimeZone(date_time="2027-04-22T00:00:00", time_zone="GMT Standard Time"),
            )
        )
    )

    assert created.is_all_day is True
    assert created.start.date_time.startswith("2027-04-20T00:00:00")
    assert created.end.date_time.startswith("2027-04-22T00:00:00")
    bob = exchangelib_account(simulator, BOB)
    [item] = [
        i
        for i in bob.calendar.view(
            start=EWSDateTime(2027, 4, 19, tzinfo=UTC_ZONE),
            end=EWSDateTime(2027, 4, 23, tzinfo=UTC_ZONE),
        )
        if i.subject == "Two days off"
    ]
    assert item.is_all_day is True
    assert item._start_timezone == LONDON
    assert (item.start, item.end) == (EWSDate(2027, 4, 20), EWSDate(2027, 4, 21))
    # London is on summer time (UTC+1) in April: its midnights are 23:00 UTC the day before.
    assert instants(bob, item.id) == (utc(4, 19, 23), utc(4, 21, 23))
