"""calendarView delta through msgraph-sdk: the initial round, then exactly the changes since a
deltaLink (created, updated, ``@removed``), paging with ``Prefer: odata.maxpagesize``, and 410
``syncStateNotFound`` for an expired or invalidated token. Each test uses its own month so the
shared mailboxes do not interfere."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.events.item.decline.decline_post_request_body import (
    DeclinePostRequestBody,
)

from sim.people import Outlook
from sim.server import RunningSimulator
from sim.store import Fault, Recurrence
from tests.sim.conftest import ANN, BOB, CARA
from tests.sim.graph_clients import GraphSession, graph_session, graph_simulator


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with graph_simulator() as running:
        yield running


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


class DeltaRound:
    """The pages of one delta round as msgraph-sdk returns them."""

    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages
        self.delta_link: str = pages[-1].odata_delta_link
        self.entries = [entry for page in pages for entry in page.value]

    @property
    def subjects(self) -> list[str]:
        return sorted(e.subject for e in self.entries if "@removed" not in e.additional_data)

    @property
    def removed_ids(self) -> list[str]:
        return sorted(e.id for e in self.entries if "@removed" in e.additional_data)


def first_round(
    graph: GraphSession, address: str, month: int, *, page_size: int | None = None
) -> DeltaRound:
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        start_date_time=f"2028-{month:02d}-01T00:00:00Z",
        end_date_time=f"2028-{month + 1:02d}-01T00:00:00Z",
    )
    config = RequestConfiguration(query_parameters=query)
    if page_size is not None:
        config.headers.add("Prefer", f"odata.maxpagesize={page_size}")
    delta = graph.app.users.by_user_id(address).calendar_view.delta
    return DeltaRound(follow(graph, address, graph.run(delta.get(request_configuration=config))))


def next_round(graph: GraphSession, address: str, delta_link: str) -> DeltaRound:
    delta = graph.app.users.by_user_id(address).calendar_view.delta
    return DeltaRound(follow(graph, address, graph.run(delta.with_url(delta_link).get())))


def follow(graph: GraphSession, address: str, page: Any) -> list[Any]:
    pages = [page]
    delta = graph.app.users.by_user_id(address).calendar_view.delta
    while pages[-1].odata_next_link:
        assert pages[-1].odata_delta_link is None
        pages.append(graph.run(delta.with_url(pages[-1].odata_next_link).get()))
    return pages


def at(month: int, day: int, hour: int) -> datetime:
    return datetime(2028, month, day, hour)


def graph_ids(graph: GraphSession, address: str, month: int) -> dict[str, str]:
    """Subject → Graph id of the events in a month, as a first delta round reports them."""
    return {e.subject: e.id for e in first_round(graph, address, month).entries}


def test_first_round_lists_the_window(graph: GraphSession, simulator: RunningSimulator) -> None:
    cara = Outlook(simulator.store, CARA)
    cara.create_event("In window", at(1, 10, 9), at(1, 10, 10))
    cara.create_event("Also in", at(1, 31, 23), at(2, 1, 1))  # overlaps the end
    cara.create_event("Outside", at(2, 10, 9), at(2, 10, 10))

    round_ = first_round(graph, CARA, 1)

    assert round_.subjects == ["Also in", "In window"]
    assert round_.removed_ids == []
    assert "$deltatoken=" in round_.delta_link


def test_next_round_returns_exactly_the_changes(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    cara = Outlook(simulator.store, CARA)
    kept = cara.create_event("Kept", at(3, 2, 9), at(3, 2, 10))
    renamed = cara.create_event("Renamed", at(3, 3, 9), at(3, 3, 10))
    deleted = cara.create_event("Deleted", at(3, 4, 9), at(3, 4, 10))
    moved_out = cara.create_event("Moved out", at(3, 5, 9), at(3, 5, 10))
    ids = graph_ids(graph, CARA, 3)
    first = first_round(graph, CARA, 3)
    assert first.subjects == ["Deleted", "Kept", "Moved out", "Renamed"]

    cara.rename(renamed.id, "Renamed now")
    cara.delete(deleted.id)
    cara.move(moved_out.id, at(4, 5, 9), at(4, 5, 10))
    cara.create_event("New", at(3, 20, 9), at(3, 20, 10))
    cara.create_event("New but elsewhere", at(5, 20, 9), at(5, 20, 10))
    second = next_round(graph, CARA, first.delta_link)

    assert second.subjects == ["New", "Renamed now"]
    assert second.removed_ids == sorted([ids["Deleted"], ids["Moved out"]])
    assert kept.id  # untouched: not in the round
    third = next_round(graph, CARA, second.delta_link)
    assert third.entries == []


def test_idle_rounds_are_empty_and_cheap(graph: GraphSession, simulator: RunningSimulator) -> None:
    Outlook(simulator.store, ANN).create_event("Quiet", at(6, 1, 9), at(6, 1, 10))
    first = first_round(graph, ANN, 6)
    simulator.store.reset_counters()

    again = next_round(graph, ANN, first.delta_link)
    once_more = next_round(graph, ANN, again.delta_link)

    assert again.entries == []
    assert once_more.entries == []
    assert simulator.store.counter_snapshot()["graph:delta"] == {ANN: 2}


def test_pages_follow_maxpagesize(graph: GraphSession, simulator: RunningSimulator) -> None:
    bob = Outlook(simulator.store, BOB)
    for day in range(1, 6):
        bob.create_event(f"Page {day}", at(7, day, 9), at(7, day, 10))

    round_ = first_round(graph, BOB, 7, page_size=2)

    assert [len(page.value) for page in round_.pages] == [2, 2, 1]
    assert round_.subjects == [f"Page {day}" for day in range(1, 6)]
    assert len({e.id for e in round_.entries}) == 5
    assert all("$skiptoken=" in page.odata_next_link for page in round_.pages[:-1])


def test_changes_made_while_paging_come_in_the_next_round(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    bob = Outlook(simulator.store, BOB)
    items = [bob.create_event(f"Busy {n}", at(8, n, 9), at(8, n, 10)) for n in range(1, 4)]
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        start_date_time="2028-08-01T00:00:00Z", end_date_time="2028-09-01T00:00:00Z"
    )
    config = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", "odata.maxpagesize=2")
    delta = graph.app.users.by_user_id(BOB).calendar_view.delta
    page = graph.run(delta.get(request_configuration=config))

    bob.rename(items[0].id, "Busy 1 renamed")
    rest = follow(graph, BOB, graph.run(delta.with_url(page.odata_next_link).get()))
    following = next_round(graph, BOB, rest[-1].odata_delta_link)

    assert following.subjects == ["Busy 1 renamed"]


def test_meeting_responses_show_on_both_sides(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    meeting = Outlook(simulator.store, ANN).create_event(
        "Team lunch", at(9, 12, 12), at(9, 12, 13), attendees=[BOB]
    )
    organizer_round = first_round(graph, ANN, 9)
    attendee_round = first_round(graph, BOB, 9)
    (copy_id,) = [e.id for e in attendee_round.entries if e.subject == "Team lunch"]

    graph.run(
        graph.user(BOB)
        .me.events.by_event_id(copy_id)
        .decline.post(DeclinePostRequestBody(send_response=True))
    )
    organizer_next = next_round(graph, ANN, organizer_round.delta_link)
    attendee_next = next_round(graph, BOB, attendee_round.delta_link)

    (updated,) = organizer_next.entries
    assert updated.subject == "Team lunch"
    assert updated.attendees[0].status.response.value == "declined"
    assert attendee_next.removed_ids == [copy_id]
    assert meeting.uid == updated.i_cal_u_id


def test_series_changes_report_occurrences(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    ann = Outlook(simulator.store, ANN)
    daily = Recurrence(pattern="daily", count=3)
    master = ann.create_series("Standup", at(10, 2, 9), at(10, 2, 9).replace(minute=15), daily)
    first = first_round(graph, ANN, 10)
    occurrence_ids = [e.id for e in first.entries if e.subject == "Standup"]
    assert len(occurrence_ids) == 3

    ann.delete_occurrence(master.id, 3)
    ann.edit_occurrence(master.id, 2, subject="Standup (moved)")
    second = next_round(graph, ANN, first.delta_link)

    assert occurrence_ids[2] in second.removed_ids
    assert "Standup (moved)" in second.subjects
    assert all(e.series_master_id for e in second.entries if "@removed" not in e.additional_data)


def odata_error(graph: GraphSession, coroutine: Any) -> ODataError:
    with pytest.raises(ODataError) as caught:
        graph.run(coroutine)
    return caught.value


def test_expired_tokens_answer_410(graph: GraphSession, simulator: RunningSimulator) -> None:
    Outlook(simulator.store, CARA).create_event("Expiring", at(11, 3, 9), at(11, 3, 10))
    first = first_round(graph, CARA, 11)
    delta = graph.app.users.by_user_id(CARA).calendar_view.delta

    simulator.store.add_fault(Fault(kind="expired_delta", operation="graph:delta", mailbox=CARA))
    by_fault = odata_error(graph, delta.with_url(first.delta_link).get())
    still_valid = next_round(graph, CARA, first.delta_link)  # the fault hit once
    simulator.store.invalidate_sync_states(CARA)
    invalidated = odata_error(graph, delta.with_url(first.delta_link).get())
    tampered = odata_error(graph, delta.with_url(first.delta_link[:-4] + "AAAA").get())
    restarted = first_round(graph, CARA, 11)

    for error in (by_fault, invalidated, tampered):
        assert error.response_status_code == 410
        assert error.error.code == "syncStateNotFound"
    assert still_valid.entries == []
    assert restarted.subjects == ["Expiring"]


def test_a_window_is_required(graph: GraphSession) -> None:
    delta = graph.app.users.by_user_id(CARA).calendar_view.delta
    config = RequestConfiguration(
        query_parameters=DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            start_date_time="2028-12-01T00:00:00Z", end_date_time="2028-11-01T00:00:00Z"
        )
    )

    backwards = odata_error(graph, delta.get(request_configuration=config))

    assert backwards.response_status_code == 400
    assert "endDateTime" in backwards.error.message


def test_links_name_the_root_clients_reach_the_service_at() -> None:
    """nextLink and deltaLink are URLs the client calls as given ("include the entire URL ...
    in the next call", https://learn.microsoft.com/graph/delta-query-overview), under the
    service root it reaches (Graph's name https://graph.microsoft.com): behind a proxy, the
    proxy's."""
    proxy = "http://proxy.contoso.test:8443/v1.0"
    with graph_simulator() as simulator, graph_session(simulator) as graph:
        listener = simulator.urls["graph"]
        cara = Outlook(simulator.store, CARA)
        for day in (1, 2, 3):
            cara.create_event(f"Proxied {day}", at(8, day, 9), at(8, day, 10))
        simulator.serve_graph_behind(proxy)
        assert simulator.urls["graph"] == proxy
        query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            start_date_time="2028-08-01T00:00:00Z", end_date_time="2028-09-01T00:00:00Z"
        )
        delta = graph.app.users.by_user_id(CARA).calendar_view.delta
        whole = graph.run(
            delta.get(request_configuration=RequestConfiguration(query_parameters=query))
        )
        paged = RequestConfiguration(query_parameters=query)
        paged.headers.add("Prefer", "odata.maxpagesize=2")
        first = graph.run(delta.get(request_configuration=paged))
        for link in (whole.odata_delta_link, first.odata_next_link):
            assert link.startswith(proxy + "/users/")
            assert not link.startswith(listener)
