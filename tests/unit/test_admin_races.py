"""An administrator's ``PUT`` of a connection or a staff member names the whole of what it sets:
when a worker writes the same row between the service's read and its write (a sync's cursor, a
connection's health), the service reads and decides again instead of answering 409."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.admin import AdminApi
from shared.models import Health
from shared.queues import MemoryQueueSender
from shared.store import Versioned
from shared.store.memory import memory_repositories
from shared.store.records import ConnectionRecord, MailboxRecord

ORG = "bank"
NOW = datetime(2026, 3, 2, 9, tzinfo=UTC)
EWS = {
    "kind": "ews",
    "ewsUrl": "https://mail.bank.test/EWS/Exchange.asmx",
    "authType": "basic",
    "username": "svc",
    "secretReference": "svc-secret",
}


class Secrets:
    def resolve(self, reference: str) -> str:
        return "s3cret"


def worker_writes_after_reads(
    get: Callable[[str, str], Versioned[Any] | None],
    write: Callable[[Versioned[Any]], None],
    times: int,
) -> Callable[[str, str], Versioned[Any] | None]:
    """``get`` as the service sees it: the first ``times`` reads are followed at once by a
    worker's write of the same row, so the ETag the service read is stale when it writes."""
    left = [times]

    def racing_get(org: str, key: str) -> Versioned[Any] | None:
        found = get(org, key)
        if found is not None and left[0] > 0:
            left[0] -= 1
            write(found)
        return found

    return racing_get


def admin() -> tuple[AdminApi, Any]:
    repos = memory_repositories()
    api = AdminApi(
        repos,
        MemoryQueueSender(),
        Secrets(),
        operator_key="op",
        max_request_bytes=65536,
        now=lambda: NOW,
    )
    answer = api.put_connection(
        org=ORG, connection_id="onprem", body=json.dumps(EWS).encode(), admin_key="op"
    )
    assert answer.status == 201, answer.body
    return api, repos


def put_staff(api: AdminApi, time_zone: str) -> Any:
    body = {"connectionId": "onprem", "mailbox": "dan@bank.test", "timeZone": time_zone}
    return api.put_staff(org=ORG, staff_id="dan", body=json.dumps(body).encode(), admin_key="op")


def test_a_staff_assignment_is_not_refused_because_a_sync_wrote_the_row_meanwhile() -> None:
    api, repos = admin()
    assert put_staff(api, "UTC").status == 201

    def sync_advances(found: Versioned[MailboxRecord]) -> None:
        advanced = found.value.model_copy(
            update={"sync_state": f"{found.value.sync_state or ''}+", "last_sync_at": NOW}
        )
        repos.mailboxes.put(ORG, "dan", advanced, found.etag)

    repos.mailboxes.get = worker_writes_after_reads(repos.mailboxes.get, sync_advances, 3)
    answer = put_staff(api, "Europe/Berlin")
    assert answer.status == 200, answer.body
    stored = repos.mailboxes.get(ORG, "dan").value
    # The administrator's change is written, and the sync's progress is kept, not undone.
    assert stored.time_zone == "Europe/Berlin"
    assert stored.sync_state == "+++"
    assert stored.last_sync_at == NOW


def test_a_row_that_keeps_changing_is_still_a_409_naming_it() -> None:
    api, repos = admin()
    assert put_staff(api, "UTC").status == 201

    def sync_touches(found: Versioned[MailboxRecord]) -> None:
        repos.mailboxes.put(ORG, "dan", found.value, found.etag)

    repos.mailboxes.get = worker_writes_after_reads(repos.mailboxes.get, sync_touches, 100)
    answer = put_staff(api, "Europe/Berlin")
    assert answer.status == 409
    assert "staff member 'dan' changed meanwhile" in answer.body["message"]
    assert repos.mailboxes.get(ORG, "dan").value.time_zone == "UTC"  # nothing written


def test_a_connection_save_is_not_refused_because_a_worker_wrote_its_health_meanwhile() -> None:
    api, repos = admin()

    def worker_finds_it_throttled(found: Versioned[ConnectionRecord]) -> None:
        throttled = found.value.model_copy(update={"health": Health.THROTTLED})
        repos.connections.put(ORG, "onprem", throttled, found.etag)

    repos.connections.get = worker_writes_after_reads(
        repos.connections.get, worker_finds_it_throttled, 2
    )
    answer = api.put_connection(
        org=ORG,
        connection_id="onprem",
        body=json.dumps({**EWS, "enabled": False}).encode(),
        admin_key="op",
    )
    assert answer.status == 200, answer.body
    stored = repos.connections.get(ORG, "onprem").value
    assert (stored.enabled, stored.health) == (False, Health.DISABLED)
