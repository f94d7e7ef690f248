"""The administrator's routes (connections, staff mailboxes), through the registered functions
against Azurite. Every refusal is checked to change nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from devhost.azurite import Azurite, free_port
from shared import bootstrap
from shared.admin import ADMIN_KEY_HEADER, org_admin_key_reference
from shared.config import KeyVaultSecretResolver, environment_variable_for
from shared.queues import APPOINTMENT_CHANGES, MemoryQueueSender, QueueUnavailable
from shared.store.records import ParkedChangeRecord
from tests.functions_harness import app_environment, http_call

ORG = "acme"
OTHER_ORG = "globex"
ORG_KEY = "acme-admin-key-for-tests"
OTHER_KEY = "globex-admin-key-for-tests"
OPERATOR_KEY = "operator-key-for-tests"

EWS_CONNECTION = {
    "kind": "ews",
    "ewsUrl": "https://mail.acme.test/EWS/Exchange.asmx",
    "authType": "ntlm",
    "username": "svc-calbridge@acme.test",
    "secretReference": "acme-ews-password",
    "accessMode": "impersonation",
    "enabled": True,
}
GRAPH_CONNECTION = {
    "kind": "graph",
    "authType": "oauth",
    "tenantId": "tenant-1",
    "clientId": "client-1",
    "secretReference": "acme-graph-secret",
}


@pytest.fixture
def app(azurite: Azurite, name_prefix: str) -> Iterator[None]:
    keys = {
        environment_variable_for(org_admin_key_reference(ORG)): ORG_KEY,
        environment_variable_for(org_admin_key_reference(OTHER_ORG)): OTHER_KEY,
        "CALBRIDGE_ADMIN_KEY": OPERATOR_KEY,
    }
    with app_environment(azurite.connection_string, name_prefix, {}, **keys):
        yield


def admin_put(path: str, body: Any, key: str | None = ORG_KEY) -> func.HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {ADMIN_KEY_HEADER: key} if key is not None else {}
    return http_call("PUT", f"/api/orgs/{path}", body=raw, headers=headers)


def answer(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def connections(org: str = ORG) -> dict[str, Any]:
    repos = bootstrap.services().repositories
    return {k: v.value for k, v in repos.connections.list_by_org(org).items()}


def mailboxes(org: str = ORG) -> dict[str, Any]:
    repos = bootstrap.services().repositories
    return {k: v.value for k, v in repos.mailboxes.list_by_org(org).items()}


def test_a_connection_is_created_then_replaced(app: None) -> None:
    created = admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    assert created.status_code == 201, created.get_body()
    assert answer(created)["created"] is True
    replaced = admin_put(f"{ORG}/connections/onprem", {**EWS_CONNECTION, "accessMode": "delegate"})
    assert replaced.status_code == 200
    stored = connections()["onprem"]
    assert (stored.kind, stored.access_mode, stored.secret_reference) == (
        "ews",
        "delegate",
        "acme-ews-password",
    )


def test_the_operator_key_works_for_any_organization(app: None) -> None:
    response = admin_put(f"{OTHER_ORG}/connections/cloud", GRAPH_CONNECTION, key=OPERATOR_KEY)
    assert response.status_code == 201
    assert list(connections(OTHER_ORG)) == ["cloud"]


@pytest.mark.parametrize(
    ("org", "key", "why"),
    [
        (ORG, None, "missing"),
        (ORG, "wrong", "does not match"),
        (ORG, OTHER_KEY, "does not match"),  # another organization's key
        ("nobody", ORG_KEY, "does not match"),
    ],
)
def test_a_wrong_admin_key_is_refused_and_changes_nothing(
    app: None, org: str, key: str | None, why: str
) -> None:
    response = admin_put(f"{org}/connections/onprem", EWS_CONNECTION, key=key)
    assert response.status_code == 401
    assert why in answer(response)["message"]
    assert connections(org) == {}


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://mail.acme.test/EWS/Exchange.asmx", "must use https"),
        ("https://169.254.169.254/metadata/identity", "link-local or cloud metadata"),
        ("https://[fd00:ec2::254]/latest/meta-data", "link-local or cloud metadata"),
        ("https://168.63.129.16/machine", "link-local or cloud metadata"),
        ("https://[::ffff:169.254.169.254]/", "link-local or cloud metadata"),
        ("https://10.1.2.3/EWS/Exchange.asmx", "private address 10.1.2.3"),
        ("https://192.168.0.10/EWS/Exchange.asmx", "private address"),
        ("https://127.0.0.1:8443/EWS/Exchange.asmx", "loopback"),
        ("https://localhost/EWS/Exchange.asmx", "loopback"),
        ("http://127.0.0.1:8080/EWS/Exchange.asmx", "must use https"),
        ("https://0.0.0.0/EWS/Exchange.asmx", "not a server's address"),
    ],
)
def test_an_exchange_url_calbridge_must_not_call_is_refused(app: None, url: str, why: str) -> None:
    response = admin_put(f"{ORG}/connections/onprem", {**EWS_CONNECTION, "ewsUrl": url})
    assert response.status_code == 422, response.get_body()
    [problem] = answer(response)["problems"]
    assert problem["field"] == "ewsUrl"
    assert why in problem["message"]
    assert connections() == {}


def test_credentials_inside_an_exchange_url_are_refused_and_never_repeated(app: None) -> None:
    url = "https://svc:hunter2@mail.acme.test/EWS/Exchange.asmx"
    response = admin_put(f"{ORG}/connections/onprem", {**EWS_CONNECTION, "ewsUrl": url})
    assert response.status_code == 422
    [problem] = answer(response)["problems"]
    assert problem["field"] == "ewsUrl"
    assert "user name or password" in problem["message"]
    assert "hunter2" not in response.get_body().decode()
    assert connections() == {}


def test_the_operator_may_allow_private_networks_and_loopback(
    azurite: Azurite, name_prefix: str
) -> None:
    with app_environment(
        azurite.connection_string,
        name_prefix,
        {},
        CALBRIDGE_ADMIN_KEY=OPERATOR_KEY,
        CALBRIDGE_ALLOW_PRIVATE_EXCHANGE_NETWORKS="true",
        CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE="true",
    ):
        for connection_id, url in (
            ("vnet", "https://10.1.2.3/EWS/Exchange.asmx"),
            ("local", "http://127.0.0.1:8080/EWS/Exchange.asmx"),
        ):
            response = admin_put(
                f"{ORG}/connections/{connection_id}",
                {**EWS_CONNECTION, "ewsUrl": url},
                key=OPERATOR_KEY,
            )
            assert response.status_code == 201, response.get_body()
        # Never the metadata endpoint, whatever the operator allows.
        response = admin_put(
            f"{ORG}/connections/imds",
            {**EWS_CONNECTION, "ewsUrl": "http://169.254.169.254/metadata"},
            key=OPERATOR_KEY,
        )
        assert response.status_code == 422
        assert sorted(connections()) == ["local", "vnet"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({**EWS_CONNECTION, "password": "hunter2"}, "password", "unknown field"),
        ({**EWS_CONNECTION, "kind": "imap"}, "kind", ""),
        ({k: v for k, v in EWS_CONNECTION.items() if k != "ewsUrl"}, "ewsUrl", "required"),
        ({**GRAPH_CONNECTION, "authType": "basic"}, "authType", "oauth"),
        ({**EWS_CONNECTION, "secretReference": "no/slashes"}, "secretReference", ""),
        # A password is no certificate; an NTLM version means nothing to OAuth.
        ({**EWS_CONNECTION, "credentialType": "certificate"}, "credentialType", "oauth"),
        ({**GRAPH_CONNECTION, "credentialType": "pfx"}, "credentialType", ""),
        ({**GRAPH_CONNECTION, "ntlmVersion": "v1"}, "ntlmVersion", "ntlm only"),
        ({**EWS_CONNECTION, "ntlmVersion": "v3"}, "ntlmVersion", ""),
    ],
)
def test_an_invalid_connection_is_refused_naming_the_field(
    app: None, body: dict[str, Any], field: str, message: str
) -> None:
    response = admin_put(f"{ORG}/connections/onprem", body)
    assert response.status_code == 422
    problems = answer(response)["problems"]
    assert any(p["field"] == field and message in p["message"] for p in problems), problems
    assert connections() == {}
    assert "hunter2" not in response.get_body().decode()


def test_malformed_json_and_bad_ids_are_refused(app: None) -> None:
    assert admin_put(f"{ORG}/connections/onprem", b"{not json").status_code == 400
    assert admin_put(f"{ORG}/connections/bad%2Fid", EWS_CONNECTION).status_code in (400, 404)
    assert connections() == {}


def test_staff_are_assigned_to_a_connection_of_their_organization(app: None) -> None:
    admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    body = {"connectionId": "onprem", "mailbox": "Ann@Acme.test", "timeZone": "America/Toronto"}
    response = admin_put(f"{ORG}/staff/ann", body)
    assert response.status_code == 201, response.get_body()
    stored = mailboxes()["ann"]
    assert (stored.connection_id, stored.address, stored.time_zone) == (
        "onprem",
        "ann@acme.test",
        "America/Toronto",
    )


def test_staff_on_an_unknown_or_foreign_connection_are_refused(app: None) -> None:
    admin_put(f"{OTHER_ORG}/connections/cloud", GRAPH_CONNECTION, key=OTHER_KEY)
    body = {"connectionId": "cloud", "mailbox": "ann@acme.test", "timeZone": "UTC"}
    response = admin_put(f"{ORG}/staff/ann", body)
    assert response.status_code == 422
    assert "connectionId 'cloud'" in answer(response)["message"]
    assert mailboxes() == {}


def test_an_unknown_time_zone_is_refused(app: None) -> None:
    admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    body = {"connectionId": "onprem", "mailbox": "ann@acme.test", "timeZone": "Mars/Olympus"}
    response = admin_put(f"{ORG}/staff/ann", body)
    assert response.status_code == 422
    assert "Mars/Olympus" in json.dumps(answer(response))
    assert mailboxes() == {}


def test_moving_a_mailbox_resets_its_sync_state(app: None) -> None:
    admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    admin_put(f"{ORG}/connections/cloud", GRAPH_CONNECTION)
    body = {"connectionId": "onprem", "mailbox": "ann@acme.test", "timeZone": "UTC"}
    admin_put(f"{ORG}/staff/ann", body)
    repos = bootstrap.services().repositories
    current = repos.mailboxes.get(ORG, "ann")
    assert current is not None
    repos.mailboxes.put(
        ORG, "ann", current.value.model_copy(update={"sync_state": "S1"}), current.etag
    )
    same = admin_put(f"{ORG}/staff/ann", body)
    assert answer(same)["syncReset"] is False
    assert mailboxes()["ann"].sync_state == "S1"
    moved = admin_put(f"{ORG}/staff/ann", {**body, "connectionId": "cloud"})
    assert answer(moved)["syncReset"] is True
    assert mailboxes()["ann"].sync_state is None


def test_enabling_a_connection_requeues_its_parked_changes(app: None) -> None:
    admin_put(f"{ORG}/connections/onprem", {**EWS_CONNECTION, "enabled": False})
    services = bootstrap.services()
    queue = MemoryQueueSender()
    bootstrap.install(bootstrap.build_services(services.settings, queue=queue))
    repos = bootstrap.services().repositories
    from shared.models import AppointmentSnapshot
    from tests.integration.test_booking_api import snapshot_body

    snapshot = AppointmentSnapshot.model_validate_json(snapshot_body(7))
    repos.appointments.save_snapshot(ORG, "apt-9", snapshot)
    repos.parked.park(
        ORG,
        ParkedChangeRecord(
            appointment_id="apt-9", connection_id="onprem", parked_at=datetime.now(UTC)
        ),
    )
    response = admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    assert answer(response)["requeuedParkedChanges"] == 1
    assert queue.bodies(APPOINTMENT_CHANGES) == [
        {"org": ORG, "appointmentId": "apt-9", "version": 7}
    ]


def test_a_queue_failure_while_requeueing_parked_changes_is_503_and_the_retry_requeues(
    app: None,
) -> None:
    admin_put(f"{ORG}/connections/onprem", {**EWS_CONNECTION, "enabled": False})
    services = bootstrap.services()
    queue = MemoryQueueSender()
    queue.failure = QueueUnavailable("queue appointment-changes: ServiceRequestError")
    bootstrap.install(bootstrap.build_services(services.settings, queue=queue))
    repos = bootstrap.services().repositories
    from shared.models import AppointmentSnapshot
    from tests.integration.test_booking_api import snapshot_body

    repos.appointments.save_snapshot(
        ORG, "apt-9", AppointmentSnapshot.model_validate_json(snapshot_body(7))
    )
    repos.parked.park(
        ORG,
        ParkedChangeRecord(
            appointment_id="apt-9", connection_id="onprem", parked_at=datetime.now(UTC)
        ),
    )
    response = admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    assert response.status_code == 503
    assert answer(response)["error"] == "unavailable"
    assert [c.appointment_id for c in repos.parked.parked_on(ORG, "onprem")] == ["apt-9"]

    queue.failure = None
    retried = admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    assert retried.status_code == 200
    assert answer(retried)["requeuedParkedChanges"] == 1
    assert queue.bodies(APPOINTMENT_CHANGES) == [
        {"org": ORG, "appointmentId": "apt-9", "version": 7}
    ]


@pytest.mark.parametrize(
    "reference",
    [
        f"org-{OTHER_ORG}-admin-key",
        f"org-{OTHER_ORG}-signing-secret",
        f"ORG-{OTHER_ORG.upper()}-Admin-Key",  # Key Vault names ignore case
        f"org-{ORG}-signing-secret",
        f"org-{ORG}-admin-key",
    ],
)
def test_a_connection_cannot_use_calbridge_keys_as_its_exchange_secret(
    app: None, reference: str
) -> None:
    # The worker would send the named secret to the connection's (admin-chosen) EWS URL.
    response = admin_put(
        f"{ORG}/connections/onprem", {**EWS_CONNECTION, "secretReference": reference}
    )
    assert response.status_code == 422
    problems = answer(response)["problems"]
    assert [p["field"] for p in problems] == ["secretReference"]
    assert connections() == {}


def test_an_org_that_is_not_an_id_is_a_documented_404(app: None) -> None:
    from shared.http.routes import PUT_CONNECTION, PUT_STAFF

    response = admin_put("Not%20An%20Org/connections/onprem", EWS_CONNECTION, key=OPERATOR_KEY)
    assert response.status_code == 404
    assert answer(response)["error"] == "not_found"
    assert 404 in PUT_CONNECTION.responses
    assert 404 in PUT_STAFF.responses


def test_an_unreachable_key_vault_is_503_and_changes_nothing(app: None) -> None:
    services = bootstrap.services()
    vault = KeyVaultSecretResolver(f"https://127.0.0.1:{free_port()}", retry_total=0)
    bootstrap.install(
        bootstrap.build_services(
            services.settings.model_copy(update={"admin_key": None}), secrets=vault
        )
    )
    response = admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    assert response.status_code == 503
    assert answer(response)["error"] == "unavailable"
    assert connections() == {}


def test_a_mailbox_with_a_trailing_line_break_is_refused(app: None) -> None:
    admin_put(f"{ORG}/connections/onprem", EWS_CONNECTION)
    body = {"connectionId": "onprem", "mailbox": "ann@acme.test\n", "timeZone": "UTC"}
    response = admin_put(f"{ORG}/staff/ann", body)
    assert response.status_code == 422
    assert [p["field"] for p in answer(response)["problems"]] == ["mailbox"]
    assert mailboxes() == {}


# --- organization settings -------------------------------------------------------------------


def admin_get(path: str, key: str | None = ORG_KEY) -> func.HttpResponse:
    headers = {ADMIN_KEY_HEADER: key} if key is not None else {}
    return http_call("GET", f"/api/orgs/{path}", headers=headers)


def test_settings_have_defaults_until_set_then_read_back_as_set(app: None) -> None:
    assert answer(admin_get(f"{ORG}/settings")) == {
        "webhookUrl": None,
        "recurrenceHorizonDays": 180,
        "pollIntervalSeconds": 60,
        "massCancellationShare": 0.5,
    }
    body = {
        "webhookUrl": "https://booking.acme.example/calbridge/webhooks",
        "recurrenceHorizonDays": 90,
        "pollIntervalSeconds": 120,
    }
    created = admin_put(f"{ORG}/settings", body)
    assert created.status_code == 201, created.get_body()
    assert admin_put(f"{ORG}/settings", body).status_code == 200
    assert answer(admin_get(f"{ORG}/settings")) == {**body, "massCancellationShare": 0.5}
    # Another organization's key neither reads nor writes them.
    assert admin_get(f"{ORG}/settings", key=OTHER_KEY).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"webhookUrl": "http://booking.acme.example/hooks"}, "webhookUrl", "must use https"),
        ({"webhookUrl": "https://169.254.169.254/latest"}, "webhookUrl", "cloud metadata"),
        ({"recurrenceHorizonDays": 0}, "recurrenceHorizonDays", "greater than or equal to 1"),
        ({"pollIntervalSeconds": 5}, "pollIntervalSeconds", "greater than or equal to 60"),
        ({"poll_interval_seconds": 60}, "poll_interval_seconds", "unknown field"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field_and_change_nothing(
    app: None, body: dict[str, Any], field: str, message: str
) -> None:
    response = admin_put(f"{ORG}/settings", body)
    assert response.status_code == 422, response.get_body()
    problems = answer(response)["problems"]
    assert any(p["field"] == field and message in p["message"] for p in problems), problems
    assert bootstrap.services().repositories.settings.get(ORG) is None


def test_a_dead_lettered_webhook_can_be_replayed_once_and_a_delivered_one_cannot(
    app: None,
) -> None:
    from shared.webhooks.events import busy_time_row

    repos = bootstrap.services().repositories
    now = datetime(2031, 1, 1, tzinfo=UTC)
    row = busy_time_row(ORG, "ann", (now, now), "page", now)
    repos.outbox.add(ORG, row.model_copy(update={"attempts": 8, "dead_lettered": True}))
    response = http_call(
        "POST",
        f"/api/orgs/{ORG}/webhooks/{row.event_id}/replay",
        headers={ADMIN_KEY_HEADER: ORG_KEY},
    )
    assert response.status_code == 202, response.get_body()
    stored = repos.outbox.get(ORG, row.event_id)
    assert stored is not None
    assert (stored.value.attempts, stored.value.dead_lettered) == (0, False)
    delivered = stored.value.model_copy(update={"delivered_at": now})
    repos.outbox.put(ORG, row.event_id, delivered, stored.etag)
    again = http_call(
        "POST",
        f"/api/orgs/{ORG}/webhooks/{row.event_id}/replay",
        headers={ADMIN_KEY_HEADER: ORG_KEY},
    )
    assert again.status_code == 409
    missing = http_call(
        "POST", f"/api/orgs/{ORG}/webhooks/nope/replay", headers={ADMIN_KEY_HEADER: ORG_KEY}
    )
    assert missing.status_code == 404


def test_the_outbox_sweep_queues_again_only_what_lost_its_message(
    app: None, azurite: Azurite, name_prefix: str
) -> None:
    # Through the registered timer function and Azurite's table filter: an overdue row of any
    # organization is queued once; a delivered one and one not due yet are not.
    from azure.storage.queue import QueueClient

    from functions.webhooks import OUTBOX_SWEEP_FUNCTION
    from shared.queues import WEBHOOK_DELIVERIES
    from shared.webhooks.events import busy_time_row
    from tests.functions_harness import call_timer_function, registered_functions

    repos = bootstrap.services().repositories
    now = datetime.now(UTC)
    long_ago = now - timedelta(hours=1)
    lost = busy_time_row(OTHER_ORG, "ann", (now, now), "lost", long_ago)
    delivered = busy_time_row(ORG, "ann", (now, now), "delivered", long_ago)
    fresh = busy_time_row(ORG, "ann", (now, now), "fresh", now)
    repos.outbox.add(OTHER_ORG, lost)
    repos.outbox.add(ORG, delivered.model_copy(update={"delivered_at": now}))
    repos.outbox.add(ORG, fresh)
    sweep = registered_functions()[OUTBOX_SWEEP_FUNCTION]
    call_timer_function(sweep)
    call_timer_function(sweep)  # the row's next try moved on: not queued twice
    queue = QueueClient.from_connection_string(
        azurite.connection_string, name_prefix + WEBHOOK_DELIVERIES
    )
    bodies = [json.loads(base64.b64decode(m.content)) for m in queue.peek_messages(max_messages=32)]
    assert bodies == [{"org": OTHER_ORG, "eventId": lost.event_id}]


def test_oauth_with_a_certificate_and_ntlm_v1_are_saved_and_switching_keeps_the_mailboxes(
    app: None,
) -> None:
    response = admin_put(f"{ORG}/connections/onprem", {**EWS_CONNECTION, "ntlmVersion": "v1"})
    assert response.status_code == 201, response.get_body()
    assert connections()["onprem"].ntlm_version == "v1"
    staff = {"connectionId": "onprem", "mailbox": "ann@acme.test", "timeZone": "Europe/Berlin"}
    assert admin_put(f"{ORG}/staff/ann", staff).status_code == 201
    before = mailboxes()["ann"]
    oauth = {
        "kind": "ews",
        "ewsUrl": EWS_CONNECTION["ewsUrl"],
        "authType": "oauth",
        "tenantId": "tenant-1",
        "clientId": "client-1",
        "credentialType": "certificate",
        "secretReference": "acme-ews-certificate",
    }
    response = admin_put(f"{ORG}/connections/onprem", oauth)
    assert response.status_code == 200, response.get_body()
    saved = connections()["onprem"]
    assert (saved.auth_type, saved.credential_type, saved.ntlm_version) == (
        "oauth",
        "certificate",
        None,
    )
    assert mailboxes()["ann"] == before
