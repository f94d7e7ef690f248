"""Booking snapshot → Exchange write: calbridge's own latency and Exchange requests per change.

For each side (EWS, Graph) and each of create / update (reschedule) / cancel of a two-staff
appointment, one pass runs the real path in this process: the intake (signature check, Azurite
write, enqueue), the dequeue from Azurite, and the apply worker's service (mapping read, engine,
adapter → Exchange simulator, mapping write). The simulator runs in its own process; its serving
time for the pass (``GET /control/timing``) is subtracted, so the figure is calbridge's latency
excluding Exchange. Requests are counted at the simulator.

Baseline, in the same run: the same passes with a new gateway per message (no reuse of
exchangelib accounts / msgraph-sdk clients and tokens between messages) — what a worker that
builds its Exchange client per invocation would cost.

Usage: .venv/bin/python bench/apply_latency.py [--appointments 30]
       BENCH_PROFILE=ews|graph .venv/bin/python bench/apply_latency.py  (cProfile of 5 rounds)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devhost.azurite import start_azurite
from shared.config import (
    connection_secret_name,
    environment_variable_for,
    org_signing_secret_reference,
)

ORG = "bench"
SIGNING_SECRET = "bench-signing-secret"
SERVICE = "svc@bench.test"
SERVICE_PASSWORD = "Svc-bench:1"
TENANT = "5b1c0d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"
CLIENT = "6c2d1e3f-4a50-4b6c-9d7e-8f9a0b1c2d3e"
CLIENT_SECRET = "bench~graph~secret"
SIDES = {
    "ews": ("onprem", ["ann", "bob"]),
    "graph": ("cloud", ["dan", "eve"]),
}


def secret_variable(reference: str) -> str:
    """The environment variable holding the bench organization's connection secret."""
    return environment_variable_for(connection_secret_name(ORG, reference))


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


def start_sim_process(config_path: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "sim", "--config", str(config_path), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    urls: dict[str, str] = json.loads(process.stdout.readline())
    return process, urls


def control(urls: dict[str, str], method: str, path: str) -> Any:
    request = urllib.request.Request(f"{urls['control']}/{path}", method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def snapshot(version: int, staff: list[str], day: int, status: str = "booked") -> dict[str, Any]:
    start = datetime(2027, 6, 1, 9, tzinfo=UTC) + timedelta(days=day, hours=version)
    return {
        "version": version,
        "status": status,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
        "timeZone": "UTC",
        "title": f"Benchmark {day}",
        "location": "Branch 1",
        "organizerStaffId": staff[0],
        "staff": [{"staffId": staff[0], "role": "organizer"}]
        + [{"staffId": s, "role": "secondary"} for s in staff[1:]],
        "clients": [{"name": "Client Example", "email": "client@example.com"}],
    }


@dataclass
class Sample:
    calbridge_ms: float
    wall_ms: float
    requests: int
    intake_ms: float  # signature, snapshot stored, message queued
    apply_ms: float  # the worker's pass, excluding the simulator's serving time


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--appointments", type=int, default=30)
    options = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="calbridge-bench-"))
    config_path = work / "sim.json"
    config_path.write_text(json.dumps(sim_config()))
    sim_process, urls = start_sim_process(config_path)
    azurite = start_azurite()
    os.environ.update(
        {
            "AzureWebJobsStorage": azurite.connection_string,
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
    try:
        results = run(urls, options.appointments)
    finally:
        azurite.stop()
        sim_process.terminate()
        sim_process.wait(timeout=10)
    print_report(results, options.appointments)
    return 0


def run(urls: dict[str, str], appointments: int) -> dict[tuple[str, str, str], list[Sample]]:
    from azure.storage.queue import QueueClient, TextBase64DecodePolicy

    from shared import bootstrap
    from shared.apply.service import AppointmentApplier
    from shared.booking.signature import sign_request
    from shared.exchange.gateways import GatewayCache
    from shared.http.requests import SignedRequest
    from shared.queues import APPOINTMENT_CHANGES, AppointmentChanged, parse_message

    services = bootstrap.services()
    admin = services.admin
    connections = {
        "onprem": {
            "kind": "ews",
            "ewsUrl": urls["ews"],
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
                org=ORG, staff_id=name, body=json.dumps(body).encode(), admin_key="bench-admin"
            )
            assert answer.status in (200, 201), answer.body

    connection_string = services.settings.storage_connection_string
    assert connection_string is not None  # the bench's own Azurite, set above
    queue = QueueClient.from_connection_string(
        connection_string,
        services.settings.queue_prefix + APPOINTMENT_CHANGES,
        message_decode_policy=TextBase64DecodePolicy(),
    )

    class FreshGateways:
        """The baseline: a new gateway (new SDK clients, new sign-in) for every message."""

        def for_connection(self, org: str, connection: Any) -> Any:
            fresh = GatewayCache(services.settings, services.secrets, bootstrap.calendar_gateway)
            return fresh.for_connection(org, connection)

    appliers: dict[str, AppointmentApplier] = {
        "calbridge": services.appointment_applier,
        "baseline (new gateway per message)": AppointmentApplier(
            services.repositories, services.queue, FreshGateways()
        ),
    }
    results: dict[tuple[str, str, str], list[Sample]] = {}
    runner = asyncio.Runner()
    day = 0

    def one_pass(applier: AppointmentApplier, appointment_id: str, body: dict[str, Any]) -> Sample:
        control(urls, "DELETE", "counters")
        raw = json.dumps(body).encode()
        started = time.perf_counter()
        target = f"/api/orgs/{ORG}/appointments/{appointment_id}"
        answer = services.intake.put_appointment(
            org=ORG,
            appointment_id=appointment_id,
            request=SignedRequest("PUT", target, raw),
            signature=sign_request(SIGNING_SECRET, "PUT", target, raw, int(time.time())),
        )
        assert answer.status == 202, answer.body
        accepted = time.perf_counter()
        [message] = queue.receive_messages(max_messages=1, visibility_timeout=30)
        change = parse_message(AppointmentChanged, message.content)
        received = time.perf_counter()
        report = runner.run(applier.apply(change))
        applied = time.perf_counter()
        queue.delete_message(message)
        wall = time.perf_counter() - started
        assert report.disposition == "done", report
        sim_seconds = control(urls, "GET", "timing")["seconds"]
        counters = control(urls, "GET", "counters")
        requests = sum(n for per_mailbox in counters.values() for n in per_mailbox.values())
        return Sample(
            (wall - sim_seconds) * 1000,
            wall * 1000,
            requests,
            (accepted - started) * 1000,
            (applied - received - sim_seconds) * 1000,
        )

    operations: list[tuple[str, Callable[[list[str], int], dict[str, Any]]]] = [
        ("create", lambda staff, d: snapshot(1, staff, d)),
        ("update", lambda staff, d: snapshot(2, staff, d)),
        ("cancel", lambda staff, d: snapshot(3, staff, d, status="cancelled")),
    ]
    # Warm-up: first use of each SDK (imports, model loading) is cold start, measured elsewhere.
    for side, (_, staff) in SIDES.items():
        day += 1
        for _, make in operations:
            one_pass(services.appointment_applier, f"warm-{side}", make(staff, day))
    if os.environ.get("BENCH_PROFILE"):
        import cProfile
        import pstats

        _, staff = SIDES[os.environ["BENCH_PROFILE"]]
        profiler = cProfile.Profile()
        for n in range(5):
            day += 1
            for _, make in operations:
                profiler.enable()
                one_pass(services.appointment_applier, f"profile-{n}", make(staff, day))
                profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(
            45
        )
        raise SystemExit(0)
    for mode, applier in appliers.items():
        for side, (_, staff) in SIDES.items():
            for n in range(appointments):
                day += 1
                appointment_id = f"{side}-{mode[:4]}-{n}"
                for operation, make in operations:
                    sample = one_pass(applier, appointment_id, make(staff, day))
                    results.setdefault((side, mode, operation), []).append(sample)
    runner.close()
    return results


def print_report(results: dict[tuple[str, str, str], list[Sample]], appointments: int) -> None:
    print(
        f"snapshot → Exchange write, {appointments} two-staff appointments per side, "
        "times in ms excluding the simulator's serving time"
    )
    print("p50/p99: whole path; intake and apply: medians of the two halves (queue hop apart)")
    header = (
        f"{'side':<6} {'mode':<36} {'op':<7} {'p50':>7} {'p99':>7} {'intake':>7} "
        f"{'apply':>7} {'wall p50':>9} {'requests':>9}"
    )
    print(header)
    print("-" * len(header))
    for (side, mode, operation), samples in results.items():
        own = [s.calbridge_ms for s in samples]
        print(
            f"{side:<6} {mode:<36} {operation:<7} {statistics.median(own):7.1f} "
            f"{percentile(own, 0.99):7.1f} {statistics.median(s.intake_ms for s in samples):7.1f} "
            f"{statistics.median(s.apply_ms for s in samples):7.1f} "
            f"{statistics.median(s.wall_ms for s in samples):9.1f} "
            f"{statistics.median(s.requests for s in samples):9.0f}"
        )


if __name__ == "__main__":
    sys.exit(main())
