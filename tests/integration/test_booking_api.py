"""The booking-platform routes, called through the registered functions against Azurite.

Every refusal is checked to store nothing and queue nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite, free_port
from shared import bootstrap
from shared.config import (
    KeyVaultSecretResolver,
    SecretNotFound,
    environment_variable_for,
    org_previous_signing_secret_reference,
)
from shared.models import BusyBlock
from shared.queues import APPOINTMENT_CHANGES
from shared.queues.azure import AzureQueueSender
from shared.store.azure_tables import AzureTableService
from tests.builders import ADA
from tests.builders import snapshot_body as build_snapshot_body
from tests.functions_harness import (
    app_environment,
    http_call,
    signed_call,
    signed_headers,
)

ORG = "acme"
SECRET = "acme-shared-secret-for-tests"
PATH = f"/api/orgs/{ORG}/appointments/apt-1"


@dataclass
class App:
    azurite: Azurite
    prefix: str

    def stored_appointments(self) -> list[dict[str, Any]]:
        table = TableClient.from_connection_string(
            self.azurite.connection_string, self.prefix + "Appointments"
        )
        try:
            return [dict(entity) for entity in table.list_entities()]
        except ResourceNotFoundError:
            return []

    def queued(self) -> list[dict[str, Any]]:
        queue = QueueClient.from_connection_string(
            self.azurite.connection_string, self.prefix + APPOINTMENT_CHANGES
        )
        try:
            messages = queue.peek_messages(max_messages=32)
        except ResourceNotFoundError:
            return []
        return [json.loads(base64.b64decode(m.content)) for m in messages]

    def assert_untouched(self) -> None:
        assert self.stored_appointments() == []
        assert self.queued() == []


@pytest.fixture
def app(azurite: Azurite, name_prefix: str) -> Iterator[App]:
    with app_environment(azurite.connection_string, name_prefix, {ORG: SECRET}):
        yield App(azurite, name_prefix)


def snapshot_body(version: int = 3, **fields: Any) -> bytes:
    defaults: dict[str, Any] = {
        "secondaries": ("s2",),
        "location": "Branch 4",
        "service": "Advice",
        "clients": (ADA,),
        "notes": "Bring proof of income",
    }
    return build_snapshot_body(version, **{**defaults, **fields})


def put(
    body: bytes, path: str = PATH, secret: str = SECRET, timestamp: int | None = None
) -> func.HttpResponse:
    return signed_call(secret, "PUT", path, body, timestamp=timestamp)


def answer(response: func.HttpResponse) -> Any:
    assert response.mimetype == "application/json"
    return json.loads(response.get_body())


# --- accepted snapshots -----------------------------------------------------------------------


def test_a_new_snapshot_is_stored_and_announced(app: App) -> None:
    response = put(snapshot_body(3))
    assert response.status_code == 202
    assert answer(response) == {"accepted": True, "version": 3}
    [row] = app.stored_appointments()
    assert (row["PartitionKey"], row["RowKey"], row["title"]) == (ORG, "apt-1", "Mortgage advice")
    # Ids only: the appointment, its version, and the staff it names (the worker's read hint).
    assert app.queued() == [
        {"org": ORG, "appointmentId": "apt-1", "version": 3, "staffIds": ["s1", "s2"]}
    ]


def test_the_same_snapshot_again_is_accepted_and_announced_again(app: App) -> None:
    put(snapshot_body(3))
    response = put(snapshot_body(3))
    assert response.status_code == 202
    assert answer(response) == {"accepted": True, "version": 3}
    assert len(app.stored_appointments()) == 1
    assert [m["version"] for m in app.queued()] == [3, 3]


def test_an_older_snapshot_is_ignored_as_stale(app: App) -> None:
    put(snapshot_body(5))
    response = put(snapshot_body(4, title="Older"))
    assert response.status_code == 200
    assert answer(response) == {"accepted": False, "reason": "stale", "storedVersion": 5}
    [row] = app.stored_appointments()
    assert row["title"] == "Mortgage advice"
    assert [m["version"] for m in app.queued()] == [5]


def test_same_version_with_different_content_is_a_409_naming_it(app: App) -> None:
    put(snapshot_body(5))
    response = put(snapshot_body(5, title="Changed"))
    assert response.status_code == 409
    body = answer(response)
    assert body["error"] == "version_conflict"
    assert "version 5" in body["message"]
    [row] = app.stored_appointments()
    assert row["title"] == "Mortgage advice"
    assert len(app.queued()) == 1


def test_a_newer_snapshot_replaces_and_is_announced(app: App) -> None:
    put(snapshot_body(5))
    response = put(snapshot_body(6, status="cancelled"))
    assert response.status_code == 202
    [row] = app.stored_appointments()
    assert (row["version"].value, row["status"]) == (6, "cancelled")
    assert [m["version"] for m in app.queued()] == [5, 6]


def test_a_failed_enqueue_answers_503_and_the_retry_gets_the_message_out(
    app: App, azurite: Azurite, name_prefix: str
) -> None:
    dead_queue = AzureQueueSender.from_connection_string(
        azurite.connection_string.replace(
            f"QueueEndpoint=http://127.0.0.1:{azurite.queue_port}",
            f"QueueEndpoint=http://127.0.0.1:{free_port()}",
        ),
        name_prefix,
        retry_total=0,
    )
    tables = AzureTableService.from_connection_string(azurite.connection_string, name_prefix)
    bootstrap.install(bootstrap.build_services(tables=tables, queue=dead_queue))
    response = put(snapshot_body(3))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert answer(response)["error"] == "unavailable"
    assert len(app.stored_appointments()) == 1  # stored, but not announced
    assert app.queued() == []

    bootstrap.reset()  # the queue is back
    response = put(snapshot_body(3))
    assert response.status_code == 202
    # Ids only: the appointment, its version, and the staff it names (the worker's read hint).
    assert app.queued() == [
        {"org": ORG, "appointmentId": "apt-1", "version": 3, "staffIds": ["s1", "s2"]}
    ]


def test_an_unreachable_key_vault_is_503_and_changes_nothing(
    app: App, azurite: Azurite, name_prefix: str
) -> None:
    vault = KeyVaultSecretResolver(f"https://127.0.0.1:{free_port()}", retry_total=0)
    tables = AzureTableService.from_connection_string(azurite.connection_string, name_prefix)
    queue = AzureQueueSender.from_connection_string(azurite.connection_string, name_prefix)
    bootstrap.install(bootstrap.build_services(tables=tables, queue=queue, secrets=vault))
    response = put(snapshot_body(3))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert answer(response)["error"] == "unavailable"
    app.assert_untouched()


def test_logs_carry_ids_and_outcomes_never_bodies_or_secrets(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        put(snapshot_body(3, notes="PRIVATE-NOTE-TEXT"))
        put(snapshot_body(3), secret="wrong-secret")
    assert "apt-1" in caplog.text
    assert "PRIVATE-NOTE-TEXT" not in caplog.text
    assert "Ada Lovelace" not in caplog.text
    assert SECRET not in caplog.text


# --- refusals ---------------------------------------------------------------------------------


def test_a_body_over_the_size_limit_is_413_before_anything_else(
    azurite: Azurite, name_prefix: str
) -> None:
    with app_environment(
        azurite.connection_string, name_prefix, {ORG: SECRET}, CALBRIDGE_MAX_REQUEST_BYTES="100"
    ):
        response = http_call("PUT", PATH, body=snapshot_body(3))  # not even signed
        assert response.status_code == 413
        assert answer(response)["error"] == "payload_too_large"
        App(azurite, name_prefix).assert_untouched()


def test_missing_signature_is_401_naming_it(app: App) -> None:
    response = http_call("PUT", PATH, body=snapshot_body(3))
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_missing"
    app.assert_untouched()


def test_malformed_signature_is_401_naming_it(app: App) -> None:
    response = http_call(
        "PUT", PATH, body=snapshot_body(3), headers={"X-Calbridge-Signature": "v1=abc"}
    )
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_malformed"
    app.assert_untouched()


def test_an_old_signature_is_refused_as_expired(app: App) -> None:
    response = put(snapshot_body(3), timestamp=int(time.time()) - 301)
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_expired"
    app.assert_untouched()


def test_a_signature_with_the_wrong_secret_is_a_mismatch(app: App) -> None:
    response = put(snapshot_body(3), secret="not-the-secret")
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_mismatch"
    assert "not-the-secret" not in response.get_body().decode()
    app.assert_untouched()


def test_a_signature_over_another_body_is_a_mismatch(app: App) -> None:
    headers = signed_headers(SECRET, "PUT", PATH, snapshot_body(3))
    response = http_call("PUT", PATH, body=snapshot_body(4), headers=headers)
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_mismatch"
    app.assert_untouched()


def test_a_captured_request_cannot_be_replayed_against_another_appointment(app: App) -> None:
    headers = signed_headers(SECRET, "PUT", PATH, snapshot_body(3))
    other = f"/api/orgs/{ORG}/appointments/apt-2"
    response = http_call("PUT", other, body=snapshot_body(3), headers=headers)
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_mismatch"
    app.assert_untouched()


def test_a_captured_busy_query_cannot_be_replayed_for_another_staff_member_or_window(
    app: App,
) -> None:
    window = "start=2026-03-02T00:00:00Z&end=2026-03-03T00:00:00Z"
    ann = f"/api/orgs/{ORG}/staff/ann/busy?{window}"
    headers = signed_headers(SECRET, "GET", ann)
    assert http_call("GET", ann, headers=headers).status_code == 200
    for replay in (
        f"/api/orgs/{ORG}/staff/bob/busy?{window}",
        f"/api/orgs/{ORG}/staff/ann/busy?start=2026-03-01T00:00:00Z&end=2026-03-03T00:00:00Z",
    ):
        response = http_call("GET", replay, headers=headers)
        assert response.status_code == 401
        assert answer(response)["error"] == "signature_mismatch"


def test_a_signature_for_another_method_is_a_mismatch(app: App) -> None:
    target = f"/api/orgs/{ORG}/staff/s1/busy?start=2026-03-02T00:00:00Z&end=2026-03-03T00:00:00Z"
    response = http_call("GET", target, headers=signed_headers(SECRET, "PUT", target))
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_mismatch"


def test_a_body_only_v1_signature_is_no_longer_accepted(app: App) -> None:
    body = snapshot_body(3)
    stamp = int(time.time())
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    response = http_call(
        "PUT", PATH, body=body, headers={"X-Calbridge-Signature": f"t={stamp},v1={digest}"}
    )
    assert response.status_code == 401
    refusal = answer(response)
    assert refusal["error"] == "signature_malformed"
    assert "v1 is not accepted" in refusal["message"]
    assert "(v2)" in refusal["message"]
    app.assert_untouched()


def test_during_a_rotation_the_current_and_the_previous_secret_both_verify(
    azurite: Azurite, name_prefix: str
) -> None:
    previous = {
        environment_variable_for(org_previous_signing_secret_reference(ORG)): "the-old-secret"
    }
    with app_environment(azurite.connection_string, name_prefix, {ORG: SECRET}, **previous):
        assert put(snapshot_body(3), secret=SECRET).status_code == 202
        assert put(snapshot_body(4), secret="the-old-secret").status_code == 202
        refused = put(snapshot_body(5), secret="neither")
        assert refused.status_code == 401
    # The grace period over, the operator deletes the previous secret: it verifies no more.
    with app_environment(azurite.connection_string, name_prefix, {ORG: SECRET}):
        assert put(snapshot_body(6), secret="the-old-secret").status_code == 401
        assert put(snapshot_body(6), secret=SECRET).status_code == 202


def test_an_unknown_org_is_answered_exactly_like_a_wrong_signature(app: App) -> None:
    unknown = put(snapshot_body(3), path="/api/orgs/nobody/appointments/apt-1")
    wrong = put(snapshot_body(3), secret="not-the-secret")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.get_body() == wrong.get_body()


def test_an_org_that_is_not_an_id_is_404(app: App) -> None:
    response = put(snapshot_body(3), path="/api/orgs/a%20b/appointments/apt-1")
    assert response.status_code == 404
    assert answer(response)["error"] == "not_found"
    app.assert_untouched()


def test_an_appointment_id_that_is_not_an_id_is_400_naming_it(app: App) -> None:
    response = put(snapshot_body(3), path=f"/api/orgs/{ORG}/appointments/a%2Cb")
    assert response.status_code == 400
    body = answer(response)
    assert body["error"] == "invalid_path"
    assert "appointmentId 'a,b'" in body["message"]
    app.assert_untouched()


def test_a_timestamp_too_large_for_the_clock_is_401_expired(app: App) -> None:
    response = put(snapshot_body(3), timestamp=10**400)
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_expired"
    app.assert_untouched()


@pytest.mark.parametrize("path_id", ["apt-1%0A", "apt-1%0D%0A"])
def test_an_appointment_id_with_a_trailing_line_break_is_400(app: App, path_id: str) -> None:
    response = put(snapshot_body(3), path=f"/api/orgs/{ORG}/appointments/{path_id}")
    assert response.status_code == 400
    assert answer(response)["error"] == "invalid_path"
    app.assert_untouched()


def test_an_org_with_a_trailing_line_break_is_404(app: App) -> None:
    response = put(snapshot_body(3), path=f"/api/orgs/{ORG}%0A/appointments/apt-1")
    assert response.status_code == 404
    assert answer(response)["error"] == "not_found"
    app.assert_untouched()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": 2**63}, "version"),
        (
            {"start": "9999-12-31T20:00:00-05:00", "end": "9999-12-31T21:00:00-05:00"},
            "start",
        ),
        (
            {"start": "0001-01-01T00:10:00+01:00", "end": "0001-01-01T00:40:00+01:00"},
            "start",
        ),
    ],
)
def test_a_snapshot_storage_cannot_represent_is_422_naming_the_field(
    app: App, changes: dict[str, Any], field: str
) -> None:
    body = {**json.loads(snapshot_body(3)), **changes}
    response = put(json.dumps(body).encode())
    assert response.status_code == 422
    refusal = answer(response)
    assert refusal["error"] == "validation_failed"
    assert field in {problem["field"] for problem in refusal["problems"]}
    app.assert_untouched()


@pytest.mark.parametrize(
    "body", [b"[" * 30_000 + b"]" * 30_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000]
)
def test_json_nested_too_deeply_is_400(app: App, body: bytes) -> None:
    response = put(body)
    assert response.status_code == 400
    refusal = answer(response)
    assert refusal["error"] == "invalid_json"
    assert "nested" in refusal["message"]
    app.assert_untouched()


def test_invalid_json_is_400(app: App) -> None:
    response = put(b'{"version": 3,')
    assert response.status_code == 400
    assert answer(response)["error"] == "invalid_json"
    app.assert_untouched()


def test_a_snake_case_body_is_refused_however_complete(app: App) -> None:
    body = json.loads(snapshot_body(3))
    snake = {"time_zone" if key == "timeZone" else key: value for key, value in body.items()}
    response = put(json.dumps(snake).encode())
    assert response.status_code == 422
    problems = answer(response)["problems"]
    assert {"field": "time_zone", "message": "unknown field 'time_zone'"} in problems
    assert {"field": "timeZone", "message": "Field required"} in problems


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (b'{"version": 3, "version": 4}', "version"),
        (b'{"staff": [{"staffId": "s1", "staffId": "s2", "role": "organizer"}]}', "staffId"),
    ],
)
def test_a_key_named_twice_is_400_naming_it(app: App, text: bytes, key: str) -> None:
    response = put(text)
    assert response.status_code == 400
    refusal = answer(response)
    assert refusal["error"] == "invalid_json"
    assert refusal["message"] == f"the body names the key {key!r} more than once"
    app.assert_untouched()
    app.assert_untouched()


RFC3339_RULE = "must be an RFC 3339 date-time with an offset, e.g. 2026-03-02T09:00:00+01:00"
RFC3339_STRING_RULE = (
    "must be an RFC 3339 date-time string with an offset, e.g. 2026-03-02T09:00:00+01:00"
)


def unknown_zone(name: str) -> str:
    return f"unknown time zone {name!r} (expected an IANA name such as 'America/Toronto')"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        (
            {
                "staff": [
                    {"staffId": "s1", "role": "organizer"},
                    {"staffId": "s2", "role": "organizer"},
                ]
            },
            {"field": "staff", "message": "staff must list exactly one organizer, found 2"},
        ),
        ({"colour": "blue"}, {"field": "colour", "message": "unknown field 'colour'"}),
        (
            {"staff": [{"staffId": "s1", "role": "organizer", "extra": 1}]},
            {"field": "staff[0].extra", "message": "unknown field 'extra'"},
        ),
        (
            {"end": "2026-03-02T08:00:00+01:00"},
            {"field": "end", "message": "end must be after start"},
        ),
        ({"start": "2026-03-02T09:00:00"}, {"field": "start", "message": RFC3339_RULE}),
        # The contract's instants are RFC 3339 strings, nothing else.
        ({"start": 1772438400}, {"field": "start", "message": RFC3339_STRING_RULE}),
        ({"start": 1772438400.5}, {"field": "start", "message": RFC3339_STRING_RULE}),
        ({"end": "1772442000"}, {"field": "end", "message": RFC3339_RULE}),
        ({"start": "2026-03-02T09:00:00+0100"}, {"field": "start", "message": RFC3339_RULE}),
        ({"start": "2026-03-02 09:00:00+01:00"}, {"field": "start", "message": RFC3339_RULE}),
        ({"start": "2026-03-02"}, {"field": "start", "message": RFC3339_RULE}),
        ({"end": "2026-03-02T10:00:00+01:00\n"}, {"field": "end", "message": RFC3339_RULE}),
        ({"version": "3"}, {"field": "version", "message": "Input should be a valid integer"}),
        (
            {"timeZone": "Mars/Olympus"},
            {"field": "timeZone", "message": unknown_zone("Mars/Olympus")},
        ),
        # Names a host's zoneinfo folder offers but that are not IANA zones.
        *(
            ({"timeZone": name}, {"field": "timeZone", "message": unknown_zone(name)})
            for name in (
                "posix/America/Toronto",
                "right/Europe/Berlin",
                "localtime",
                "america/toronto",
            )
        ),
        # An IANA zone Exchange has no Windows name for cannot be written to either protocol.
        (
            {"timeZone": "Factory"},
            {
                "field": "timeZone",
                "message": "time zone 'Factory' has no Exchange (Windows) equivalent; "
                "use a city zone",
            },
        ),
        # Field names are the documented camelCase ones only.
        (
            {"organizer_staff_id": "s1"},
            {"field": "organizer_staff_id", "message": "unknown field 'organizer_staff_id'"},
        ),
        (
            {"staff": [{"staff_id": "s1", "role": "organizer"}]},
            {"field": "staff[0].staff_id", "message": "unknown field 'staff_id'"},
        ),
    ],
)
def test_an_invalid_snapshot_is_422_naming_each_problem(
    app: App, changes: dict[str, Any], problem: dict[str, str]
) -> None:
    body = {**json.loads(snapshot_body(3)), **changes}
    response = put(json.dumps(body).encode())
    assert response.status_code == 422
    refusal = answer(response)
    assert refusal["error"] == "validation_failed"
    assert problem in refusal["problems"]
    app.assert_untouched()


def test_every_problem_is_listed(app: App) -> None:
    body = json.loads(snapshot_body(3))
    del body["title"]
    body["status"] = "maybe"
    body["clients"] = [{"name": "Ada", "email": "not-an-email"}]
    response = put(json.dumps(body).encode())
    assert response.status_code == 422
    fields = {p["field"] for p in answer(response)["problems"]}
    assert fields == {"title", "status", "clients[0].email"}
    app.assert_untouched()


def test_wrong_method_is_405_and_unknown_route_404(app: App) -> None:
    assert http_call("POST", PATH, body=snapshot_body(3)).status_code == 405
    assert http_call("PUT", f"/api/orgs/{ORG}/appointment/apt-1").status_code == 404
    app.assert_untouched()


# --- busy time --------------------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def seed_busy(*blocks: tuple[str, BusyBlock]) -> None:
    repository = bootstrap.services().repositories.busy_blocks
    for staff_id, block in blocks:
        repository.put_block(ORG, staff_id, block)


def busy(staff_id: str = "s1", secret: str = SECRET, **params: str) -> func.HttpResponse:
    return signed_call(secret, "GET", f"/api/orgs/{ORG}/staff/{staff_id}/busy", params=params)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


def test_busy_time_returns_overlapping_blocks_by_start_in_the_contract_shape(app: App) -> None:
    seed_busy(
        ("s1", BusyBlock(start=hours(3), end=hours(4), subject="Dentist", event_id="AAMk/+b=")),
        ("s1", BusyBlock(start=hours(1), end=hours(2), private=True, event_id="AAMk/+a=")),
        (
            "s1",
            BusyBlock(
                start=hours(-24),
                end=hours(0.5),
                all_day=True,
                subject="Training",
                event_id="series",
                occurrence_id="occ-1",
            ),
        ),
        ("s1", BusyBlock(start=hours(30), end=hours(31), subject="Later", event_id="later")),
        ("s2", BusyBlock(start=hours(1), end=hours(2), subject="Other", event_id="other")),
    )
    response = busy(start="2026-03-02T09:00:00+01:00", end="2026-03-02T14:00:00+01:00")
    assert response.status_code == 200
    assert answer(response) == [
        {
            "start": "2026-03-01T08:00:00Z",
            "end": "2026-03-02T08:30:00Z",
            "allDay": True,
            "private": False,
            "subject": "Training",
            "eventId": "series",
            "occurrenceId": "occ-1",
        },
        {
            "start": "2026-03-02T09:00:00Z",
            "end": "2026-03-02T10:00:00Z",
            "allDay": False,
            "private": True,
            "subject": None,
            "eventId": "AAMk/+a=",
            "occurrenceId": None,
        },
        {
            "start": "2026-03-02T11:00:00Z",
            "end": "2026-03-02T12:00:00Z",
            "allDay": False,
            "private": False,
            "subject": "Dentist",
            "eventId": "AAMk/+b=",
            "occurrenceId": None,
        },
    ]


def test_busy_time_of_a_staff_member_without_blocks_is_empty(app: App) -> None:
    response = busy("nobody", start="2026-03-02T00:00:00Z", end="2026-03-03T00:00:00Z")
    assert response.status_code == 200
    assert answer(response) == []


def test_a_62_day_window_is_accepted(app: App) -> None:
    response = busy(start="2026-03-01T00:00:00Z", end="2026-05-02T00:00:00Z")
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"end": "2026-03-03T00:00:00Z"}, "start is required"),
        ({"start": "2026-03-03T00:00:00Z"}, "end is required"),
        (
            {"start": "2026-03-02T00:00:00", "end": "2026-03-03T00:00:00Z"},
            "start '2026-03-02T00:00:00' must be an RFC 3339 date-time with an offset",
        ),
        ({"start": "2026-03-02T00:00:00 01:00", "end": "2026-03-03T00:00:00Z"}, "%2B"),
        (
            {"start": "2026-02-30T00:00:00Z", "end": "2026-03-03T00:00:00Z"},
            "start '2026-02-30T00:00:00Z'",
        ),
        (
            {"start": "2026-03-03T00:00:00Z", "end": "2026-03-03T00:00:00Z"},
            "end must be after start",
        ),
        ({"start": "2026-03-01T00:00:00Z", "end": "2026-05-02T00:00:01Z"}, "at most 62 days"),
    ],
)
def test_a_bad_window_is_400_naming_the_problem(
    app: App, params: dict[str, str], named: str
) -> None:
    response = busy(**params)
    assert response.status_code == 400
    body = answer(response)
    assert body["error"] == "invalid_query"
    assert named in body["message"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"start": "9999-12-30T00:00:00Z", "end": "9999-12-31T23:00:00-05:00"}, "end"),
        ({"start": "0001-01-01T00:00:00+01:00", "end": "0001-01-02T00:00:00Z"}, "start"),
    ],
)
def test_a_window_beyond_the_representable_years_is_400_naming_it(
    app: App, params: dict[str, str], named: str
) -> None:
    response = busy(**params)
    assert response.status_code == 400
    body = answer(response)
    assert body["error"] == "invalid_query"
    assert body["message"].startswith(named)


def test_busy_time_needs_a_signature_over_the_empty_body(app: App) -> None:
    path = f"/api/orgs/{ORG}/staff/s1/busy?start=2026-03-02T00:00:00Z&end=2026-03-03T00:00:00Z"
    assert http_call("GET", path).status_code == 401
    response = http_call("GET", path, headers=signed_headers(SECRET, "GET", path, b"something"))
    assert response.status_code == 401
    assert answer(response)["error"] == "signature_mismatch"
    assert http_call("GET", path, headers=signed_headers(SECRET, "GET", path)).status_code == 200


def test_busy_time_with_a_bad_staff_id_is_400(app: App) -> None:
    response = busy("a%2Cb", start="2026-03-02T00:00:00Z", end="2026-03-03T00:00:00Z")
    assert response.status_code == 400
    assert "staffId" in answer(response)["message"]


@pytest.mark.parametrize("org", ["Acme", "acme--x", "-acme", "acme-", "a" * 64])
def test_an_org_id_that_cannot_name_its_secrets_is_404(app: App, org: str) -> None:
    body = snapshot_body(1)
    response = put(body, path=f"/api/orgs/{org}/appointments/apt-1")
    assert response.status_code == 404
    app.assert_untouched()


class FakeVaultClient:
    """Key Vault's ``SecretClient`` as far as the resolver uses it (``get_secret``)."""

    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.reads = 0

    def get_secret(self, name: str) -> Any:
        self.reads += 1
        if name not in self.secrets:
            raise ResourceNotFoundError(f"{name} not found")
        return type("Secret", (), {"value": self.secrets[name]})()


def test_key_vault_answers_are_kept_for_a_while_so_a_rotation_is_seen_without_a_restart() -> None:
    clock = [0.0]
    client = FakeVaultClient({"org-acme-signing-secret": "one"})
    vault = KeyVaultSecretResolver(
        "https://vault.test", client=client, cache_seconds=300, clock=lambda: clock[0]
    )
    previous = org_previous_signing_secret_reference("acme")
    assert vault.resolve("org-acme-signing-secret") == "one"
    with pytest.raises(SecretNotFound):
        vault.resolve(previous)
    client.secrets.update({"org-acme-signing-secret": "two", previous: "one"})  # rotated
    clock[0] = 299.0
    assert vault.resolve("org-acme-signing-secret") == "one"  # no Key Vault call per request
    assert client.reads == 2
    clock[0] = 300.0
    assert vault.resolve("org-acme-signing-secret") == "two"
    assert vault.resolve(previous) == "one"
    assert client.reads == 4
