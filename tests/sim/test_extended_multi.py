"""Multi-valued extended properties (the ...Array MAPI types) through EWS and Graph, and the same
property read through the protocol that did not write it.

What Exchange does, and where Microsoft says so:
- EWS ExtendedProperty carries ``Values`` ("a collection of values for a multivalued extended
  MAPI property") or ``Value`` ("the value of single-valued MAPI extended property"); the types
  include StringArray, IntegerArray, BinaryArray, SystemTimeArray...:
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/extendedproperty
  https://learn.microsoft.com/exchange/client-developer/web-service-reference/values
- Graph names a multi-value property "{type} {guid} Name {name}", "{type} {guid} Id {id}" or
  "{type} {proptag}" (e.g. "StringArray {…} Name TestProperty", "IntegerArray {…} Id 0x8013")
  and creates it in multiValueExtendedProperties with value an array of strings; the create
  response does not include it, an event "expanded with the extended property" does
  ($expand=multiValueExtendedProperties($filter=id eq '…')):
  https://learn.microsoft.com/graph/api/resources/extended-properties-overview
  https://learn.microsoft.com/graph/api/multivaluelegacyextendedproperty-post-multivalueextendedproperties
  https://learn.microsoft.com/graph/api/multivaluelegacyextendedproperty-get
- Both are views of the same MAPI named property (property set GUID + name or id, and type),
  so what one protocol writes the other reads.
- A restriction on a multi-valued property matches when one of the values does:
  https://learn.microsoft.com/archive/blogs/mstehle/dav-how-to-search-mv-string-properties
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from exchangelib import CalendarItem, EWSDateTime, EWSTimeZone, ExtendedProperty
from exchangelib.protocol import close_connections
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.multi_value_legacy_extended_property import (
    MultiValueLegacyExtendedProperty,
)
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.single_value_legacy_extended_property import (
    SingleValueLegacyExtendedProperty,
)
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
from msgraph.generated.users.item.events.item.event_item_request_builder import (
    EventItemRequestBuilder,
)

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, SERVICE, exchangelib_account
from tests.sim.graph_clients import GraphSession, graph_session

UTC = EWSTimeZone("UTC")
PROPERTY_SET = "66f5a359-4659-4830-9070-00050ec6ac6e"
RECREATION = f"StringArray {{{PROPERTY_SET}}} Name Recreation"
SCORES = f"IntegerArray {{{PROPERTY_SET}}} Id 0x8013"
STAMPS = f"SystemTimeArray {{{PROPERTY_SET}}} Name Stamps"
BLOBS = f"BinaryArray {{{PROPERTY_SET}}} Name Blobs"


class Recreation(ExtendedProperty):
    property_set_id = PROPERTY_SET
    property_name = "Recreation"
    property_type = "StringArray"


class Scores(ExtendedProperty):
    property_set_id = PROPERTY_SET
    property_id = 0x8013
    property_type = "IntegerArray"


class Stamps(ExtendedProperty):
    property_set_id = PROPERTY_SET
    property_name = "Stamps"
    property_type = "SystemTimeArray"


class Blobs(ExtendedProperty):
    property_set_id = PROPERTY_SET
    property_name = "Blobs"
    property_type = "BinaryArray"


FIELDS = {"recreation": Recreation, "scores": Scores, "stamps": Stamps, "blobs": Blobs}


@pytest.fixture(scope="module", autouse=True)
def registered() -> Iterator[None]:
    for name, cls in FIELDS.items():
        CalendarItem.register(name, cls)
    yield
    for name in FIELDS:
        CalendarItem.deregister(name)


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
    return EWSDateTime(2027, 11, day, hour, tzinfo=UTC)


def expanded(*ids: str) -> RequestConfiguration[Any]:
    wanted = " or ".join(f"id eq '{i}'" for i in ids)
    return RequestConfiguration(
        query_parameters=EventItemRequestBuilder.EventItemRequestBuilderGetQueryParameters(
            expand=[f"multiValueExtendedProperties($filter={wanted})"]
        )
    )


def by_subject(graph: GraphSession, mailbox: str, subject: str) -> Any:
    query = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=f"subject eq '{subject}'"
        )
    )
    [event] = graph.run(
        graph.app.users.by_user_id(mailbox).events.get(request_configuration=query)
    ).value
    return event


def test_multi_valued_properties_round_trip_through_ews(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, ANN, as_user=SERVICE)
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Many values",
        start=at(1, 9),
        end=at(1, 10),
        recreation=["Food", "Hiking", "Swimming"],
        scores=[3, -1, 2000000],
        stamps=[at(1, 9), at(2, 18)],
        blobs=[b"\x00\x01\x02", b"calbridge"],
    )
    item.save()

    fetched = account.calendar.get(id=item.id)
    assert fetched.recreation == ["Food", "Hiking", "Swimming"]
    assert fetched.scores == [3, -1, 2000000]
    assert fetched.stamps == [at(1, 9), at(2, 18)]
    assert fetched.blobs == [b"\x00\x01\x02", b"calbridge"]

    fetched.recreation = ["Reading"]
    fetched.save(update_fields=["recreation"])
    assert account.calendar.get(id=item.id).recreation == ["Reading"]
    # A restriction matches one of the values.
    assert [i.subject for i in account.calendar.filter(scores__contains=[-1])] == ["Many values"]
    assert list(account.calendar.filter(scores__contains=[4])) == []


def test_graph_creates_and_expands_multi_value_properties(graph: GraphSession) -> None:
    created = graph.run(
        graph.app.users.by_user_id(BOB).events.post(
            Event(
                subject="Family reunion",
                start=DateTimeTimeZone(date_time="2027-11-26T09:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-11-26T21:00:00", time_zone="UTC"),
                multi_value_extended_properties=[
                    MultiValueLegacyExtendedProperty(
                        id=RECREATION, value=["Food", "Hiking", "Swimming"]
                    ),
                    MultiValueLegacyExtendedProperty(id=SCORES, value=["1", "2"]),
                ],
            )
        )
    )
    assert created.multi_value_extended_properties is None  # only when expanded
    events = graph.app.users.by_user_id(BOB).events

    got = graph.run(events.by_event_id(created.id).get(request_configuration=expanded(RECREATION)))
    assert [(p.id, p.value) for p in got.multi_value_extended_properties] == [
        (RECREATION, ["Food", "Hiking", "Swimming"])
    ]
    both = graph.run(
        events.by_event_id(created.id).get(request_configuration=expanded(RECREATION, SCORES))
    )
    assert sorted((p.id, tuple(p.value)) for p in both.multi_value_extended_properties) == [
        (SCORES, ("1", "2")),
        (RECREATION, ("Food", "Hiking", "Swimming")),
    ]

    graph.run(
        events.by_event_id(created.id).patch(
            Event(
                multi_value_extended_properties=[
                    MultiValueLegacyExtendedProperty(id=RECREATION, value=["Chess"])
                ]
            )
        )
    )
    again = graph.run(
        events.by_event_id(created.id).get(request_configuration=expanded(RECREATION))
    )
    assert again.multi_value_extended_properties[0].value == ["Chess"]


def test_each_collection_takes_only_its_own_types(graph: GraphSession) -> None:
    def refused(event: Event) -> ODataError:
        with pytest.raises(ODataError) as caught:
            graph.run(graph.app.users.by_user_id(BOB).events.post(event))
        return caught.value

    base: dict[str, Any] = {
        "subject": "Wrong collection",
        "start": DateTimeTimeZone(date_time="2027-11-27T09:00:00", time_zone="UTC"),
        "end": DateTimeTimeZone(date_time="2027-11-27T10:00:00", time_zone="UTC"),
    }
    single_in_multi = refused(
        Event(
            **base,
            multi_value_extended_properties=[
                MultiValueLegacyExtendedProperty(
                    id=f"String {{{PROPERTY_SET}}} Name Single", value=["x"]
                )
            ],
        )
    )
    multi_in_single = refused(
        Event(
            **base,
            single_value_extended_properties=[
                SingleValueLegacyExtendedProperty(id=RECREATION, value="x")
            ],
        )
    )
    not_a_number = refused(
        Event(
            **base,
            multi_value_extended_properties=[
                MultiValueLegacyExtendedProperty(id=SCORES, value=["one"])
            ],
        )
    )

    for error in (single_in_multi, multi_in_single, not_a_number):
        assert error.response_status_code == 400
    assert by_subject_count(graph, "Wrong collection") == 0


def by_subject_count(graph: GraphSession, subject: str) -> int:
    query = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            filter=f"subject eq '{subject}'"
        )
    )
    listed = graph.run(graph.app.users.by_user_id(BOB).events.get(request_configuration=query))
    return len(listed.value)


def test_a_multi_valued_property_written_by_one_protocol_is_read_by_the_other(
    simulator: RunningSimulator, graph: GraphSession
) -> None:
    account = exchangelib_account(simulator, BOB, as_user=SERVICE)
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject="Written in EWS",
        start=at(3, 9),
        end=at(3, 9) + timedelta(hours=1),
        recreation=["Sailing", "Tennis"],
        scores=[7, 8],
        stamps=[at(3, 9)],
        blobs=[b"\xff\xfe"],
    )
    item.save()

    seen = by_subject(graph, BOB, "Written in EWS")
    got = graph.run(
        graph.app.users.by_user_id(BOB)
        .events.by_event_id(seen.id)
        .get(request_configuration=expanded(RECREATION, SCORES, STAMPS, BLOBS))
    )
    assert {p.id: p.value for p in got.multi_value_extended_properties} == {
        RECREATION: ["Sailing", "Tennis"],
        SCORES: ["7", "8"],
        STAMPS: ["2027-11-03T09:00:00Z"],
        BLOBS: ["//4="],
    }

    graph.run(
        graph.app.users.by_user_id(BOB).events.post(
            Event(
                subject="Written in Graph",
                start=DateTimeTimeZone(date_time="2027-11-04T09:00:00", time_zone="UTC"),
                end=DateTimeTimeZone(date_time="2027-11-04T10:00:00", time_zone="UTC"),
                multi_value_extended_properties=[
                    MultiValueLegacyExtendedProperty(id=RECREATION, value=["Rowing"]),
                    MultiValueLegacyExtendedProperty(id=SCORES, value=["42", "-7"]),
                    MultiValueLegacyExtendedProperty(
                        id=STAMPS, value=["2027-11-04T09:00:00Z", "2027-11-05T10:30:00Z"]
                    ),
                ],
            )
        )
    )
    [from_graph] = account.calendar.filter(recreation__contains=["Rowing"])
    assert from_graph.subject == "Written in Graph"
    assert from_graph.scores == [42, -7]
    assert from_graph.stamps == [at(4, 9), EWSDateTime(2027, 11, 5, 10, 30, tzinfo=UTC)]
