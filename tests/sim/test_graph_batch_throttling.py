"""``$batch`` and throttling through msgraph-sdk: batched requests run as if sent alone (with
dependsOn and 424 for failed dependencies, at most 20 per batch); a 429 with Retry-After is
retried by msgraph-sdk's retry handler; at most 4 concurrent requests per app and mailbox."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
from msgraph.generated.models.event import Event
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

from sim.people import Outlook
from sim.server import RunningSimulator
from sim.store import Fault
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


@pytest.fixture(autouse=True)
def no_faults_left(simulator: RunningSimulator) -> Iterator[None]:
    yield
    simulator.store.clear_faults()


def event(subject: str, day: int) -> Event:
    return Event(
        subject=subject,
        start=DateTimeTimeZone(date_time=f"2030-01-{day:02d}T09:00:00", time_zone="UTC"),
        end=DateTimeTimeZone(date_time=f"2030-01-{day:02d}T10:00:00", time_zone="UTC"),
    )


def no_retries() -> RequestConfiguration[Any]:
    return RequestConfiguration(
        options=[RetryHandlerOption(delay=0, max_retries=0, should_retry=False)]
    )


def test_batch_runs_each_request(graph: GraphSession, simulator: RunningSimulator) -> None:
    events = graph.app.users.by_user_id(CARA).events
    content = BatchRequestContent()
    requests = [
        BatchRequestItem(events.to_post_request_information(event("Batched new", 3)), id="create"),
        BatchRequestItem(events.to_get_request_information(), id="list"),
        BatchRequestItem(
            events.by_event_id("AAMkADk0bm9wZQ==").to_get_request_information(), id="missing"
        ),
    ]
    for item in requests:
        content.add_request(item.id, item)

    answer = graph.run(graph.app.batch.post(content))

    assert answer.get_response_status_codes() == {"create": 201, "list": 200, "missing": 404}
    assert [i.subject for i in Outlook(simulator.store, CARA).find(subject="Batched new")] == [
        "Batched new"
    ]


def test_batch_depends_on_and_failed_dependencies(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    events = graph.app.users.by_user_id(BOB).events
    content = BatchRequestContent()
    first = BatchRequestItem(events.to_post_request_information(event("Step one", 4)), id="1")
    second = BatchRequestItem(
        events.to_post_request_information(event("Step two", 5)), id="2", depends_on=[first]
    )
    broken = BatchRequestItem(
        events.by_event_id("AAMkADk0bm9wZQ==").to_get_request_information(), id="3"
    )
    blocked = BatchRequestItem(
        events.to_post_request_information(event("Never", 6)), id="4", depends_on=[broken]
    )
    for item in (first, second, broken, blocked):
        content.add_request(item.id, item)

    answer = graph.run(graph.app.batch.post(content))

    assert answer.get_response_status_codes() == {"1": 201, "2": 201, "3": 404, "4": 424}
    bob = Outlook(simulator.store, BOB)
    created = sorted(
        bob.find(subject="Step one") + bob.find(subject="Step two"), key=lambda i: str(i.created)
    )
    assert [i.subject for i in created] == ["Step one", "Step two"]
    assert bob.find(subject="Never") == []


def raw_batch(graph: GraphSession, requests: list[dict[str, Any]]) -> bytes:
    """POST a $batch body as given (msgraph-sdk's BatchRequestContent refuses > 20 itself)."""
    info = RequestInformation(Method.POST, "{+baseurl}/$batch", {})
    info.headers.try_add("Content-Type", "application/json")
    info.content = json.dumps({"requests": requests}).encode()
    error_map: dict[str, Any] = {"XXX": ODataError}
    return bytes(
        graph.run(graph.app.request_adapter.send_primitive_async(info, "bytes", error_map))
    )


def test_batch_of_more_than_20_is_refused_and_runs_nothing(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    requests = [
        {
            "id": str(n),
            "method": "POST",
            "url": f"/users/{ANN}/events",
            "headers": {"Content-Type": "application/json"},
            "body": {
                "subject": "Too many",
                "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2030-01-07T10:00:00", "timeZone": "UTC"},
            },
        }
        for n in range(21)
    ]

    with pytest.raises(ODataError) as refused:
        raw_batch(graph, requests)
    twenty = json.loads(raw_batch(graph, requests[:20]))

    assert refused.value.response_status_code == 400
    assert "20" in refused.value.error.message
    assert [r["status"] for r in twenty["responses"]] == [201] * 20
    assert twenty["responses"][0]["body"]["subject"] == "Too many"
    assert len(Outlook(simulator.store, ANN).find(subject="Too many")) == 20


def test_msgraph_sdk_retries_a_429_and_succeeds(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    simulator.store.add_fault(
        Fault(kind="throttle", operation="graph:listEvents", mailbox=ANN, retry_after=1)
    )
    simulator.store.reset_counters()
    started = time.monotonic()

    listed = graph.run(graph.app.users.by_user_id(ANN).events.get())

    assert listed.value is not None
    assert time.monotonic() - started >= 1.0  # it waited for Retry-After
    assert simulator.store.counter_snapshot()["graph:listEvents"] == {ANN: 2}


def test_a_429_has_graphs_error_body_and_retry_after(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    simulator.store.add_fault(
        Fault(kind="throttle", operation="graph:getUser", mailbox=BOB, retry_after=7)
    )

    with pytest.raises(ODataError) as throttled:
        graph.run(graph.app.users.by_user_id(BOB).get(request_configuration=no_retries()))

    assert throttled.value.response_status_code == 429
    assert throttled.value.error.code == "TooManyRequests"
    assert throttled.value.response_headers["retry-after"] == "7"


async def five_at_once(graph: GraphSession, *, retries: bool) -> list[Any]:
    events = graph.app.users.by_user_id(BOB).events
    calls = [events.get(request_configuration=None if retries else no_retries()) for _ in range(5)]
    other_mailbox = graph.app.users.by_user_id(CARA).events.get(request_configuration=no_retries())
    return await asyncio.gather(*calls, other_mailbox, return_exceptions=True)


def test_at_most_four_concurrent_requests_per_mailbox(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    # Each request to Bob's events stays in flight for a second.
    simulator.store.add_fault(
        Fault(kind="slow", operation="graph:listEvents", mailbox=BOB, remaining=None, delay_s=1.0)
    )

    results = graph.run(five_at_once(graph, retries=False))

    throttled = [r for r in results if isinstance(r, ODataError)]
    assert len(throttled) == 1
    assert throttled[0].response_status_code == 429
    assert throttled[0].error.code == "ApplicationThrottled"
    assert "MailboxConcurrency" in throttled[0].error.message
    assert throttled[0].response_headers["retry-after"] == "1"
    assert not isinstance(results[-1], Exception)  # Cara's mailbox has its own limit


def test_msgraph_sdk_rides_out_the_concurrency_limit(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    simulator.store.add_fault(
        Fault(kind="slow", operation="graph:listEvents", mailbox=BOB, remaining=None, delay_s=0.5)
    )

    results = graph.run(five_at_once(graph, retries=True))

    assert [type(r).__name__ for r in results if isinstance(r, Exception)] == []


def test_injected_503_is_retried(graph: GraphSession, simulator: RunningSimulator) -> None:
    simulator.store.add_fault(
        Fault(kind="http_503", operation="graph:getUser", mailbox=CARA, retry_after=1)
    )

    user = graph.run(graph.app.users.by_user_id(CARA).get())

    assert user.mail == CARA


# Graph dispatches up to four requests of a batch to the mailbox at once, so a batch occupies up
# to four of the mailbox's concurrency slots while it runs:
# https://learn.microsoft.com/graph/json-batching (requests run in any order unless dependsOn),
# https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits (four concurrent
# requests per app per mailbox), https://learn.microsoft.com/answers/questions/1660054 ("Microsoft
# Graph dispatches up to four individual requests from a batch to the Outlook service
# simultaneously").


def batch_of_gets(graph: GraphSession, address: str, count: int) -> Any:
    events = graph.app.users.by_user_id(address).events
    content = BatchRequestContent()
    for n in range(count):
        item = BatchRequestItem(events.to_get_request_information(), id=str(n))
        content.add_request(item.id, item)
    return graph.app.batch.post(content)


async def while_in_flight(
    simulator: RunningSimulator, address: str, slots: int, first: Any, then: Any
) -> tuple[Any, Any]:
    """Start ``first``; once ``slots`` requests are in flight on the mailbox, send ``then``."""
    started = asyncio.ensure_future(first)
    while simulator.graph.in_flight(address) < slots and not started.done():
        await asyncio.sleep(0.01)  # a positive signal, polled: the slots are taken
    later = await asyncio.gather(then, return_exceptions=True)
    return await started, later[0]


def test_a_batch_holds_up_to_four_slots_of_its_mailbox_while_it_runs(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    simulator.store.add_fault(
        Fault(kind="slow", operation="graph:listEvents", mailbox=BOB, remaining=None, delay_s=0.5)
    )
    alone = graph.app.users.by_user_id(BOB).events.get(request_configuration=no_retries())

    answer, refused = graph.run(
        while_in_flight(simulator, BOB, 4, batch_of_gets(graph, BOB, 6), alone)
    )

    assert set(answer.get_response_status_codes().values()) == {200}
    assert isinstance(refused, ODataError)
    assert refused.response_status_code == 429
    assert refused.error.code == "ApplicationThrottled"
    assert simulator.graph.in_flight(BOB) == 0


def test_a_batch_with_no_free_slot_answers_each_request_with_429(
    graph: GraphSession, simulator: RunningSimulator
) -> None:
    simulator.store.add_fault(
        Fault(kind="slow", operation="graph:listEvents", mailbox=BOB, remaining=None, delay_s=0.5)
    )
    events = graph.app.users.by_user_id(BOB).events

    async def four_at_once() -> Any:
        return await asyncio.gather(
            *(events.get(request_configuration=no_retries()) for _ in range(4))
        )

    _, answer = graph.run(
        while_in_flight(simulator, BOB, 4, four_at_once(), batch_of_gets(graph, BOB, 2))
    )

    assert set(answer.get_response_status_codes().values()) == {429}
