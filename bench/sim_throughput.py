"""How many idle SyncFolderItems requests per second the Exchange simulator answers, so later
benchmarks of calbridge know whether the simulator (not calbridge) is their bottleneck.

An "idle" sync asks for the changes since the current sync state of a calendar that has not
changed: the request calbridge's poller sends most often. Measured three ways against one
simulator started in this process (demo organization, one calendar seeded with events):

- exchangelib: one reused Account (service account impersonating the mailbox, NTLM), calling
  ``calendar.sync_items(sync_state=...)`` in a loop — client cost included;
- raw HTTP: a prepared SOAP envelope POSTed over one keep-alive connection (Basic auth);
- raw HTTP with several concurrent clients.

Each is run with the EWS schema validation off and on (tests run with it on).
``--tcp-nodelay`` turns Nagle's algorithm off on the simulator's connections for the run (in
this process only). A server that writes a response in two pieces (headers, then body) stalls
each request ~40 ms on Nagle + delayed ACK; the simulator writes each response in one piece,
and this option checks that it stays that way (the numbers should not change).

Usage: .venv/bin/python bench/sim_throughput.py [--seconds 3] [--items 50] [--clients 4]
       [--tcp-nodelay]
"""

from __future__ import annotations

import argparse
import base64
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests
from exchangelib import (
    IMPERSONATION,
    NTLM,
    Account,
    Build,
    Configuration,
    Credentials,
    Version,
)
from exchangelib.protocol import close_connections

from sim.config import demo_config
from sim.server import RunningSimulator, SimRequestHandler, start_simulator

MAILBOX = "ann@contoso.test"
SERVICE_ACCOUNT = "svc-calbridge@contoso.test"
SERVICE_PASSWORD = "Impersonate!2026"
OWNER_PASSWORD = "Outlook!2026"

SYNC_ENVELOPE = """<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body><m:SyncFolderItems>
    <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>
    <m:SyncFolderId><t:DistinguishedFolderId Id="calendar"/></m:SyncFolderId>
    <m:SyncState>{state}</m:SyncState>
    <m:MaxChangesReturned>512</m:MaxChangesReturned>
  </m:SyncFolderItems></s:Body>
</s:Envelope>"""


def seed(sim: RunningSimulator, items: int) -> None:
    outlook = sim.person(MAILBOX)
    first = datetime(2027, 1, 4, 9, tzinfo=UTC)
    for n in range(items):
        start = first + timedelta(days=n // 4, hours=2 * (n % 4))
        outlook.create_event(f"Seeded {n}", start, start + timedelta(hours=1))


def exchangelib_rate(sim: RunningSimulator, seconds: float) -> tuple[float, int]:
    config = Configuration(
        service_endpoint=sim.urls["ews"],
        credentials=Credentials(SERVICE_ACCOUNT, SERVICE_PASSWORD),
        auth_type=NTLM,
        version=Version(build=Build(15, 1, 2507, 6)),
    )
    account = Account(MAILBOX, config=config, autodiscover=False, access_type=IMPERSONATION)
    calendar = account.calendar
    list(calendar.sync_items())
    state = calendar.item_sync_state
    requests_made = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        changes = list(calendar.sync_items(sync_state=state, only_fields=["subject"]))
        if changes:
            raise RuntimeError(f"the calendar was supposed to be idle, got {len(changes)}")
        requests_made += 1
    elapsed = time.perf_counter() - started
    close_connections()
    return requests_made / elapsed, requests_made


def _current_state(sim: RunningSimulator) -> str:
    store = sim.store
    seq = store.current_seq(MAILBOX)
    return store.encode_sync_state(MAILBOX, seq, base=str(seq))


def raw_rate(sim: RunningSimulator, seconds: float, clients: int) -> tuple[float, int]:
    body = SYNC_ENVELOPE.format(state=_current_state(sim)).encode()
    token = base64.b64encode(f"{MAILBOX}:{OWNER_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"}
    counts = [0] * clients
    failures: list[str] = []
    deadline = time.perf_counter() + seconds

    def client(index: int) -> None:
        with requests.Session() as session:
            while time.perf_counter() < deadline:
                response = session.post(sim.urls["ews"], data=body, headers=headers, timeout=30)
                if response.status_code != 200 or b"<t:Create>" in response.content:
                    failures.append(f"HTTP {response.status_code}")
                    return
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"raw sync failed: {failures[0]}")
    return sum(counts) / elapsed, sum(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--items", type=int, default=50, help="events seeded in the calendar")
    parser.add_argument("--clients", type=int, default=4, help="concurrent raw HTTP clients")
    parser.add_argument(
        "--tcp-nodelay", action="store_true", help="disable Nagle on the simulator's sockets"
    )
    options = parser.parse_args(argv)
    if options.tcp_nodelay:
        SimRequestHandler.disable_nagle_algorithm = True

    rows: list[tuple[str, str, float, int]] = []
    for validate in (False, True):
        started = time.perf_counter()
        with start_simulator(demo_config(), validate_ews=validate) as sim:
            startup = time.perf_counter() - started
            seed(sim, options.items)
            label = "on" if validate else "off"
            print(
                f"simulator up in {startup:.2f}s (schema validation {label}), "
                f"{options.items} events in {MAILBOX}",
                flush=True,
            )
            measurements: list[tuple[str, Any]] = [
                ("exchangelib, 1 Account", lambda: exchangelib_rate(sim, options.seconds)),
                ("raw HTTP, 1 connection", lambda: raw_rate(sim, options.seconds, 1)),
                (
                    f"raw HTTP, {options.clients} connections",
                    lambda: raw_rate(sim, options.seconds, options.clients),
                ),
            ]
            for name, measure in measurements:
                rate, count = measure()
                rows.append((name, label, rate, count))
                print(f"  {name:<28} {rate:8.1f} idle syncs/s ({count} requests)", flush=True)
            failures = len(sim.ews.schema_failures) if validate else 0
            if failures:
                print(f"  {failures} responses broke the EWS schema", flush=True)
    nagle = "off (TCP_NODELAY)" if options.tcp_nodelay else "as the server sets it"
    print(f"\nidle SyncFolderItems per second (Nagle: {nagle})")
    print(f"{'client':<28} {'validation':>10} {'per second':>11}")
    for name, label, rate, _ in rows:
        print(f"{name:<28} {label:>10} {rate:11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
