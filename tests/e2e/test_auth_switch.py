"""An administrator switches the on-premises connection from NTLM to OAuth (a certificate, then
a client secret) by saving it again: every mailbox keeps its sync cursor and every appointment
its mapping. Appointments booked under NTLM are updated and cancelled in place under OAuth (no
second event), the next sync is incremental (the stored cursor, no full read), and nothing
already known is reported again. Every log record of the run is scanned for the certificate's
lines and the secrets (the suite's privacy check)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from shared import bootstrap
from shared.mailbox_sync import service as mailbox_sync_service
from shared.models import EventMapping, Health
from shared.queues import MailboxSyncRequested
from shared.store.records import ConnectionRecord, MailboxRecord
from sim.people import Outlook
from tests.e2e.conftest import (
    CLIENT_ID,
    EWS_APP_CERTIFICATE,
    EWS_APP_CLIENT_ID,
    EWS_APP_SECRETS,
    ORG,
    SERVICE,
    STAFF,
    TENANT_ID,
    World,
)
from tests.e2e.test_booking_to_exchange import put, snapshot, unique
from tests.e2e.test_exchange_to_booking import received, synced, webhooks
from tests.waiting import wait_until

(ANN, ANN_MAILBOX), (BOB, BOB_MAILBOX), _ = STAFF["ews"].items()
NTLM = {
    "kind": "ews",
    "authType": "ntlm",
    "username": SERVICE,
    "secretReference": "e2e-ews-password",
    "accessMode": "impersonation",
}
OAUTH_CERTIFICATE = {
    "kind": "ews",
    "authType": "oauth",
    "tenantId": TENANT_ID,
    "clientId": EWS_APP_CLIENT_ID,
    "credentialType": "certificate",
    "secretReference": "e2e-ews-app-certificate",
    "accessMode": "impersonation",
}
OAUTH_SECRET = {
    **OAUTH_CERTIFICATE,
    "credentialType": "secret",
    "secretReference": "e2e-ews-app-secret",
}


@pytest.fixture(scope="module", autouse=True)
def webhooks_go_to_the_stand_in(world: World) -> None:
    response = world.admin_put("settings", {"webhookUrl": world.sim.urls["booking"] + "/webhooks"})
    assert response.status_code in (200, 201), response.text


def save_onprem(world: World, body: dict[str, Any]) -> dict[str, Any]:
    response = world.admin_put("connections/onprem", {**body, "ewsUrl": world.sim.urls["ews"]})
    assert response.status_code == 200, response.text
    for line in EWS_APP_CERTIFICATE.secret.splitlines():
        assert line not in response.text
    return dict(response.json())


def mailbox(staff_id: str) -> MailboxRecord:
    found = bootstrap.services().repositories.mailboxes.get(ORG, staff_id)
    assert found is not None
    return found.value


def mapping(world: World, appointment_id: str) -> EventMapping:
    found = world.mapping(appointment_id)
    assert found is not None
    return found


def ews_logons(world: World) -> dict[str, Any]:
    return {k: v for k, v in world.sim.store.counter_snapshot().items() if k.startswith("auth:")}


def test_switching_from_ntlm_to_oauth_keeps_sync_state_and_mappings(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sync the poll timer queued just before a switch may use the connection row it was
    # queued with for CONNECTION_REUSED_FOR (10 s); this test counts the switch's own syncs.
    monkeypatch.setattr(mailbox_sync_service, "CONNECTION_REUSED_FOR", timedelta(0))
    save_onprem(world, NTLM)
    # --- booked, read and known under NTLM ---
    moved_id, moved_title, day = unique("Switch reschedule")
    cancelled_id, cancelled_title, other_day = unique("Switch cancel")
    put(world, moved_id, snapshot(1, ANN, [BOB], title=moved_title, day=day))
    put(world, cancelled_id, snapshot(1, ANN, [], title=cancelled_title, day=other_day))
    dentist = datetime(2027, 5, 3, 14, tzinfo=UTC)
    Outlook(world.sim.store, ANN_MAILBOX).create_event(
        "Dentist (switch)", dentist, dentist + timedelta(hours=1)
    )
    for staff_id in (ANN, BOB):
        synced(world, staff_id)
    received(world, "busy_time.changed", staffId=ANN)
    assert "auth:ntlm-v2" in ews_logons(world)
    before = {staff_id: mailbox(staff_id) for staff_id in (ANN, BOB)}
    assert all(m.sync_state and m.last_full_read_at for m in before.values())
    mapped = {a: mapping(world, a) for a in (moved_id, cancelled_id)}
    [moved_item] = world.live(ANN_MAILBOX, moved_title)
    [bobs_copy] = world.live(BOB_MAILBOX, moved_title)
    hooks_before = len(world.sim.booking.received)

    for body in (OAUTH_CERTIFICATE, OAUTH_SECRET):
        # --- the switch: saved again with the new authentication ---
        save_onprem(world, body)
        world.sim.store.reset_counters()
        for staff_id, was in before.items():
            now = mailbox(staff_id)
            assert now.sync_state == was.sync_state  # the cursor is kept ...
            assert now.last_full_read_at == was.last_full_read_at  # ... so no resync either
        for appointment_id, was_mapped in mapped.items():
            kept = mapping(world, appointment_id)
            assert (kept.item_id, kept.uid) == (was_mapped.item_id, was_mapped.uid)
        # An incremental sync under OAuth: nothing new, nothing reported again.
        for staff_id in (ANN, BOB):
            synced(world, staff_id)
            assert mailbox(staff_id).last_full_read_at == before[staff_id].last_full_read_at
        assert len(world.sim.booking.received) == hooks_before
        counters = world.sim.store.counter_snapshot()
        # (The poll timer may have read another staff member's mailbox meanwhile.)
        reads = counters["ews:SyncFolderItems"]
        assert {m: reads.get(m) for m in (ANN_MAILBOX, BOB_MAILBOX)} == {
            ANN_MAILBOX: 1,
            BOB_MAILBOX: 1,
        }
        assert ews_logons(world) == {}  # bearer tokens only, no NTLM handshake
        how = f"token:client-{body['credentialType']}"
        assert counters[how] == {EWS_APP_CLIENT_ID.lower(): 1}  # one token, for both syncs

    # --- update and cancel under OAuth: in place, no second event ---
    put(world, moved_id, snapshot(2, ANN, [BOB], title=moved_title, day=day, hour=11))
    put(
        world,
        cancelled_id,
        snapshot(2, ANN, [], title=cancelled_title, day=other_day, status="cancelled"),
    )
    [moved_now] = world.live(ANN_MAILBOX, moved_title)
    [bobs_now] = world.live(BOB_MAILBOX, moved_title)
    assert moved_now.id == moved_item.id
    assert bobs_now.id == bobs_copy.id
    booked = datetime(2027, 3, 1, 11, tzinfo=UTC) + timedelta(days=day)
    assert moved_now.start == booked
    assert bobs_now.start == booked
    assert world.live(ANN_MAILBOX, cancelled_title) == []
    assert mapping(world, moved_id).item_id == mapped[moved_id].item_id
    assert ews_logons(world) == {}

    # Our own writes, read back incrementally, are no Outlook change: nothing is emitted.
    for staff_id in (ANN, BOB):
        synced(world, staff_id)
        assert mailbox(staff_id).last_full_read_at == before[staff_id].last_full_read_at
    assert len(world.sim.booking.received) == hooks_before
    assert webhooks(world, "appointment.cancelled", appointmentId=cancelled_id) == []

    # What staff do in Outlook still flows, once.
    Outlook(world.sim.store, ANN_MAILBOX).move(
        moved_now.id, booked + timedelta(hours=2), booked + timedelta(hours=3)
    )
    synced(world, ANN)
    hook = received(world, "appointment.rescheduled", appointmentId=moved_id)
    assert hook.body["data"]["by"] == ANN
    assert len(webhooks(world, "appointment.rescheduled", appointmentId=moved_id)) == 1


def test_a_certificate_secret_that_holds_no_usable_key_is_reported_without_its_content(
    world: World,
) -> None:
    broken = EWS_APP_SECRETS["e2e-ews-app-broken-certificate"]
    repos = bootstrap.services().repositories
    try:
        save_onprem(
            world, {**OAUTH_CERTIFICATE, "secretReference": "e2e-ews-app-broken-certificate"}
        )
        bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=ANN, reason="poll"))

        def refused() -> ConnectionRecord | None:
            found = repos.connections.get(ORG, "onprem")
            health = found.value.health if found else None
            return found.value if found and health is Health.AUTH_FAILED else None

        connection = wait_until(refused, what="the connection marked auth_failed")
        detail = connection.health_detail or ""
        assert "connection 'onprem'" in detail
        assert "'e2e-ews-app-broken-certificate'" in detail
        assert "private key" in detail
        hook = received(world, "connection.health_changed", connectionId="onprem")
        # The certificate's lines are in no table row, no webhook (logs: the suite's scan).
        lines = [line for line in broken.splitlines() if "-----" not in line]
        tables = TableServiceClient.from_connection_string(world.storage)
        for table in tables.list_tables():
            if table.name.startswith(world.queue_prefix):
                for row in tables.get_table_client(table.name).list_entities():
                    text = json.dumps(row, default=str)
                    assert not [line for line in lines if line in text]
        assert not [line for line in lines if line in hook.raw]
    finally:
        save_onprem(world, NTLM)


def test_switching_graph_from_a_client_secret_to_a_certificate_keeps_the_delta_cursor(
    world: World,
) -> None:
    (dan, dan_mailbox), (eve, eve_mailbox), _ = STAFF["graph"].items()
    cloud = {
        "kind": "graph",
        "authType": "oauth",
        "tenantId": TENANT_ID,
        "clientId": CLIENT_ID,
        "secretReference": "e2e-graph-secret",
    }
    try:
        appointment_id, title, day = unique("Graph switch")
        put(world, appointment_id, snapshot(1, dan, [eve], title=title, day=day))
        for staff_id in (dan, eve):
            synced(world, staff_id)
        before = {staff_id: mailbox(staff_id) for staff_id in (dan, eve)}
        [organizer_copy] = world.live(dan_mailbox, title)
        hooks_before = len(world.sim.booking.received)

        response = world.admin_put(
            "connections/cloud",
            {**cloud, "credentialType": "certificate", "secretReference": "e2e-graph-certificate"},
        )
        assert response.status_code == 200, response.text
        world.sim.store.reset_counters()
        for staff_id, was in before.items():
            assert mailbox(staff_id).sync_state == was.sync_state
        put(world, appointment_id, snapshot(2, dan, [eve], title=title, day=day, hour=13))
        [moved] = world.live(dan_mailbox, title)
        assert moved.id == organizer_copy.id
        assert len(world.live(eve_mailbox, title)) == 1
        for staff_id in (dan, eve):
            synced(world, staff_id)
            assert mailbox(staff_id).last_full_read_at == before[staff_id].last_full_read_at
        assert len(world.sim.booking.received) == hooks_before
        counters = world.sim.store.counter_snapshot()
        assert CLIENT_ID.lower() in counters["token:client-certificate"]
        assert "token:client-secret" not in counters
    finally:
        response = world.admin_put("connections/cloud", cloud)
        assert response.status_code == 200, response.text
