"""Booking snapshot → Exchange write: requests per change, calbridge's own latency, throughput and
memory of one worker process, beside the code before one-request writes (the baseline).

Two runs of the same harness in one invocation, each in its own worker process with its own
simulator and Azurite: "calbridge" is this tree; "baseline" is ``--baseline-ref`` (default
``b367914``, the last commit that looked up the marker before every write), unpacked with
``git archive`` into a temporary folder and imported from there. Both use this tree's simulator
and Azurite, so requests are counted and served the same way. The two processes take turns in
small chunks (five appointments, or one throughput phase), so a shared machine's changing load
falls on both alike.

What each run measures, over EWS (NTLM, impersonation) and Graph (app-only OAuth), with
two-staff appointments:

- **Latency** of create, update (reschedule), hand-over (the organizer leaves: the other staff
  member organizes) and cancel: each pass runs the real path in this process — the intake
  (signature check, Azurite write, enqueue), the dequeue, and the apply worker's service (storage
  reads, engine, adapter → simulator, storage writes). The simulator's serving time
  (``GET /control/timing``) is subtracted: calbridge's own time, excluding Exchange. ``whole`` is
  intake → Exchange write; ``apply`` is the worker's pass alone (message → Exchange write and
  the mapping stored). Requests are counted at the simulator.
- **Where the apply time goes**: each pass's time in the storage facade's calls (reads, the
  pending-create note, the writes) and in the adapter's calls (simulator time subtracted), and
  the rest (engine, models, event loop).
- **Throughput**: appointments applied per second by one worker process with the host's queue
  settings (``host.json`` ``batchSize``, ``newBatchThreshold``): ``--throughput`` appointments
  created, then updated, then cancelled, each phase queued first and then drained (simulator
  included: it shares the 2 cores).
- **Memory**: the process's resident set after each of ``--rounds`` throughput rounds.

Usage: .venv/bin/python bench/apply_latency.py [--appointments 30] [--throughput 200]
       [--rounds 5] [--baseline-ref b367914] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

THIS_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE_REF = "b367914"

ORG = "bench"
SIGNING_SECRET = "bench-signing-secret"
SERVICE = "svc@bench.test"
SERVICE_PASSWORD = "Svc-bench:1"
TENANT = "5b1c0d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"
CLIENT = "6c2d1e3f-4a50-4b6c-9d7e-8f9a0b1c2d3e"
CLIENT_SECRET = "bench~graph~secret"
# Staff per side: latency passes use the first two; throughput spreads its appointments over
# all of them (Graph allows at most 4 concurrent requests per mailbox).
SIDES = {
    "ews": ("onprem", ["ann", "bob", "cal", "cid", "cy", "cat", "col", "cor"]),
    "graph": ("cloud", ["dan", "eve", "gus", "gia", "gil", "gem", "guy", "gwen"]),
}
OPERATIONS = ("create", "update", "handover", "cancel")


# --- the parent: two runs, one table ------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appointments", type=int, default=30)
    parser.add_argument("--throughput", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE_REF)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # code root of a run
    options = parser.parse_args(argv)
    if options.child:
        run_child(Path(options.child))
        return 0

    with tempfile.TemporaryDirectory(prefix="calbridge-baseline-") as folder:
        workers = {"calbridge": Worker(THIS_ROOT)}
        if not options.no_baseline:
            unpack(options.baseline_ref, Path(folder))
            workers[f"baseline {options.baseline_ref}"] = Worker(Path(folder))
        try:
            runs = take_turns(workers, options)
        finally:
            for worker in workers.values():
                worker.close()
    report(runs, options)
    return 0


class Worker:
    """One run's process: it answers one JSON command per line (see ``serve``)."""

    def __init__(self, code_root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(code_root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=THIS_ROOT,
        )

    def ask(self, **command: Any) -> Any:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"a benchmark worker stopped (exit {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask(op="quit")
        self.process.wait(timeout=60)


def take_turns(workers: dict[str, Worker], options: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, dict[str, Any]] = {
        name: {"latency": {}, "phases": {}, "throughput": {}, "rss": []} for name in workers
    }
    for worker in workers.values():
        worker.ask(op="warm_up")
    chunk = 5
    for start in range(0, options.appointments, chunk):
        for side in SIDES:
            for name, worker in workers.items():
                count = min(chunk, options.appointments - start)
                answer = worker.ask(op="latency", side=side, count=count)
                for operation, samples in answer["samples"].items():
                    runs[name]["latency"].setdefault(side, {}).setdefault(operation, []).extend(
                        samples
                    )
                for phase, values in answer["phases"].items():
                    runs[name]["phases"].setdefault(side, {}).setdefault(phase, []).extend(values)
    for name, worker in workers.items():
        runs[name]["storage"] = worker.ask(op="storage_cost", count=200)
    for round_number in range(options.rounds):
        for side in SIDES:
            for operation in ("create", "update", "cancel"):
                for name, worker in workers.items():
                    rate = worker.ask(
                        op="throughput",
                        side=side,
                        operation=operation,
                        count=options.throughput,
                        round=round_number,
                    )
                    if round_number == 0:
                        runs[name]["throughput"].setdefault(side, {})[operation] = rate
        for name, worker in workers.items():
            runs[name]["rss"].append(worker.ask(op="rss"))
    return runs


def unpack(ref: str, folder: Path) -> None:
    """The tree of ``ref`` (git archive), without touching the repository's worktrees."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref],
        cwd=THIS_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def report(runs: dict[str, dict[str, Any]], options: argparse.Namespace) -> None:
    print(
        f"snapshot → Exchange write: {options.appointments} two-staff appointments per side and "
        "run; ms excluding the simulator's serving time"
    )
    print("whole: intake → Exchange write; apply: the worker's pass (message → write, mapping)")
    header = (
        f"{'side':<6} {'run':<18} {'op':<9} {'requests':>8} {'whole p50':>9} {'whole p99':>9} "
        f"{'apply p50':>9} {'apply p99':>9}"
    )
    print(header)
    print("-" * len(header))
    for side in SIDES:
        for name, run in runs.items():
            for operation in OPERATIONS:
                samples = run["latency"][side][operation]
                whole = [s["whole"] for s in samples]
                apply = [s["apply"] for s in samples]
                requests = statistics.median(s["requests"] for s in samples)
                print(
                    f"{side:<6} {name:<18} {operation:<9} {requests:8.0f} "
                    f"{statistics.median(whole):9.1f} {percentile(whole, 0.99):9.1f} "
                    f"{statistics.median(apply):9.1f} {percentile(apply, 0.99):9.1f}"
                )
    print()
    print("the slowest apply pass of each operation: ms, of which garbage collection (generation)")
    for side in SIDES:
        for name, run in runs.items():
            cells = []
            for operation in OPERATIONS:
                slowest = max(run["latency"][side][operation], key=lambda s: s["apply"])
                generation = slowest.get("gc_generation", -1)
                collected = f", gc {slowest.get('gc', 0.0):.1f}" + (
                    f" (gen {generation})" if generation >= 0 else ""
                )
                cells.append(f"{operation} {slowest['apply']:.1f}{collected}")
            print(f"{side:<6} {name:<18} " + "; ".join(cells))
    print()
    print("where the apply pass's time goes: median ms per pass over every operation")
    phase_names = ("store reads", "store writes", "exchange", "rest")
    print(f"{'side':<6} {'run':<18} " + " ".join(f"{p:>12}" for p in phase_names))
    for side in SIDES:
        for name, run in runs.items():
            phases = run["phases"][side]
            cells = [f"{statistics.median(phases[p]):12.1f}" for p in phase_names]
            print(f"{side:<6} {name:<18} " + " ".join(cells))
    print()
    print("one storage call here (ms per call: wall p50 / p99, this process's CPU)")
    for name, run in runs.items():
        cost = run["storage"]
        print(
            f"{name:<18} "
            + "; ".join(
                f"{call} {cost[call + ' p50']:.1f} / {cost[call + ' p99']:.1f}, "
                f"cpu {cost[call + ' cpu']:.1f}"
                for call in ("row read", "raw row read", "queue send")
            )
        )
    print()
    print(
        f"throughput: {options.throughput} appointments per side and phase, one worker process, "
        "host.json batch settings; simulator included"
    )
    print(f"{'side':<6} {'run':<18} {'create/s':>9} {'update/s':>9} {'cancel/s':>9}")
    for side in SIDES:
        for name, run in runs.items():
            rates = run["throughput"][side]
            print(
                f"{side:<6} {name:<18} {rates['create']:9.1f} {rates['update']:9.1f} "
                f"{rates['cancel']:9.1f}"
            )
    print()
    print(f"resident set after each of {options.rounds} throughput rounds (MiB)")
    for name, run in runs.items():
        print(f"{name:<18} " + " ".join(f"{mib:6.1f}" for mib in run["rss"]))


# --- a run: one code root, its own simulator and Azurite ----------------------------------------


def sim_config() -> dict[str, Any]:
    names = [name for _, staff in SIDES.values() for name in staff]
    return {
        "mailboxes": [
            {"address": f"{n}@bench.test", "name": n, "timeZone": "UTC", "password": "pw-" + n}
            for n in names
        ],
        "serviceAccounts": [
            {
                "username": SERVICE,
                "password": SERVICE_PASSWORD,
                "impersonate": [f"{n}@bench.test" for n in SIDES["ews"][1]],
                "delegateFor": [],
            }
        ],
        "oauthClients": [
            {
                "tenantId": TENANT,
                "clientId": CLIENT,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": [f"{n}@bench.test" for n in SIDES["graph"][1]],
            }
        ],
    }


def control(urls: dict[str, str], method: str, path: str) -> Any:
    import urllib.request

    request = urllib.request.Request(f"{urls['control']}/{path}", method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def snapshot(
    version: int, staff: list[str], day: int, status: str = "booked", organizer: int = 0
) -> dict[str, Any]:
    start = datetime(2027, 6, 1, 9, tzinfo=UTC) + timedelta(days=day, hours=version)
    lead = staff[organizer]
    return {
        "version": version,
        "status": status,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "timeZone": "UTC",
        "title": f"Benchmark {day}",
        "location": "Branch 1",
        "organizerStaffId": lead,
        "staff": [{"staffId": lead, "role": "organizer"}]
        + [{"staffId": s, "role": "secondary"} for s in staff if s != lead],
        "clients": [{"name": "Client Example", "email": "client@example.com"}],
    }


STEPS: dict[str, Callable[[list[str], int], dict[str, Any]]] = {
    "create": lambda staff, day: snapshot(1, staff, day),
    "update": lambda staff, day: snapshot(2, staff, day),
    "handover": lambda staff, day: snapshot(3, staff, day, organizer=1),
    "cancel": lambda staff, day: snapshot(4, staff, day, status="cancelled", organizer=1),
}


def covered(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of the intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_child(code_root: Path) -> None:
    # Answers go to the real stdout; anything else printed goes to stderr.
    answers, sys.stdout = sys.stdout, sys.stderr
    # This tree's local stand-ins (Azurite's launcher, the simulator); calbridge from code_root.
    sys.path.insert(0, str(THIS_ROOT))
    from devhost.azurite import start_azurite

    sys.path.insert(0, str(code_root))
    work = Path(tempfile.mkdtemp(prefix="calbridge-bench-"))
    (work / "sim.json").write_text(json.dumps(sim_config()))
    sim = subprocess.Popen(
        [sys.executable, "-m", "sim", "--config", str(work / "sim.json"), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=THIS_ROOT,
        env={**os.environ, "PYTHONPATH": str(THIS_ROOT)},
    )
    assert sim.stdout is not None
    urls: dict[str, str] = json.loads(sim.stdout.readline())
    azurite = start_azurite()
    try:
        Harness(code_root, urls, azurite.connection_string).serve(answers)
    finally:
        azurite.stop()
        sim.terminate()
        sim.wait(timeout=10)


def _nothing() -> None:
    pass


class Harness:
    """The measurements of one run (see the module docstring)."""

    def __init__(
        self,
        code_root: Path,
        urls: dict[str, str],
        connection_string: str,
    ) -> None:
        self.urls = urls
        self.connection_string = connection_string
        self.host = json.loads((code_root / "host.json").read_text())["extensions"]["queues"]
        from shared.config import (
            connection_secret_name,
            environment_variable_for,
            org_signing_secret_reference,
        )

        os.environ.update(
            {
                "AzureWebJobsStorage": connection_string,
                "CALBRIDGE_TABLE_PREFIX": "bench",
                "CALBRIDGE_QUEUE_PREFIX": "bench-",
                "CALBRIDGE_GRAPH_URL": urls["graph"],
                "CALBRIDGE_GRAPH_AUTHORITY": urls["token"],
                "CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE": "true",
                "CALBRIDGE_GRAPH_CA_BUNDLE": urls["caBundle"],
                environment_variable_for(org_signing_secret_reference(ORG)): SIGNING_SECRET,
                environment_variable_for(
                    connection_secret_name(ORG, "bench-ews-password")
                ): SERVICE_PASSWORD,
                environment_variable_for(
                    connection_secret_name(ORG, "bench-graph-secret")
                ): CLIENT_SECRET,
                "CALBRIDGE_ADMIN_KEY": "bench-admin",
            }
        )
        import asyncio

        from azure.storage.queue import QueueClient, TextBase64DecodePolicy

        from shared import bootstrap
        from shared.queues import APPOINTMENT_CHANGES

        self.services = bootstrap.services()
        self.queue = QueueClient.from_connection_string(
            connection_string,
            self.services.settings.queue_prefix + APPOINTMENT_CHANGES,
            message_decode_policy=TextBase64DecodePolicy(),
        )
        self.runner = asyncio.Runner()
        self.phases: dict[str, list[float]] = {}
        # (phase, started, ended) of the wrapped calls during the current pass
        self._pass_phases: list[tuple[str, float, float]] | None = None
        self.day = 0
        # Garbage collections, (generation, started, ended): a pass's slowest cause may be one.
        self._collections: list[tuple[int, float, float]] = []
        self._collecting: float | None = None
        import gc

        gc.callbacks.append(self._on_collection)
        # What the function's invocation scope does at its end (the passes call the service
        # directly); a tree without it (the baseline) has nothing to call.
        try:
            from shared.observability.heap import invocation_ended
        except ImportError:
            invocation_ended = _nothing
        self.invocation_ended = invocation_ended

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._collecting = time.perf_counter()
        elif self._collecting is not None:
            self._collections.append((info["generation"], self._collecting, time.perf_counter()))
            self._collecting = None

    # --- set-up -------------------------------------------------------------------------------

    def connect(self) -> None:
        admin = self.services.admin
        connections = {
            "onprem": {
                "kind": "ews",
                "ewsUrl": self.urls["ews"],
                "authType": "ntlm",
                "username": SERVICE,
                "secretReference": "bench-ews-password",
            },
            "cloud": {
                "kind": "graph",
                "authType": "oauth",
                "tenantId": TENANT,
                "clientId": CLIENT,
                "secretReference": "bench-graph-secret",
            },
        }
        for connection_id, body in connections.items():
            answer = admin.put_connection(
                org=ORG,
                connection_id=connection_id,
                body=json.dumps(body).encode(),
                admin_key="bench-admin",
            )
            assert answer.status in (200, 201), answer.body
        for connection_id, staff in SIDES.values():
            for name in staff:
                body = {
                    "connectionId": connection_id,
                    "mailbox": f"{name}@bench.test",
                    "timeZone": "UTC",
                }
                answer = admin.put_staff(
                    org=ORG,
                    staff_id=name,
                    body=json.dumps(body).encode(),
                    admin_key="bench-admin",
                )
                assert answer.status in (200, 201), answer.body

    def time_phases(self) -> None:
        """Wrap the apply service's storage facade and the adapters' port calls, by name, so
        each pass's time splits into storage, Exchange client work and the rest."""
        import functools

        from shared.apply import store as store_module
        from shared.exchange.ews.gateway import EwsCalendarGateway
        from shared.exchange.graph.gateway import GraphCalendarGateway

        def wrap(cls: type, name: str, phase: str) -> None:
            original = getattr(cls, name, None)
            if original is None:
                return

            @functools.wraps(original)
            async def timed(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    if self._pass_phases is not None:
                        self._pass_phases.append((phase, started, time.perf_counter()))

            setattr(cls, name, timed)

        facade = store_module.ApplyStore
        for name in ("state", "directory", "connections"):
            wrap(facade, name, "store reads")
        wrap(facade, "put_mapping", "store writes")
        for name in ("remember_uid", "note_organizer_item", "clear_problem", "record_problem"):
            wrap(facade, name, "store writes")
        for gateway in (EwsCalendarGateway, GraphCalendarGateway):
            for name in ("find_by_marker", "create_event", "update_event", "cancel_event"):
                wrap(gateway, name, "exchange")

    # --- one pass -----------------------------------------------------------------------------

    def one_pass(self, appointment_id: str, body: dict[str, Any]) -> dict[str, float]:
        from shared.booking.signature import sign_request
        from shared.http.requests import SignedRequest
        from shared.queues import AppointmentChanged, parse_message

        control(self.urls, "DELETE", "counters")
        raw = json.dumps(body).encode()
        target = f"/api/orgs/{ORG}/appointments/{appointment_id}"
        started = time.perf_counter()
        answer = self.services.intake.put_appointment(
            org=ORG,
            appointment_id=appointment_id,
            request=SignedRequest("PUT", target, raw),
            signature=sign_request(SIGNING_SECRET, "PUT", target, raw, int(time.time())),
        )
        assert answer.status == 202, answer.body
        [message] = self.queue.receive_messages(max_messages=1, visibility_timeout=30)
        change = parse_message(AppointmentChanged, message.content)
        received = time.perf_counter()
        self._pass_phases = []
        self._collections = []
        report = self.runner.run(self.services.appointment_applier.apply(change))
        applied = time.perf_counter()
        self.invocation_ended()
        collected = [(g, a, b) for g, a, b in self._collections if a >= received]
        intervals, self._pass_phases = self._pass_phases or [], None
        self.queue.delete_message(message)
        assert report.disposition == "done", report
        sim_ms = control(self.urls, "GET", "timing")["seconds"] * 1000
        counters = control(self.urls, "GET", "counters")
        apply_ms = (applied - received) * 1000 - sim_ms
        # Wall time per phase (calls of one phase that overlap count once); what no wrapped
        # call covers is the engine, the models and the event loop.
        phases = {
            phase: covered([(a, b) for p, a, b in intervals if p == phase]) * 1000
            for phase in ("store reads", "store writes", "exchange")
        }
        phases["exchange"] -= sim_ms
        phases["rest"] = (applied - received) * 1000 - covered(
            [(a, b) for _, a, b in intervals]
        ) * 1000
        for phase, spent in phases.items():
            self.phases.setdefault(phase, []).append(spent)
        return {
            "whole": (applied - started) * 1000 - sim_ms,
            "apply": apply_ms,
            # Garbage collection inside the apply pass: ms, and the oldest generation collected.
            "gc": covered([(a, b) for _, a, b in collected]) * 1000,
            "gc_generation": max((g for g, _, _ in collected), default=-1),
            "requests": sum(n for per_mailbox in counters.values() for n in per_mailbox.values()),
        }

    def latency(self, side: str, appointments: int) -> dict[str, list[dict[str, float]]]:
        _, staff = SIDES[side]
        results: dict[str, list[dict[str, float]]] = {}
        for _ in range(appointments):
            self.day += 1
            for operation, make in STEPS.items():
                sample = self.one_pass(f"{side}-lat-{self.day}", make(staff[:2], self.day))
                results.setdefault(operation, []).append(sample)
        return results

    # --- throughput ---------------------------------------------------------------------------

    def submit(self, appointment_id: str, body: dict[str, Any]) -> None:
        from shared.booking.signature import sign_request
        from shared.http.requests import SignedRequest

        raw = json.dumps(body).encode()
        target = f"/api/orgs/{ORG}/appointments/{appointment_id}"
        answer = self.services.intake.put_appointment(
            org=ORG,
            appointment_id=appointment_id,
            request=SignedRequest("PUT", target, raw),
            signature=sign_request(SIGNING_SECRET, "PUT", target, raw, int(time.time())),
        )
        assert answer.status == 202, answer.body

    def receive(self, count: int) -> list[Any]:
        return list(self.queue.receive_messages(max_messages=count, visibility_timeout=300))

    async def drain(self, expected: int) -> None:
        """Apply queued messages as the host does: up to ``batchSize`` at once, the next batch
        fetched when no more than ``newBatchThreshold`` are still running."""
        import asyncio

        from shared.queues import AppointmentChanged, parse_message

        batch, threshold = int(self.host["batchSize"]), int(self.host["newBatchThreshold"])
        applier = self.services.appointment_applier
        running: set[asyncio.Task[None]] = set()
        done = 0

        async def one(message: Any) -> None:
            change = parse_message(AppointmentChanged, message.content)
            report = await applier.apply(change, dequeue_count=message.dequeue_count)
            assert report.disposition == "done", report
            await asyncio.to_thread(self.queue.delete_message, message)

        while done < expected:
            if len(running) <= threshold:
                messages = await asyncio.to_thread(self.receive, batch - len(running))
                running |= {asyncio.ensure_future(one(m)) for m in messages}
            if not running:
                await asyncio.sleep(0.01)
                continue
            finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                task.result()
            done += len(finished)

    def throughput(self, side: str, operation: str, count: int, round_number: int) -> float:
        """Queue ``count`` appointments' ``operation`` (not timed), then drain them: per second."""
        _, staff = SIDES[side]
        make = STEPS[operation]
        for n in range(count):
            pair = [staff[n % len(staff)], staff[(n + 1) % len(staff)]]
            self.submit(f"{side}-tp{round_number}-{n}", make(pair, 1000 + n))
        started = time.perf_counter()
        self.runner.run(self.drain(count))
        return count / (time.perf_counter() - started)

    def storage_cost(self, count: int) -> dict[str, float]:
        """What one storage call costs here: a row read through the repositories (as the worker
        reads) and a queue send (as the intake sends, to a scratch queue): wall time and this
        process's CPU time per call."""
        from azure.storage.queue import QueueClient

        scratch = QueueClient.from_connection_string(self.connection_string, "bench-scratch")
        scratch.create_queue()
        costs: dict[str, float] = {}
        calls: dict[str, Callable[[], object]] = {
            "row read": lambda: self.services.repositories.event_map.get(ORG, "nothing-here"),
            "raw row read": self.raw_row_read(),
            "queue send": lambda: scratch.send_message("{}"),
        }
        for name, call in calls.items():
            call()
            walls: list[float] = []
            cpu = time.process_time()
            for _ in range(count):
                started = time.perf_counter()
                call()
                walls.append((time.perf_counter() - started) * 1000)
            costs[f"{name} cpu"] = (time.process_time() - cpu) / count * 1000
            costs[f"{name} p50"] = statistics.median(walls)
            costs[f"{name} p99"] = percentile(walls, 0.99)
        return costs

    def raw_row_read(self) -> Callable[[], object]:
        """The floor under a row read: the same point read of an EventMap row as one GET on a
        kept-alive ``http.client`` connection, signed with Azurite's account key (SharedKeyLite),
        with no SDK pipeline."""
        import base64
        import hashlib
        import hmac
        import http.client
        from email.utils import formatdate
        from urllib.parse import urlsplit

        parts = dict(
            part.split("=", 1) for part in self.connection_string.split(";") if "=" in part
        )
        endpoint = urlsplit(parts["TableEndpoint"])
        account, key = parts["AccountName"], base64.b64decode(parts["AccountKey"])
        table = f"benchEventMap(PartitionKey='{ORG}',RowKey='nothing-here')"
        connection = http.client.HTTPConnection(endpoint.netloc)

        def read() -> object:
            date = formatdate(usegmt=True)
            signed = f"{date}\n/{account}{endpoint.path.rstrip('/')}/{table}"
            signature = hmac.new(key, signed.encode(), hashlib.sha256).digest()
            connection.request(
                "GET",
                f"{endpoint.path.rstrip('/')}/{table}",
                headers={
                    "x-ms-date": date,
                    "x-ms-version": "2019-02-02",
                    "Accept": "application/json;odata=nometadata",
                    "Authorization": (
                        f"SharedKeyLite {account}:{base64.b64encode(signature).decode()}"
                    ),
                },
            )
            response = connection.getresponse()
            response.read()
            assert response.status in (200, 404), response.status
            return response.status

        return read

    def serve(self, answers: Any) -> None:
        """Answer the parent's commands, one JSON line each, until ``quit``."""
        self.connect()
        self.time_phases()
        for line in sys.stdin:
            command = json.loads(line)
            answer: Any = None
            if command["op"] == "warm_up":
                # Each SDK's first use (imports, sign-in, model loading) is cold start, measured
                # by bench/graph_cold_start.py and bench/cold_import.py.
                for side in SIDES:
                    self.latency(side, 2)
                self.phases.clear()
            elif command["op"] == "latency":
                samples = self.latency(command["side"], command["count"])
                answer = {"samples": samples, "phases": self.phases}
                self.phases = {}
            elif command["op"] == "throughput":
                answer = self.throughput(
                    command["side"], command["operation"], command["count"], command["round"]
                )
            elif command["op"] == "storage_cost":
                answer = self.storage_cost(command["count"])
            elif command["op"] == "rss":
                answer = rss_mib()
            elif command["op"] == "quit":
                print(json.dumps(None), file=answers, flush=True)
                break
            print(json.dumps(answer), file=answers, flush=True)
        self.runner.close()


if __name__ == "__main__":
    sys.exit(main())
