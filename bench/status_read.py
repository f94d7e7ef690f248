"""How fast ``GET /api/orgs/{org}/status`` answers for a large organization, against Azurite.

One organization with 500 mailboxes on four connections (two EWS, two Graph, each Graph mailbox
with its subscription), each mailbox row carrying a sync cursor of realistic size, plus the work
the status counts: apply problems, parked changes, dead letters, webhooks being retried and
dead-lettered, all on appointments whose organizers the status looks up; and an outbox holding
many delivered webhooks (the history the status must not read).

Two ways of reading the same rows, taking turns round by round so the machine's load falls on
both alike:

- **calbridge**: ``StatusReader.get_status`` as the route calls it (admin key check aside), the
  answer serialised to JSON: one round of filtered partition queries side by side on the storage
  threads, then one round of organizer point reads side by side;
- **baseline**: the straightforward read of the same information: each partition one after
  another, the whole outbox partition, then each organizer one after another (no answer built).

Round trips are counted at the table port (one per query or point read; a query's extra pages
are not counted).

Usage: .venv/bin/python bench/status_read.py [--mailboxes 500] [--delivered 20000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(REPO))

from devhost.azurite import start_azurite  # noqa: E402
from shared.admin.status import StatusReader  # noqa: E402
from shared.models import ConnectionConfig, Health  # noqa: E402
from shared.queues import APPOINTMENT_CHANGES  # noqa: E402
from shared.store import Repositories, build_repositories  # noqa: E402
from shared.store.azure_tables import AzureTableService  # noqa: E402
from shared.store.records import (  # noqa: E402
    ApplyProblemRecord,
    ConnectionRecord,
    DeadLetterRecord,
    MailboxRecord,
    ParkedChangeRecord,
    SubscriptionRecord,
)
from shared.store.tables import Condition, EntityTable, StoredRow  # noqa: E402
from shared.webhooks.events import busy_time_row  # noqa: E402
from tests.builders import snapshot  # noqa: E402

ORG = "bench"
CONNECTIONS = {"onprem-a": "ews", "onprem-b": "ews", "cloud-a": "graph", "cloud-b": "graph"}
CURSOR_CHARS = 1500  # an EWS SyncState / Graph delta link is a few hundred to a few KB


class CountingTable:
    """A table that counts its round trips."""

    def __init__(self, table: EntityTable, counter: list[int]) -> None:
        self._table = table
        self._counter = counter

    @property
    def name(self) -> str:
        return self._table.name

    def get(self, partition_key: str, row_key: str) -> StoredRow | None:
        self._counter[0] += 1
        return self._table.get(partition_key, row_key)

    def query(
        self,
        partition_key: str,
        conditions: Sequence[Condition] = (),
        select: Sequence[str] = (),
    ) -> list[StoredRow]:
        self._counter[0] += 1
        return self._table.query(partition_key, conditions, select)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


class CountingService:
    def __init__(self, service: AzureTableService) -> None:
        self._service = service
        self.counter = [0]

    def table(self, name: str) -> EntityTable:
        return CountingTable(self._service.table(name), self.counter)


def connection(connection_id: str, kind: str) -> ConnectionRecord:
    if kind == "ews":
        config = ConnectionConfig(
            kind="ews",
            ews_url="https://mail.bench.test/EWS/Exchange.asmx",
            auth_type="ntlm",
            username="svc@bench.test",
            secret_reference="bench-ews",
        )
    else:
        config = ConnectionConfig(
            kind="graph",
            auth_type="oauth",
            tenant_id="tenant",
            client_id="client",
            secret_reference="bench-graph",
        )
    return ConnectionRecord(connection_id=connection_id, health=Health.OK, **config.model_dump())


def seed(repos: Repositories, mailboxes: int, delivered: int) -> dict[str, int]:
    now = datetime.now(UTC)
    ids = list(CONNECTIONS)
    for connection_id, kind in CONNECTIONS.items():
        repos.connections.put(ORG, connection_id, connection(connection_id, kind), None)
    staff = [f"staff-{n:04d}" for n in range(mailboxes)]
    for n, staff_id in enumerate(staff):
        connection_id = ids[n % len(ids)]
        record = MailboxRecord(
            staff_id=staff_id,
            connection_id=connection_id,
            address=f"{staff_id}@bench.test",
            time_zone="Europe/Berlin",
            sync_state="H4sIAAAAAAAE" + "x" * (CURSOR_CHARS - 12),
            last_sync_at=now - timedelta(seconds=n % 90),
            last_full_read_at=None if n % 50 == 0 else now - timedelta(hours=3),
            health=Health.OK,
        )
        repos.mailboxes.put(ORG, staff_id, record, None)
        if CONNECTIONS[connection_id] == "graph":
            repos.subscriptions.put(
                ORG,
                f"sub-{staff_id}",
                SubscriptionRecord(
                    subscription_id=f"sub-{staff_id}",
                    connection_id=connection_id,
                    staff_id=staff_id,
                    mailbox=f"{staff_id}@bench.test",
                    expires_at=now + timedelta(days=2),
                    client_state_hash="0" * 64,
                ),
                None,
            )
    # Work waiting on 150 appointments: 60 apply problems, 60 parked, 30 dead letters.
    appointments = [f"apt-{n:04d}" for n in range(150)]
    for n, appointment_id in enumerate(appointments):
        repos.appointments.save_snapshot(
            ORG, appointment_id, snapshot(1, organizer=staff[n * 3 % mailboxes])
        )
        if n < 60:
            repos.problems.record(
                ORG,
                ApplyProblemRecord(
                    appointment_id=appointment_id,
                    version=1,
                    problem="Exchange answered ErrorServerBusy on every try",
                    recorded_at=now,
                    organizer_staff_id=staff[n * 3 % mailboxes],
                ),
            )
        elif n < 120:
            repos.parked.park(
                ORG,
                ParkedChangeRecord(
                    appointment_id=appointment_id,
                    connection_id="onprem-a",
                    parked_at=now,
                    organizer_staff_id=staff[n * 3 % mailboxes],
                ),
            )
        else:
            repos.dead_letters.record(
                ORG,
                DeadLetterRecord(
                    queue=APPOINTMENT_CHANGES,
                    subject_id=appointment_id,
                    message={"org": ORG, "appointmentId": appointment_id, "version": 1},
                    reason="failed 5 times",
                    dequeue_count=5,
                    failed_at=now,
                ),
            )
    # The outbox: the delivered history, 100 being retried or not tried yet, 10 dead.
    window = (now, now + timedelta(hours=1))
    rows = []
    for n in range(delivered + 110):
        row = busy_time_row(ORG, staff[n % mailboxes], window, f"page-{n}", now)
        if n < delivered:
            row = row.model_copy(update={"attempts": 1, "delivered_at": now, "answer_status": 200})
        elif n < delivered + 50:
            row = row.model_copy(
                update={
                    "attempts": 2,
                    "next_attempt_at": now + timedelta(seconds=30),
                    "last_error": "HTTP 503",
                }
            )
        elif n < delivered + 100:
            pass  # not tried yet
        else:
            row = row.model_copy(
                update={"attempts": 8, "dead_lettered": True, "last_error": "HTTP 500"}
            )
        rows.append(row)
    table = repos.outbox._table
    codec = repos.outbox._codec
    for start in range(0, len(rows), 100):
        chunk = rows[start : start + 100]
        table.upsert_many(ORG, [(row.event_id, codec.to_properties(row)) for row in chunk])
    return {"mailboxes": mailboxes, "appointments with work": 150, "outbox rows": len(rows)}


def baseline(repos: Repositories) -> int:
    """The same information read one partition after another, the whole outbox, then each
    organizer one by one; returns the rows read."""
    read = 0
    for listing in (
        repos.connections.list_by_org,
        repos.mailboxes.list_by_org,
        repos.subscriptions.list_by_org,
    ):
        read += len(listing(ORG))
    parked = repos.parked.list_by_org(ORG)
    problems = repos.problems.list_by_org(ORG)
    letters = repos.dead_letters.of_org(ORG)
    outbox = repos.outbox.list_by_org(ORG)
    read += len(parked) + len(problems) + len(letters) + len(outbox)
    wanted = set(parked) | set(problems) | {letter.subject_id for letter in letters}
    for appointment_id in sorted(wanted):
        if repos.appointments.get(ORG, appointment_id) is not None:
            read += 1
    return read


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = call()
    return (time.perf_counter() - started) * 1000, result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=500)
    parser.add_argument("--delivered", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)

    with start_azurite() as azurite:
        service = CountingService(
            AzureTableService.from_connection_string(
                azurite.connection_string, "b" + uuid.uuid4().hex[:8]
            )
        )
        repos = build_repositories(service)
        seeded_ms, seeded = timed(lambda: seed(repos, args.mailboxes, args.delivered))
        print(f"seeded in {seeded_ms / 1000:.1f} s: {seeded}")
        reader = StatusReader(repos, lambda org, key: None)

        def calbridge() -> int:
            return len(reader.get_status(org=ORG, admin_key="bench").body_text())

        samples: dict[str, list[float]] = {"calbridge": [], "baseline": []}
        trips: dict[str, int] = {}
        size = 0
        calbridge()  # warm: connections, pools, code paths
        baseline(repos)
        for _ in range(args.rounds):
            for name, call in (("calbridge", calbridge), ("baseline", lambda: baseline(repos))):
                before = service.counter[0]
                ms, result = timed(call)
                samples[name].append(ms)
                trips[name] = service.counter[0] - before
                if name == "calbridge":
                    size = result
        answer = json.loads(reader.get_status(org=ORG, admin_key="bench").body_text())
        print(
            f"status of {len(answer['mailboxes'])} mailboxes, {len(answer['connections'])} "
            f"connections; answer {size / 1024:.0f} KiB; pending {answer['pending']}; dead "
            f"{answer['deadLettered']}"
        )
        print(f"{'read':<10} {'round trips':>11} {'p50 ms':>8} {'p95 ms':>8} {'min ms':>8}")
        for name, values in samples.items():
            ordered = sorted(values)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            print(
                f"{name:<10} {trips[name]:>11} {statistics.median(values):>8.1f} "
                f"{p95:>8.1f} {ordered[0]:>8.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
