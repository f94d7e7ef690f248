"""The connection test (``POST .../connections/{id}/test``): how long it takes for many mailboxes,
and what it costs Exchange.

The test's own code (``ConnectionAdmin._probe_all``: the probe of every mailbox through the EWS
adapter, several at a time within the time budget) against the simulator in a process of its own
(schema validation off); requests counted at the simulator. Beside the baseline in the same run:
the same probes one mailbox at a time. A last round makes one mailbox answer slowly (a "slow"
fault longer than the budget) to show the answer still comes within the budget.

Usage: .venv/bin/python bench/connection_test.py [--mailboxes 40] [--concurrency 8]
       [--budget 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import SimProcess, start_sim_process
from shared.admin import AdminApi
from shared.admin.operations import ConnectionAdmin
from shared.exchange.ews import EwsCalendarGateway
from shared.exchange.port import CalendarGateway
from shared.models import ConnectionConfig
from shared.queues import MemoryQueueSender
from shared.store.memory import memory_repositories
from shared.store.records import ConnectionRecord

SERVICE = "svc-bench@bank.test"
PASSWORD = "Bench-pass:1"


class Secrets:
    def resolve(self, reference: str) -> str:
        return PASSWORD


class OneGateway:
    def __init__(self, gateway: CalendarGateway) -> None:
        self.gateway = gateway

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        return self.gateway


def simulator(mailboxes: list[str]) -> SimProcess:
    config: dict[str, Any] = {
        "mailboxes": [{"address": a, "name": a, "timeZone": "UTC"} for a in mailboxes],
        "serviceAccounts": [
            {"username": SERVICE, "password": PASSWORD, "impersonate": mailboxes, "delegateFor": []}
        ],
    }
    return start_sim_process(config)


def requests(sim: SimProcess) -> int:
    counters = sim.control("GET", "counters")
    return sum(n for by_mailbox in counters.values() for n in by_mailbox.values())


async def probe_all(
    gateway: CalendarGateway, record: ConnectionRecord, mailboxes: list[str], **options: Any
) -> tuple[float, list[Any]]:
    repos = memory_repositories()
    queue = MemoryQueueSender()
    api = AdminApi(repos, queue, Secrets(), operator_key="k", max_request_bytes=65536)
    admin = ConnectionAdmin(api, repos, queue, OneGateway(gateway), None, **options)  # type: ignore[arg-type]
    began = time.perf_counter()
    results = await admin._probe_all("bench", record, [(a, a) for a in mailboxes])
    return time.perf_counter() - began, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--budget", type=float, default=20.0)
    args = parser.parse_args()
    mailboxes = [f"staff{i:03d}@bank.test" for i in range(args.mailboxes)]
    sim = simulator(mailboxes)
    try:
        config = ConnectionConfig(
            kind="ews",
            ews_url=sim.urls["ews"],
            auth_type="basic",
            username=SERVICE,
            secret_reference="bench",
        )
        record = ConnectionRecord(connection_id="onprem", **config.model_dump())

        async def run() -> None:
            gateway = EwsCalendarGateway.from_connection(config, PASSWORD, connection_id="onprem")
            await probe_all(gateway, record, mailboxes[:1])  # warm: first NTLM/Basic session
            rounds = (("baseline: one at a time", 1), ("the test", args.concurrency))
            for label, concurrency in rounds:
                sim.control("DELETE", "counters")
                seconds, results = await probe_all(
                    gateway,
                    record,
                    mailboxes,
                    test_concurrency=concurrency,
                    test_budget_seconds=600.0,
                )
                ok = sum(1 for r in results if r.can_read and r.can_write)
                count = requests(sim)
                print(
                    f"{label:24} concurrency {concurrency:2}: {len(mailboxes)} mailboxes in "
                    f"{seconds:6.2f} s ({ok} read and written), {count} EWS requests "
                    f"({count / len(mailboxes):.1f} per mailbox)"
                )
            slow = mailboxes[0]
            sim.control(
                "POST",
                "faults",
                {"kind": "slow", "mailbox": slow, "remaining": 1, "delaySeconds": args.budget + 10},
            )
            seconds, results = await probe_all(
                gateway,
                record,
                mailboxes,
                test_concurrency=args.concurrency,
                test_budget_seconds=args.budget,
            )
            late = [r.mailbox for r in results if r.problem is not None]
            print(
                f"one mailbox {args.budget + 10:.0f} s slow, budget {args.budget:.0f} s: answered "
                f"in {seconds:.2f} s; not done in time: {late}"
            )

        asyncio.run(run())
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
