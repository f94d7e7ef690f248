"""The EWS adapter's access modes against the simulator: mailboxes spread over several service
accounts (each mailbox always through the same one, the state it reads usable through any), and
delegate access within the account's shared call budget however many gateways ("instances",
each with its own slot holder) share its slot table in Azurite.

The simulator enforces EWSMaxConcurrency per throttling budget (``tests/sim/test_ews_concurrency``):
delegate requests are charged to the service account, impersonated ones to each mailbox.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.azurite import Azurite
from shared.exchange.accounts import account_for
from shared.exchange.budget import CallBudgets
from shared.exchange.ews import EwsCalendarGateway
from shared.exchange.port import EventDraft, RetryAfter
from shared.models import ConnectionConfig
from shared.store.azure_tables import AzureTableService
from shared.store.call_slots import CallSlotLeases
from sim.server import RunningSimulator, start_simulator
from sim.store import Fault
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, SERVICE, sample_config

SECOND = "svc-b@contoso.test"
SECOND_PASSWORD = "Svc2:pass!"
DAN = "dan@contoso.test"
MAILBOXES = [ANN, BOB, CARA, DAN]
START = datetime(2027, 9, 6, 9, tzinfo=UTC)
_tables = itertools.count()


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    config = sample_config()
    config["mailboxes"].append(
        {"address": DAN, "name": "Dan Wu", "timeZone": "UTC", "password": "Dan:pw1"}
    )
    [service] = config["serviceAccounts"]
    service.update(impersonate=MAILBOXES, delegateFor=MAILBOXES)
    config["serviceAccounts"].append(
        {
            "username": SECOND,
            "password": SECOND_PASSWORD,
            "impersonate": MAILBOXES,
            "delegateFor": MAILBOXES,
        }
    )
    with start_simulator(config, validate_ews=False) as running:
        yield running


@pytest.fixture
def simulator(sim: RunningSimulator) -> Iterator[RunningSimulator]:
    sim.store.clear_faults()
    sim.ews.reset_concurrency_records()
    yield sim
    sim.store.clear_faults()


def connection(sim: RunningSimulator, *usernames: str, **fields: Any) -> ConnectionConfig:
    accounts = [{"username": u, "secretReference": f"pw-{u.split('@')[0]}"} for u in usernames]
    return ConnectionConfig.model_validate(
        {
            "kind": "ews",
            "ewsUrl": sim.urls["ews"],
            "authType": "ntlm",
            "serviceAccounts": accounts,
            **fields,
        }
    )


SECRETS = {"pw-svc": PASSWORDS[SERVICE], "pw-svc-b": SECOND_PASSWORD}


def gateway(config: ConnectionConfig, **options: Any) -> EwsCalendarGateway:
    return EwsCalendarGateway.from_connection(config, "", account_secrets=SECRETS, **options)


def draft(subject: str) -> EventDraft:
    return EventDraft(
        subject=subject,
        start=START,
        end=START + timedelta(minutes=30),
        time_zone="UTC",
        marker=f"access-{subject}",
    )


def test_each_mailbox_is_served_by_its_account_and_its_state_by_any(
    simulator: RunningSimulator,
) -> None:
    one = gateway(connection(simulator, SERVICE))
    two = gateway(connection(simulator, SERVICE, SECOND))

    async def scenario() -> None:
        cursors = {m: (await one.changes_since(m, None)).cursor for m in MAILBOXES}
        created = {m: await one.create_event(m, draft(f"spread {m}"), f"t-{m}") for m in MAILBOXES}
        simulator.ews.reset_concurrency_records()
        for address in MAILBOXES:
            # A cursor and an item id obtained through one account work through the other.
            changes = await two.changes_since(address, cursors[address])
            assert [event.item_id for event in changes.changed] == [created[address].item_id]
            moved = await two.update_event(
                address, created[address].item_id, draft(f"moved {address}"), None
            )
            assert moved.item_id == created[address].item_id

    try:
        asyncio.run(scenario())
    finally:
        one.close()
        two.close()
    expected = {(account_for(m, [SERVICE, SECOND]), m) for m in MAILBOXES}
    assert {who for who, _ in expected} == {SERVICE, SECOND}
    assert set(simulator.ews.callers) == expected


def test_delegate_gateways_in_several_instances_stay_within_the_accounts_budget(
    simulator: RunningSimulator, azurite: Azurite
) -> None:
    tables = AzureTableService.from_connection_string(
        azurite.connection_string, f"slots{next(_tables)}"
    )
    config = connection(simulator, SERVICE, accessMode="delegate", maxConcurrentCalls=3)
    instances = [
        gateway(
            config,
            max_connections=4,
            budget_for=lambda username, limit, holder=f"instance-{n}": CallBudgets(
                CallSlotLeases(tables), holder=holder
            ).budget("acme", "onprem", username, 3, limit),
        )
        for n in range(3)
    ]
    # Every request stays in flight a while, so the instances' calls overlap.
    simulator.store.add_fault(Fault(kind="slow", remaining=None, delay_s=0.15))

    async def burst(instance: EwsCalendarGateway) -> list[str]:
        async def one(address: str) -> str:
            try:
                await instance.list_events(address, START, START + timedelta(days=1))
            except RetryAfter:
                return "requeued"
            return "read"

        return await asyncio.gather(*(one(m) for m in MAILBOXES * 2))

    async def everyone() -> list[list[str]]:
        return await asyncio.gather(*(burst(instance) for instance in instances))

    try:
        outcomes = [o for per_instance in asyncio.run(everyone()) for o in per_instance]
    finally:
        for instance in instances:
            instance.close()

    assert simulator.ews.peak_concurrency == {f"user:{SERVICE}": 3}
    assert simulator.ews.concurrency_refusals == {}
    assert outcomes.count("read") >= 8
    assert len(outcomes) == 24


def test_impersonation_takes_no_budget_and_mailboxes_run_side_by_side(
    simulator: RunningSimulator,
) -> None:
    taken: list[str] = []

    def budget_for(username: str, limit: int) -> Any:
        taken.append(username)
        raise AssertionError("impersonation needs no shared budget")

    made = gateway(connection(simulator, SERVICE, maxConcurrentCalls=1), budget_for=budget_for)
    simulator.store.add_fault(Fault(kind="slow", remaining=None, delay_s=0.15))

    async def reads() -> None:
        await asyncio.gather(
            *(made.list_events(m, START, START + timedelta(days=1)) for m in MAILBOXES)
        )

    try:
        asyncio.run(reads())
    finally:
        made.close()
    assert taken == []
    assert simulator.ews.peak_concurrency == {f"impersonation:{m}": 1 for m in MAILBOXES}
    assert max(simulator.ews.peak_concurrency.values()) == 1
    # The four mailboxes' reads overlapped: the account's own budget was never charged.
    assert f"user:{SERVICE}" not in simulator.ews.peak_concurrency
