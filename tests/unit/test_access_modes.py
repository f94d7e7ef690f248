"""Access modes, the pure and storage-level parts: a connection's service accounts (validation),
which account serves a mailbox (rendezvous hashing), and the shared call budget's slot leases
over the table port (several "instances" sharing one table)."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.exchange.accounts import account_for
from shared.exchange.budget import CallBudgets, SharedCallBudget
from shared.exchange.port import RetryAfter
from shared.models import EWS_MAX_CONCURRENCY, MAX_SERVICE_ACCOUNTS, ConnectionConfig
from shared.store.call_slots import CallSlotLeases
from shared.store.keys import compose_key
from shared.store.memory import MemoryTableService
from tests.waiting import wait_until

URL = "https://mail.acme.test/EWS/Exchange.asmx"


def ews(**fields: Any) -> ConnectionConfig:
    body = {"kind": "ews", "ewsUrl": URL, "authType": "ntlm", **fields}
    return ConnectionConfig.model_validate(body)


def accounts(*names: str) -> list[dict[str, str]]:
    return [{"username": n, "secretReference": f"pw-{i}"} for i, n in enumerate(names)]


# --- the connection's service accounts --------------------------------------------------------


def test_one_username_and_secret_are_one_account() -> None:
    config = ews(username="svc@acme.test", secretReference="svc-pw")
    assert [(a.username, a.secret_reference) for a in config.accounts()] == [
        ("svc@acme.test", "svc-pw")
    ]
    assert config.secret_references() == ["svc-pw"]


def test_several_service_accounts_in_the_order_given() -> None:
    config = ews(serviceAccounts=accounts("a@acme.test", "b@acme.test"))
    assert [a.username for a in config.accounts()] == ["a@acme.test", "b@acme.test"]
    assert config.secret_references() == ["pw-0", "pw-1"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"serviceAccounts": accounts("a@acme.test", "A@acme.test")}, "more than once"),
        (
            {"serviceAccounts": accounts(*[f"s{i}@acme.test" for i in range(17)])},
            f"at most {MAX_SERVICE_ACCOUNTS}",
        ),
        ({"serviceAccounts": []}, "at least 1"),
        (
            {"serviceAccounts": accounts("a@acme.test"), "username": "a@acme.test"},
            "replace username and secretReference",
        ),
        (
            {"serviceAccounts": accounts("a@acme.test"), "secretReference": "x"},
            "replace username and secretReference",
        ),
        (
            {
                "serviceAccounts": accounts("a@acme.test"),
                "authType": "oauth",
                "tenantId": "t",
                "clientId": "c",
            },
            "basic or ntlm",
        ),
        ({"serviceAccounts": [{"username": "a@acme.test"}]}, "secretReference"),
        ({"username": "a@acme.test", "secretReference": "x", "maxConcurrentCalls": 27}, "26"),
        ({"username": "a@acme.test", "secretReference": "x", "maxConcurrentCalls": 0}, "1"),
    ],
)
def test_service_accounts_that_cannot_work_are_refused(
    fields: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ews(**fields)
    assert problem in str(refused.value)


def test_the_budget_stays_below_exchanges_default_concurrency() -> None:
    assert ews(username="a@acme.test", secretReference="x").max_concurrent_calls < 27
    assert EWS_MAX_CONCURRENCY == 27


# --- which account serves a mailbox -------------------------------------------------------------

mailboxes = st.lists(
    st.from_regex(r"[a-z]{1,8}@[a-z]{1,6}\.test", fullmatch=True), min_size=1, max_size=40
)
usernames = st.lists(
    st.from_regex(r"svc[0-9]{1,3}@acme\.test", fullmatch=True), min_size=1, max_size=8, unique=True
)


@given(mailboxes, usernames)
def test_a_mailbox_always_goes_to_the_same_account_whatever_the_order(
    addresses: list[str], names: list[str]
) -> None:
    for address in addresses:
        chosen = account_for(address, names)
        assert chosen in names
        assert account_for(address, list(reversed(names))) == chosen
        assert account_for(address.upper(), names) == chosen


@given(mailboxes, usernames, st.from_regex(r"new[0-9]{1,3}@acme\.test", fullmatch=True))
def test_adding_an_account_moves_mailboxes_only_to_it(
    addresses: list[str], names: list[str], added: str
) -> None:
    for address in addresses:
        before = account_for(address, names)
        after = account_for(address, [*names, added])
        assert after in (before, added)


def test_adding_an_account_moves_about_its_share() -> None:
    names = [f"svc{i}@acme.test" for i in range(3)]
    addresses = [f"staff{i}@acme.test" for i in range(3000)]
    moved = sum(
        account_for(a, names) != account_for(a, [*names, "svc3@acme.test"]) for a in addresses
    )
    assert 0.2 < moved / len(addresses) < 0.3  # a quarter, give or take
    spread = {n: sum(account_for(a, names) == n for a in addresses) for n in names}
    assert min(spread.values()) > 0.28 * len(addresses)


# --- the shared call budget ---------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2027, 1, 4, 9, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def instance(
    table: MemoryTableService, name: str, slots: int = 3, clock: Clock | None = None, **kw: Any
) -> SharedCallBudget:
    options: dict[str, Any] = {"holder": name, **kw}
    if clock is not None:
        options["clock"] = clock
    return SharedCallBudget(
        CallSlotLeases(table), "acme|onprem|svc@acme.test", slots, local_limit=slots, **options
    )


def test_instances_sharing_the_table_never_run_more_calls_than_the_slots() -> None:
    table = MemoryTableService()
    instances = [instance(table, f"instance-{n}") for n in range(3)]
    running = 0
    most = 0
    lock = threading.Lock()
    outcomes: list[str] = []

    async def call(budget: SharedCallBudget) -> None:
        nonlocal running, most
        try:
            slot = await budget.acquire()
        except RetryAfter:
            outcomes.append("requeued")
            return
        with lock:
            running += 1
            most = max(most, running)
        await asyncio.sleep(0.01)
        with lock:
            running -= 1
        slot.release()
        outcomes.append("ran")

    async def burst(budget: SharedCallBudget) -> None:
        await asyncio.gather(*(call(budget) for _ in range(8)))

    # Each instance runs its own event loop on its own thread, as separate hosts would.
    threads = [threading.Thread(target=asyncio.run, args=(burst(b),)) for b in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert most <= 3
    assert len(outcomes) == 24
    assert outcomes.count("ran") >= 8  # whoever holds slots hands them on to its own waiters
    rows = table.table("CallSlots").query(compose_key("acme|onprem|svc@acme.test"))
    assert len(rows) <= 3


def test_an_instance_that_holds_every_slot_makes_the_others_requeue() -> None:
    table = MemoryTableService()
    first, second = instance(table, "first", slots=2), instance(table, "second", slots=2)

    async def scenario() -> None:
        held = [await first.acquire(), await first.acquire()]
        with pytest.raises(RetryAfter) as refused:
            await second.acquire()
        assert "in use by other instances" in str(refused.value)
        for slot in held:
            slot.release()

    asyncio.run(scenario())


def test_a_crashed_instances_slots_come_free_when_their_leases_run_out() -> None:
    table = MemoryTableService()
    clock = Clock()
    crashed = instance(table, "crashed", slots=1, clock=clock)
    survivor = instance(table, "survivor", slots=1, clock=clock)

    async def scenario() -> None:
        await crashed.acquire()  # never released: the instance died
        with pytest.raises(RetryAfter):
            await survivor.acquire()
        clock.now += timedelta(seconds=121)
        slot = await survivor.acquire()
        slot.release()

    asyncio.run(scenario())


def test_a_lease_is_renewed_before_a_call_could_outlive_it() -> None:
    table = MemoryTableService()
    clock = Clock()
    budget = instance(table, "one", slots=1, clock=clock, idle_release=timedelta(hours=1))
    partition = compose_key("acme|onprem|svc@acme.test")

    async def scenario() -> None:
        (await budget.acquire()).release()
        [row] = table.table("CallSlots").query(partition)
        clock.now += timedelta(seconds=30)  # 90 s left: less than a call may take
        (await budget.acquire()).release()
        [renewed] = table.table("CallSlots").query(partition)
        assert float(renewed.properties["leasedUntil"]) == float(row.properties["leasedUntil"]) + 30
        assert renewed.properties["holder"] == "one"

    asyncio.run(scenario())


def test_an_idle_slot_is_given_back_soon() -> None:
    table = MemoryTableService()
    budget = instance(table, "one", slots=2, idle_release=timedelta(milliseconds=50))
    partition = compose_key("acme|onprem|svc@acme.test")

    async def scenario() -> None:
        (await budget.acquire()).release()

    asyncio.run(scenario())
    wait_until(lambda: budget.held == 0, what="the idle slot given back")
    [row] = table.table("CallSlots").query(partition)
    assert row.properties["holder"] == ""


def test_budgets_are_kept_per_account_across_gateway_rebuilds() -> None:
    budgets = CallBudgets(CallSlotLeases(MemoryTableService()), holder="me")
    first = budgets.budget("acme", "onprem", "svc@acme.test", 12, 4)
    assert budgets.budget("acme", "onprem", "SVC@acme.test", 12, 4) is first
    assert budgets.budget("acme", "onprem", "other@acme.test", 12, 4) is not first
    assert first.local_limit == 4
