"""The cost of the first Graph calls in a fresh process: calbridge's Graph adapter (request
builders + raw JSON) against msgraph-sdk's typed models (the baseline), both against one local
Exchange simulator started here.

Each measurement is a fresh Python subprocess that does exactly what a cold worker does for its
first appointment: import the client code, get a token from the simulator's HTTPS token
endpoint, look the appointment's marker up (``find_by_marker``: GET events with $filter and
$expand) and create the event (POST with attendees, the marker and a transactionId). It reports
wall time from before the first import to the end of the create (split into import / first
lookup / create), peak RSS, and how many modules — and msgraph model modules — were loaded.

Rounds alternate adapter and baseline so machine noise hits both alike; one unmeasured warm-up
run of each makes sure .pyc files exist. Medians are printed with the baseline/adapter ratio.

Usage: .venv/bin/python bench/graph_cold_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO))

MAILBOX = "ann@contoso.test"
ATTENDEE = "bob@contoso.test"
TENANT_ID = "7d3c1a52-3f8e-4a53-9a55-c0b1a5e0d0a1"
CLIENT_ID = "5b0f6c8e-6f0c-4d1e-8f55-2a9b7d1e4c33"
CLIENT_SECRET = "graph-bench-secret"
SCOPE = "https://graph.microsoft.com/.default"
MODES = ("adapter", "baseline")


# --- the child: one cold start --------------------------------------------------------------


def _peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over from
    the forking parent across exec, so a child would report the parent's peak."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def _adapter_first_calls(urls: dict[str, str], run_id: str) -> dict[str, float]:
    started = time.perf_counter()
    from datetime import UTC, datetime, timedelta

    from shared.engine.marker import marker_for
    from shared.exchange.graph import GraphCalendarGateway, GraphCredentials, GraphEndpoints
    from shared.exchange.port import EventDraft

    imported = time.perf_counter()
    gateway = GraphCalendarGateway(
        GraphCredentials(TENANT_ID, CLIENT_ID, CLIENT_SECRET),
        GraphEndpoints(urls["graph"], urls["token"], urls["caBundle"]),
    )
    marker = marker_for("bench", f"adapter-{run_id}")
    found = await gateway.find_by_marker(MAILBOX, marker)
    looked_up = time.perf_counter()
    start = datetime(2031, 6, 2, 9, tzinfo=UTC) + timedelta(minutes=int(run_id) % 600)
    draft = EventDraft(
        subject="Cold start",
        start=start,
        end=start + timedelta(minutes=30),
        time_zone="Europe/Paris",
        location="Branch 1",
        body_text="Clients:\n- Bench Client\n",
        required_attendees=(ATTENDEE,),
        marker=marker,
    )
    ref = await gateway.create_event(MAILBOX, draft, f"bench-adapter-{run_id}")
    created = time.perf_counter()
    await gateway.aclose()
    assert found == []
    assert ref.item_id
    return {
        "import": imported - started,
        "lookup": looked_up - imported,
        "create": created - looked_up,
    }


async def _baseline_first_calls(urls: dict[str, str], run_id: str) -> dict[str, float]:
    started = time.perf_counter()
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphServiceClient
    from msgraph.generated.models.attendee import Attendee
    from msgraph.generated.models.attendee_type import AttendeeType
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
    from msgraph.generated.models.email_address import EmailAddress
    from msgraph.generated.models.event import Event
    from msgraph.generated.models.free_busy_status import FreeBusyStatus
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.location import Location
    from msgraph.generated.models.single_value_legacy_extended_property import (
        SingleValueLegacyExtendedProperty,
    )
    from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder

    from shared.engine.marker import marker_for
    from shared.exchange.marker_property import MARKER_GRAPH_ID, graph_marker_filter

    imported = time.perf_counter()
    credential = ClientSecretCredential(
        TENANT_ID,
        CLIENT_ID,
        CLIENT_SECRET,
        authority=urls["token"].split("://", 1)[1],
        disable_instance_discovery=True,
        connection_verify=urls["caBundle"],
    )
    client = GraphServiceClient(credentials=credential, scopes=[SCOPE])
    client.request_adapter.base_url = urls["graph"]
    events = client.users.by_user_id(MAILBOX).events
    marker = marker_for("bench", f"baseline-{run_id}")
    query = EventsRequestBuilder.EventsRequestBuilderGetQueryParameters(
        filter=graph_marker_filter(marker),
        select=["id", "changeKey", "iCalUId", "subject", "start", "end", "attendees"],
        expand=[f"singleValueExtendedProperties($filter=id eq '{MARKER_GRAPH_ID}')"],
    )
    page = await events.get(request_configuration=RequestConfiguration(query_parameters=query))
    looked_up = time.perf_counter()
    minute = int(run_id) % 600
    event = Event(
        subject="Cold start",
        body=ItemBody(content_type=BodyType.Text, content="Clients:\n- Bench Client\n"),
        start=DateTimeTimeZone(
            date_time=f"2031-06-02T{11 + minute // 60:02d}:{minute % 60:02d}:00",
            time_zone="Europe/Paris",
        ),
        end=DateTimeTimeZone(
            date_time=f"2031-06-02T{11 + minute // 60:02d}:{minute % 60:02d}:30",
            time_zone="Europe/Paris",
        ),
        location=Location(display_name="Branch 1"),
        attendees=[
            Attendee(email_address=EmailAddress(address=ATTENDEE), type=AttendeeType.Required)
        ],
        show_as=FreeBusyStatus.Busy,
        single_value_extended_properties=[
            SingleValueLegacyExtendedProperty(id=MARKER_GRAPH_ID, value=marker)
        ],
        transaction_id=f"bench-baseline-{run_id}",
    )
    created_event = await events.post(event)
    created = time.perf_counter()
    await credential.close()
    assert page is not None
    assert not page.value
    assert created_event is not None
    return {
        "import": imported - started,
        "lookup": looked_up - imported,
        "create": created - looked_up,
    }


def child(mode: str, urls: dict[str, str], run_id: str) -> None:
    import asyncio

    started = time.perf_counter()
    rss_start = _peak_rss_mib()
    first_calls = _adapter_first_calls if mode == "adapter" else _baseline_first_calls
    phases = asyncio.run(first_calls(urls, run_id))
    total = time.perf_counter() - started
    result = {
        "mode": mode,
        "seconds": total,
        **{f"{name}_s": value for name, value in phases.items()},
        "rss_start_mib": rss_start,
        "rss_peak_mib": _peak_rss_mib(),
        "modules": len(sys.modules),
        "model_modules": sum(1 for m in sys.modules if m.startswith("msgraph.generated.models")),
    }
    print(json.dumps(result))


# --- the parent: simulator and rounds --------------------------------------------------------


def simulator_config() -> dict[str, Any]:
    return {
        "mailboxes": [
            {"address": MAILBOX, "name": "Ann Lee", "timeZone": "Europe/Paris"},
            {"address": ATTENDEE, "name": "Bob Ray", "timeZone": "Europe/Paris"},
        ],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": ["*"],
            }
        ],
    }


def run_child(mode: str, urls: dict[str, str], run_id: int) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--run-id",
        str(run_id),
    ]
    environment = dict(os.environ, GRAPH_BENCH_URLS=json.dumps(urls))
    finished = subprocess.run(
        command, env=environment, capture_output=True, text=True, check=False, cwd=REPO
    )
    if finished.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{finished.stderr}")
    return dict(json.loads(finished.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--run-id", default="0", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.child, json.loads(os.environ["GRAPH_BENCH_URLS"]), arguments.run_id)
        return

    from sim.server import start_simulator

    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with start_simulator(simulator_config(), validate_ews=False) as simulator:
        urls = dict(simulator.urls)
        run_id = 0
        for mode in MODES:  # warm-up: .pyc files written, not measured
            run_id += 1
            run_child(mode, urls, run_id)
        for _ in range(arguments.rounds):
            for mode in MODES:
                run_id += 1
                results[mode].append(run_child(mode, urls, run_id))

    def median(mode: str, key: str) -> float:
        return statistics.median(float(r[key]) for r in results[mode])

    print(f"first find_by_marker + create_event in a fresh process, median of {arguments.rounds}")
    print(
        f"{'':10} {'total s':>8} {'import s':>9} {'lookup s':>9} {'create s':>9} "
        f"{'RSS start MiB':>14} {'peak RSS MiB':>13} {'modules':>8} {'models':>7}"
    )
    for mode in MODES:
        print(
            f"{mode:10} {median(mode, 'seconds'):8.3f} {median(mode, 'import_s'):9.3f} "
            f"{median(mode, 'lookup_s'):9.3f} {median(mode, 'create_s'):9.3f} "
            f"{median(mode, 'rss_start_mib'):14.1f} "
            f"{median(mode, 'rss_peak_mib'):13.1f} {median(mode, 'modules'):8.0f} "
            f"{median(mode, 'model_modules'):7.0f}"
        )
    time_ratio = median("baseline", "seconds") / median("adapter", "seconds")
    rss_ratio = median("baseline", "rss_peak_mib") / median("adapter", "rss_peak_mib")
    print(f"baseline / adapter: time x{time_ratio:.2f}, peak RSS x{rss_ratio:.2f}")


if __name__ == "__main__":
    main()
