"""How many EWS requests one service account has open at once at Exchange when several instances
of calbridge work for one delegate-access connection: with the shared call budget (slots leased
in Azurite's ``CallSlots`` table) against the baseline without it (each instance limited only by
its own EWS threads), in the same run.

Each "instance" is an ``EwsCalendarGateway`` of its own (its own exchangelib sessions, threads
and slot holder) in this process; all of them read the calendars of the connection's mailboxes
at once, as queue batches on separate hosts would. The simulator runs in this process with
Exchange's default EWSMaxConcurrency (27) and holds each request ``--delay-ms`` so requests
overlap; it records the most requests the service account's budget had open at once and the
requests it refused with ErrorServerBusy. Storage operations on the slot table are counted.

Usage: .venv/bin/python bench/ews_concurrency.py [--instances 1 4 8] [--calls 48]
       [--budget 12] [--delay-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devhost.azurite import start_azurite
from shared.exchange.budget import CallBudgets, SharedCallBudget
from shared.exchange.ews import EwsCalendarGateway
from shared.exchange.port import CalendarError, RetryAfter
from shared.models import ConnectionConfig
from shared.store.azure_tables import AzureTableService
from shared.store.call_slots import CallSlotLeases
from sim.server import RunningSimulator, start_simulator
from sim.store import Fault

SERVICE = "svc@bench.test"
PASSWORD = "Bench:svc-1"
MAILBOXES = [f"staff{n}@bench.test" for n in range(8)]
START = datetime(2027, 9, 6, tzinfo=UTC)
THREADS_PER_INSTANCE = 4  # the EWS adapter's default session pool and threads per account


class CountingLeases(CallSlotLeases):
    """The slot table, counting its storage operations (a claim: one query plus one write per
    slot tried; a renewal or release: one write)."""

    operations = 0

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        found = super().claim(*args, **kwargs)
        CountingLeases.operations += 2
        return found

    def renew(self, *args: Any, **kwargs: Any) -> Any:
        CountingLeases.operations += 1
        return super().renew(*args, **kwargs)

    def release(self, *args: Any, **kwargs: Any) -> None:
        CountingLeases.operations += 1
        super().release(*args, **kwargs)


def simulator_config() -> dict[str, Any]:
    return {
        "mailboxes": [
            {"address": m, "name": m.split("@")[0], "timeZone": "UTC", "password": "x:Pw1"}
            for m in MAILBOXES
        ],
        "serviceAccounts": [
            {"username": SERVICE, "password": PASSWORD, "impersonate": [], "delegateFor": MAILBOXES}
        ],
    }


def run_once(
    sim: RunningSimulator,
    tables: AzureTableService | None,
    instances: int,
    calls: int,
    budget: int,
) -> dict[str, Any]:
    config = ConnectionConfig.model_validate(
        {
            "kind": "ews",
            "ewsUrl": sim.urls["ews"],
            "authType": "basic",
            "username": SERVICE,
            "secretReference": "bench",
            "accessMode": "delegate",
            "maxConcurrentCalls": budget,
        }
    )
    gateways = []
    made: list[SharedCallBudget] = []
    for n in range(instances):
        budgets = (
            CallBudgets(CountingLeases(tables), holder=f"instance-{n}")
            if tables is not None
            else None
        )

        def budget_for(username: str, limit: int, budgets: Any = budgets) -> SharedCallBudget:
            found: SharedCallBudget = budgets.budget("bench", "onprem", username, budget, limit)
            made.append(found)
            return found

        gateways.append(
            EwsCalendarGateway.from_connection(
                config,
                PASSWORD,
                connection_id="bench",
                max_connections=THREADS_PER_INSTANCE,
                budget_for=budget_for if budgets is not None else None,
            )
        )
    sim.ews.reset_concurrency_records()
    CountingLeases.operations = 0
    outcomes = {"read": 0, "requeued by calbridge": 0, "refused by Exchange": 0}

    async def one(gateway: EwsCalendarGateway, address: str) -> None:
        try:
            await gateway.list_events(address, START, START + timedelta(days=7))
            outcomes["read"] += 1
        except RetryAfter as throttled:
            key = "refused by Exchange" if "ErrorServerBusy" in str(throttled) else None
            outcomes[key or "requeued by calbridge"] += 1
        except CalendarError:
            outcomes["refused by Exchange"] += 1

    async def everyone() -> None:
        await asyncio.gather(
            *(
                one(gateway, MAILBOXES[i % len(MAILBOXES)])
                for gateway in gateways
                for i in range(calls)
            )
        )

    began = time.perf_counter()
    try:
        asyncio.run(everyone())
    finally:
        for gateway in gateways:
            gateway.close()
    seconds = time.perf_counter() - began
    operations = CountingLeases.operations
    for found in made:  # the next run starts with every slot free
        found.release_all()
    return {
        "peak": sim.ews.peak_concurrency.get(f"user:{SERVICE}", 0),
        "refusals": sim.ews.concurrency_refusals.get(f"user:{SERVICE}", 0),
        "seconds": seconds,
        "table_ops": operations,
        **outcomes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--calls", type=int, default=48, help="calls per instance")
    parser.add_argument("--budget", type=int, default=12, help="maxConcurrentCalls")
    parser.add_argument("--delay-ms", type=int, default=50)
    options = parser.parse_args(argv)

    with (
        start_simulator(simulator_config(), validate_ews=False) as sim,
        start_azurite() as azurite,
    ):
        sim.store.add_fault(Fault(kind="slow", remaining=None, delay_s=options.delay_ms / 1000))
        tables = AzureTableService.from_connection_string(azurite.connection_string, "bench")
        print(
            f"delegate access, one service account, EWSMaxConcurrency 27 at the simulator; "
            f"{options.calls} calendar reads per instance, {THREADS_PER_INSTANCE} EWS threads "
            f"per instance, each request held {options.delay_ms} ms"
        )
        header = (
            f"{'run':<22}{'instances':>10}{'peak open':>10}{'refused':>9}{'requeued':>9}"
            f"{'read':>6}{'seconds':>9}{'slot ops/read':>14}"
        )
        print(header)
        print("-" * len(header))
        for instances in options.instances:
            for name, table in (
                (f"budget {options.budget}", tables),
                ("baseline (no budget)", None),
            ):
                figures = run_once(sim, table, instances, options.calls, options.budget)
                per_read = figures["table_ops"] / max(figures["read"], 1)
                print(
                    f"{name:<22}{instances:>10}{figures['peak']:>10}"
                    f"{figures['refused by Exchange']:>9}{figures['requeued by calbridge']:>9}"
                    f"{figures['read']:>6}{figures['seconds']:>9.2f}{per_read:>14.2f}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
