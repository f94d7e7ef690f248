"""Access modes end to end, through the registered functions, Azurite and the simulator: a
mailbox the service account may not open is reported on that mailbox while the connection's
other mailboxes go on; mailboxes spread over several service accounts keep their sync state and
mappings when an account is added; delegate access keeps the service account's concurrent EWS
calls within the connection's ``maxConcurrentCalls``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared import bootstrap
from shared.config import connection_secret_name, environment_variable_for
from shared.exchange.accounts import account_for
from shared.models import Health
from shared.queues import MailboxSyncRequested
from shared.store.records import MailboxRecord
from sim.store import Fault
from tests.builders import snapshot_document
from tests.e2e.conftest import ORG, SERVICE, STAFF, World, simulator_config
from tests.waiting import wait_until

SECOND = "svc2@bank.test"
SECOND_PASSWORD = "Svc2-pass:2"
EWS_STAFF = STAFF["ews"]
# A mailbox that exists (online) but that no service account may open, and one that does not.
UNREACHABLE = ("dan-onprem", STAFF["graph"]["dan"])
UNKNOWN = ("ghost", "ghost@bank.test")
_days = itertools.count(1)


@pytest.fixture(scope="module")
def world_simulator_config() -> dict[str, Any]:
    config = simulator_config()
    [service] = config["serviceAccounts"]
    service["delegateFor"] = list(EWS_STAFF.values())
    config["serviceAccounts"].append(
        {
            "username": SECOND,
            "password": SECOND_PASSWORD,
            "impersonate": list(EWS_STAFF.values()),
            "delegateFor": list(EWS_STAFF.values()),
        }
    )
    return config


@pytest.fixture
def onprem_restored(world: World) -> Iterator[None]:
    yield
    world.sim.store.clear_faults()
    put_connection(world, onprem())


def onprem(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "ews",
        "authType": "ntlm",
        "username": SERVICE,
        "secretReference": "e2e-ews-password",
        "accessMode": "impersonation",
    }
    return {**body, **changes}


def put_connection(world: World, body: dict[str, Any]) -> None:
    response = world.admin_put("connections/onprem", {"ewsUrl": world.sim.urls["ews"], **body})
    assert response.status_code in (200, 201), response.text


def assign(world: World, staff_id: str, address: str) -> None:
    body = {"connectionId": "onprem", "mailbox": address, "timeZone": "America/Toronto"}
    response = world.admin_put(f"staff/{staff_id}", body)
    assert response.status_code in (200, 201), response.text


def book(world: World, appointment_id: str, organizer: str, version: int = 1, **extra: Any) -> None:
    body = snapshot_document(
        version,
        organizer=organizer,
        start=datetime(2027, 6, 1, 9, tzinfo=UTC) + timedelta(days=next(_days)),
        time_zone="America/Toronto",
        title=f"Access {appointment_id}",
        **extra,
    )
    response = world.put_appointment(appointment_id, body)
    assert response.status_code == 202, response.text


def mailbox(staff_id: str) -> MailboxRecord:
    found = bootstrap.services().repositories.mailboxes.get(ORG, staff_id)
    assert found is not None
    return found.value


def sync(staff_id: str) -> None:
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll"))


def synced(staff_id: str) -> MailboxRecord:
    """Sync the mailbox as the poll fan-out would and wait until the sync has run."""
    before = mailbox(staff_id).last_sync_at
    sync(staff_id)

    def done() -> MailboxRecord | None:
        now = mailbox(staff_id)
        return now if now.last_sync_at is not None and now.last_sync_at != before else None

    return wait_until(done, what=f"{staff_id}'s mailbox to sync")


def test_a_mailbox_the_account_may_not_open_is_reported_and_the_others_go_on(
    world: World,
) -> None:
    staff_id, address = UNREACHABLE
    assign(world, staff_id, address)
    ann = next(iter(EWS_STAFF))

    book(world, "refused-1", staff_id)
    book(world, "allowed-1", ann)

    allowed = world.applied("allowed-1", 1)
    assert allowed.mailbox == EWS_STAFF[ann]
    assert len(world.live(EWS_STAFF[ann], "Access allowed-1")) == 1
    problem = wait_until(lambda: world.problem("refused-1"), what="the refusal recorded")
    assert "impersonation" in problem.problem
    assert "ErrorImpersonateUserDenied" in problem.problem
    refused = wait_until(
        lambda: mailbox(staff_id) if mailbox(staff_id).health is Health.ACCESS_DENIED else None,
        what="the mailbox marked",
    )
    assert refused.last_error is not None
    assert "ErrorImpersonateUserDenied" in refused.last_error
    assert world.live(address, "Access refused-1") == []

    # The mailbox sync reports it too, and the other mailboxes sync as before.
    sync(staff_id)
    wait_until(lambda: mailbox(staff_id).sync_pending_since is None, what="the refused sync")
    assert mailbox(staff_id).health is Health.ACCESS_DENIED
    assert synced(ann).health is Health.OK
    letters = bootstrap.services().repositories.dead_letters.of_org(ORG)
    assert [letter for letter in letters if "refused-1" in letter.model_dump_json()] == []


def test_an_unknown_mailbox_is_reported_on_that_mailbox(world: World) -> None:
    staff_id, address = UNKNOWN
    assign(world, staff_id, address)

    sync(staff_id)

    marked = wait_until(
        lambda: mailbox(staff_id) if mailbox(staff_id).health is Health.ACCESS_DENIED else None,
        what="the unknown mailbox marked",
    )
    assert marked.last_error is not None
    assert "no such mailbox" in marked.last_error
    assert "ErrorNonExistentMailbox" in marked.last_error


def test_an_added_service_account_takes_over_some_mailboxes_without_a_resync(
    world: World, monkeypatch: pytest.MonkeyPatch, onprem_restored: None
) -> None:
    monkeypatch.setenv(
        environment_variable_for(connection_secret_name(ORG, "e2e-svc2-password")),
        SECOND_PASSWORD,
    )
    staff = list(EWS_STAFF)
    for staff_id in staff:
        book(world, f"spread-{staff_id}", staff_id)
    before = {staff_id: world.applied(f"spread-{staff_id}", 1) for staff_id in staff}
    cursors = {staff_id: synced(staff_id) for staff_id in staff}
    world.sim.ews.reset_concurrency_records()

    accounts = [
        {"username": SERVICE, "secretReference": "e2e-ews-password"},
        {"username": SECOND, "secretReference": "e2e-svc2-password"},
    ]
    put_connection(world, onprem(username=None, secretReference=None, serviceAccounts=accounts))
    for staff_id in staff:
        book(world, f"spread-{staff_id}", staff_id, version=2, location="Room 2")
    after = {staff_id: world.applied(f"spread-{staff_id}", 2) for staff_id in staff}
    resynced = {staff_id: synced(staff_id) for staff_id in staff}

    usernames = [SERVICE, SECOND]
    expected = {EWS_STAFF[s]: account_for(EWS_STAFF[s], usernames) for s in staff}
    assert set(expected.values()) == set(usernames)  # both accounts serve someone
    served = {(who, address) for (who, address) in world.sim.ews.callers if address in expected}
    assert served == {(who, address) for address, who in expected.items()}
    for staff_id in staff:
        # The same event, updated in place; the cursor carried on (no full read, no duplicate).
        assert after[staff_id].item_id == before[staff_id].item_id
        assert len(world.live(EWS_STAFF[staff_id], f"Access spread-{staff_id}")) == 1
        assert resynced[staff_id].last_full_read_at == cursors[staff_id].last_full_read_at
        assert resynced[staff_id].health is Health.OK


def test_delegate_access_keeps_the_accounts_calls_within_its_budget(
    world: World, onprem_restored: None
) -> None:
    put_connection(world, onprem(accessMode="delegate", maxConcurrentCalls=2))
    world.sim.ews.reset_concurrency_records()
    # Every EWS request stays in flight a while, so the workers' calls would overlap.
    world.sim.store.add_fault(Fault(kind="slow", remaining=None, delay_s=0.2))
    ids = [f"delegate-{n}" for n in range(6)]
    organizers = itertools.cycle(EWS_STAFF)
    for appointment_id in ids:
        book(world, appointment_id, next(organizers))

    for appointment_id in ids:
        world.applied(appointment_id, 1, timeout=60)

    assert world.sim.ews.peak_concurrency[f"user:{SERVICE}"] == 2
    assert world.sim.ews.concurrency_refusals == {}
    assert not any(key.startswith("impersonation:") for key in world.sim.ews.peak_concurrency)
