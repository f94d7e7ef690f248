"""Exchange → booking over EWS: what keeping mailboxes in sync costs.

One worker process, as the Functions host runs it: the local runner drives the functions
``function_app.app`` registers (queue triggers with host.json's batch settings, the HTTP
intake), Azurite holds the tables and queues, and the Exchange simulator runs in a process of
its own (schema validation off). Exchange requests are counted at the simulator. The poll
fan-out is run by the script (its timer is off) with a clock moved past the poll interval, so
each round polls every mailbox once.

Measured, each beside a baseline in the same run — a poller without sync state, which reads
the whole recurrence horizon with one CalendarView (FindItem) per mailbox per poll, through the
same EWS adapter with warm clients and the same concurrency (no storage, no queue: the
baseline's figures are a floor for such a poller):

1. EWS requests per idle mailbox per poll (goal 1), and the time one takes;
2. EWS requests for a mailbox with n changes since its last poll (goal: at most
   1 + ceil(n/512) requests: SyncFolderItems 512 ids at a time, then one GetItem for all);
3. idle mailboxes synced per minute by the worker process (goal ≥ 5,000);
4. an Outlook change → the signed webhook at the booking stand-in: a staff member moves an
   appointment calbridge wrote (``appointment.rescheduled``) or adds an event of their own
   (``busy_time.changed``); timed from the change to the stand-in's receipt, the sync starting
   right after the change (a change otherwise waits up to one poll interval for its poll).

Usage: .venv/bin/python bench/mailbox_sync.py [--mailboxes 400] [--events 10] [--rounds 3]
       [--latency-rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ews_org import (
    ORG,
    SIGNING_SECRET,
    address,
    administer,
    app_environment,
    connection_gateway,
    sim_config,
)
from bench.harness import SimProcess, cpu_seconds, percentile, rss_mib, start_sim_process
from devhost.azurite import start_azurite

CHANGES = (1, 10, 100, 512, 1200)
LATENCY_STAFF = "latency"
HORIZON_DAYS = 180
# The host runs up to batchSize + newBatchThreshold messages of a queue at once (host.json).
CONCURRENCY = 16 + 8


def idle_staff(count: int) -> list[str]:
    return [f"s{index:05d}" for index in range(count)]


def changes_staff(n: int) -> str:
    return f"changes{n}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=400, help="idle mailboxes polled")
    parser.add_argument("--events", type=int, default=10, help="events in each idle mailbox")
    parser.add_argument("--rounds", type=int, default=3, help="polls of every idle mailbox")
    parser.add_argument("--latency-rounds", type=int, default=20)
    options = parser.parse_args(argv)

    staff = [
        *idle_staff(options.mailboxes),
        *(changes_staff(n) for n in CHANGES),
        LATENCY_STAFF,
    ]
    sim = start_sim_process(sim_config(staff, "America/Toronto"))
    azurite = start_azurite()
    os.environ.update(app_environment(azurite.connection_string, "benchsync"))
    try:
        Bench(sim, staff, options, azurite.process.pid).run()
    finally:
        azurite.stop()
        sim.stop()
    return 0


def rescheduled(appointment_id: str) -> Callable[[dict[str, Any]], bool]:
    def match(body: dict[str, Any]) -> bool:
        return (
            body.get("type") == "appointment.rescheduled"
            and body.get("data", {}).get("appointmentId") == appointment_id
        )

    return match


@dataclass
class PollRound:
    seconds: float
    requests: Counter[str]
    fan_out_seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process
    rss_mib: float = 0.0  # the worker's resident memory after the round


@dataclass
class BodiesRound:
    """A round whose sync functions ran as the host hands them messages (see bodies_round)."""

    messages: int
    seconds: float
    cpu: float  # the worker process's CPU seconds while the functions ran
    fan_out_cpu: float  # ... while the fan-out claimed and queued the round


class Bench:
    def __init__(
        self, sim: SimProcess, staff: list[str], options: argparse.Namespace, azurite_pid: int
    ) -> None:
        import function_app
        from devhost.runner import FunctionsRunner
        from shared import bootstrap

        self.sim = sim
        self.processes = {
            "worker": os.getpid(),
            "simulator": sim.process.pid,
            "Azurite": azurite_pid,
        }
        self.staff = staff
        self.options = options
        self.idle = idle_staff(options.mailboxes)
        # The script's clock moves past the poll interval each round (see poll_all): the
        # services (the fan-out, the sync worker, the intake's signature check) all go by it.
        self.clock_offset = timedelta(0)
        self.services = bootstrap.build_services(clock=self.clock)
        bootstrap.install(self.services)
        self.runner = FunctionsRunner(function_app.app, environ=os.environ)
        # The script runs the poll fan-out itself, with its own clock.
        self.runner.timers = []
        self.loop = asyncio.Runner()

    def clock(self) -> float:
        return time.time() + self.clock_offset.total_seconds()

    # --- setup ----------------------------------------------------------------------------------

    def run(self) -> None:
        with self.runner:
            administer(
                self.services, self.sim, self.staff, "America/Toronto", {"pollIntervalSeconds": 60}
            )
            began = time.perf_counter()
            self.seed()
            print(f"seeded {len(self.idle)} mailboxes in {time.perf_counter() - began:.1f} s")
            first = self.poll_all(full=True)
            print(
                f"first (full) sync of {len(self.idle)} mailboxes: {first.seconds:.1f} s, "
                f"{dict(first.requests)}"
            )
            rounds = [self.poll_all() for _ in range(self.options.rounds)]
            bodies = [self.bodies_round() for _ in range(self.options.rounds)]
            baseline_rounds = [self.calendar_view_all() for _ in range(self.options.rounds)]
            changes = [self.changes(n) for n in CHANGES]
            latency = self.latency()
        self.loop.close()
        self.report(rounds, bodies, baseline_rounds, changes, latency)

    def create_events(self, staff_id: str, count: int, *, series: bool = False) -> None:
        """``count`` events of the staff member's own, spread over the horizon (and a weekly
        series when asked)."""
        start = datetime.now(UTC).replace(hour=13, minute=0, second=0, microsecond=0)
        for k in range(count):
            when = start + timedelta(days=1 + k % 150, minutes=30 * (k // 150 % 16))
            self.sim.control(
                "POST",
                f"people/{address(staff_id)}/createEvent",
                {
                    "subject": f"Own event {k}",
                    "start": when.isoformat(),
                    "end": (when + timedelta(minutes=30)).isoformat(),
                },
            )
        if series:
            first = start + timedelta(days=2)
            self.sim.control(
                "POST",
                f"people/{address(staff_id)}/createEvent",
                {
                    "subject": "Weekly team meeting",
                    "start": first.isoformat(),
                    "end": (first + timedelta(hours=1)).isoformat(),
                    "recurrence": {
                        "pattern": "weekly",
                        "daysOfWeek": [first.strftime("%A")],
                        "startDate": first.date().isoformat(),
                        "count": 30,
                    },
                },
            )

    def seed(self) -> None:
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda s: self.create_events(s, self.options.events, series=True), self.idle
                )
            )

    # --- polling --------------------------------------------------------------------------------

    def requests(self, mailboxes: list[str] | None = None) -> Counter[str]:
        """Exchange requests counted at the simulator since the last reset, by operation."""
        wanted = None if mailboxes is None else {address(s) for s in mailboxes}
        counted: Counter[str] = Counter()
        for operation, per_mailbox in self.sim.control("GET", "counters").items():
            for mailbox, n in per_mailbox.items():
                if wanted is None or mailbox in wanted:
                    counted[operation] += n
        return counted

    def last_syncs(self) -> dict[str, datetime | None]:
        rows = self.services.repositories.mailboxes.list_by_org(ORG)
        return {staff_id: row.value.last_sync_at for staff_id, row in rows.items()}

    def wait_synced(self, staff: list[str], before: dict[str, datetime | None]) -> None:
        deadline = time.monotonic() + 600
        waiting = set(staff)
        while waiting:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} mailboxes never synced")
            time.sleep(0.05 if len(waiting) < 4 else 0.25)
            now = self.last_syncs()
            waiting = {s for s in waiting if now.get(s) is None or now[s] == before.get(s)}

    def cpu(self) -> dict[str, float]:
        # The worker started the simulator and Azurite: its figure is its own process's.
        return {
            name: cpu_seconds(pid, descendants=name != "worker")
            for name, pid in self.processes.items()
        }

    def poll_all(self, *, full: bool = False) -> PollRound:
        """One fan-out round over every mailbox (the clock moved past the poll interval), until
        every idle mailbox has synced."""

        if not full:
            self.clock_offset += timedelta(minutes=2)
        fan_out = self.services.poll_fanout
        before = self.last_syncs()
        self.sim.control("DELETE", "counters")
        cpu = self.cpu()
        began = time.perf_counter()
        fan_out.run()
        fanned_out = time.perf_counter() - began
        # Watch the simulator's cheap counters first (every sync reads once), then the table:
        # listing hundreds of rows four times a second would load the machine being measured.
        while self.requests(self.idle)["ews:SyncFolderItems"] < len(self.idle):
            time.sleep(0.25)
        self.wait_synced(self.idle, before)
        seconds = time.perf_counter() - began
        used = {name: after - cpu[name] for name, after in self.cpu().items()}
        return PollRound(seconds, self.requests(self.idle), fanned_out, used, rss_mib())

    def bodies_round(self) -> BodiesRound:
        """One poll round with the ``mailbox-sync`` messages handed to the registered function
        as the host hands them to the Python worker (up to 24 at once): receiving the messages
        and deleting them after, the host's own work (in Azure outside the Python process),
        happen outside the measured time. The fan-out's CPU is measured apart."""
        from azure.storage.queue import QueueClient

        from devhost.queue_triggers import connection_string_for
        from functions.mailbox_sync import SYNC_FUNCTION

        poller = next(p for p in self.runner.pollers if p.function.name == SYNC_FUNCTION)
        connection = connection_string_for(poller.function.trigger.get("connection"), os.environ)
        client = QueueClient.from_connection_string(connection, poller.queue_name)
        self.clock_offset += timedelta(minutes=2)
        fan_out = self.services.poll_fanout
        worker = os.getpid()
        poller.pause()
        try:
            before = cpu_seconds(worker, descendants=False)
            queued = fan_out.run().queued
            fan_out_cpu = cpu_seconds(worker, descendants=False) - before
            messages: list[Any] = []
            while len(messages) < queued:
                page = list(
                    client.receive_messages(
                        max_messages=32, messages_per_page=32, visibility_timeout=600
                    )
                )
                messages += page
                if not page:
                    time.sleep(0.1)
            before = cpu_seconds(worker, descendants=False)
            began = time.perf_counter()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                for _ in pool.map(poller.invoke, messages):
                    pass
            seconds = time.perf_counter() - began
            bodies_cpu = cpu_seconds(worker, descendants=False) - before
            for message in messages:
                client.delete_message(message)
        finally:
            poller.resume()
        return BodiesRound(len(messages), seconds, bodies_cpu, fan_out_cpu)

    def calendar_view_all(self) -> PollRound:
        """The baseline: one CalendarView of the horizon per mailbox, CONCURRENCY at a time."""
        if not hasattr(self, "_baseline_gateway"):
            self._baseline_gateway = connection_gateway(self.services)
        gateway = self._baseline_gateway

        async def poll_all() -> None:
            gate = asyncio.Semaphore(CONCURRENCY)
            now = datetime.now(UTC)

            async def poll(staff_id: str) -> None:
                async with gate:
                    await gateway.list_events(
                        address(staff_id), now - timedelta(days=1), now + timedelta(HORIZON_DAYS)
                    )

            await asyncio.gather(*(poll(s) for s in self.idle))

        self.loop.run(poll_all())  # warm-up: sessions and accounts of every mailbox
        self.sim.control("DELETE", "counters")
        cpu = self.cpu()
        began = time.perf_counter()
        self.loop.run(poll_all())
        seconds = time.perf_counter() - began
        used = {name: after - cpu[name] for name, after in self.cpu().items()}
        return PollRound(seconds, self.requests(self.idle), cpu=used)

    def sync_one(self, staff_id: str) -> float:
        """Sync one mailbox as the fan-out would (one message) and wait; seconds taken."""
        from shared.queues import MailboxSyncRequested

        before = self.last_syncs()
        began = time.perf_counter()
        self.services.queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll"))
        self.wait_synced([staff_id], before)
        return time.perf_counter() - began

    def changes(self, n: int) -> tuple[int, Counter[str], Counter[str]]:
        """Requests for a mailbox with n new events since its last sync, and the baseline's."""
        staff_id = changes_staff(n)
        self.sync_one(staff_id)  # the first (full) read of an empty calendar
        self.create_events(staff_id, n)
        self.sim.control("DELETE", "counters")
        self.sync_one(staff_id)
        synced = self.requests([staff_id])
        if not hasattr(self, "_baseline_gateway"):
            self._baseline_gateway = connection_gateway(self.services)
        self.sim.control("DELETE", "counters")
        now = datetime.now(UTC)
        self.loop.run(
            self._baseline_gateway.list_events(
                address(staff_id), now - timedelta(days=1), now + timedelta(HORIZON_DAYS)
            )
        )
        return n, synced, self.requests([staff_id])

    # --- latency --------------------------------------------------------------------------------

    def received(self) -> list[dict[str, Any]]:
        return list(self.sim.booking("GET", "/received"))

    def wait_webhook(self, match: Callable[[dict[str, Any]], bool], since: int) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = [hook for hook in self.received()[since:] if match(hook["body"] or {})]
            if found:
                hook = found[0]
                assert hook["verified"], hook["reason"]
                return hook
            time.sleep(0.02)
        raise TimeoutError("no webhook")

    def put_appointment(self, appointment_id: str, start: datetime) -> None:
        from shared.booking.signature import sign_request
        from shared.http.contract import SIGNATURE_HEADER

        snapshot = {
            "version": 1,
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "timeZone": "America/Toronto",
            "title": f"Mortgage review {appointment_id}",
            "location": "Branch 1",
            "organizerStaffId": LATENCY_STAFF,
            "staff": [{"staffId": LATENCY_STAFF, "role": "organizer"}],
            "clients": [{"name": "Client Example", "email": "client@example.com"}],
        }
        body = json.dumps(snapshot).encode()
        target = f"/api/orgs/{ORG}/appointments/{appointment_id}"
        url = self.runner.base_url.removesuffix("/api") + target
        request = urllib.request.Request(  # noqa: S310 - the local runner
            url,
            data=body,
            method="PUT",
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign_request(
                    SIGNING_SECRET, "PUT", target, body, int(self.clock())
                ),
            },
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert response.status == 202

    def latency(self) -> dict[str, list[float]]:
        rounds = self.options.latency_rounds
        repos = self.services.repositories
        day = datetime.now(UTC).replace(hour=14, minute=0, second=0, microsecond=0)
        ids = [f"lat-{k}" for k in range(rounds)]
        for k, appointment_id in enumerate(ids):
            self.put_appointment(appointment_id, day + timedelta(days=3 + k))
        deadline = time.monotonic() + 120
        while not all(
            (m := repos.event_map.get(ORG, a)) is not None and m.value.item_id for a in ids
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("appointments never written")
            time.sleep(0.1)
        self.sync_one(LATENCY_STAFF)  # calbridge's own writes are read once (and not reported)
        items = {
            item["subject"]: item
            for item in self.sim.control("GET", f"mailboxes/{address(LATENCY_STAFF)}/items")
        }
        figures: dict[str, list[float]] = {"move": [], "busy": [], "baseline": []}
        gateway = connection_gateway(self.services)
        for k, appointment_id in enumerate(ids):
            item = items[f"Mortgage review {appointment_id}"]
            start = datetime.fromisoformat(item["start"]) + timedelta(hours=1)
            since = len(self.received())
            changed = time.time()
            self.sim.control(
                "POST",
                f"people/{address(LATENCY_STAFF)}/move",
                {
                    "itemId": item["id"],
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=30)).isoformat(),
                },
            )
            self.sync_one_async(LATENCY_STAFF)
            hook = self.wait_webhook(rescheduled(appointment_id), since)
            figures["move"].append(hook["receivedAt"] - changed)

            since = len(self.received())
            changed = time.time()
            when = day + timedelta(days=40 + k)
            self.sim.control(
                "POST",
                f"people/{address(LATENCY_STAFF)}/createEvent",
                {
                    "subject": f"Own event {k}",
                    "start": when.isoformat(),
                    "end": (when + timedelta(hours=1)).isoformat(),
                },
            )
            self.sync_one_async(LATENCY_STAFF)
            self.wait_webhook(
                lambda body: (
                    body.get("type") == "busy_time.changed"
                    and body.get("data", {}).get("staffId") == LATENCY_STAFF
                ),
                since,
            )
            figures["busy"].append(time.time() - changed)

            now = datetime.now(UTC)
            began = time.perf_counter()
            self.loop.run(
                gateway.list_events(
                    address(LATENCY_STAFF), now - timedelta(days=1), now + timedelta(HORIZON_DAYS)
                )
            )
            figures["baseline"].append(time.perf_counter() - began)
        return figures

    def sync_one_async(self, staff_id: str) -> None:
        from shared.queues import MailboxSyncRequested

        self.services.queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll"))

    # --- report ---------------------------------------------------------------------------------

    def report(
        self,
        rounds: list[PollRound],
        bodies: list[BodiesRound],
        baseline: list[PollRound],
        changes: list[tuple[int, Counter[str], Counter[str]]],
        latency: dict[str, list[float]],
    ) -> None:
        mailboxes = len(self.idle)
        print()
        print(
            f"idle polls: {mailboxes} mailboxes, {self.options.events} events and a weekly series "
            f"each, {len(rounds)} rounds, up to {CONCURRENCY} syncs at once"
        )
        header = f"{'poller':<44} {'requests/mailbox':>17} {'ms/mailbox':>11} {'mailboxes/min':>14}"
        print(header)
        print("-" * len(header))
        for name, polls in (
            ("calbridge (SyncFolderItems since the cursor)", rounds),
            ("baseline (CalendarView of the horizon)", baseline),
        ):
            seconds = statistics.median(p.seconds for p in polls)
            requests = statistics.median(sum(p.requests.values()) for p in polls) / mailboxes
            print(
                f"{name:<44} {requests:17.2f} {1000 * seconds / mailboxes:11.2f} "
                f"{60 * mailboxes / seconds:14.0f}"
            )
        print("CPU per mailbox polled, ms (medians of the rounds):")
        for name, polls in (("calbridge", rounds), ("baseline", baseline)):
            per_process = {
                process: 1000 * statistics.median(p.cpu[process] for p in polls) / mailboxes
                for process in self.processes
            }
            print(f"  {name:<10}", ", ".join(f"{k} {v:.1f}" for k, v in per_process.items()))
            if name == "calbridge":
                worker = per_process["worker"]
                print(
                    f"  {'':<10} one worker process on one core: "
                    f"{60_000 / worker:.0f} idle mailboxes/min (its own CPU only: storage and "
                    "Exchange elsewhere, as in Azure; the local runner's queue polling included)"
                )
                body = 1000 * statistics.median(b.cpu / b.messages for b in bodies)
                fan_out = 1000 * statistics.median(b.fan_out_cpu / b.messages for b in bodies)
                wall = statistics.median(b.messages / b.seconds for b in bodies)
                print(
                    f"  {'':<10} as the host runs it ({len(bodies)} more rounds, the host's "
                    f"receive and delete not in the worker): sync function {body:.1f}, "
                    f"fan-out {fan_out:.1f}: {60_000 / (body + fan_out):.0f} idle mailboxes/min "
                    f"on one core ({60 * wall:.0f}/min of wall time here)"
                )
        print(
            "  of each calbridge round, the fan-out (claim and queue every mailbox): "
            f"{statistics.median(p.fan_out_seconds for p in rounds):.2f} s"
        )
        print(
            "  by operation:",
            ", ".join(f"{op} {n}" for op, n in sorted(rounds[-1].requests.items())),
        )
        memory = [p.rss_mib for p in rounds]
        print(
            "  worker RSS after each round, MiB: "
            + ", ".join(f"{m:.0f}" for m in memory)
            + f" (last minus second: {memory[-1] - memory[min(1, len(memory) - 1)]:+.1f})"
        )
        print()
        print("a mailbox with n changes since its last poll: EWS requests in one sync")
        header = f"{'n':>6} {'goal ≤':>6} {'calbridge':>10}  {'by operation':<40} {'baseline':>9}"
        print(header)
        print("-" * len(header))
        for n, synced, base in changes:
            # The quality bar: ceil(n / 512) SyncFolderItems and one GetItem, no per-item GetItem.
            goal = 1 + math.ceil(n / 512)
            detail = ", ".join(f"{op} {c}" for op, c in sorted(synced.items()))
            print(
                f"{n:6d} {goal:6d} {sum(synced.values()):10d}  {detail:<40} {sum(base.values()):9d}"
            )
        print()
        print(
            f"Outlook change → signed webhook at the stand-in, {len(latency['move'])} rounds, "
            "seconds (sync started right after the change)"
        )
        header = f"{'change':<52} {'p50':>6} {'p99':>6} {'max':>6}"
        print(header)
        print("-" * len(header))
        for name, key in (
            ("appointment moved in Outlook → appointment.rescheduled", "move"),
            ("own event added → busy_time.changed", "busy"),
            ("baseline: the CalendarView read alone", "baseline"),
        ):
            values = latency[key]
            print(
                f"{name:<52} {percentile(values, 0.5):6.2f} {percentile(values, 0.99):6.2f} "
                f"{max(values):6.2f}"
            )


if __name__ == "__main__":
    sys.exit(main())
