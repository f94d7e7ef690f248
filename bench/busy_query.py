"""The busy-time query: ``GET /api/orgs/{org}/staff/{staffId}/busy`` for 30-day windows.

Quality bar: one staff member's busy time for 30 days answers with p99 ≤ 50 ms on Azurite,
with no Exchange request.

One process as the Functions host runs it: the local runner serves the functions
``function_app.app`` registers (its HTTP server, the queue triggers with host.json's batch
settings; timers off, so no poll runs while queries are counted), Azurite holds the tables and
queues, the Exchange simulator runs in a process of its own (schema validation off).

Set-up, as production stores busy time: an organization with one EWS connection
(impersonation) and ``--staff`` staff members, each with a calendar of their own over the
horizon (``--days``, also the organization's recurrence horizon): a few events each working
day (some private, a few shown as Free), an all-day event every other week, a weekly series
and a daily stand-up series (weekdays) — made in "Outlook" through the simulator's control
API, then read into the BusyBlocks table by the real ``mailbox-sync`` worker (one full read per
mailbox, queued as the poll would).

Measured: ``--queries`` windows of ``--window-days`` days at random offsets inside the horizon,
each for a random staff member and each answered both ways; the two ways take turns in chunks
of 25 windows, so the machine's changing load falls on both alike:

- **calbridge**: the signed ``GET .../busy`` over HTTP to the local runner, answer parsed
  (signing included: the client's whole round trip);
- **baseline**: what a service without the busy table would do: read the staff member's
  calendar for the same window from Exchange (CalendarView through calbridge's EWS adapter,
  warm) and make the blocks with the same engine rule (``shared.engine.busy.busy_block``),
  sorted and serialised as the route does (no HTTP, no signature: a floor for such a service).

Exchange requests are counted at the simulator around each chunk. Every answer is compared with
the baseline's blocks for the same window (by content: times, all-day, private, subject).

CPU per query is taken per process (this one — the script's client, the local runner and the
function —, Azurite, the simulator) over each chunk: on a shared machine it moves less than the
times do. Background work counts too: the runner's queue pollers read Azurite a few times a
second whatever is asked (in Azure the Functions host polls, outside the worker).

Usage: .venv/bin/python bench/busy_query.py [--staff 30] [--days 90] [--per-day 3]
       [--queries 500] [--window-days 30] [--seed 1]
(about 5 minutes with the defaults on the 2-core development machine shared with other test
runs; the set-up is most of it: the mailbox-sync worker's first read of each calendar.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

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
from bench.harness import SimProcess, cpu_seconds, percentile, start_sim_process
from devhost.azurite import start_azurite

TIME_ZONE = "Europe/Berlin"
CHUNK = 25  # queries per turn
OURS = "this process"  # the script, the local runner and the functions it serves


def instant(value: datetime) -> str:
    """RFC 3339 in UTC with ``Z`` (no ``+`` to escape in a query string)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    staff_id: str
    start: datetime
    end: datetime


@dataclass
class Figures:
    """One way of answering: its times (ms), its answers' sizes, its Exchange requests."""

    name: str
    ms: list[float] = field(default_factory=list)
    blocks: list[int] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds by process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--staff", type=int, default=30)
    parser.add_argument("--days", type=int, default=90, help="horizon of the calendars")
    parser.add_argument("--per-day", type=int, default=3, help="own events per working day")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--window-days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    options = parser.parse_args(argv)
    if options.days < options.window_days + 2:
        parser.error("--days must exceed --window-days by at least 2")

    staff = [f"s{index:03d}" for index in range(options.staff)]
    sim = start_sim_process(sim_config(staff, TIME_ZONE))
    azurite = start_azurite()
    os.environ.update(app_environment(azurite.connection_string, "benchbusy"))
    try:
        Bench(sim, staff, options, azurite.process.pid).run()
    finally:
        azurite.stop()
        sim.stop()
    return 0


class Bench:
    def __init__(
        self, sim: SimProcess, staff: list[str], options: argparse.Namespace, azurite_pid: int
    ) -> None:
        import function_app
        from devhost.runner import FunctionsRunner
        from shared import bootstrap

        self.sim = sim
        self.processes = {
            OURS: os.getpid(),
            "Azurite": azurite_pid,
            "simulator": sim.process.pid,
        }
        self.staff = staff
        self.options = options
        self.random = random.Random(options.seed)
        self.services = bootstrap.services()
        self.runner = FunctionsRunner(function_app.app, environ=os.environ)
        # No timer: a poll during the queries would be counted as their Exchange requests.
        self.runner.timers = []
        self.loop = asyncio.Runner()
        zone = ZoneInfo(TIME_ZONE)
        self.today = datetime.now(zone).date()
        self.zone = zone

    # --- set-up ---------------------------------------------------------------------------------

    def run(self) -> None:
        with self.runner:
            began = time.perf_counter()
            administer(
                self.services,
                self.sim,
                self.staff,
                TIME_ZONE,
                {"recurrenceHorizonDays": self.options.days},
            )
            with ThreadPoolExecutor(8) as pool:
                made = sum(pool.map(self.make_calendar, self.staff))
            print(
                f"{len(self.staff)} calendars, {made} events and series made in "
                f"{time.perf_counter() - began:.1f} s"
            )
            began = time.perf_counter()
            self.sync_all()
            stored = self.stored_blocks()
            print(
                f"read by the mailbox-sync worker in {time.perf_counter() - began:.1f} s: "
                f"{sum(stored.values())} busy blocks in BusyBlocks "
                f"({min(stored.values())} to {max(stored.values())} per staff member)"
            )
            calbridge, baseline, differing = self.measure()
        self.loop.close()
        self.report(stored, calbridge, baseline, differing)

    def create(self, staff_id: str, **event: Any) -> None:
        self.sim.control("POST", f"people/{address(staff_id)}/createEvent", event)

    def make_calendar(self, staff_id: str) -> int:
        """A staff member's own calendar over the horizon; the number of events and series."""
        rng = random.Random(f"{self.options.seed}-{staff_id}")
        made = 0
        first = self.today + timedelta(days=1)
        # Every event ends a day before the horizon does: the series the worker expanded and
        # the windows asked about then cover the same occurrences.
        last = self.today + timedelta(days=self.options.days - 2)
        day = first
        while day <= last:
            if day.weekday() < 5:
                hours = rng.sample(range(8, 18), self.options.per_day)
                for hour in hours:
                    start = datetime(day.year, day.month, day.day, hour, 30 * rng.randint(0, 1))
                    private = rng.random() < 0.15
                    self.create(
                        staff_id,
                        subject=f"Own event {made}",
                        start=start.isoformat(),
                        end=(start + timedelta(minutes=rng.choice((30, 45, 60)))).isoformat(),
                        private=private,
                        freeBusy="Free" if rng.random() < 0.05 else "Busy",
                        location="Room 4" if not private else "",
                        body="Notes that must stay in Exchange",
                    )
                    made += 1
            if day.weekday() == 2 and (day - first).days // 7 % 2 == 0:
                self.create(
                    staff_id,
                    subject="Training day",
                    start=day.isoformat(),
                    end=(day + timedelta(days=1)).isoformat(),
                    isAllDay=True,
                )
                made += 1
            day += timedelta(days=1)
        monday = first + timedelta(days=(7 - first.weekday()) % 7)
        series: list[tuple[str, datetime, int, list[str]]] = [
            (
                "Weekly team meeting",
                datetime.combine(monday, datetime.min.time()).replace(hour=7),
                60,
                ["Monday"],
            ),
            (
                "Stand-up",
                datetime.combine(monday, datetime.min.time()).replace(hour=7, minute=45),
                15,
                ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"],
            ),
        ]
        for subject, start, minutes, days in series:
            self.create(
                staff_id,
                subject=subject,
                start=start.isoformat(),
                end=(start + timedelta(minutes=minutes)).isoformat(),
                recurrence={
                    "pattern": "weekly",
                    "daysOfWeek": days,
                    "firstDayOfWeek": "Monday",
                    "startDate": start.date().isoformat(),
                    "endDate": last.isoformat(),
                },
            )
            made += 1
        return made

    def sync_all(self) -> None:
        """One sync of every mailbox through the queue (its first: a full read), until each has
        a last sync."""
        from shared.queues import MailboxSyncRequested

        for staff_id in self.staff:
            self.services.queue.send(
                MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll")
            )
        deadline = time.monotonic() + 900
        mailboxes = self.services.repositories.mailboxes
        while True:
            rows = mailboxes.list_by_org(ORG)
            waiting = [s for s in self.staff if rows[s].value.last_sync_at is None]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(waiting)} mailboxes never synced")
            time.sleep(0.5)

    def stored_blocks(self) -> dict[str, int]:
        busy = self.services.repositories.busy_blocks
        return {s: len(busy.blocks_of(ORG, s)) for s in self.staff}

    # --- the two paths --------------------------------------------------------------------------

    def windows(self) -> list[Window]:
        """Random staff members, 30-day windows starting at a random minute of the horizon."""
        midnight = datetime.combine(self.today + timedelta(days=1), datetime.min.time(), self.zone)
        span = (self.options.days - self.options.window_days - 2) * 24 * 60
        found = []
        for _ in range(self.options.queries):
            start = midnight + timedelta(minutes=self.random.randrange(span))
            end = start + timedelta(days=self.options.window_days)
            found.append(Window(self.random.choice(self.staff), start, end))
        return found

    def ask(self, window: Window) -> list[dict[str, Any]]:
        """The signed GET through the local runner's HTTP server."""
        from shared.booking.signature import sign_request
        from shared.http.contract import SIGNATURE_HEADER

        query = urllib.parse.urlencode({"start": instant(window.start), "end": instant(window.end)})
        target = f"/api/orgs/{ORG}/staff/{window.staff_id}/busy?{query}"
        url = self.runner.base_url.removesuffix("/api") + target
        signature = sign_request(SIGNING_SECRET, "GET", target, b"", int(time.time()))
        request = urllib.request.Request(  # noqa: S310 - the local runner
            url, method="GET", headers={SIGNATURE_HEADER: signature}
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            assert response.status == 200
            answer: list[dict[str, Any]] = json.loads(response.read())
        return answer

    def read_exchange(self, gateway: Any, window: Window) -> list[dict[str, Any]]:
        """The baseline: the calendar view of the window, the engine's rule, the answer's
        shape."""
        from shared.engine.busy import busy_block

        events = self.loop.run(
            gateway.list_events(address(window.staff_id), window.start, window.end)
        )
        blocks = [
            block
            for event in events
            if (block := busy_block(event, TIME_ZONE)) is not None
            and block.start < window.end
            and block.end > window.start
        ]
        blocks.sort(key=lambda block: (block.start, block.end, block.event_id))
        text = json.dumps([block.model_dump(mode="json", by_alias=True) for block in blocks])
        answer: list[dict[str, Any]] = json.loads(text)
        return answer

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by Azurite and the simulator (read from ``/proc``, which
        costs this process some CPU: read outside this process's own figure)."""
        return {name: cpu_seconds(pid) for name, pid in self.processes.items() if name != OURS}

    def requests(self) -> Counter[str]:
        counted: Counter[str] = Counter()
        for operation, per_mailbox in self.sim.control("GET", "counters").items():
            counted[operation] += sum(per_mailbox.values())
        return counted

    def measure(self) -> tuple[Figures, Figures, int]:
        windows = self.windows()
        gateway = connection_gateway(self.services)
        # Warm both: the route's code paths and storage connections, the adapter's sessions and
        # every mailbox's account.
        for staff_id in self.staff:
            warm = Window(staff_id, windows[0].start, windows[0].end)
            self.ask(warm)
            self.read_exchange(gateway, warm)
        calbridge, baseline = Figures("calbridge"), Figures("baseline")
        answers: dict[int, list[dict[str, Any]]] = {}
        expected: dict[int, list[dict[str, Any]]] = {}
        chunks = [range(i, min(i + CHUNK, len(windows))) for i in range(0, len(windows), CHUNK)]
        for turn, chunk in enumerate(chunks):
            order = [(calbridge, True), (baseline, False)]
            for path, ours in order if turn % 2 == 0 else order[::-1]:
                self.sim.control("DELETE", "counters")
                cpu = self.cpu()
                cpu[OURS] = time.process_time()
                for index in chunk:
                    began = time.perf_counter()
                    if ours:
                        answer = self.ask(windows[index])
                    else:
                        answer = self.read_exchange(gateway, windows[index])
                    path.ms.append((time.perf_counter() - began) * 1000)
                    path.blocks.append(len(answer))
                    (answers if ours else expected)[index] = answer
                used = {OURS: time.process_time() - cpu[OURS]}
                used |= {name: after - cpu[name] for name, after in self.cpu().items()}
                for name, seconds in used.items():
                    path.cpu[name] = path.cpu.get(name, 0.0) + seconds
                path.requests += self.requests()
        differing = sum(
            1 for index in answers if content(answers[index]) != content(expected[index])
        )
        return calbridge, baseline, differing

    # --- report ---------------------------------------------------------------------------------

    def report(
        self, stored: dict[str, int], calbridge: Figures, baseline: Figures, differing: int
    ) -> None:
        options = self.options
        print()
        print(
            f"busy-time query: {len(self.staff)} staff, {options.days}-day horizon, "
            f"{sum(stored.values())} blocks stored; {len(calbridge.ms)} windows of "
            f"{options.window_days} days at random offsets, blocks per answer "
            f"p50 {statistics.median(calbridge.blocks):.0f}, max {max(calbridge.blocks)}"
        )
        header = (
            f"{'path':<48} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} "
            f"{'Exchange requests':>18}"
        )
        print(header)
        print("-" * len(header))
        for label, path in (
            ("calbridge: signed GET .../busy (runner, Azurite)", calbridge),
            ("baseline: CalendarView (EWS adapter) + engine", baseline),
        ):
            print(
                f"{label:<48} {percentile(path.ms, 0.5):7.1f} {percentile(path.ms, 0.95):7.1f} "
                f"{percentile(path.ms, 0.99):7.1f} {max(path.ms):7.1f} "
                f"{sum(path.requests.values()):18d}"
            )
        print("  CPU per query, ms (this process: the script's client, the runner, the function):")
        for label, path in (("calbridge", calbridge), ("baseline", baseline)):
            print(
                f"    {label:<10}",
                ", ".join(
                    f"{name} {1000 * path.cpu[name] / len(path.ms):.1f}" for name in self.processes
                ),
            )
        print(
            f"  Exchange requests by operation: calbridge {dict(calbridge.requests) or '{}'}, "
            f"baseline {dict(baseline.requests)}"
        )
        print(
            f"answers equal to the baseline's by content: {len(calbridge.ms) - differing} of "
            f"{len(calbridge.ms)}"
        )


def content(answer: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the booking platform sees of each block, ids aside (a CalendarView names an
    occurrence by an id of its own)."""
    return sorted(
        (
            datetime.fromisoformat(b["start"]),
            datetime.fromisoformat(b["end"]),
            b["allDay"],
            b["private"],
            b["subject"],
        )
        for b in answer
    )


if __name__ == "__main__":
    sys.exit(main())
