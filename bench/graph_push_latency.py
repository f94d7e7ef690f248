"""Exchange Online push: Outlook change → signed webhook, Graph requests per notification burst,
and the notification endpoint's answer time and cold start — beside a baseline that polls each
mailbox's delta every minute, in the same run.

Everything runs as ``make run`` runs it: the simulator in its own process (it posts real change
notifications over HTTP), Azurite, and the function app driven by the local runner in this
process with the repository's host.json (its queue polling back-off included). The organization
is set up through the admin API; its Graph mailboxes get their subscriptions as they would.

- **push**: a staff member creates an event in Outlook (the simulator's control API) at a random
  moment; the figure is the time until the signed ``busy_time.changed`` webhook reaches the
  booking stand-in (``receivedAt``);
- **baseline**: other mailboxes get no notifications (dropped at the simulator) and are read by a
  sync queued every minute, as a poller would; same measurement;
- **requests per burst**: five changes in a row on one mailbox; Graph requests counted at the
  simulator until the mailbox is settled — HTTP round trips (delta GETs and ``$batch`` POSTs) and
  the syncs they make up;
- **endpoint**: POSTs of a valid notification straight to the runner's notification URL (answer
  time as the sender sees it), and a fresh process answering its first notification (import,
  services, storage) beside one that imports msgraph-sdk and exchangelib eagerly first.

Usage: .venv/bin/python bench/graph_push_latency.py [--samples 30] [--baseline-samples 12]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devhost.azurite import free_port, start_azurite
from shared.config import (
    connection_secret_name,
    environment_variable_for,
    org_signing_secret_reference,
)

ORG = "bench"
SIGNING_SECRET = "bench-signing-secret"
TENANT = "5b1c0d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"
CLIENT = "6c2d1e3f-4a50-4b6c-9d7e-8f9a0b1c2d3e"
CLIENT_SECRET = "bench~graph~secret"
ADMIN_KEY = "bench-admin"
PUSHED = [f"push{n}" for n in range(4)]
POLLED = [f"poll{n}" for n in range(12)]
BURST_MAILBOX = "burst"
BASELINE_INTERVAL_S = 60.0
BENCH_STATE = "bench-client-state-0123456789abcdef"
DAY = datetime.combine(date.today() + timedelta(days=5), datetime.min.time(), tzinfo=UTC)


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


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def address(staff_id: str) -> str:
    return f"{staff_id}@bench.test"


def sim_config() -> dict[str, Any]:
    everyone = [*PUSHED, *POLLED, BURST_MAILBOX]
    return {
        "mailboxes": [
            {"address": address(n), "name": n, "timeZone": "UTC", "password": "pw-" + n}
            for n in everyone
        ],
        "oauthClients": [
            {
                "tenantId": TENANT,
                "clientId": CLIENT,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": [address(n) for n in everyone],
            }
        ],
        "bookingPlatform": {"secrets": {ORG: SIGNING_SECRET}},
    }


def booking(urls: dict[str, str], method: str, path: str) -> Any:
    request = urllib.request.Request(f"{urls['booking']}/{path}", method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def post_json(url: str, body: Any) -> Any:
    request = urllib.request.Request(  # noqa: S310
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        raw = response.read()
    return json.loads(raw) if raw else None


def create_event(urls: dict[str, str], staff_id: str, hour: int, day: int) -> float:
    """The staff member adds an event in Outlook; when (epoch seconds) the request left."""
    start = DAY + timedelta(days=day, hours=hour)
    body = {
        "subject": f"Busy {staff_id} {day}/{hour}",
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=30)).isoformat(),
    }
    began = time.time()
    post_json(f"{urls['control']}/people/{address(staff_id)}/createEvent", body)
    return began


def webhook_for(urls: dict[str, str], staff_id: str, start: datetime, timeout: float) -> float:
    """When the stand-in received the busy_time.changed webhook covering ``start``."""
    wanted = start.isoformat()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hook in booking(urls, "GET", "received"):
            body = hook.get("body") or {}
            data = body.get("data") or {}
            if (
                body.get("type") == "busy_time.changed"
                and data.get("staffId") == staff_id
                and data.get("from", "") <= wanted < data.get("to", "")
                and hook.get("verified")
            ):
                return float(hook["receivedAt"])
        time.sleep(0.02)
    raise TimeoutError(f"no webhook for {staff_id} at {wanted} within {timeout} s")


def setup_environment(urls: dict[str, str], storage: str, http_port: int) -> None:
    os.environ.update(
        {
            "AzureWebJobsStorage": storage,
            "CALBRIDGE_TABLE_PREFIX": "benchpush",
            "CALBRIDGE_QUEUE_PREFIX": "benchpush-",
            "CALBRIDGE_GRAPH_URL": urls["graph"],
            "CALBRIDGE_GRAPH_AUTHORITY": urls["token"],
            "CALBRIDGE_GRAPH_CA_BUNDLE": urls["caBundle"],
            "CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE": "true",
            "CALBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{http_port}/api",
            "CALBRIDGE_ADMIN_KEY": ADMIN_KEY,
            environment_variable_for(org_signing_secret_reference(ORG)): SIGNING_SECRET,
            environment_variable_for(
                connection_secret_name(ORG, "bench-graph-secret")
            ): CLIENT_SECRET,
        }
    )


def administer(urls: dict[str, str]) -> None:
    from shared import bootstrap

    admin = bootstrap.services().admin
    settings = {"webhookUrl": urls["booking"] + "/webhooks"}
    answer = admin.put_settings(org=ORG, body=json.dumps(settings).encode(), admin_key=ADMIN_KEY)
    assert answer.status in (200, 201), answer.body
    connection = {
        "kind": "graph",
        "authType": "oauth",
        "tenantId": TENANT,
        "clientId": CLIENT,
        "secretReference": "bench-graph-secret",
    }
    answer = admin.put_connection(
        org=ORG, connection_id="cloud", body=json.dumps(connection).encode(), admin_key=ADMIN_KEY
    )
    assert answer.status in (200, 201), answer.body
    for staff_id in [*PUSHED, *POLLED, BURST_MAILBOX]:
        body = {"connectionId": "cloud", "mailbox": address(staff_id), "timeZone": "UTC"}
        answer = admin.put_staff(
            org=ORG, staff_id=staff_id, body=json.dumps(body).encode(), admin_key=ADMIN_KEY
        )
        assert answer.status in (200, 201), answer.body


def wait_settled(staff_ids: list[str], timeout: float = 60.0) -> None:
    """Every mailbox has a subscription, has been read, and has no sync pending."""
    from shared import bootstrap

    repos = bootstrap.services().repositories
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        subscribed = {r.value.staff_id for r in repos.subscriptions.list_by_org(ORG).values()}
        mailboxes = repos.mailboxes.list_by_org(ORG)
        if all(
            s in subscribed
            and mailboxes[s].value.last_sync_at is not None
            and mailboxes[s].value.sync_pending_since is None
            for s in staff_ids
        ):
            return
        time.sleep(0.05)
    raise TimeoutError("mailboxes did not settle")


# --- push and baseline latency ---------------------------------------------------------------


def push_latency(urls: dict[str, str], samples: int, first_day: int = 1) -> list[float]:
    latencies = []
    rng = random.Random(7)
    for n in range(samples):
        # A random idle gap first: the change lands at any point of the queue pollers' back-off.
        time.sleep(rng.uniform(0.5, 4.0))
        staff_id = PUSHED[n % len(PUSHED)]
        day, hour = first_day + n % 60, 8 + n % 8
        began = create_event(urls, staff_id, hour, day)
        arrived = webhook_for(urls, staff_id, DAY + timedelta(days=day, hours=hour), 60)
        latencies.append(arrived - began)
    return latencies


def baseline_latency(urls: dict[str, str], samples: int) -> list[float]:
    """Mailboxes read by a sync queued every minute (their notifications are dropped)."""
    from shared import bootstrap
    from shared.mailbox_sync.pending import claim_sync
    from shared.queues import MailboxSyncRequested

    services = bootstrap.services()
    for staff_id in POLLED:
        post_json(
            f"{urls['control']}/faults",
            {"kind": "drop_notifications", "mailbox": address(staff_id), "remaining": None},
        )
    stop = threading.Event()
    polls = [0]  # syncs the poller queued

    def poll_every_minute() -> None:
        while not stop.is_set():
            now = datetime.now(UTC)
            for staff_id in POLLED:
                try:
                    if claim_sync(services.repositories, ORG, staff_id, now):
                        services.queue.send(
                            MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll")
                        )
                        polls[0] += 1
                except Exception as error:  # a poller keeps polling
                    progress(f"poll of {staff_id} failed: {type(error).__name__}")
            progress(f"baseline poll #{polls[0] // len(POLLED)}")
            stop.wait(BASELINE_INTERVAL_S)

    control(urls, "DELETE", "counters")
    poller = threading.Thread(target=poll_every_minute, daemon=True)
    poller.start()
    rng = random.Random(11)
    planned = sorted(rng.uniform(0, BASELINE_INTERVAL_S * 1.5) for _ in range(samples))
    started = time.monotonic()
    sent: list[tuple[str, datetime, float]] = []
    for n, offset in enumerate(planned):
        time.sleep(max(0.0, started + offset - time.monotonic()))
        staff_id = POLLED[n % len(POLLED)]
        day, hour = 40 + n, 9
        sent.append(
            (
                staff_id,
                DAY + timedelta(days=day, hours=hour),
                create_event(urls, staff_id, hour, day),
            )
        )
    latencies = []
    for staff_id, start, began in sent:
        try:
            latencies.append(webhook_for(urls, staff_id, start, BASELINE_INTERVAL_S * 2.5) - began)
        except TimeoutError as missing:
            progress(str(missing))
    stop.set()
    return latencies


# --- requests per burst -----------------------------------------------------------------------


def burst_requests(urls: dict[str, str], bursts: int) -> list[dict[str, int]]:
    results = []
    box = address(BURST_MAILBOX)
    for b in range(bursts):
        wait_settled([BURST_MAILBOX])
        control(urls, "DELETE", "counters")
        last = None
        for n in range(5):
            last = DAY + timedelta(days=60 + b, hours=8 + n)
            create_event(urls, BURST_MAILBOX, 8 + n, 60 + b)
        assert last is not None
        webhook_for(urls, BURST_MAILBOX, last, 30)
        wait_settled([BURST_MAILBOX])
        counters: dict[str, dict[str, int]] = control(urls, "GET", "counters")
        results.append(
            {
                "notifications": counters.get("graph:notification", {}).get(box, 0),
                "delta": counters.get("graph:delta", {}).get(box, 0),
                "batch": counters.get("graph:batch", {}).get(box, 0),
                "inner": counters.get("graph:getEvent", {}).get(box, 0),
            }
        )
    return results


def idle_sync_requests(urls: dict[str, str]) -> int:
    """Graph requests of one sync of a mailbox where nothing changed (what each poll of the
    baseline, and each sweep, costs)."""
    from shared import bootstrap
    from shared.queues import MailboxSyncRequested

    repos = bootstrap.services().repositories
    wait_settled([BURST_MAILBOX])
    found = repos.mailboxes.get(ORG, BURST_MAILBOX)
    assert found is not None
    before = found.value.last_sync_at
    control(urls, "DELETE", "counters")
    bootstrap.services().queue.send(
        MailboxSyncRequested(org=ORG, staff_id=BURST_MAILBOX, reason="poll")
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = repos.mailboxes.get(ORG, BURST_MAILBOX)
        if now is not None and now.value.last_sync_at != before:
            break
        time.sleep(0.05)
    counters: dict[str, dict[str, int]] = control(urls, "GET", "counters")
    return sum(per.get(address(BURST_MAILBOX), 0) for per in counters.values())


# --- the endpoint -----------------------------------------------------------------------------


def bench_subscription() -> str:
    """A subscription row of the bench's own (its clientState known here) for PUSHED[0]: the
    endpoint's work is the same as for a real one."""
    from shared import bootstrap
    from shared.push.notifications import client_state_hash
    from shared.store.records import SubscriptionRecord

    record = SubscriptionRecord(
        subscription_id="bench-endpoint-subscription",
        connection_id="cloud",
        staff_id=PUSHED[0],
        mailbox=address(PUSHED[0]),
        expires_at=datetime.now(UTC) + timedelta(days=3),
        client_state_hash=client_state_hash(BENCH_STATE),
        notification_url="bench",
    )
    repos = bootstrap.services().repositories
    current = repos.subscriptions.get(ORG, record.subscription_id)
    repos.subscriptions.put(ORG, record.subscription_id, record, current.etag if current else None)
    return record.subscription_id


def notification_body(subscription_id: str) -> dict[str, Any]:
    return {
        "value": [
            {
                "subscriptionId": subscription_id,
                "clientState": BENCH_STATE,
                "changeType": "updated",
                "resource": "Users/x/Events/y",
                "tenantId": TENANT,
                "resourceData": {"id": "y"},
            }
        ]
    }


def endpoint_answers(base_url: str, subscription_id: str, count: int) -> list[float]:
    url = f"{base_url}/graph/notifications/{ORG}"
    times = []
    for _ in range(count):
        began = time.perf_counter()
        post_json(url, notification_body(subscription_id))
        times.append(time.perf_counter() - began)
    return times


COLD_PROBE = """
import json, sys, time
started = time.perf_counter()
{eager}
import azure.functions as func
import function_app
from shared import bootstrap
bootstrap.services().notification_intake
imported = time.perf_counter() - started
[fn] = [f for f in function_app.app.get_functions()
        if f.get_function_name() == "graph_notifications"]
request = func.HttpRequest(
    method="POST", url="http://localhost/api/graph/notifications/{org}",
    route_params={{"org": "{org}"}}, params={{}}, headers={{}}, body=sys.stdin.buffer.read())
answer = fn.get_user_function()(request)
first = time.perf_counter() - started
again = time.perf_counter()
fn.get_user_function()(request)
warm = time.perf_counter() - again
with open("/proc/self/status") as status:
    peak = [int(l.split()[1]) / 1024 for l in status if l.startswith("VmHWM:")][0]
sdks = sorted(m for m in ("msgraph", "exchangelib", "kiota_http") if m in sys.modules)
print(json.dumps({{"status": answer.status_code, "first": first, "warm": warm, "peak": peak,
                  "sdks": sdks, "imported": imported}}))
"""


def cold_start(eager: bool, rounds: int) -> dict[str, Any]:
    imports = "import exchangelib\nfrom msgraph import GraphServiceClient" if eager else ""
    code = COLD_PROBE.format(eager=imports, org=ORG)
    runs = []
    for _ in range(rounds):
        # Written again each time: the hourly subscription round deletes a row that fits no
        # mailbox's assignment, as this one does not.
        body = json.dumps(notification_body(bench_subscription())).encode()
        output = subprocess.run(
            [sys.executable, "-c", code],
            input=body,
            capture_output=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
            env=dict(os.environ),
        ).stdout
        runs.append(json.loads(output.decode().strip().splitlines()[-1]))
    assert all(run["status"] == 202 for run in runs), runs
    return {
        "first": statistics.median(r["first"] for r in runs),
        "imported": statistics.median(r["imported"] for r in runs),
        "warm": statistics.median(r["warm"] for r in runs),
        "peak": statistics.median(r["peak"] for r in runs),
        "sdks": runs[-1]["sdks"],
    }


# --- report -----------------------------------------------------------------------------------


def line(name: str, values: list[float]) -> str:
    return (
        f"{name:<44} {len(values):>4} {statistics.median(values):8.2f} "
        f"{percentile(values, 0.99):8.2f} {max(values):8.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--baseline-samples", type=int, default=12)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument(
        "--also-polling",
        type=float,
        default=0.5,
        help="measure push again with this queue maxPollingInterval (seconds; 0: don't)",
    )
    options = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="calbridge-bench-push-"))
    config_path = work / "sim.json"
    config_path.write_text(json.dumps(sim_config()))
    sim_process, urls = start_sim_process(config_path)
    azurite = start_azurite()
    http_port = free_port()
    setup_environment(urls, azurite.connection_string, http_port)

    from dataclasses import replace

    import function_app
    from devhost.hostconfig import HostConfig
    from devhost.runner import FunctionsRunner

    host = HostConfig.load()
    faster: list[float] = []
    try:
        with FunctionsRunner(function_app.app, host, http_port=http_port) as runner:
            administer(urls)
            wait_settled([*PUSHED, *POLLED, BURST_MAILBOX], timeout=120)
            progress("set up")
            push = push_latency(urls, options.samples)
            progress("push measured")
            bursts = burst_requests(urls, options.bursts)
            idle = idle_sync_requests(urls)
            progress("bursts measured")
            baseline = baseline_latency(urls, options.baseline_samples)
            progress("baseline measured")
            answers = endpoint_answers(runner.base_url, bench_subscription(), 200)
            lazy = cold_start(eager=False, rounds=5)
            eager = cold_start(eager=True, rounds=5)
            progress("endpoint measured")
        if options.also_polling:
            quicker = replace(
                host, queues=replace(host.queues, max_polling_interval=options.also_polling)
            )
            with FunctionsRunner(function_app.app, quicker, http_port=http_port):
                faster = push_latency(urls, options.samples, first_day=100)
            progress("push measured again")
    finally:
        azurite.stop()
        sim_process.terminate()
        sim_process.wait(timeout=10)

    print("Outlook change → signed webhook at the booking stand-in, seconds")
    print(f"{'path':<44} {'n':>4} {'p50':>8} {'p99':>8} {'max':>8}")
    polling = f"{host.queues.max_polling_interval:g} s"
    print(line(f"push, host.json (maxPollingInterval {polling})", push))
    if faster:
        print(line(f"push, maxPollingInterval {options.also_polling:g} s", faster))
    print(line(f"baseline: delta polled every {BASELINE_INTERVAL_S:g} s", baseline))
    print()
    print("Graph requests per burst of 5 Outlook changes on one mailbox (median of bursts)")
    print(
        f"{'notifications':>14} {'syncs':>6} {'delta GETs':>11} {'$batch':>7} {'in batch':>9} "
        f"{'round trips':>12}"
    )
    med = {key: statistics.median(b[key] for b in bursts) for key in bursts[0]}
    print(
        f"{med['notifications']:14.0f} {med['delta']:6.0f} {med['delta']:11.0f} "
        f"{med['batch']:7.0f} {med['inner']:9.0f} {med['delta'] + med['batch']:12.0f}"
    )
    print(f"  each burst: {bursts}")
    print(
        f"  an idle sync costs {idle} Graph request(s); per idle mailbox and hour: push "
        f"{4 * idle} (the 15-minute sweep), baseline {60 * idle} (a poll a minute)"
    )
    print()
    print("Notification endpoint")
    print(line("answer time over HTTP, warm (s)", answers))
    print(
        f"{'fresh process: first answer (s)':<44} lazy {lazy['first']:.3f}  "
        f"eager SDKs {eager['first']:.3f}"
    )
    print(
        f"{'  of which import + services (s)':<44} lazy {lazy['imported']:.3f}  "
        f"eager SDKs {eager['imported']:.3f}"
    )
    print(
        f"{'fresh process: second answer (s)':<44} lazy {lazy['warm']:.4f}  "
        f"eager SDKs {eager['warm']:.4f}"
    )
    print(
        f"{'fresh process: peak RSS (MiB)':<44} lazy {lazy['peak']:.0f}  "
        f"eager SDKs {eager['peak']:.0f}"
    )
    print(f"{'SDK modules loaded to answer':<44} lazy {lazy['sdks']}  eager SDKs {eager['sdks']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
