"""One item, two protocols: what is written through EWS (exchangelib) is read through Graph
(msgraph-sdk) and the other way round — named extended properties included, since calbridge
recognises its events by one in any mailbox, whichever protocol wrote it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone, ExtendedProperty
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.single_value_legacy_extended_property import (
    SingleValueLegacyExtendedProperty,
)
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, SERVICE, exchangelib_account
from tests.sim.graph_clients import GraphSession, graph_session

PROPERTY_SET = "5d8f3a10-2b4c-4e6f-8a9b-0c1d2e3f4a5b"
PROPERTY_NAME = "CrossProtocolTag"
GRAPH_ID = f"String {{{PROPERTY_SET}}} Name {PROPERTY_NAME}"


class CrossProtocolTag(ExtendedProperty):
    property_set_id = PROPERTY_SET
    property_name = PROPERTY_NAME
    property_type = "String"


@pytest.fixture(scope="module", autouse=True)
def registered_tag() -> Iterator[None]:
    CalendarItem.register("cross_protocol_tag", CrossProtocolTag)
    yield
    CalendarItem.deregister("cross_protocol_tag")


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


def tagged_query(value: str) -> RequestConfiguration[Any]:
    return RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=(
                "singleValueExtendedProperties/any(ep: "
                f"ep/id eq '{GRAPH_ID}' and ep/value eq '{value}')"
            ),
            expand=[f"singleValueExtendedProperties($filter=id eq '{GRAPH_ID}')"],
        )
    )


def test_an_item_tagged_through_ews_is_found_by_its_tag_through_graph(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    account = exchangelib_account(simulator, ANN, as_user=SERVICE)
    start = EWSDateTime(2027, 5, 3, 14, tzinfo=EWSTimeZone("UTC"))
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Tagged through EWS",
        start=start,
        end=start + timedelta(hours=1),
        cross_protocol_tag="ews-wrote-this",
    )
    item.save()

    found = graph.run(
        graph.app.users.by_user_id(ANN).events.get(
            request_configuration=tagged_query("ews-wrote-this")
        )
    )
    assert [event.subject for event in found.value] == ["Tagged through EWS"]
    [prop] = found.value[0].single_value_extended_properties
    assert (prop.id, prop.value) == (GRAPH_ID, "ews-wrote-this")


def test_an_item_tagged_through_graph_is_found_by_its_tag_through_ews(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    event = Event(
        subject="Tagged through Graph",
        start=DateTimeTimeZone(date_time="2027-05-04T09:00:00", time_zone="UTC"),
        end=DateTimeTimeZone(date_time="2027-05-04T09:30:00", time_zone="UTC"),
        single_value_extended_properties=[
            SingleValueLegacyExtendedProperty(id=GRAPH_ID, value="graph-wrote-this")
        ],
    )
    graph.run(graph.app.users.by_user_id(BOB).events.post(event))

    account = exchangelib_account(simulator, BOB, as_user=SERVICE)
    found = list(
        account.calendar.filter(cross_protocol_tag="graph-wrote-this").only(
            "subject", "cross_protocol_tag"
        )
    )
    assert [(i.subject, i.cross_protocol_tag) for i in found] == [
        ("Tagged through Graph", "graph-wrote-this")
    ]
    # An item without the tag is not matched.
    assert list(account.calendar.filter(cross_protocol_tag="no-such-value")) == []
