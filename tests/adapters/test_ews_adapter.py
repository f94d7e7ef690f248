"""The EWS adapter against the Exchange simulator, for what the port contract suite does not
cover: how failures become the port's typed errors, how many EWS requests each call costs, who
may reach which mailbox, logs without event content, and the contract suite once more with a
delegate-access service account.

Sample organization (``tests.sim.conftest.sample_config``): ann and bob, whom the service account
may impersonate; cara, for whom it is a delegate. Each test uses its own marker values, and
counters and faults are reset around every test.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterator
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from shared.bootstrap import calendar_gateway
from shared.engine.marker import marker_for
from shared.exchange.ews import EwsCalendarGateway, EwsEndpoint
from shared.exchange.ews.properties import (
    GLOBAL_OBJECT_ID_CLASS,
    calbridge_uid,
    clean_global_object_id,
)
from shared.exchange.port import (
    AccessDenied,
    AuthenticationFailed,
    ChangeKeyConflict,
    EventDraft,
    EventNotFound,
    ExchangeUnavailable,
    MailboxNotFound,
    RetryAfter,
)
from shared.models import ConnectionConfig
from sim.people import Outlook
from sim.server import RunningSimulator, start_simulator
from sim.store import Fault, Recurrence
from tests.contract import test_calendar_port as contract
from tests.contract.ews_world import MARKER_KEY, ews_delegate_world
from tests.contract.worlds import CalendarWorld
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, SERVICE, sample_config

T = TypeVar("T")

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2032, 3, 2, 10, 0, tzinfo=BERLIN)
BODY = "Service: Mortgages\nClients:\n- Zed Secretclient, zed@client.example\n"
_appointments = itertools.count(1)


def new_marker() -> str:
    return marker_for("ews-tests", f"appt-{next(_appointments)}")


def draft(marker: str, *, attendees: tuple[str, ...] = (), hours: int = 0) -> EventDraft:
    start = START + timedelta(hours=hours)
    return EventDraft(
        subject="Mortgage consultation",
        start=start,
        end=start + timedelta(minutes=30),
        time_zone="Europe/Berlin",
        location="Branch 3",
        body_text=BODY,
        required_attendees=attendees,
        marker=marker,
    )


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(sample_config(), validate_ews=False) as running:
        yield running


@pytest.fixture
def simulator(sim: RunningSimulator) -> Iterator[RunningSimulator]:
    sim.store.clear_faults()
    sim.store.reset_counters()
    yield sim
    sim.store.clear_faults()


def gateway_for(
    sim: RunningSimulator,
    *,
    access: str = "impersonation",
    auth: str = "ntlm",
    password: str | None = None,
    timeout_s: float = 30.0,
    **options: Any,
) -> EwsCalendarGateway:
    return EwsCalendarGateway.for_endpoint(
        EwsEndpoint(
            url=sim.urls["ews"],
            username=SERVICE,
            password=PASSWORDS[SERVICE] if password is None else password,
            auth=auth,  # type: ignore[arg-type]
            access=access,  # type: ignore[arg-type]
            timeout_s=timeout_s,
            **options,
        )
    )


@pytest.fixture
def gateway(simulator: RunningSimulator) -> Iterator[EwsCalendarGateway]:
    made = gateway_for(simulator)
    yield made
    made.close()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def requests_made(sim: RunningSimulator) -> dict[str, int]:
    """EWS operations counted by the simulator since the last reset, summed over mailboxes."""
    return {
        operation.removeprefix("ews:"): sum(per_mailbox.values())
        for operation, per_mailbox in sim.store.counter_snapshot().items()
        if operation.startswith("ews:")
    }


def arm(
    sim: RunningSimulator, kind: str, operation: str, mailbox: str = ANN, **options: Any
) -> None:
    sim.store.add_fault(Fault(kind=kind, operation=operation, mailbox=mailbox, **options))


# --- requests per call -------------------------------------------------------------------------


def test_a_create_costs_one_create_and_no_folder_requests(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    marker = new_marker()

    ref = run(gateway.create_event(ANN, draft(marker, attendees=(BOB,)), "tx-count-1"))

    assert requests_made(simulator) == {"CreateItem": 1}
    assert ref.uid == calbridge_uid(ANN, "tx-count-1")
    [stored] = simulator.store.find_by_uid(ANN, ref.uid)
    assert stored.time_zone == "Europe/Berlin"  # created in the draft's zone
    assert stored.body == BODY
    assert stored.body_type == "Text"
    assert [a.address for a in stored.required_attendees] == [BOB]
    assert stored.free_busy.value == "Busy"
    assert simulator.store.find_by_uid(BOB, ref.uid)  # the invitation arrived


def test_the_lookup_before_a_repeated_create_finds_the_first_event_by_its_marker(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    # EWS has no transaction id: a create whose answer may have been lost is looked up first
    # (the engine does it for every pending create), in one FindItem.
    marker = new_marker()
    first = run(gateway.create_event(ANN, draft(marker), "tx-count-2"))
    simulator.store.reset_counters()

    [found] = run(gateway.find_by_marker(ANN, marker))

    assert (found.item_id, found.change_key, found.uid) == (
        first.item_id,
        first.change_key,
        first.uid,
    )
    assert requests_made(simulator) == {"FindItem": 1}


def test_an_update_costs_one_request_once_the_item_was_seen(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker, attendees=(BOB,)), "tx-count-3"))
    simulator.store.reset_counters()

    moved = run(gateway.update_event(ANN, ref.item_id, draft(marker, hours=2), ref.change_key))

    assert requests_made(simulator) == {"UpdateItem": 1}
    assert moved.item_id == ref.item_id
    assert moved.uid == ref.uid
    assert moved.change_key != ref.change_key
    [copy] = simulator.store.find_by_uid(BOB, ref.uid or "")
    assert copy.is_cancelled  # bob was removed from the meeting: Exchange cancelled his copy


def test_an_update_by_a_fresh_gateway_costs_one_request_and_leaves_the_uid_to_the_caller(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker), "tx-count-4"))
    other = gateway_for(simulator)
    simulator.store.reset_counters()
    try:
        first = run(other.update_event(ANN, ref.item_id, draft(marker, hours=1), ref.change_key))
        assert requests_made(simulator) == {"UpdateItem": 1}
    finally:
        other.close()
    # UpdateItem answers with the id and change key only; the mapping keeps the UID it has.
    assert first.uid is None
    assert (first.item_id, first.change_key) != (ref.item_id, ref.change_key)


def test_an_update_is_sent_with_never_overwrite_and_a_stale_change_key_changes_nothing(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    # An Outlook move between two mailbox syncs must not be overwritten by AutoResolve's merge:
    # NeverOverwrite fails with ErrorIrresolvableConflict instead
    # (https://learn.microsoft.com/openspecs/exchange_server_protocols/ms-oxwscore/0dc48948-2f1b-425a-9e53-0c247657ef12).
    # (The simulator lets AutoResolve overwrite, as that page says it mostly does.)
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker, attendees=(BOB,)), "tx-count-7"))
    [stored] = simulator.store.find_by_uid(ANN, ref.uid or "")
    outlook_start = START + timedelta(hours=5)
    Outlook(simulator.store, ANN).move(
        stored.id, outlook_start, outlook_start + timedelta(minutes=45)
    )
    simulator.store.reset_counters()

    with pytest.raises(ChangeKeyConflict) as raised:
        run(gateway.update_event(ANN, ref.item_id, draft(marker, hours=1), ref.change_key))

    assert raised.value.look_again
    assert requests_made(simulator) == {"UpdateItem": 1}
    [kept] = simulator.store.find_by_uid(ANN, ref.uid or "")
    assert kept.start == outlook_start


def test_a_cancel_costs_one_request_and_cancels_the_copies(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    ref = run(gateway.create_event(ANN, draft(new_marker(), attendees=(BOB,)), "tx-count-5"))
    simulator.store.reset_counters()

    run(gateway.cancel_event(ANN, ref.item_id))

    assert requests_made(simulator) == {"DeleteItem": 1}
    assert simulator.store.find_by_uid(ANN, ref.uid or "") == []
    [copy] = simulator.store.find_by_uid(BOB, ref.uid or "")
    assert copy.is_cancelled


def test_reads_cost_one_request_each(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker, attendees=(BOB,)), "tx-count-6"))
    simulator.store.reset_counters()

    [found] = run(gateway.find_by_marker(ANN, marker))
    assert requests_made(simulator) == {"FindItem": 1}
    listed = run(gateway.list_events(ANN, START - timedelta(hours=1), START + timedelta(hours=1)))
    assert requests_made(simulator) == {"FindItem": 2}
    full = run(gateway.get_event(ANN, ref.item_id))
    assert requests_made(simulator) == {"FindItem": 2, "GetItem": 1}

    assert found.item_id == ref.item_id
    assert ref.item_id in [event.item_id for event in listed]
    assert full is not None
    # FindItem answers carry no attendee list (as Exchange's); GetItem has everything.
    assert found.attendees == ()
    assert found.organizer == ANN
    assert full.attendee_addresses == (BOB,)
    assert (full.marker, full.uid, full.location) == (marker, ref.uid, "Branch 3")


def test_the_calendar_view_shows_owners_all_day_private_and_recurring_events(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    bob = Outlook(simulator.store, BOB)  # America/Toronto
    holiday = bob.create_event("Holiday", date(2032, 4, 5), date(2032, 4, 7), is_all_day=True)
    dentist = bob.create_event(
        "Dentist", datetime(2032, 4, 8, 9, 0), datetime(2032, 4, 8, 10, 0), private=True
    )
    bob.create_series(
        "Stand-up",
        datetime(2032, 4, 5, 8, 30),
        datetime(2032, 4, 5, 8, 45),
        Recurrence(pattern="daily", interval=1, count=3),
    )
    toronto = ZoneInfo("America/Toronto")

    window = run(
        gateway.list_events(
            BOB, datetime(2032, 4, 5, tzinfo=toronto), datetime(2032, 4, 9, tzinfo=toronto)
        )
    )

    assert requests_made(simulator) == {"FindItem": 1}
    by_subject: dict[str, list[Any]] = {}
    for event in window:
        by_subject.setdefault(event.subject, []).append(event)
    [all_day] = by_subject["Holiday"]
    assert all_day.is_all_day
    assert all_day.start == datetime(2032, 4, 5, tzinfo=toronto)
    assert all_day.end == datetime(2032, 4, 7, tzinfo=toronto)
    [private] = by_subject["Dentist"]
    assert private.sensitivity.value == "private"
    assert private.uid == dentist.uid
    occurrences = by_subject["Stand-up"]
    assert [o.item_type.value for o in occurrences] == ["occurrence"] * 3
    assert [o.start.astimezone(toronto).day for o in occurrences] == [5, 6, 7]
    assert [e.start for e in window] == sorted(e.start for e in window)
    assert holiday.uid in {e.uid for e in window}


# --- failures as typed errors ----------------------------------------------------------------


def test_server_busy_becomes_retry_after_with_the_servers_back_off_and_creates_nothing(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    marker = new_marker()
    arm(simulator, "server_busy", "CreateItem", back_off_ms=2500)

    with pytest.raises(RetryAfter) as raised:
        run(gateway.create_event(ANN, draft(marker), "tx-busy-1"))

    assert raised.value.seconds == 2.5
    assert raised.value.retry_after_seconds == 2.5
    assert raised.value.mailbox == ANN
    assert simulator.store.find_by_extended_property(ANN, MARKER_KEY, marker) == []
    ref = run(gateway.create_event(ANN, draft(marker), "tx-busy-1"))  # the re-queued message
    assert len(simulator.store.find_by_extended_property(ANN, MARKER_KEY, marker)) == 1
    assert ref.uid == calbridge_uid(ANN, "tx-busy-1")


def test_throttling_never_sleeps_even_when_another_configuration_was_cached_first(
    simulator: RunningSimulator,
) -> None:
    # exchangelib caches protocols per (endpoint, credentials): a fault-tolerant configuration
    # made first in the process must not turn the adapter's FailFast into minutes of sleeping.
    from exchangelib import Configuration, Credentials, FaultTolerance
    from exchangelib.protocol import Protocol

    patient = Configuration(
        service_endpoint=simulator.urls["ews"],
        credentials=Credentials(SERVICE, PASSWORDS[SERVICE]),
        retry_policy=FaultTolerance(max_wait=600),
    )
    Protocol(config=patient)
    made = gateway_for(simulator)
    arm(simulator, "server_busy", "FindItem", back_off_ms=60_000)
    try:
        with pytest.raises(RetryAfter) as raised:
            run(made.find_by_marker(ANN, new_marker()))
    finally:
        made.close()
    assert raised.value.seconds == 60


def test_concurrent_throttled_calls_never_shrink_the_session_pool_nor_wedge_it(
    simulator: RunningSimulator,
) -> None:
    # exchangelib 5.6 answers ErrorServerBusy by shrinking its session pool, under a lock that
    # its own get_session may then wait for: concurrent throttled calls wedged every thread.
    made = gateway_for(simulator, max_connections=4)

    async def burst(count: int) -> list[object]:
        calls = [made.find_by_marker(mailbox, new_marker()) for mailbox in [ANN, BOB] * count]
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        assert all(result == [] for result in run(burst(4)))
        pool = made.connection.protocol.session_pool_size
        arm(simulator, "server_busy", "FindItem", mailbox="*", remaining=None, back_off_ms=100)
        for _ in range(3):
            results = run(asyncio.wait_for(burst(6), timeout=60))
            assert all(isinstance(result, RetryAfter) for result in results), results
        assert made.connection.protocol.session_pool_size == pool
        simulator.store.clear_faults()
        assert all(result == [] for result in run(asyncio.wait_for(burst(6), timeout=60)))
    finally:
        made.close()


def test_a_call_ends_at_its_deadline_and_a_held_connection_never_holds_storage(
    simulator: RunningSimulator,
) -> None:
    from shared.store.threads import in_storage_thread

    made = gateway_for(simulator, max_connections=1, timeout_s=10, call_deadline_s=0.5)
    arm(simulator, "slow", "FindItem", mailbox="*", remaining=None, delay_s=3.0)

    async def scenario() -> tuple[list[Any], float]:
        loop = asyncio.get_running_loop()
        began = loop.time()
        calls = asyncio.gather(
            *(made.find_by_marker(ANN, new_marker()) for _ in range(4)), return_exceptions=True
        )
        await asyncio.sleep(0.1)  # the connection's one thread is now held by the slow server
        assert await in_storage_thread(lambda: "stored") == "stored"
        stored_after = loop.time() - began
        return await calls, stored_after

    try:
        results, stored_after = run(scenario())
    finally:
        simulator.store.clear_faults()
        made.close()
    assert stored_after < 0.45, "a storage call waited for the Exchange connection's threads"
    for result in results:
        assert isinstance(result, ExchangeUnavailable), result
        assert "no answer within 0.5 s" in str(result)


@pytest.mark.parametrize("kind", ["http_500", "http_503", "reset"])
def test_server_failures_become_exchange_unavailable(
    simulator: RunningSimulator, gateway: EwsCalendarGateway, kind: str
) -> None:
    arm(simulator, kind, "FindItem")

    with pytest.raises(ExchangeUnavailable):
        run(gateway.find_by_marker(ANN, new_marker()))

    assert run(gateway.find_by_marker(ANN, new_marker())) == []  # the next call goes through


def test_a_slow_server_becomes_exchange_unavailable_after_the_timeout(
    simulator: RunningSimulator,
) -> None:
    made = gateway_for(simulator, timeout_s=0.5)
    arm(simulator, "slow", "FindItem", delay_s=2.0)
    try:
        with pytest.raises(ExchangeUnavailable):
            run(made.find_by_marker(ANN, new_marker()))
    finally:
        made.close()


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_refused_credentials_become_authentication_failed(
    simulator: RunningSimulator, auth: str
) -> None:
    made = gateway_for(simulator, auth=auth, password="not-the-password")
    try:
        with pytest.raises(AuthenticationFailed) as raised:
            run(made.find_by_marker(ANN, new_marker()))
    finally:
        made.close()
    assert "not-the-password" not in str(raised.value)


def test_a_401_on_a_basic_connection_becomes_authentication_failed(
    simulator: RunningSimulator,
) -> None:
    made = gateway_for(simulator, auth="basic")
    try:
        run(made.find_by_marker(ANN, new_marker()))  # the credentials work
        arm(simulator, "unauthorized", "FindItem")
        with pytest.raises(AuthenticationFailed):
            run(made.find_by_marker(ANN, new_marker()))
    finally:
        made.close()


def test_impersonation_refused_becomes_access_denied(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    # The service account may impersonate ann and bob, not cara.
    with pytest.raises(AccessDenied) as raised:
        run(gateway.create_event(CARA, draft(new_marker()), "tx-denied-1"))

    assert raised.value.mailbox == CARA
    assert simulator.store.calendar_items(CARA) == []


def test_delegate_access_reaches_only_the_delegated_mailboxes(
    simulator: RunningSimulator,
) -> None:
    made = gateway_for(simulator, access="delegate")
    try:
        ref = run(made.create_event(CARA, draft(new_marker(), attendees=(ANN,)), "tx-del-1"))
        [stored] = simulator.store.calendar_items(CARA)
        assert stored.uid == ref.uid
        assert simulator.store.find_by_uid(ANN, ref.uid or "")
        run(made.cancel_event(CARA, ref.item_id))
        assert simulator.store.calendar_items(CARA) == []
        with pytest.raises(AccessDenied):
            run(made.find_by_marker(ANN, new_marker()))  # not a delegate of ann
        with pytest.raises(MailboxNotFound):
            run(made.find_by_marker("nobody@contoso.test", new_marker()))
    finally:
        made.close()


def test_an_unknown_mailbox_becomes_mailbox_not_found(gateway: EwsCalendarGateway) -> None:
    with pytest.raises(MailboxNotFound):
        run(gateway.create_event("nobody@contoso.test", draft(new_marker()), "tx-missing"))


def test_a_stale_change_key_and_a_deleted_item_are_told_apart(
    gateway: EwsCalendarGateway,
) -> None:
    marker = new_marker()
    ref = run(gateway.create_event(ANN, draft(marker), "tx-stale-1"))
    run(gateway.update_event(ANN, ref.item_id, draft(marker, hours=1), ref.change_key))

    with pytest.raises(ChangeKeyConflict):
        run(gateway.update_event(ANN, ref.item_id, draft(marker, hours=2), ref.change_key))
    run(gateway.cancel_event(ANN, ref.item_id))
    with pytest.raises(EventNotFound):
        run(gateway.update_event(ANN, ref.item_id, draft(marker), None))
    assert run(gateway.get_event(ANN, ref.item_id)) is None


# --- privacy -------------------------------------------------------------------------------------


def test_no_log_line_carries_the_body_even_at_debug(
    simulator: RunningSimulator, gateway: EwsCalendarGateway, caplog: pytest.LogCaptureFixture
) -> None:
    arm(simulator, "http_500", "UpdateItem")
    with caplog.at_level(logging.DEBUG):
        marker = new_marker()
        ref = run(gateway.create_event(ANN, draft(marker, attendees=(BOB,)), "tx-log-1"))
        with pytest.raises(ExchangeUnavailable) as raised:
            run(gateway.update_event(ANN, ref.item_id, draft(marker), ref.change_key))

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Secretclient" not in logged
    assert "Mortgage consultation" not in logged
    assert "Secretclient" not in str(raised.value)
    assert PASSWORDS[SERVICE] not in logged


# --- construction -------------------------------------------------------------------------------


def _connection(sim: RunningSimulator, **overrides: Any) -> ConnectionConfig:
    fields: dict[str, Any] = {
        "kind": "ews",
        "ews_url": sim.urls["ews"],
        "auth_type": "basic",
        "username": SERVICE,
        "secret_reference": "ews-service-password",
        "access_mode": "impersonation",
    }
    fields.update(overrides)
    return ConnectionConfig(**fields)


def test_the_composition_root_builds_an_ews_gateway_from_a_connection(
    simulator: RunningSimulator,
) -> None:
    from shared.config import Settings

    made = calendar_gateway(_connection(simulator), PASSWORDS[SERVICE], Settings(), "conn-ews-1")
    assert isinstance(made, EwsCalendarGateway)
    try:
        ref = run(made.create_event(BOB, draft(new_marker()), "tx-factory-1"))
    finally:
        made.close()
    assert simulator.store.find_by_uid(BOB, ref.uid or "")


# --- UIDs and global object ids ---------------------------------------------------------------


def test_calbridge_uids_are_stable_distinct_and_shaped_like_exchanges() -> None:
    uid = calbridge_uid(ANN, "tx-1")

    assert uid == calbridge_uid(ANN.upper(), "tx-1")
    assert uid != calbridge_uid(ANN, "tx-2")
    assert uid != calbridge_uid(BOB, "tx-1")
    assert uid.startswith(GLOBAL_OBJECT_ID_CLASS.hex().upper())
    assert clean_global_object_id(uid) == bytes.fromhex(uid)


def test_the_clean_global_object_id_clears_the_instance_date_or_wraps_a_foreign_uid() -> None:
    exception_uid = GLOBAL_OBJECT_ID_CLASS.hex() + "07E80314" + "00" * 16 + "10000000" + "ab" * 16
    cleaned = clean_global_object_id(exception_uid)
    assert cleaned[16:20] == b"\x00\x00\x00\x00"
    assert cleaned[20:] == bytes.fromhex(exception_uid)[20:]

    foreign = clean_global_object_id("event-42@booking.example")
    data = b"vCal-Uid\x01\x00\x00\x00event-42@booking.example\x00"
    assert foreign == GLOBAL_OBJECT_ID_CLASS + bytes(20) + len(data).to_bytes(4, "little") + data


# --- the contract suite with delegate access -------------------------------------------------


def contract_cases() -> dict[str, Callable[[CalendarWorld], None]]:
    """Every contract test, once per parameter set when it has some, taking just the world."""
    cases: dict[str, Callable[[CalendarWorld], None]] = {}
    for name, test in vars(contract).items():
        if not name.startswith("test_"):
            continue
        marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            cases[name] = test
            continue
        argnames, argvalues = marks[0].args
        names = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else argnames
        for values in argvalues:
            values = values if isinstance(values, tuple) else (values,)
            kwargs = dict(zip(names, values, strict=True))
            label = "-".join(str(v) for v in values)
            cases[f"{name}[{label}]"] = functools.partial(test, **kwargs)
    return cases


CONTRACT_TESTS = contract_cases()


@pytest.mark.parametrize("name", sorted(CONTRACT_TESTS))
def test_the_port_contract_holds_with_delegate_access(
    name: str, request: pytest.FixtureRequest
) -> None:
    with ews_delegate_world(request) as world:
        CONTRACT_TESTS[name](world)


def test_a_page_of_many_changes_is_read_512_a_call_and_fetched_in_one_get_item(
    simulator: RunningSimulator, gateway: EwsCalendarGateway
) -> None:
    """n changes cost ceil(n / 512) SyncFolderItems — Exchange returns at most 512 changes a
    call (learn.microsoft.com, "SyncFolderItems operation": "will return a maximum of 512
    changes") — and one GetItem for all of them, as long as the page holds them."""
    cursor = None
    while True:
        read = run(gateway.changes_since(BOB, cursor, max_changes=2560))
        cursor = read.cursor
        if read.complete:
            break
    bob = Outlook(simulator.store, BOB)
    made = {f"Block {n}" for n in range(1200)}
    ids = []
    for n in range(1200):
        start = datetime(2033, 1, 3, 8, 0) + timedelta(days=n // 20, minutes=20 * (n % 20))
        ids.append(bob.create_event(f"Block {n}", start, start + timedelta(minutes=15)).id)
    simulator.store.reset_counters()
    try:
        _read_in_pages(simulator, gateway, cursor, made)
    finally:
        for item_id in ids:  # the simulator is shared by the module's tests
            bob.delete(item_id)


def _read_in_pages(
    simulator: RunningSimulator, gateway: EwsCalendarGateway, cursor: str | None, made: set[str]
) -> None:

    whole = run(gateway.changes_since(BOB, cursor, max_changes=2560))
    assert requests_made(simulator) == {"SyncFolderItems": 3, "GetItem": 1}
    assert {event.subject for event in whole.changed} == made
    assert whole.complete

    simulator.store.reset_counters()
    part = run(gateway.changes_since(BOB, cursor, max_changes=600))
    assert requests_made(simulator) == {"SyncFolderItems": 2, "GetItem": 1}
    assert len(part.changed) == 600
    assert not part.complete
    rest = run(gateway.changes_since(BOB, part.cursor, max_changes=2560))
    assert {event.subject for event in (*part.changed, *rest.changed)} == made
    assert rest.complete
