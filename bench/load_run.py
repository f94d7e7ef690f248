"""The load run: many mailboxes over EWS and Graph, many appointments, Exchange faults on — and
the run must end consistent.

Everything runs as ``make run`` runs it, in one worker process: the local runner drives the
functions ``function_app.app`` registers (HTTP intake, queue triggers with host.json's batch
settings, the timers: the EWS poll every minute, the Graph subscription rounds), Azurite holds
the tables and queues, and the Exchange simulator runs in a process of its own (schema
validation off). Half the mailboxes are behind an EWS connection (impersonation), half behind a
Graph connection (app-only OAuth, change notifications posted by the simulator).

1. The organization is set up through the admin API (settings, two connections, every staff
   member); the script waits for the Graph subscriptions.
2. With ``--faults``, a thread arms simulator faults every second for the whole run (EWS
   ``ErrorServerBusy`` with BackOffMilliseconds, Graph 429 with Retry-After, HTTP 500 and 503),
   each for one request: a share of the Exchange requests fails while bookings and Outlook
   changes come in; once they are in, faults clear.
3. Appointments are booked with signed PUTs (one to three staff each, staff of one connection),
   eight at a time. A sample of them is watched at the simulator: booking → Exchange lag is from
   the PUT's 202 to the item in the organizer's calendar.
4. Staff add events of their own in Outlook (control API); Outlook → webhook lag is from the
   change to the ``busy_time.changed`` webhook's ``receivedAt`` at the booking stand-in.
5. Faults clear, queues drain (every queue empty twice in a row), then the checks:
   every appointment exactly once in each of its staff members' calendars at the booked time,
   no poison message, every Outlook change covered by a verified webhook, no webhook id twice.

Counting: Exchange requests at the simulator (``/control/counters``); Azurite operations at the
Azure SDK's HTTP transport in this process (every table and queue request the app makes,
the queue pollers' empty reads included; not the script's own checks, which use a transport of
their own); memory as this process's RSS, sampled every 5 s.

Usage: .venv/bin/python bench/load_run.py [--mailboxes 1000] [--appointments 10000] [--faults]
       [--scale 0.1] [--outlook-changes 200] [--lag-samples 300]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import SimProcess, cpu_seconds, percentile, rss_mib, start_sim_process
from devhost.azurite import free_port, start_azurite
from shared.config import (
    connection_secret_name,
    environment_variable_for,
    org_signing_secret_reference,
)

ORG = "load"
ADMIN_KEY = "load-admin"
SIGNING_SECRET = "load-signing-secret"
SERVICE = "svc@load.test"
SERVICE_PASSWORD = "Svc-load:1"
TENANT = "5b1c0d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"
CLIENT = "6c2d1e3f-4a50-4b6c-9d7e-8f9a0b1c2d3e"
CLIENT_SECRET = "load~graph~secret"
PUT_THREADS = 8
EWS_POLL_SECONDS = 60  # the organization's EWS poll interval
BASE = (datetime.now(UTC) + timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def address(staff_id: str) -> str:
    return f"{staff_id}@load.test"


# --- counting Azurite operations at the SDK transport ----------------------------------------

AZURITE_OPS: Counter[str] = Counter()
_COUNTING = threading.local()


def count_storage_requests() -> None:
    """Count every request the Azure SDK sends (tables and queues), by service; the script's own
    reads mark themselves uncounted."""
    from azure.core.pipeline.transport import RequestsTransport

    original = RequestsTransport.send

    def send(self: Any, request: Any, **kwargs: Any) -> Any:
        if not getattr(_COUNTING, "off", False):
            port = str(request.url).split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[-1]
            service = PORT_SERVICE.get(port, "other")
            AZURITE_OPS[f"{service} {request.method}"] += 1
        return original(self, request, **kwargs)

    RequestsTransport.send = send


PORT_SERVICE: dict[str, str] = {}


class Uncounted:
    def __enter__(self) -> None:
        _COUNTING.off = True

    def __exit__(self, *exc: object) -> None:
        _COUNTING.off = False


# --- the run ---------------------------------------------------------------------------------


class LoadRun:
    def __init__(self, options: argparse.Namespace) -> None:
        self.options = options
        count = max(2, round(options.mailboxes * options.scale))
        self.ews = [f"e{n:05d}" for n in range(count // 2)]
        self.graph = [f"g{n:05d}" for n in range(count - count // 2)]
        self.appointments = max(1, round(options.appointments * options.scale))
        self.rng = random.Random(17)
        self.booked: dict[str, tuple[datetime, list[str]]] = {}
        self.accepted: dict[str, float] = {}
        self.applied: dict[str, float] = {}
        self.changes: list[tuple[str, datetime, float]] = []
        self.memory: list[tuple[float, float]] = []
        self.faults_armed = 0
        self.stop = threading.Event()

    def sim_config(self) -> dict[str, Any]:
        everyone = [*self.ews, *self.graph]
        return {
            "mailboxes": [
                {"address": address(s), "name": s, "timeZone": "UTC", "password": "pw-" + s}
                for s in everyone
            ],
            "serviceAccounts": [
                {
                    "username": SERVICE,
                    "password": SERVICE_PASSWORD,
                    "impersonate": [address(s) for s in self.ews],
                    "delegateFor": [],
                }
            ],
            "oauthClients": [
                {
                    "tenantId": TENANT,
                    "clientId": CLIENT,
                    "clientSecret": CLIENT_SECRET,
                    "mailboxes": [address(s) for s in self.graph],
                }
            ],
            "bookingPlatform": {"secrets": {ORG: SIGNING_SECRET}},
        }

    def main(self) -> int:
        self.sim: SimProcess = start_sim_process(self.sim_config())
        azurite = start_azurite()
        for key, port in (("QueueEndpoint", "queue"), ("TableEndpoint", "table")):
            for part in azurite.connection_string.split(";"):
                if part.startswith(key + "="):
                    PORT_SERVICE[part.split(":")[-1].split("/")[0]] = port
        http_port = free_port()
        os.environ.update(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "CALBRIDGE_TABLE_PREFIX": "load",
                "CALBRIDGE_QUEUE_PREFIX": "load-",
                "CALBRIDGE_GRAPH_URL": self.sim.urls["graph"],
                "CALBRIDGE_GRAPH_AUTHORITY": self.sim.urls["token"],
                "CALBRIDGE_GRAPH_CA_BUNDLE": self.sim.urls["caBundle"],
                "CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE": "true",
                "CALBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{http_port}/api",
                "CALBRIDGE_ADMIN_KEY": ADMIN_KEY,
                environment_variable_for(org_signing_secret_reference(ORG)): SIGNING_SECRET,
                environment_variable_for(
                    connection_secret_name(ORG, "load-ews-password")
                ): SERVICE_PASSWORD,
                environment_variable_for(
                    connection_secret_name(ORG, "load-graph-secret")
                ): CLIENT_SECRET,
            }
        )
        count_storage_requests()
        self.pids = {"worker": os.getpid(), "simulator": self.sim.process.pid}
        self.pids["Azurite"] = azurite.process.pid
        import function_app
        from devhost.hostconfig import HostConfig
        from devhost.runner import FunctionsRunner

        try:
            with FunctionsRunner(function_app.app, HostConfig.load(), http_port=http_port) as r:
                self.base_url = r.base_url
                return self.run()
        finally:
            self.stop.set()
            azurite.stop()
            self.sim.stop()

    # --- setup ------------------------------------------------------------------------------

    def admin(self, call: Any, **kwargs: Any) -> None:
        body = json.dumps(kwargs.pop("body")).encode()
        answer = call(org=ORG, body=body, admin_key=ADMIN_KEY, **kwargs)
        assert answer.status in (200, 201), answer.body

    def administer(self) -> None:
        from shared import bootstrap

        admin = bootstrap.services().admin
        self.admin(
            admin.put_settings,
            body={
                "webhookUrl": self.sim.urls["booking"] + "/webhooks",
                "pollIntervalSeconds": EWS_POLL_SECONDS,
            },
        )
        self.admin(
            admin.put_connection,
            connection_id="onprem",
            body={
                "kind": "ews",
                "ewsUrl": self.sim.urls["ews"],
                "authType": "ntlm",
                "username": SERVICE,
                "secretReference": "load-ews-password",
                "accessMode": "impersonation",
            },
        )
        self.admin(
            admin.put_connection,
            connection_id="cloud",
            body={
                "kind": "graph",
                "authType": "oauth",
                "tenantId": TENANT,
                "clientId": CLIENT,
                "secretReference": "load-graph-secret",
            },
        )
        staff = [(s, "onprem") for s in self.ews] + [(s, "cloud") for s in self.graph]
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda sc: self.admin(
                        admin.put_staff,
                        staff_id=sc[0],
                        body={"connectionId": sc[1], "mailbox": address(sc[0]), "timeZone": "UTC"},
                    ),
                    staff,
                )
            )

    def wait_subscribed(self, timeout: float) -> None:
        from shared import bootstrap

        repos = bootstrap.services().repositories
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with Uncounted():
                subscribed = {
                    r.value.staff_id for r in repos.subscriptions.list_by_org(ORG).values()
                }
            if subscribed >= set(self.graph):
                return
            time.sleep(1)
        progress(f"only {len(subscribed & set(self.graph))} of {len(self.graph)} subscribed")

    # --- background: faults, memory, lag sampler ----------------------------------------------

    def arm_faults(self) -> None:
        """Every second, faults for a share of the Exchange requests of the second before:
        EWS ErrorServerBusy (BackOffMilliseconds 500), Graph 429 (Retry-After 1), HTTP 500 and
        503, in turn, each armed for whichever request comes next (any mailbox)."""
        kinds: list[dict[str, Any]] = [
            {"kind": "server_busy", "backOffMs": 500},
            {"kind": "throttle", "retryAfter": 1},
            {"kind": "http_503"},
            {"kind": "http_500"},
        ]
        seen, owed, turn = self.exchange_requests(), 0.0, 0
        while not self.stop.wait(1.0):
            try:
                now = self.exchange_requests()
                owed += max(0, now - seen) * self.options.fault_share if self.faulting else 0
                seen = now
                while owed >= 1:
                    self.sim.control("POST", "faults", {**kinds[turn % 4], "remaining": 1})
                    self.faults_armed += 1
                    owed -= 1
                    turn += 1
            except OSError:
                pass

    def exchange_requests(self) -> int:
        counters: dict[str, dict[str, int]] = self.sim.control("GET", "counters")
        return sum(
            n for op, per in counters.items() if op != "graph:notification" for n in per.values()
        )

    def sample_memory(self) -> None:
        began = time.monotonic()
        while True:
            self.memory.append((time.monotonic() - began, rss_mib()))
            if self.stop.wait(5.0):
                return

    def watch_lag(self, samples: list[str]) -> None:
        """Poll the organizer's calendar (at the simulator) for each sampled appointment."""
        waiting = list(samples)
        while waiting and not self.stop.is_set():
            for appointment_id in list(waiting):
                if appointment_id not in self.accepted:
                    continue
                _, staff = self.booked[appointment_id]
                items = self.sim.control("GET", f"mailboxes/{address(staff[0])}/items")
                if any(appointment_id in (i["subject"] or "") for i in items):
                    self.applied[appointment_id] = time.time()
                    waiting.remove(appointment_id)
            time.sleep(0.1)

    # --- booking and Outlook changes -------------------------------------------------------------

    def plan(self) -> None:
        for n in range(self.appointments):
            pool = self.ews if n % 2 == 0 else self.graph
            staff = self.rng.sample(pool, min(len(pool), self.rng.choice((1, 2, 2, 3))))
            start = BASE + timedelta(days=n % 150, hours=7 + (n // 150) % 10)
            start += timedelta(minutes=15 * ((n // 1500) % 4))
            self.booked[f"ld-{n:06d}"] = (start, staff)

    def put(self, appointment_id: str) -> None:
        from shared.booking.signature import sign_request
        from shared.http.contract import SIGNATURE_HEADER

        start, staff = self.booked[appointment_id]
        snapshot = {
            "version": 1,
            "status": "booked",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
            "timeZone": "UTC",
            "title": f"Review {appointment_id}",
            "location": "Branch 1",
            "organizerStaffId": staff[0],
            "staff": [
                {"staffId": s, "role": "organizer" if k == 0 else "secondary"}
                for k, s in enumerate(staff)
            ],
        }
        body = json.dumps(snapshot).encode()
        target = f"/api/orgs/{ORG}/appointments/{appointment_id}"
        url = self.base_url.removesuffix("/api") + target
        for attempt in range(5):
            request = urllib.request.Request(  # noqa: S310 - the local runner
                url,
                data=body,
                method="PUT",
                headers={
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign_request(
                        SIGNING_SECRET, "PUT", target, body, int(time.time())
                    ),
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                    assert response.status in (200, 202), response.status
                    self.accepted[appointment_id] = time.time()
                    return
            except OSError as error:
                progress(f"PUT {appointment_id} failed ({error}), try {attempt + 2}")
                time.sleep(1)
        raise RuntimeError(f"PUT {appointment_id} never accepted")

    def outlook_changes(self, count: int) -> None:
        """Staff add events of their own, spread over both connections."""
        everyone = [*self.ews, *self.graph]
        for n in range(count):
            staff_id = everyone[(n * 7) % len(everyone)]
            start = BASE + timedelta(days=n % 150, hours=18, minutes=5 * (n // 150 % 10))
            began = time.time()
            self.sim.control(
                "POST",
                f"people/{address(staff_id)}/createEvent",
                {
                    "subject": f"Own event {n}",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=5)).isoformat(),
                },
            )
            self.changes.append((staff_id, start, began))
            time.sleep(self.rng.uniform(0.0, 0.2))

    # --- drain and checks ----------------------------------------------------------------------

    def queue_depths(self) -> dict[str, int]:
        from azure.storage.queue import QueueServiceClient

        with Uncounted():
            storage = os.environ["AzureWebJobsStorage"]  # noqa: SIM112 - the host's name
            service = QueueServiceClient.from_connection_string(storage)
            return {
                q.name: service.get_queue_client(q.name)
                .get_queue_properties()
                .approximate_message_count
                or 0
                for q in service.list_queues(name_starts_with="load-")
            }

    def wait_drained(self, timeout: float) -> float:
        """Every (non-poison) queue empty at two checks in a row; when the first of them was."""
        deadline = time.monotonic() + timeout
        empty_since: float | None = None
        while time.monotonic() < deadline:
            depths = self.queue_depths()
            busy = {q: n for q, n in depths.items() if n and not q.endswith("-poison")}
            if not busy:
                if empty_since is not None:
                    return empty_since
                empty_since = time.time()
            else:
                empty_since = None
                progress(f"queues: {busy}")
            time.sleep(2.0)
        raise TimeoutError("queues did not drain")

    def coverage(
        self, hooks: list[dict[str, Any]]
    ) -> list[tuple[tuple[str, datetime, float], list[float]]]:
        """Each Outlook change with the arrival times of the verified ``busy_time.changed``
        webhooks whose window covers it."""
        busy = [
            h
            for h in hooks
            if (h.get("body") or {}).get("type") == "busy_time.changed" and h.get("verified")
        ]
        covered = []
        for change in self.changes:
            staff_id, start, _ = change
            wanted = start.isoformat()
            covering = [
                float(h["receivedAt"])
                for h in busy
                if h["body"]["data"].get("staffId") == staff_id
                and h["body"]["data"].get("from", "") <= wanted < h["body"]["data"].get("to", "")
            ]
            covered.append((change, covering))
        return covered

    def check(self) -> dict[str, Any]:
        items: dict[str, list[dict[str, Any]]] = {}
        for staff_id in [*self.ews, *self.graph]:
            items[staff_id] = self.sim.control("GET", f"mailboxes/{address(staff_id)}/items")
        missing, duplicated, misplaced = [], [], []
        for appointment_id, (start, staff) in self.booked.items():
            for staff_id in staff:
                found = [i for i in items[staff_id] if appointment_id in (i["subject"] or "")]
                if not found:
                    missing.append((appointment_id, staff_id))
                elif len(found) > 1:
                    duplicated.append((appointment_id, staff_id, len(found)))
                elif datetime.fromisoformat(found[0]["start"]) != start:
                    misplaced.append((appointment_id, staff_id, found[0]["start"]))
        poison = {q: n for q, n in self.queue_depths().items() if q.endswith("-poison") and n}
        hooks = [h for h in self.sim.booking("GET", "/received")]
        ids = Counter((h.get("body") or {}).get("id") for h in hooks)
        unverified = [h for h in hooks if not h.get("verified")]
        change_lags, unreported, covered_twice = [], [], 0
        for (staff_id, start, began), covering in self.coverage(hooks):
            if not covering:
                unreported.append((staff_id, start.isoformat()))
                continue
            covered_twice += len(covering) > 1
            change_lags.append((staff_id in self.ews, min(covering) - began))
        return {
            "missing": missing,
            "duplicated": duplicated,
            "misplaced": misplaced,
            "poison": poison,
            "webhooks": len(hooks),
            "webhook ids twice": sum(1 for n in ids.values() if n > 1),
            "unverified": len(unverified),
            "unreported": unreported,
            "covered twice": covered_twice,
            "change lags": change_lags,
        }

    # --- the run ----------------------------------------------------------------------------------

    def run(self) -> int:
        options = self.options
        progress(
            f"{len(self.ews)} EWS + {len(self.graph)} Graph mailboxes, "
            f"{self.appointments} appointments, faults {'on' if options.faults else 'off'}"
        )
        threading.Thread(target=self.sample_memory, daemon=True).start()
        self.faulting = False
        threading.Thread(target=self.arm_faults, daemon=True).start()
        self.administer()
        self.wait_subscribed(timeout=300)
        progress("set up; Graph subscriptions in place")
        self.plan()
        ids = list(self.booked)
        step = max(1, len(ids) // options.lag_samples)
        samples = ids[::step]
        watcher = threading.Thread(target=self.watch_lag, args=(samples,), daemon=True)
        watcher.start()
        self.sim.control("DELETE", "counters")
        AZURITE_OPS.clear()
        # The worker started the simulator and Azurite: its figure is its own process's.
        cpu_before = {
            name: cpu_seconds(pid, descendants=name != "worker") for name, pid in self.pids.items()
        }
        self.faulting = options.faults
        began = self.began = time.time()
        with ThreadPoolExecutor(PUT_THREADS) as pool:
            for n, _ in enumerate(pool.map(self.put, ids)):
                if n % 500 == 499:
                    progress(f"{n + 1} PUTs accepted")
        put_seconds = time.time() - began
        progress(f"all {len(ids)} PUTs accepted in {put_seconds:.1f} s")
        changer = threading.Thread(
            target=self.outlook_changes, args=(options.outlook_changes,), daemon=True
        )
        changer.start()
        changer.join()
        progress(f"{options.outlook_changes} Outlook changes made; faults cleared")
        # The load is in; faults clear (a message that failed waits out its visibility timeout
        # before its next try), then the queues drain.
        self.faulting = False
        self.sim.control("DELETE", "faults")
        drained = self.wait_drained(options.timeout)
        # Drained is not done for a polled mailbox: an EWS change is read on a poll (the timer
        # runs every minute and a mailbox is due a poll interval after its last sync: up to two
        # minutes), which then queues the sync. Until every change is covered, or three
        # intervals have passed since the last one (the check then reports what is not), wait
        # and let the queues drain again.
        last_change = max((began for _, _, began in self.changes), default=0.0)
        while time.time() < last_change + 3 * EWS_POLL_SECONDS and not all(
            covering for _, covering in self.coverage(self.sim.booking("GET", "/received"))
        ):
            progress("waiting for the polls to read the last Outlook changes")
            time.sleep(5.0)
            self.wait_drained(options.timeout)  # the throughput is still the first drain's
        self.stop.set()
        watcher.join(timeout=5)
        elapsed = drained - began
        cpu = {
            name: cpu_seconds(pid, descendants=name != "worker") - cpu_before[name]
            for name, pid in self.pids.items()
        }
        counters: dict[str, dict[str, int]] = self.sim.control("GET", "counters")
        storage = Counter(AZURITE_OPS)
        progress("checking")
        result = self.check()
        self.report(elapsed, put_seconds, counters, storage, cpu, result)
        consistent = not any(
            result[k] for k in ("missing", "duplicated", "misplaced", "poison", "unreported")
        )
        return 0 if consistent and not result["webhook ids twice"] else 1

    def report(
        self,
        elapsed: float,
        put_seconds: float,
        counters: dict[str, dict[str, int]],
        storage: Counter[str],
        cpu: dict[str, float],
        result: dict[str, Any],
    ) -> None:
        placements = sum(len(staff) for _, staff in self.booked.values())
        changes = self.appointments + len(self.changes)
        exchange = Counter({op: sum(per.values()) for op, per in counters.items()})
        exchange_total = sum(n for op, n in exchange.items() if op != "graph:notification")
        fault_text = (
            f"on ({self.faults_armed} faulty answers armed, "
            f"{self.options.fault_share:.0%} of requests)"
            if self.options.faults
            else "off"
        )
        print(
            f"load run: {len(self.ews)} EWS + {len(self.graph)} Graph mailboxes, "
            f"{self.appointments} appointments ({placements} calendar items), "
            f"{len(self.changes)} Outlook changes, faults "
            f"{fault_text}"
        )
        print(f"PUTs accepted in {put_seconds:.1f} s ({self.appointments / put_seconds:.1f}/s)")
        print(
            f"until the queues drained: {self.appointments} appointments in "
            f"{elapsed:.1f} s = {self.appointments / elapsed:.1f} appointments/s "
            f"({placements / elapsed:.1f} calendar items/s)"
        )
        lags = [self.applied[a] - self.accepted[a] for a in self.applied if a in self.accepted]
        if self.applied:
            done = sorted(self.applied.values())
            last = done[-1] - self.began
            print(
                f"throughput from the sample ({len(done)} appointments spread evenly over the "
                f"booking order): the last in its calendar {last:.1f} s after the first PUT = "
                f"{self.appointments / last:.1f} appointments/s "
                f"({placements / last:.1f} calendar items/s); half of them by "
                f"{percentile(done, 0.5) - self.began:.1f} s"
            )
        if lags:
            print(
                f"booking → Exchange lag (PUT 202 → item in organizer's calendar), "
                f"{len(lags)} samples: p50 {percentile(lags, 0.5):.2f} s, "
                f"p95 {percentile(lags, 0.95):.2f} s, p99 {percentile(lags, 0.99):.2f} s, "
                f"max {max(lags):.2f} s"
            )
        for name, is_ews in (("Graph (push)", False), ("EWS (poll every 60 s)", True)):
            values = [lag for ews, lag in result["change lags"] if ews == is_ews]
            if values:
                print(
                    f"Outlook → webhook lag, {name}, {len(values)} changes: "
                    f"p50 {percentile(values, 0.5):.2f} s, p95 {percentile(values, 0.95):.2f} s, "
                    f"p99 {percentile(values, 0.99):.2f} s, max {max(values):.2f} s"
                )
        print(
            f"Exchange requests: {exchange_total} (notifications sent by Exchange not counted) = "
            f"{exchange_total / changes:.2f} per change ({changes} changes)"
        )
        print(f"  by operation: {dict(exchange.most_common())}")
        storage_total = sum(storage.values())
        print(
            f"Azurite operations (counted at the Azure SDK transport, pollers included): "
            f"{storage_total} = {storage_total / changes:.1f} per change"
        )
        print(f"  by service and method: {dict(storage.most_common())}")
        print(f"CPU seconds: { {k: round(v, 1) for k, v in cpu.items()} }")
        marks = self.memory[:: max(1, len(self.memory) // 12)]
        print(
            "worker RSS over time (s: MiB): "
            + ", ".join(f"{t:.0f}: {m:.0f}" for t, m in marks)
            + f"; last {self.memory[-1][1]:.0f}"
        )
        print(
            f"consistency: missing {len(result['missing'])}, duplicated "
            f"{len(result['duplicated'])}, misplaced {len(result['misplaced'])}, poison "
            f"{result['poison'] or 0}, Outlook changes unreported {len(result['unreported'])}, "
            f"covered by more than one webhook {result['covered twice']}, webhooks "
            f"{result['webhooks']} (ids twice {result['webhook ids twice']}, unverified "
            f"{result['unverified']})"
        )
        for key in ("missing", "duplicated", "misplaced", "unreported"):
            if result[key]:
                print(f"  {key}, first: {result[key][:5]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--appointments", type=int, default=10000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply both counts")
    parser.add_argument("--faults", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--fault-share", type=float, default=0.05, help="share of Exchange requests failed"
    )
    parser.add_argument("--outlook-changes", type=int, default=200)
    parser.add_argument("--lag-samples", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to drain")
    return LoadRun(parser.parse_args(argv)).main()


if __name__ == "__main__":
    sys.exit(main())
