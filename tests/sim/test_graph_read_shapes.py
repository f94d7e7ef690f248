"""The simulator notes what every Graph read of events asks for, as it does for EWS, so a test
can check that a client never reads an event's body: ``$select`` names the properties returned,
and without it Graph returns every property, the body included
(https://learn.microsoft.com/graph/api/user-list-events — "use $select to specify the properties
you need"; https://learn.microsoft.com/graph/query-parameters#select-parameter). calendarView
delta carries the first request's ``$select`` in its tokens
(https://learn.microsoft.com/graph/delta-query-events)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder

from sim.people import Outlook
from sim.server import RunningSimulator
from tests.sim.conftest import ANN
from tests.sim.graph_clients import GraphSession, graph_session, graph_simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with graph_simulator() as running:
        yield running


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


def test_reads_are_noted_with_what_they_selected(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    from datetime import datetime

    Outlook(simulator.store, ANN).create_event(
        "Noted", datetime(2031, 2, 3, 9), datetime(2031, 2, 3, 10)
    )
    simulator.store.requested_shapes.clear()
    events = graph.app.users.by_user_id(ANN).events
    graph.run(events.get())
    selected = RequestConfiguration(
        query_parameters=EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
            select=["subject", "start"]
        )
    )
    graph.run(events.get(request_configuration=selected))
    delta = graph.app.users.by_user_id(ANN).calendar_view.delta
    first = graph.run(
        delta.get(
            request_configuration=RequestConfiguration(
                query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
                    start_date_time="2031-02-01T00:00:00Z",
                    end_date_time="2031-03-01T00:00:00Z",
                    select=["subject", "end"],
                )
            )
        )
    )
    graph.run(delta.with_url(first.odata_delta_link).get())

    assert simulator.store.requested_shapes == [
        ("graph:listEvents", "AllProperties", frozenset()),
        ("graph:listEvents", "Select", frozenset({"subject", "start"})),
        ("graph:delta", "Select", frozenset({"subject", "end"})),
        ("graph:delta", "Select", frozenset({"subject", "end"})),  # carried by the token
    ]
