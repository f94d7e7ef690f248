"""``GET /api/orgs/{org}/status`` and the status page's files, through the registered functions
against Azurite: connections and staff set up through the admin routes, work and failures as the
workers record them (rows written through the same repositories the workers use)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest

from devhost.azurite import Azurite
from shared import bootstrap
from shared.admin import ADMIN_KEY_HEADER, org_admin_key_reference
from shared.config import environment_variable_for
from shared.models import Health
from shared.queues import APPOINTMENT_CHANGES, MAILBOX_SYNC, WEBHOOK_DELIVERIES
from shared.status_page import CONTENT_SECURITY_POLICY
from shared.store.records import (
    REFUSED_RESCHEDULE_PROBLEM,
    ApplyProblemRecord,
    DeadLetterRecord,
    ParkedChangeRecord,
    SubscriptionRecord,
)
from shared.webhooks.events import busy_time_row, health_row
from tests.builders import snapshot
from tests.functions_harness import app_environment, http_call

ORG = "acme"
OTHER_ORG = "globex"
ORG_KEY = "acme-admin-key-for-status"
OTHER_KEY = "globex-admin-key-for-status"
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)

EWS = {
    "kind": "ews",
    "ewsUrl": "https://mail.acme.test/EWS/Exchange.asmx",
    "authType": "ntlm",
    "username": "svc-calbridge@acme.test",
    "secretReference": "acme-ews-password",
}
GRAPH = {
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
    }
    with app_environment(azurite.connection_string, name_prefix, {}, **keys):
        yield


def admin(method: str, path: str, body: Any = None, key: str | None = ORG_KEY) -> func.HttpResponse:
    headers = {ADMIN_KEY_HEADER: key} if key is not None else {}
    raw = b"" if body is None else json.dumps(body).encode()
    return http_call(method, f"/api/orgs/{path}", body=raw, headers=headers)


def status(org: str = ORG, key: str | None = ORG_KEY) -> func.HttpResponse:
    return admin("GET", f"{org}/status", key=key)


def read(response: func.HttpResponse) -> Any:
    assert response.status_code == 200, response.get_body()
    return json.loads(response.get_body())


def set_up(graph_staff: tuple[str, ...] = ("dan",)) -> None:
    for connection_id, body in (("onprem", EWS), ("cloud", GRAPH)):
        assert admin("PUT", f"{ORG}/connections/{connection_id}", body).status_code == 201
    for staff_id in ("ann", "bob", *graph_staff):
        connection = "cloud" if staff_id in graph_staff else "onprem"
        body = {
            "connectionId": connection,
            "mailbox": f"{staff_id}@acme.test",
            "timeZone": "Europe/Berlin",
        }
        assert admin("PUT", f"{ORG}/staff/{staff_id}", body).status_code == 201


def book(appointment_id: str, organizer: str) -> None:
    repos = bootstrap.services().repositories
    booked = snapshot(1, organizer=organizer)
    repos.appointments.save_snapshot(ORG, appointment_id, booked)


def test_an_organization_without_rows_reads_as_empty(app: None) -> None:
    answer = read(status())
    assert answer["org"] == ORG
    assert answer["connections"] == []
    assert answer["mailboxes"] == []
    assert answer["pending"] == {"parked": 0, "applyProblems": 0, "undeliveredWebhooks": 0}
    assert answer["deadLettered"] == {"deadLetters": 0, "webhooks": 0}
    assert answer["errors"] == []
    assert answer["deadLetters"] == []


def test_connections_and_mailboxes_are_shown_with_their_health_and_resync(app: None) -> None:
    set_up()
    repos = bootstrap.services().repositories
    now = datetime.now(UTC)
    # ann was read in full a minute ago; bob has not been read yet (resyncing).
    ann = repos.mailboxes.get(ORG, "ann")
    assert ann is not None
    synced = ann.value.model_copy(
        update={
            "last_sync_at": now - timedelta(seconds=60),
            "last_full_read_at": now,
            "health": Health.OK,
        }
    )
    repos.mailboxes.put(ORG, "ann", synced, ann.etag)
    cloud = repos.connections.get(ORG, "cloud")
    assert cloud is not None
    failed = cloud.value.model_copy(
        update={"health": Health.AUTH_FAILED, "health_detail": "Graph refused the token (401)"}
    )
    repos.connections.put(ORG, "cloud", failed, cloud.etag)
    expiry = now + timedelta(days=2)
    repos.subscriptions.put(
        ORG,
        "sub-1",
        SubscriptionRecord(
            subscription_id="sub-1",
            connection_id="cloud",
            staff_id="dan",
            mailbox="dan@acme.test",
            expires_at=expiry,
            client_state_hash="0" * 64,
        ),
        None,
    )

    response = status()
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    answer = read(response)
    connections = {c["connectionId"]: c for c in answer["connections"]}
    assert connections["onprem"] == {
        "connectionId": "onprem",
        "kind": "ews",
        "enabled": True,
        "health": "ok",
        "lastError": None,
        "mailboxes": 2,
        "resync": {"done": 1, "total": 2},
        "parked": 0,
    }
    assert connections["cloud"]["health"] == "auth_failed"
    assert connections["cloud"]["lastError"] == "Graph refused the token (401)"
    mailboxes = {m["staffId"]: m for m in answer["mailboxes"]}
    assert list(mailboxes) == ["ann", "bob", "dan"]
    assert mailboxes["ann"]["health"] == "ok"
    assert mailboxes["ann"]["resyncing"] is False
    assert 59 <= mailboxes["ann"]["lagSeconds"] < 120
    assert mailboxes["bob"]["health"] is None
    assert mailboxes["bob"]["resyncing"] is True
    assert mailboxes["bob"]["lagSeconds"] is None
    assert mailboxes["bob"]["lastSyncedAt"] is None
    # A mailbox of a connection whose credentials Exchange refused shares its health.
    assert mailboxes["dan"]["health"] == "auth_failed"
    assert datetime.fromisoformat(mailboxes["dan"]["subscriptionExpiresAt"]) == expiry
    assert answer["errors"][0] == {
        "at": None,
        "source": "connection",
        "connectionId": "cloud",
        "staffId": None,
        "subjectId": None,
        "message": "Graph refused the token (401)",
    }


def test_a_disabled_connection_and_its_mailboxes_read_as_disabled(app: None) -> None:
    set_up()
    assert admin("PUT", f"{ORG}/connections/onprem", {**EWS, "enabled": False}).status_code == 200
    answer = read(status())
    onprem = next(c for c in answer["connections"] if c["connectionId"] == "onprem")
    assert onprem["enabled"] is False
    assert onprem["health"] == "disabled"
    healths = {m["staffId"]: m["health"] for m in answer["mailboxes"]}
    assert healths["ann"] == healths["bob"] == "disabled"


def test_pending_dead_lettered_and_refused_work_is_counted_per_mailbox(app: None) -> None:
    set_up()
    repos = bootstrap.services().repositories
    for appointment_id, organizer in (
        ("a-parked", "ann"),
        ("a-problem", "ann"),
        ("a-moved", "bob"),
        ("a-dead", "bob"),
    ):
        book(appointment_id, organizer)
    repos.parked.park(
        ORG, ParkedChangeRecord(appointment_id="a-parked", connection_id="onprem", parked_at=T0)
    )
    repos.problems.record(
        ORG,
        ApplyProblemRecord(
            appointment_id="a-problem",
            version=1,
            problem="staff 'zed' has no mailbox",
            recorded_at=T0,
        ),
    )
    repos.problems.record(
        ORG,
        ApplyProblemRecord(
            appointment_id="a-moved",
            version=1,
            problem=f"{REFUSED_RESCHEDULE_PROBLEM}: moved back to the booked time",
            recorded_at=T0 + timedelta(minutes=1),
        ),
    )
    repos.dead_letters.record(
        ORG,
        DeadLetterRecord(
            queue=APPOINTMENT_CHANGES,
            subject_id="a-dead",
            message={"org": ORG, "appointmentId": "a-dead", "version": 1},
            reason="Exchange kept answering 500",
            dequeue_count=5,
            failed_at=T0 + timedelta(minutes=2),
        ),
    )
    repos.dead_letters.record(
        ORG,
        DeadLetterRecord(
            queue=MAILBOX_SYNC,
            subject_id="ann",
            message={"org": ORG, "staffId": "ann"},
            reason="the sync failed 5 times",
            dequeue_count=5,
            failed_at=T0 + timedelta(minutes=3),
        ),
    )
    window = (T0, T0 + timedelta(hours=1))
    waiting = busy_time_row(ORG, "ann", window, "page-1", T0)  # never tried
    retrying = busy_time_row(ORG, "ann", window, "page-2", T0).model_copy(
        update={
            "attempts": 2,
            "next_attempt_at": datetime.now(UTC) + timedelta(seconds=30),
            "last_error": "the booking platform answered HTTP 503",
        }
    )
    dead = busy_time_row(ORG, "bob", window, "page-3", T0).model_copy(
        update={"attempts": 8, "dead_lettered": True, "last_error": "HTTP 500 eight times"}
    )
    delivered = busy_time_row(ORG, "bob", window, "page-4", T0).model_copy(
        update={"attempts": 1, "delivered_at": T0, "answer_status": 200}
    )
    health = health_row(ORG, "onprem", "auth_failed", "401", "t1", T0)  # a connection's
    for row in (waiting, retrying, dead, delivered, health):
        assert repos.outbox.add(ORG, row)

    answer = read(status())
    mailboxes = {m["staffId"]: m for m in answer["mailboxes"]}
    assert mailboxes["ann"]["pending"] == {
        "parked": 1,
        "applyProblems": 1,
        "undeliveredWebhooks": 2,
    }
    assert mailboxes["ann"]["deadLettered"] == {"deadLetters": 1, "webhooks": 0}
    assert mailboxes["bob"]["pending"] == {
        "parked": 0,
        "applyProblems": 0,
        "undeliveredWebhooks": 0,
    }
    assert mailboxes["bob"]["deadLettered"] == {"deadLetters": 1, "webhooks": 1}
    assert mailboxes["bob"]["refusedReschedules"] == 1
    assert mailboxes["ann"]["refusedReschedules"] == 0
    # The connection's own event counts for the organization, not for a mailbox.
    assert answer["pending"] == {"parked": 1, "applyProblems": 1, "undeliveredWebhooks": 3}
    assert answer["deadLettered"] == {"deadLetters": 2, "webhooks": 1}
    onprem = next(c for c in answer["connections"] if c["connectionId"] == "onprem")
    assert onprem["parked"] == 1
    letters = [
        (entry["queue"], entry["subjectId"], entry["staffId"]) for entry in answer["deadLetters"]
    ]
    assert letters[:2] == [(MAILBOX_SYNC, "ann", "ann"), (APPOINTMENT_CHANGES, "a-dead", "bob")]
    assert (WEBHOOK_DELIVERIES, dead.event_id, "bob") in letters
    # Newest first: the dead letters, the refused move, the apply problem; then the retry.
    timed = [(e["source"], e["subjectId"]) for e in answer["errors"] if e["at"] is not None]
    assert timed[:4] == [
        ("webhook", retrying.event_id),
        ("deadLetter", "ann"),
        ("deadLetter", "a-dead"),
        ("apply", "a-moved"),
    ]


def test_replaying_a_dead_webhook_takes_it_off_the_status(app: None) -> None:
    set_up()
    repos = bootstrap.services().repositories
    window = (T0, T0 + timedelta(hours=1))
    dead = busy_time_row(ORG, "ann", window, "page-1", T0).model_copy(
        update={"attempts": 8, "dead_lettered": True, "last_error": "HTTP 500 eight times"}
    )
    repos.outbox.add(ORG, dead)
    assert read(status())["deadLettered"]["webhooks"] == 1
    assert admin("POST", f"{ORG}/webhooks/{dead.event_id}/replay").status_code == 202
    answer = read(status())
    assert answer["deadLettered"]["webhooks"] == 0
    assert answer["pending"]["undeliveredWebhooks"] == 1  # its tries start over


def test_the_answer_carries_no_connection_setting_or_secret(app: None) -> None:
    set_up()
    text = status().get_body().decode()
    for setting in (
        "acme-ews-password",
        "acme-graph-secret",
        "svc-calbridge",
        "tenant-1",
        "client-1",
        "mail.acme.test",
        ORG_KEY,
    ):
        assert setting not in text


@pytest.mark.parametrize(
    ("org", "key", "expected"),
    [
        (ORG, None, 401),
        (ORG, "wrong-key", 401),
        (ORG, OTHER_KEY, 401),  # another organization's key opens only its own rows
        ("unknown-org", ORG_KEY, 401),
        ("Not_An_Org", ORG_KEY, 404),
    ],
)
def test_status_needs_the_organizations_admin_key(
    app: None, org: str, key: str | None, expected: int
) -> None:
    set_up()
    response = status(org, key)
    assert response.status_code == expected
    assert "connections" not in json.loads(response.get_body())


@pytest.mark.parametrize(
    ("path", "media_type", "needle"),
    [
        ("/api/status-page", "text/html", '<script src="status-page/app.js" defer></script>'),
        ("/api/status-page/app.js", "text/javascript", "textContent"),
        ("/api/status-page/style.css", "text/css", ".lag-bar"),
    ],
)
def test_the_status_page_files_are_served_with_a_strict_policy(
    app: None, path: str, media_type: str, needle: str
) -> None:
    response = http_call("GET", path)
    assert response.status_code == 200
    assert response.mimetype == media_type
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert needle in response.get_body().decode()


def test_the_page_has_no_inline_script_and_never_renders_data_as_html(app: None) -> None:
    page = http_call("GET", "/api/status-page").get_body().decode()
    script = http_call("GET", "/api/status-page/app.js").get_body().decode()
    assert page.count("<script") == 1
    assert "<script src=" in page
    assert " on" + "click=" not in page
    assert "<form" not in page
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
