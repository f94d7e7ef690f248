"""Categories as Exchange keeps them: a list of strings on each item, set and read through EWS
(``item:Categories``) and Graph (``categories``), and searchable by both.

What Exchange does, and where Microsoft says so:
- EWS Categories "contains a collection of strings that identify the categories to which an item
  in the mailbox belongs" (ArrayOfStringsType, one String per category):
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/categories-ex15websvcsotherref
- Graph event.categories: "The categories associated with the event" (String collection):
  https://learn.microsoft.com/graph/api/resources/event
- A restriction on a multi-valued string property matches an item when one of its values
  matches: "even though we are specifying '=' it behaves similar to a LIKE or CONTAINS query",
  and "!=" keeps only the items that do not have the value:
  https://learn.microsoft.com/archive/blogs/mstehle/dav-how-to-search-mv-string-properties
  IsEqualTo compares a property with a constant; Contains tests whether "a given property
  contains the supplied constant string value", with ContainmentMode and ContainmentComparison:
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/isequalto
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/contains
  Exchange compares category strings without regard to case (exchangelib's notes from a live
  server: item:Categories == 'foo' AND/OR ... "Both versions are case-insensitive").
- Graph's ``any`` lambda "returns true if the expression is true for at least one item of the
  collection"; for a collection of strings the range variable is the value:
  https://learn.microsoft.com/graph/filter-query-parameter
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.protocol import close_connections
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, SERVICE, exchangelib_account
from tests.sim.ews_soap import find_subjects
from tests.sim.graph_clients import GraphSession, graph_session

UTC = EWSTimeZone("UTC")


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


def at(day: int, hour: int) -> EWSDateTime:
    return EWSDateTime(2027, 9, day, hour, tzinfo=UTC)


def save(account: Any, subject: str, start: EWSDateTime, **fields: Any) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=start,
        end=start + timedelta(hours=1),
        **fields,
    )
    item.save()
    return item


def subjects(query: Any) -> list[str]:
    return sorted(item.subject for item in query.only("subject"))


def test_categories_round_trip_through_ews(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, CARA)
    item = save(account, "Categorised", at(1, 9), categories=["Red category", "Project X"])

    fetched = account.calendar.get(id=item.id)
    assert fetched.categories == ["Red category", "Project X"]

    fetched.categories = ["Blue category"]
    fetched.save(update_fields=["categories"])
    assert account.calendar.get(id=item.id).categories == ["Blue category"]

    fetched.categories = None
    fetched.save(update_fields=["categories"])  # DeleteItemField item:Categories
    assert account.calendar.get(id=item.id).categories is None


def test_restrictions_match_one_of_the_categories(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, ANN, as_user=SERVICE)
    save(account, "Cat both", at(2, 9), categories=["Gold", "Silver"])
    save(account, "Cat gold", at(2, 11), categories=["Gold"])
    save(account, "Cat none", at(2, 13))
    calendar = account.calendar.filter(subject__startswith="Cat ")

    # IsEqualTo on item:Categories: one of the values equals the constant (case ignored).
    assert subjects(calendar.filter(categories="gold")) == ["Cat both", "Cat gold"]
    # And of IsEqualTo: items that have all of them; Or: items that have any of them.
    assert subjects(calendar.filter(categories__contains=["Gold", "Silver"])) == ["Cat both"]
    assert subjects(calendar.filter(categories__in=["Silver", "Bronze"])) == ["Cat both"]
    # IsNotEqualTo: none of the values equals it; an item without categories has no value to
    # compare, so it does not match either.
    assert subjects(calendar.exclude(categories="Silver")) == ["Cat gold"]


def test_contains_looks_into_each_category(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, BOB, as_user=SERVICE)
    save(account, "Contained", at(3, 9), categories=["Team: Billing", "Follow up"])
    save(account, "Not contained", at(3, 11), categories=["Personal"])

    def contains(constant: str, mode: str, comparison: str) -> list[str]:
        code, found = find_subjects(
            simulator,
            BOB,
            f'<t:Contains ContainmentMode="{mode}" ContainmentComparison="{comparison}">'
            f'<t:FieldURI FieldURI="item:Categories"/><t:Constant Value="{constant}"/>'
            "</t:Contains>",
        )
        assert code == "NoError"
        return found

    assert contains("billing", "Substring", "IgnoreCase") == ["Contained"]
    assert contains("billing", "Substring", "Exact") == []
    assert contains("Follow", "Prefixed", "Exact") == ["Contained"]
    assert contains("Personal", "FullString", "Exact") == ["Not contained"]


def test_categories_set_through_one_protocol_read_and_found_through_the_other(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    account = exchangelib_account(simulator, BOB, as_user=SERVICE)
    save(account, "Tagged in EWS", at(4, 9), categories=["Orange category"])
    graph.run(
        graph.app.users.by_user_id(BOB).events.post(
            Event(
                subject="Tagged in Graph",
                start=DateTimeTimeZone(date_time="2027-09-04T11:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-09-04T12:00:00", time_zone="UTC"),
                categories=["Purple category", "Orange category"],
            )
        )
    )

    def graph_found(expression: str) -> list[tuple[str, list[str]]]:
        query = RequestConfiguration(
            query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
                filter=expression, select=["subject", "categories"]
            )
        )
        listed = graph.run(graph.app.users.by_user_id(BOB).events.get(request_configuration=query))
        return sorted((event.subject, event.categories) for event in listed.value)

    assert graph_found("categories/any(c:c eq 'Orange category')") == [
        ("Tagged in EWS", ["Orange category"]),
        ("Tagged in Graph", ["Purple category", "Orange category"]),
    ]
    assert graph_found("categories/any(c:c eq 'Purple category')") == [
        ("Tagged in Graph", ["Purple category", "Orange category"])
    ]
    [from_graph] = account.calendar.filter(categories="Purple category")
    assert from_graph.subject == "Tagged in Graph"
    assert from_graph.categories == ["Purple category", "Orange category"]
