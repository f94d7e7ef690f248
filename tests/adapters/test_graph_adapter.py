"""The Graph adapter against the Exchange simulator, for what the port contract suite does not
cover: failures mapped to the port's errors (throttling, 401, 403, unknown mailbox, 5xx, resets,
timeouts, an unreachable token endpoint), request counts per write (read from the simulator's
counters), paging, series expansion, ids from another protocol, event loops, and construction
from a connection and settings.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from shared.bootstrap import calendar_gateway
from shared.config import Settings
from shared.engine.marker import marker_for
from shared.exchange.graph import (
    GraphCalendarGateway,
    GraphCredentials,
    GraphEndpoints,
)
from shared.exchange.graph.events import (
    EVENT_FIELDS,
    create_body,
    event_from_graph,
    graph_transaction_id,
)
from shared.exchange.port import (
    AccessDenied,
    AuthenticationFailed,
    ChangeKeyConflict,
    EventDraft,
    EventNotFound,
    ExchangeEvent,
    ExchangeUnavailable,
    ItemType,
    MailboxNotFound,
    RetryAfter,
    Sensitivity,
    ShowAs,
)
from shared.models import ConnectionConfig
from shared.timezones import iana_zone_name, windows_zone_name
from sim.graph.ids import internal_event_id
from sim.people import Outlook
from sim.server import RunningSimulator, start_simulator
from sim.store import Fault, Recurrence
from tests.contract.graph_world import simulator_endpoints

T = TypeVar("T")

ANN = "ann@contoso.test"
BOB = "bob@contoso.test"
CARA = "cara@contoso.test"
TENANT_ID = "0c4e9a7e-2a35-4c0e-9d6f-6a1c6f3b2d10"
CLIENT_ID = "9a3f1a40-7c8e-4b1b-a0f5-3e2d1c0b9a87"
CLIENT_SECRET = "s3cr3t~graph:client"
LIMITED_CLIENT_ID = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
LIMITED_CLIENT_SECRET = "limited~secret"
TORONTO = ZoneInfo("America/Toronto")
START = datetime(2031, 9, 2, 10, 0, tzinfo=TORONTO)
BODY = "Service: Mortgages\nClients:\n- Zed Client, zed@client.example\n"
_appointments = iter(range(1, 10_000))


def simulator_config() -> dict[str, Any]:
    return {
        "mailboxes": [
            {"address": ANN, "name": "Ann Lee", "timeZone": "America/Toronto"},
            {"address": BOB, "name": "Bob Ray", "timeZone": "America/Toronto"},
            {"address": CARA, "name": "Cara Diaz", "timeZone": "Europe/London"},
        ],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": ["*"],
            },
            {
                "tenantId": TENANT_ID,
                "clientId": LIMITED_CLIENT_ID,
                "clientSecret": LIMITED_CLIENT_SECRET,
                "mailboxes": [ANN],
            },
        ],
    }


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    """A fresh simulator per test: empty calendars, no faults, zeroed counters."""
    with start_simulator(simulator_config()) as running:
        yield running


Runner = Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def run() -> Iterator[Runner]:
    """Run coroutines on one event loop for the whole test (as the worker would)."""
    with asyncio.Runner() as runner:
        yield runner.run


def gateway_for(
    simulator: RunningSimulator,
    *,
    client_id: str = CLIENT_ID,
    secret: str = CLIENT_SECRET,
    endpoints: GraphEndpoints | None = None,
    **options: Any,
) -> GraphCalendarGateway:
    return GraphCalendarGateway(
        GraphCredentials(TENANT_ID, client_id, secret),
        endpoints or simulator_endpoints(simulator),
        **options,
    )


@pytest.fixture
def gateway(simulator: RunningSimulator, run: Runner) -> Iterator[GraphCalendarGateway]:
    made = gateway_for(simulator)
    yield made
    run(made.aclose())


def new_marker() -> str:
    return marker_for("graph-tests", f"appt-{next(_appointments)}")


def draft(
    *,
    attendees: tuple[str, ...] = (),
    start: datetime = START,
    subject: str = "Mortgage advice",
    marker: str | None = None,
    time_zone: str = "America/Toronto",
) -> EventDraft:
    return EventDraft(
        subject=subject,
        start=start,
        end=start + timedelta(minutes=30),
        time_zone=time_zone,
        location="Branch 3",
        body_text=BODY,
        required_attendees=attendees,
        marker=marker or new_marker(),
    )


def counts(simulator: RunningSimulator, mailbox: str = ANN) -> dict[str, int]:
    """Graph requests per operation on one mailbox since the counters were last reset."""
    snapshot = simulator.store.counter_snapshot()
    return {
        operation: per_mailbox[mailbox]
        for operation, per_mailbox in snapshot.items()
        if operation.startswith("graph:") and mailbox in per_mailbox
    }


def add_fault(simulator: RunningSimulator, kind: str, operation: str = "*", **options: Any) -> None:
    simulator.store.add_fault(Fault(kind=kind, operation=operation, mailbox=ANN, **options))


# --- request counts -------------------------------------------------------------------------


def test_a_create_is_one_post(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    ref = run(gateway.create_event(ANN, draft(attendees=(BOB,)), "tx-count-create"))

    assert counts(simulator) == {"graph:createEvent": 1}
    assert ref.change_key
    assert ref.uid
    item = simulator.store.get_item(internal_event_id(ref.item_id))
    assert (item.change_key, item.uid) == (ref.change_key, ref.uid)


def test_an_update_is_one_patch_guarded_by_the_change_key(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker=marker, attendees=(BOB,)), "tx-count-up"))
    simulator.store.reset_counters()

    blind = run(
        gateway.update_event(ANN, ref.item_id, draft(marker=marker, subject="Second"), None)
    )
    assert counts(simulator) == {"graph:updateEvent": 1}

    simulator.store.reset_counters()
    checked = run(
        gateway.update_event(
            ANN, ref.item_id, draft(marker=marker, subject="Third"), blind.change_key
        )
    )
    assert counts(simulator) == {"graph:updateEvent": 1}
    assert checked.change_key not in (None, blind.change_key)
    assert simulator.store.get_item(internal_event_id(ref.item_id)).subject == "Third"


def test_an_update_with_a_stale_change_key_is_refused_and_changes_nothing(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    # Moved in Outlook since calbridge's write: If-Match carries the change key calbridge holds,
    # and Exchange answers 412 ErrorIrresolvableConflict.
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker=marker, attendees=(BOB,)), "tx-count-412"))
    item_id = internal_event_id(ref.item_id)
    moved_to = START + timedelta(hours=4)
    Outlook(simulator.store, ANN).move(item_id, moved_to, moved_to + timedelta(minutes=30))
    simulator.store.reset_counters()

    with pytest.raises(ChangeKeyConflict) as raised:
        run(
            gateway.update_event(
                ANN, ref.item_id, draft(marker=marker, subject="Later"), ref.change_key
            )
        )

    assert raised.value.look_again
    assert counts(simulator) == {"graph:updateEvent": 1}
    item = simulator.store.get_item(item_id)
    assert (item.start, item.subject) == (moved_to, "Mortgage advice")


def test_an_update_of_an_event_deleted_in_outlook_is_event_not_found(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker=marker), "tx-count-404"))
    Outlook(simulator.store, ANN).delete(internal_event_id(ref.item_id))
    simulator.store.reset_counters()

    with pytest.raises(EventNotFound):
        run(gateway.update_event(ANN, ref.item_id, draft(marker=marker), ref.change_key))

    assert counts(simulator) == {"graph:updateEvent": 1}


def test_cancelling_is_one_delete_which_cancels_a_meetings_copies(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    meeting = run(gateway.create_event(ANN, draft(attendees=(BOB,)), "tx-count-cancel-1"))
    alone = run(gateway.create_event(ANN, draft(), "tx-count-cancel-2"))
    simulator.store.reset_counters()

    run(gateway.cancel_event(ANN, meeting.item_id))
    assert counts(simulator) == {"graph:deleteEvent": 1}
    [copy] = Outlook(simulator.store, BOB).find(uid=meeting.uid)
    assert copy.is_cancelled

    simulator.store.reset_counters()
    run(gateway.cancel_event(ANN, alone.item_id))
    assert counts(simulator) == {"graph:deleteEvent": 1}

    simulator.store.reset_counters()
    run(gateway.cancel_event(ANN, alone.item_id))  # already gone: quiet
    assert counts(simulator) == {"graph:deleteEvent": 1}
    assert Outlook(simulator.store, ANN).items() == []


def test_the_calendar_view_follows_pages(simulator: RunningSimulator, run: Runner) -> None:
    gateway = gateway_for(simulator, page_size=2)
    refs = [
        run(gateway.create_event(ANN, draft(start=START + timedelta(hours=h)), f"tx-page-{h}"))
        for h in range(5)
    ]
    simulator.store.reset_counters()

    listed = run(gateway.list_events(ANN, START - timedelta(hours=1), START + timedelta(hours=6)))

    assert [event.item_id for event in listed] == [ref.item_id for ref in refs]
    assert counts(simulator) == {"graph:calendarView": 3}
    run(gateway.aclose())


# --- failures as the port's errors -------------------------------------------------------------


def test_throttling_raises_retry_after_with_the_servers_seconds_and_is_not_retried(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    add_fault(simulator, "throttle", "graph:createEvent", retry_after=7)
    event = draft(subject="Sensitive subject")

    with pytest.raises(RetryAfter) as raised:
        run(gateway.create_event(ANN, event, "tx-throttled"))

    assert raised.value.seconds == 7
    assert raised.value.mailbox == ANN
    assert counts(simulator) == {"graph:createEvent": 1}  # the SDK did not retry or sleep
    assert Outlook(simulator.store, ANN).items() == []
    assert "Sensitive subject" not in str(raised.value)
    assert "zed@client.example" not in str(raised.value)
    # Once the fault is gone the same create goes through.
    run(gateway.create_event(ANN, event, "tx-throttled"))
    assert len(Outlook(simulator.store, ANN).items()) == 1


def test_the_mailbox_concurrency_limit_is_throttling_too(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    # Graph allows 4 concurrent requests per app and mailbox: the 5th gets 429 + Retry-After.
    # One gateway keeps to it (its requests wait for a slot); a second one, as another instance
    # of the app would, meets the limit.
    other = gateway_for(simulator)
    run(gateway.find_by_marker(ANN, new_marker()))  # the tokens are in hand before the race
    run(other.find_by_marker(ANN, new_marker()))
    add_fault(simulator, "slow", "graph:listEvents", delay_s=1.0, remaining=4)

    async def six_each() -> list[Any]:
        lookups = [g.find_by_marker(ANN, new_marker()) for g in (gateway, other) for _ in range(6)]
        return await asyncio.gather(*lookups, return_exceptions=True)

    outcomes = run(six_each())
    run(other.aclose())

    throttled = [o for o in outcomes if isinstance(o, RetryAfter)]
    assert throttled
    assert all(o.seconds == 1 for o in throttled)
    assert all(o == [] for o in outcomes if not isinstance(o, BaseException))


def test_a_refused_client_secret_is_authentication_failed_without_the_secret(
    simulator: RunningSimulator, run: Runner
) -> None:
    gateway = gateway_for(simulator, secret="not-the-secret")

    with pytest.raises(AuthenticationFailed) as raised:
        run(gateway.find_by_marker(ANN, new_marker()))

    assert "not-the-secret" not in str(raised.value)
    assert counts(simulator) == {}  # refused before Graph was called
    run(gateway.aclose())


def test_a_revoked_token_is_authentication_failed(simulator: RunningSimulator, run: Runner) -> None:
    gateway = gateway_for(simulator)
    run(gateway.find_by_marker(ANN, new_marker()))  # a token is issued and cached
    # That token now gets 401 from Graph, and the authority refuses the client a new one.
    simulator.issuer.revoke(CLIENT_ID, block=True)

    with pytest.raises(AuthenticationFailed) as raised:
        run(gateway.find_by_marker(ANN, new_marker()))

    assert "refused" in str(raised.value)
    simulator.issuer.restore(CLIENT_ID)
    run(gateway.aclose())


def test_a_token_graph_refused_is_not_offered_again(
    simulator: RunningSimulator, run: Runner
) -> None:
    # Found by the convergence machine: the tokens were revoked, then the app's credentials
    # worked again (restored in Entra ID), yet the gateway kept offering the token it had
    # cached, Graph kept answering 401, and the connection stayed auth_failed for good. A token
    # Graph refused is dropped and the request tried once more with a fresh one.
    gateway = gateway_for(simulator)
    run(gateway.find_by_marker(ANN, new_marker()))  # a token is issued and cached
    simulator.issuer.revoke(CLIENT_ID, block=True)

    with pytest.raises(AuthenticationFailed):
        run(gateway.find_by_marker(ANN, new_marker()))

    simulator.issuer.restore(CLIENT_ID)
    assert run(gateway.find_by_marker(ANN, new_marker())) == []
    run(gateway.aclose())


def test_a_token_revoked_while_cached_is_replaced_without_failing_the_call(
    simulator: RunningSimulator, run: Runner
) -> None:
    gateway = gateway_for(simulator)
    run(gateway.find_by_marker(ANN, new_marker()))  # a token is issued and cached
    simulator.issuer.revoke(CLIENT_ID, block=False)  # that token now gets 401, new ones work

    assert run(gateway.find_by_marker(ANN, new_marker())) == []
    run(gateway.aclose())


def test_an_injected_401_is_authentication_failed(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    # Twice: the request goes once more with a fresh token after a first 401.
    add_fault(simulator, "unauthorized", "graph:getEvent", remaining=2)
    ref = run(gateway.create_event(ANN, draft(), "tx-401"))

    with pytest.raises(AuthenticationFailed):
        run(gateway.get_event(ANN, ref.item_id))


def test_a_mailbox_outside_the_apps_reach_is_access_denied(
    simulator: RunningSimulator, run: Runner
) -> None:
    gateway = gateway_for(simulator, client_id=LIMITED_CLIENT_ID, secret=LIMITED_CLIENT_SECRET)

    assert run(gateway.find_by_marker(ANN, new_marker())) == []
    with pytest.raises(AccessDenied) as raised:
        run(gateway.create_event(BOB, draft(), "tx-denied"))

    assert raised.value.mailbox == BOB
    assert Outlook(simulator.store, BOB).items() == []
    run(gateway.aclose())


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.find_by_marker("nobody@contoso.test", new_marker()),
        lambda g: g.get_event("nobody@contoso.test", "AAMkADk0bm90LWFuLWlk"),
        lambda g: g.find_by_uid("nobody@contoso.test", "040000008200E00074C5B7101A82E008"),
        lambda g: g.create_event("nobody@contoso.test", draft(), "tx-nobody"),
        lambda g: g.cancel_event("nobody@contoso.test", "AAMkADk0bm90LWFuLWlk"),
        lambda g: g.list_events("nobody@contoso.test", START, START + timedelta(days=1)),
    ],
    ids=["find_by_marker", "get_event", "find_by_uid", "create", "cancel", "list"],
)
def test_an_unknown_mailbox_is_mailbox_not_found_on_every_call(
    gateway: GraphCalendarGateway, run: Runner, call: Callable[[GraphCalendarGateway], Any]
) -> None:
    with pytest.raises(MailboxNotFound) as raised:
        run(call(gateway))
    assert raised.value.mailbox == "nobody@contoso.test"


@pytest.mark.parametrize("kind", ["http_500", "http_503", "reset"])
def test_server_failures_and_resets_are_exchange_unavailable(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner, kind: str
) -> None:
    add_fault(simulator, kind, "graph:createEvent")

    with pytest.raises(ExchangeUnavailable):
        run(gateway.create_event(ANN, draft(), f"tx-{kind}"))

    assert counts(simulator) == {"graph:createEvent": 1}  # not retried by the SDK


def test_a_request_that_takes_too_long_is_exchange_unavailable(
    simulator: RunningSimulator, run: Runner
) -> None:
    gateway = gateway_for(simulator, timeout_s=0.3)
    run(gateway.find_by_marker(ANN, new_marker()))  # token fetched before the clock matters
    add_fault(simulator, "slow", "graph:listEvents", delay_s=1.5)

    with pytest.raises(ExchangeUnavailable, match="timed out"):
        run(gateway.find_by_marker(ANN, new_marker()))
    run(gateway.aclose())


def test_a_request_ends_at_the_call_deadline_even_while_the_server_keeps_sending(
    simulator: RunningSimulator, run: Runner
) -> None:
    # The read timeout bounds each wait for bytes; the call deadline bounds the request as a
    # whole (token included), so no Graph call can hold a worker longer than that.
    gateway = gateway_for(simulator, timeout_s=30, call_deadline_s=0.4)
    run(gateway.find_by_marker(ANN, new_marker()))
    add_fault(simulator, "slow", "graph:listEvents", delay_s=2.0)

    with pytest.raises(ExchangeUnavailable, match=r"no answer within 0\.4 s"):
        run(gateway.find_by_marker(ANN, new_marker()))
    run(gateway.aclose())


def test_token_requests_run_on_the_adapters_own_threads_not_the_default_executor(
    simulator: RunningSimulator,
) -> None:
    # Anything in the process may fill the event loop's default executor; a token request
    # queued behind it would stall every Graph call of every connection.
    import threading

    gateway = gateway_for(simulator)
    release = threading.Event()

    async def scenario() -> list[ExchangeEvent]:
        loop = asyncio.get_running_loop()
        from concurrent.futures import ThreadPoolExecutor

        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        held = loop.run_in_executor(None, release.wait, 30)
        try:
            return await asyncio.wait_for(gateway.find_by_marker(ANN, new_marker()), 20)
        finally:
            release.set()
            await held
            await gateway.aclose()

    assert asyncio.run(scenario()) == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_graph_is_exchange_unavailable(
    simulator: RunningSimulator, run: Runner
) -> None:
    endpoints = GraphEndpoints(
        graph_url=f"http://127.0.0.1:{closed_port()}/v1.0",
        authority=simulator.urls["token"],
        ca_bundle=simulator.ca_bundle,
    )
    gateway = gateway_for(simulator, endpoints=endpoints)

    with pytest.raises(ExchangeUnavailable, match="connection failed"):
        run(gateway.get_event(ANN, "AAMkADk0bm90LWFuLWlk"))
    run(gateway.aclose())


def test_an_unreachable_token_endpoint_is_exchange_unavailable(
    simulator: RunningSimulator, run: Runner
) -> None:
    endpoints = GraphEndpoints(
        graph_url=simulator.urls["graph"],
        authority=f"127.0.0.1:{closed_port()}",
        ca_bundle=simulator.ca_bundle,
    )
    gateway = gateway_for(simulator, endpoints=endpoints)

    with pytest.raises(ExchangeUnavailable, match="token endpoint"):
        run(gateway.find_by_marker(ANN, new_marker()))
    run(gateway.aclose())


# --- ids, items and reading --------------------------------------------------------------------


def test_an_id_from_another_protocol_is_a_missing_item(
    gateway: GraphCalendarGateway, run: Runner
) -> None:
    # What an EWS ItemId kept from before a mailbox moved to Graph looks like.
    ews_id = "AAMkADk0ZjM5/Y2QtNjg5Yi00+MmU2LTk3ZjgtMTM1ZDEwYzNhNjI2AEYAAAAAAAA="

    assert run(gateway.get_event(ANN, ews_id)) is None
    with pytest.raises(EventNotFound):
        run(gateway.update_event(ANN, ews_id, draft(), None))
    run(gateway.cancel_event(ANN, ews_id))  # quiet


def test_the_event_is_written_in_the_drafts_zone_by_its_windows_name(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    # Toronto is not among the IANA names Graph's writes accept; its Windows zone is.
    start = datetime(2031, 3, 9, 1, 30, tzinfo=TORONTO)  # the night the clocks change
    event = draft(start=start, time_zone="America/Toronto")

    body = create_body(event, ANN, "tx-tz")
    ref = run(gateway.create_event(ANN, event, "tx-tz"))

    assert body["start"] == {"dateTime": "2031-03-09T01:30:00", "timeZone": "Eastern Standard Time"}
    item = simulator.store.get_item(internal_event_id(ref.item_id))
    assert item.time_zone == "America/New_York"  # the simulator keeps the canonical IANA zone
    assert item.start == start
    read = run(gateway.get_event(ANN, ref.item_id))
    assert read is not None
    assert read.start == start
    assert read.start.tzinfo == UTC


def test_an_answer_in_a_windows_zone_is_read_at_the_right_instant() -> None:
    document = {
        "id": "AAMkADk0eA==",
        "start": {"dateTime": "2031-07-01T09:00:00.0000000", "timeZone": "Pacific Standard Time"},
        "end": {"dateTime": "2031-07-01T09:30:00.0000000", "timeZone": "Pacific Standard Time"},
    }

    event = event_from_graph(document)

    assert event.start == datetime(2031, 7, 1, 16, 0, tzinfo=UTC)
    assert windows_zone_name("Europe/Zurich") == "W. Europe Standard Time"
    assert iana_zone_name("W. Europe Standard Time") == "Europe/Berlin"


def test_a_transaction_id_graph_would_not_take_is_sent_as_a_stable_digest(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    awkward = "org/appt 17/" + "x" * 200
    first = run(gateway.create_event(ANN, draft(), awkward))
    second = run(gateway.create_event(ANN, draft(), awkward))

    assert second.item_id == first.item_id
    assert len(Outlook(simulator.store, ANN).items()) == 1
    assert graph_transaction_id(awkward) == graph_transaction_id(awkward) != awkward
    assert graph_transaction_id("3f2b8c1e-0a4d-5b6e-8f90-1a2b3c4d5e6f") == (
        "3f2b8c1e-0a4d-5b6e-8f90-1a2b3c4d5e6f"
    )


def test_outlook_events_read_with_their_type_sensitivity_and_show_as(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    ann = Outlook(simulator.store, ANN)
    day = START.date() + timedelta(days=1)
    series = ann.create_series(
        "Team stand-up",
        datetime.combine(day, datetime.min.time()).replace(hour=9),
        datetime.combine(day, datetime.min.time()).replace(hour=9, minute=15),
        Recurrence(pattern="daily", count=3),
    )
    ann.create_event("Doctor", START - timedelta(hours=3), START - timedelta(hours=2), private=True)
    ann.create_event("Holiday", day + timedelta(days=5), day + timedelta(days=6), is_all_day=True)

    window_start = START - timedelta(hours=4)
    listed = run(gateway.list_events(ANN, window_start, window_start + timedelta(days=10)))

    occurrences = [e for e in listed if e.uid == series.uid]
    assert [e.item_type for e in occurrences] == [ItemType.OCCURRENCE] * 3
    assert len({e.item_id for e in occurrences}) == 3
    [doctor] = [e for e in listed if e.subject == "Doctor"]
    assert doctor.sensitivity is Sensitivity.PRIVATE
    assert doctor.show_as is ShowAs.BUSY
    assert doctor.marker is None
    [all_day] = [e for e in listed if e.subject == "Holiday"]
    assert all_day.is_all_day
    assert [e.start for e in listed] == sorted(e.start for e in listed)


def test_reads_never_select_the_body() -> None:
    assert not {"body", "bodyPreview", "uniqueBody"} & set(EVENT_FIELDS)


def test_a_gateway_can_be_used_from_successive_event_loops(simulator: RunningSimulator) -> None:
    gateway = gateway_for(simulator)
    marker = new_marker()

    ref = asyncio.run(gateway.create_event(ANN, draft(marker=marker), "tx-loops"))
    # A new loop: the gateway rebuilds its HTTP client and credential for it.
    found = asyncio.run(gateway.find_by_marker(ANN, marker))

    assert [event.item_id for event in found] == [ref.item_id]

    async def finish() -> None:
        await gateway.find_by_marker(ANN, marker)
        await gateway.aclose()

    asyncio.run(finish())


# --- construction ---------------------------------------------------------------------------


def test_a_gateway_is_built_from_a_graph_connection_and_settings(
    simulator: RunningSimulator, run: Runner
) -> None:
    settings = Settings(
        CALBRIDGE_GRAPH_URL=simulator.urls["graph"],
        CALBRIDGE_GRAPH_AUTHORITY=simulator.urls["token"],
        CALBRIDGE_GRAPH_CA_BUNDLE=simulator.ca_bundle,
    )
    connection = ConnectionConfig(
        kind="graph",
        auth_type="oauth",
        tenant_id=TENANT_ID,
        client_id=CLIENT_ID,
        secret_reference="graph-client-secret",
    )

    gateway = GraphCalendarGateway.from_connection(
        connection, CLIENT_SECRET, GraphEndpoints.from_settings(settings)
    )
    ref = run(gateway.create_event(ANN, draft(), "tx-built"))
    chosen = calendar_gateway(connection, CLIENT_SECRET, settings, "g-1")
    assert isinstance(chosen, GraphCalendarGateway)
    assert chosen.connection_id == "g-1"
    assert run(chosen.get_event(ANN, ref.item_id)) is not None
    run(chosen.aclose())

    assert run(gateway.get_event(ANN, ref.item_id)) is not None
    assert gateway.endpoints.authority_host == simulator.urls["token"].split("://")[1]
    assert not gateway.endpoints.is_known_authority
    assert GraphEndpoints().is_known_authority
    assert "s3cr3t" not in repr(GraphCredentials(TENANT_ID, CLIENT_ID, CLIENT_SECRET))
    run(gateway.aclose())


def test_a_graph_gateway_is_not_built_from_an_ews_connection() -> None:
    connection = ConnectionConfig(
        kind="ews",
        ews_url="https://mail.contoso.test/EWS/Exchange.asmx",
        auth_type="ntlm",
        username="svc@contoso.test",
        secret_reference="ews-secret",
    )
    with pytest.raises(ValueError, match="not a Graph connection"):
        GraphCalendarGateway.from_connection(connection, "secret")


def test_a_token_endpoint_that_drops_the_connection_is_exchange_unavailable(
    simulator: RunningSimulator, run: Runner, tmp_path: Any
) -> None:
    # The token request reaches the server, which closes the connection without answering:
    # azure-core raises ServiceResponseError (not ServiceRequestError) for that.
    import ssl
    import threading

    from sim.server import make_certificate

    certificate, key = make_certificate(tmp_path, "127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificate, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = int(listener.getsockname()[1])

    def drop_each_request() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            try:
                with tls.wrap_socket(raw, server_side=True) as connection:
                    connection.recv(65536)
            except OSError:
                pass

    threading.Thread(target=drop_each_request, daemon=True).start()
    endpoints = GraphEndpoints(
        graph_url=simulator.urls["graph"],
        authority=f"127.0.0.1:{port}",
        ca_bundle=str(certificate),
    )
    gateway = gateway_for(simulator, endpoints=endpoints)
    try:
        with pytest.raises(ExchangeUnavailable, match="token endpoint"):
            run(gateway.find_by_marker(ANN, new_marker()))
    finally:
        run(gateway.aclose())
        listener.close()


def test_an_all_day_event_is_read_as_whole_days_in_its_own_zone(
    simulator: RunningSimulator, gateway: GraphCalendarGateway, run: Runner
) -> None:
    # Graph gives an all-day event's days as midnights labelled with the zone asked for (UTC),
    # not as instants: they are days in the event's own zone (originalStartTimeZone), as EWS
    # reads them, so the day blocked is the staff member's day, not a UTC one.
    ann = Outlook(simulator.store, ANN)  # America/Toronto
    holiday = ann.create_event("Holiday", date(2031, 9, 8), date(2031, 9, 10), is_all_day=True)

    listed = run(
        gateway.list_events(
            ANN, datetime(2031, 9, 7, tzinfo=TORONTO), datetime(2031, 9, 11, tzinfo=TORONTO)
        )
    )
    [event] = [e for e in listed if e.uid == holiday.uid]
    read = run(gateway.get_event(ANN, event.item_id))

    for seen in (event, read):
        assert seen is not None
        assert seen.is_all_day
        assert seen.start == datetime(2031, 9, 8, tzinfo=TORONTO)
        assert seen.end == datetime(2031, 9, 10, tzinfo=TORONTO)


def test_a_throttled_token_endpoint_is_retry_after_not_refused_credentials(
    simulator: RunningSimulator, run: Runner, tmp_path: Any
) -> None:
    # Entra ID throttles token requests with 429 + Retry-After: the credentials are fine, the
    # connection must not be marked auth_failed.
    import json
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sim.server import make_certificate

    class Throttling(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.dumps(
                {"error": "temporarily_unavailable", "error_description": "AADSTS50196"}
            ).encode()
            self.send_response(429)
            self.send_header("Retry-After", "7")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    certificate, key = make_certificate(tmp_path, "127.0.0.1")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certificate, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoints = GraphEndpoints(
        graph_url=simulator.urls["graph"],
        authority=f"127.0.0.1:{server.server_address[1]}",
        ca_bundle=str(certificate),
    )
    gateway = gateway_for(simulator, endpoints=endpoints)
    try:
        with pytest.raises(RetryAfter) as raised:
            run(gateway.find_by_marker(ANN, new_marker()))
    finally:
        run(gateway.aclose())
        server.shutdown()
        server.server_close()
    assert raised.value.seconds == 7
    assert CLIENT_SECRET not in str(raised.value)
