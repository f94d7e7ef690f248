"""The administrator's connection operations through the registered functions against Azurite:
reading connections back, disable and enable, resync, replay of dead letters and poison
messages. Refusals name the problem and change nothing. (The connection test and the workers'
side of maintenance and migration run against the simulator in ``tests/e2e``.)"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite
from shared import bootstrap
from shared.admin import ADMIN_KEY_HEADER, org_admin_key_reference
from shared.config import environment_variable_for
from shared.models import Health
from shared.queues import APPOINTMENT_CHANGES, MAILBOX_SYNC, POISON_SUFFIX, WEBHOOK_DELIVERIES
from shared.store.records import DeadLetterRecord, ParkedChangeRecord
from tests.builders import snapshot
from tests.functions_harness import app_environment, http_call

ORG = "acme"
OTHER_ORG = "globex"
ORG_KEY = "acme-admin-key-for-ops"

EWS_CONNECTION = {
    "kind": "ews",
    "ewsUrl": "https://mail.acme.test/EWS/Exchange.asmx",
    "authType": "ntlm",
    "username": "svc-calbridge@acme.test",
    "secretReference": "acme-ews-password",
    "accessMode": "impersonation",
}
SECRET = "never-shown-Secret!1"


@pytest.fixture
def app(azurite: Azurite, name_prefix: str) -> Iterator[str]:
    keys = {
        environment_variable_for(org_admin_key_reference(ORG)): ORG_KEY,
        "CALBRIDGE_SECRET_ORG_ACME__ACME_EWS_PASSWORD": SECRET,
    }
    with app_environment(azurite.connection_string, name_prefix, {}, **keys):
        assert admin("PUT", "connections/onprem", EWS_CONNECTION).status_code == 201
        for staff_id in ("ann", "bob"):
            body = {
                "connectionId": "onprem",
                "mailbox": f"{staff_id}@acme.test",
                "timeZone": "Europe/Berlin",
            }
            assert admin("PUT", f"staff/{staff_id}", body).status_code == 201
        yield name_prefix


def admin(
    method: str, path: str, body: Any = None, key: str | None = ORG_KEY, org: str = ORG
) -> func.HttpResponse:
    raw = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {ADMIN_KEY_HEADER: key} if key is not None else {}
    return http_call(method, f"/api/orgs/{org}/{path}", body=raw, headers=headers)


def answer(response: func.HttpResponse) -> Any:
    return json.loads(response.get_body())


def queued(azurite: Azurite, name: str) -> list[dict[str, Any]]:
    client = QueueClient.from_connection_string(azurite.connection_string, name)
    try:
        messages = client.peek_messages(max_messages=32)
    except ResourceNotFoundError:  # a queue never made holds nothing
        return []
    return [json.loads(base64.b64decode(m.content)) for m in messages]


def clear(azurite: Azurite, *names: str) -> None:
    for name in names:
        client = QueueClient.from_connection_string(azurite.connection_string, name)
        with contextlib.suppress(ResourceNotFoundError):  # a queue never made holds nothing
            client.clear_messages()


def outbox_events() -> list[dict[str, Any]]:
    rows = bootstrap.services().repositories.outbox.list_by_org(ORG).values()
    return [json.loads(row.value.payload) for row in rows]


def test_connections_read_back_without_secrets(app: str) -> None:
    listed = admin("GET", "connections")
    assert listed.status_code == 200
    [view] = answer(listed)["connections"]
    assert view["connectionId"] == "onprem"
    assert view["secretReference"] == "acme-ews-password"
    assert (view["health"], view["lastError"], view["mailboxes"], view["mailboxesRead"]) == (
        None,
        None,
        2,
        0,
    )
    one = admin("GET", "connections/onprem")
    assert one.status_code == 200
    assert answer(one) == view
    for response in (listed, one):
        text = response.get_body().decode()
        assert SECRET not in text
        assert "fingerprint" not in text.lower()


def test_an_unknown_connection_is_a_404_naming_it(app: str) -> None:
    for method, path in (
        ("GET", "connections/nowhere"),
        ("POST", "connections/nowhere/disable"),
        ("POST", "connections/nowhere/enable"),
        ("POST", "connections/nowhere/test"),
        ("POST", "connections/nowhere/resync"),
    ):
        response = admin(method, path)
        assert response.status_code == 404, path
        assert "nowhere" in answer(response)["message"]


def test_the_operations_need_the_admin_key(app: str) -> None:
    for method, path in (
        ("GET", "connections"),
        ("GET", "connections/onprem"),
        ("POST", "connections/onprem/disable"),
        ("POST", "connections/onprem/test"),
        ("POST", "staff/ann/resync"),
        ("POST", "replay"),
    ):
        assert admin(method, path, key="wrong").status_code == 401, path
        assert admin(method, path, key=None).status_code == 401, path
    stored = bootstrap.services().repositories.connections.get(ORG, "onprem")
    assert stored is not None
    assert stored.value.enabled


def test_disable_then_enable_tells_the_platform_and_requeues_what_was_held(
    app: str, azurite: Azurite
) -> None:
    repos = bootstrap.services().repositories
    refused = admin("POST", "connections/onprem/disable", {"really": True})
    assert refused.status_code == 400
    assert "no body" in answer(refused)["message"]
    assert repos.connections.get(ORG, "onprem").value.enabled  # type: ignore[union-attr]

    disabled = admin("POST", "connections/onprem/disable")
    assert disabled.status_code == 200, disabled.get_body()
    assert answer(disabled)["health"] == "disabled"
    assert answer(disabled)["enabled"] is False
    view = answer(admin("GET", "connections/onprem"))
    assert (view["enabled"], view["health"]) == (False, "disabled")

    # What the apply worker held meanwhile: one appointment, its newest snapshot version 3.
    repos.appointments.save_snapshot(ORG, "apt-1", snapshot(3, organizer="ann"))
    repos.parked.park(
        ORG,
        ParkedChangeRecord(
            appointment_id="apt-1", connection_id="onprem", parked_at=datetime.now(UTC)
        ),
    )
    clear(azurite, app + APPOINTMENT_CHANGES, app + MAILBOX_SYNC)
    enabled = admin("POST", "connections/onprem/enable", b"{}")
    assert enabled.status_code == 200, enabled.get_body()
    state = answer(enabled)
    assert (state["health"], state["requeuedParkedChanges"], state["syncsQueued"]) == ("ok", 1, 2)
    assert queued(azurite, app + APPOINTMENT_CHANGES) == [
        {"org": ORG, "appointmentId": "apt-1", "version": 3}
    ]
    assert sorted(m["staffId"] for m in queued(azurite, app + MAILBOX_SYNC)) == ["ann", "bob"]
    assert repos.parked.parked_on(ORG, "onprem") == []
    told = [
        e["data"]["health"] for e in outbox_events() if e["type"] == "connection.health_changed"
    ]
    assert sorted(told) == ["disabled", "ok"]
    # Enabling again changes nothing and tells nothing new.
    assert admin("POST", "connections/onprem/enable").status_code == 200
    assert len([e for e in outbox_events() if e["type"] == "connection.health_changed"]) == 2


def test_saving_an_auth_failed_connection_tries_it_again(app: str) -> None:
    repos = bootstrap.services().repositories
    current = repos.connections.get(ORG, "onprem")
    assert current is not None
    failed = current.value.model_copy(
        update={"health": Health.AUTH_FAILED, "health_detail": "EWS: the credentials were refused"}
    )
    repos.connections.put(ORG, "onprem", failed, current.etag)
    view = answer(admin("GET", "connections/onprem"))
    assert (view["health"], view["lastError"]) == (
        "auth_failed",
        "EWS: the credentials were refused",
    )
    assert admin("PUT", "connections/onprem", EWS_CONNECTION).status_code == 200
    saved = repos.connections.get(ORG, "onprem")
    assert saved is not None
    assert saved.value.health is None


def test_resync_of_a_mailbox_and_of_a_connection(app: str, azurite: Azurite) -> None:
    repos = bootstrap.services().repositories
    for staff_id in ("ann", "bob"):
        row = repos.mailboxes.get(ORG, staff_id)
        assert row is not None
        read = row.value.model_copy(update={"last_full_read_at": datetime.now(UTC)})
        repos.mailboxes.put(ORG, staff_id, read, row.etag)
    assert answer(admin("GET", "connections/onprem"))["mailboxesRead"] == 2
    clear(azurite, app + MAILBOX_SYNC)

    one = admin("POST", "staff/ann/resync")
    assert one.status_code == 202
    assert answer(one) == {"connectionId": "onprem", "staffIds": ["ann"]}
    assert queued(azurite, app + MAILBOX_SYNC) == [{"org": ORG, "staffId": "ann", "reason": "full"}]
    assert answer(admin("GET", "connections/onprem"))["mailboxesRead"] == 1

    every = admin("POST", "connections/onprem/resync")
    assert every.status_code == 202
    assert answer(every)["staffIds"] == ["ann", "bob"]
    assert answer(admin("GET", "connections/onprem"))["mailboxesRead"] == 0

    missing = admin("POST", "staff/nobody/resync")
    assert missing.status_code == 404
    assert "nobody" in answer(missing)["message"]


@pytest.mark.parametrize("body", [b"\n", b"  ", b"{} x", b"[]"])
@pytest.mark.parametrize("path", ["replay", "staff/ann/resync", "connections/onprem/disable"])
def test_a_body_that_is_neither_none_nor_json_is_refused_and_changes_nothing(
    app: str, azurite: Azurite, path: str, body: bytes
) -> None:
    # Found by schemathesis: a replay with the body "\n" (no JSON document) was accepted as if
    # it had none. No body at all, or {}, is what these routes take.
    clear(azurite, app + MAILBOX_SYNC, app + APPOINTMENT_CHANGES)
    refused = admin("POST", path, body)
    assert refused.status_code in (400, 422), refused.get_body()
    assert answer(refused)["message"]
    assert queued(azurite, app + MAILBOX_SYNC) == []
    assert queued(azurite, app + APPOINTMENT_CHANGES) == []
    connection = bootstrap.services().repositories.connections.get(ORG, "onprem")
    assert connection is not None
    assert connection.value.enabled
    assert admin("POST", path, b"{ }").status_code in (200, 202)
    if path.endswith("disable"):
        assert admin("POST", "connections/onprem/enable").status_code == 200


def _dead_letter(queue: str, subject: str, message: dict[str, Any]) -> DeadLetterRecord:
    return DeadLetterRecord(
        queue=queue,
        subject_id=subject,
        message=message,
        reason="ExchangeUnavailable: 503",
        dequeue_count=5,
        failed_at=datetime.now(UTC),
    )


def poison(azurite: Azurite, name: str, body: dict[str, Any]) -> None:
    client = QueueClient.from_connection_string(azurite.connection_string, name + POISON_SUFFIX)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.send_message(base64.b64encode(json.dumps(body).encode()).decode())


def test_replay_sends_dead_letters_and_poison_messages_again(app: str, azurite: Azurite) -> None:
    repos = bootstrap.services().repositories
    repos.appointments.save_snapshot(ORG, "apt-1", snapshot(4, organizer="ann"))
    repos.dead_letters.record(
        ORG,
        _dead_letter(
            APPOINTMENT_CHANGES, "apt-1", {"org": ORG, "appointmentId": "apt-1", "version": 2}
        ),
    )
    poison(azurite, app + MAILBOX_SYNC, {"org": ORG, "staffId": "bob", "reason": "poll"})
    poison(azurite, app + MAILBOX_SYNC, {"org": OTHER_ORG, "staffId": "zed", "reason": "poll"})
    clear(azurite, app + APPOINTMENT_CHANGES, app + MAILBOX_SYNC)

    refused = admin("POST", "replay", {"queue": APPOINTMENT_CHANGES})
    assert refused.status_code == 422
    assert "queue and id go together" in answer(refused)["message"] + json.dumps(answer(refused))
    unknown = admin("POST", "replay", {"queue": WEBHOOK_DELIVERIES, "id": "no-such-event"})
    assert unknown.status_code == 404
    assert "no-such-event" in answer(unknown)["message"]
    assert queued(azurite, app + APPOINTMENT_CHANGES) == []

    one = admin("POST", "replay", {"queue": MAILBOX_SYNC, "id": "bob"})
    assert one.status_code == 202, one.get_body()
    assert answer(one)["replayed"] == [{"queue": MAILBOX_SYNC, "id": "bob", "source": "poison"}]
    assert queued(azurite, app + MAILBOX_SYNC) == [{"org": ORG, "staffId": "bob", "reason": "poll"}]
    # The other organization's poison message stays where it was.
    assert [m["org"] for m in queued(azurite, app + MAILBOX_SYNC + POISON_SUFFIX)] == [OTHER_ORG]

    every = admin("POST", "replay")
    assert every.status_code == 202
    assert answer(every)["replayed"] == [
        {"queue": APPOINTMENT_CHANGES, "id": "apt-1", "source": "dead_letter"}
    ]
    # The newest snapshot, whatever version failed; the dead letter is gone.
    assert queued(azurite, app + APPOINTMENT_CHANGES) == [
        {"org": ORG, "appointmentId": "apt-1", "version": 4}
    ]
    assert repos.dead_letters.of_org(ORG) == []
    assert answer(admin("POST", "replay"))["count"] == 0
