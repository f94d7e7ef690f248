"""The booking platform stand-in: signature verification, recording, scripted answers, over
HTTP on its own port and through its Python API."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from sim.booking import BookingPlatform, sign, verify_signature
from sim.server import RunningSimulator
from tests.sim.conftest import WEBHOOK_ORG, WEBHOOK_SECRET


@pytest.fixture
def booking(simulator: RunningSimulator) -> BookingPlatform:
    simulator.booking.clear()
    simulator.booking.clear_responses()
    return simulator.booking


def post_webhook(
    sim: RunningSimulator,
    payload: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    path: str = "/webhooks",
    timestamp: int | None = None,
    signature: str | None = None,
) -> httpx.Response:
    raw = json.dumps(payload).encode()
    header = signature if signature is not None else sign(secret, raw, timestamp)
    return httpx.post(
        f"{sim.urls['booking']}{path}",
        content=raw,
        headers={"Content-Type": "application/json", "X-Calbridge-Signature": header},
    )


def event(event_type: str = "appointment.rescheduled", **extra: Any) -> dict[str, Any]:
    return {"id": f"evt-{time.monotonic_ns()}", "type": event_type, "org": WEBHOOK_ORG, **extra}


def test_signed_webhook_is_accepted_and_recorded(
    simulator: RunningSimulator, booking: BookingPlatform
) -> None:
    payload = event(appointmentId="a-1")
    response = post_webhook(simulator, payload)
    assert response.status_code == 200
    [received] = booking.received
    assert received.verified
    assert received.body == payload
    assert received.event_type == "appointment.rescheduled"
    assert received.headers["x-calbridge-signature"].startswith("t=")
    listed = httpx.get(f"{simulator.urls['booking']}/received").json()
    assert listed[0]["body"] == payload
    assert listed[0]["verified"] is True
    assert httpx.delete(f"{simulator.urls['booking']}/received").status_code == 204
    assert booking.received == []


@pytest.mark.parametrize(
    "options",
    [
        {"secret": "not-the-secret"},
        {"signature": ""},
        {"signature": "v1=abc"},
        {"signature": "t=notanumber,v1=abc"},
        {"timestamp": int(time.time()) - 3600},
    ],
)
def test_bad_signatures_are_refused_and_recorded_unverified(
    simulator: RunningSimulator, booking: BookingPlatform, options: dict[str, Any]
) -> None:
    response = post_webhook(simulator, event(), **options)
    assert response.status_code == 401
    [received] = booking.received
    assert not received.verified
    assert received.status == 401
    assert received.reason


def test_tampered_body_fails_verification(
    simulator: RunningSimulator, booking: BookingPlatform
) -> None:
    raw = json.dumps(event()).encode()
    header = sign(WEBHOOK_SECRET, raw)
    tampered = raw.replace(b"rescheduled", b"cancelled")
    response = httpx.post(
        f"{simulator.urls['booking']}/webhooks",
        content=tampered,
        headers={"X-Calbridge-Signature": header},
    )
    assert response.status_code == 401
    assert booking.received[0].reason == "signature mismatch"


def test_org_from_the_path_and_unknown_orgs(
    simulator: RunningSimulator, booking: BookingPlatform
) -> None:
    payload = {"id": "e-1", "type": "busy_time.changed"}  # no org in the body
    assert post_webhook(simulator, payload, path=f"/webhooks/{WEBHOOK_ORG}").status_code == 200
    assert post_webhook(simulator, payload, path="/webhooks/other-org").status_code == 401
    assert [w.verified for w in booking.received] == [True, False]


def test_not_json_is_a_400(simulator: RunningSimulator, booking: BookingPlatform) -> None:
    raw = b"not json"
    response = httpx.post(
        f"{simulator.urls['booking']}/webhooks/{WEBHOOK_ORG}",
        content=raw,
        headers={"X-Calbridge-Signature": sign(WEBHOOK_SECRET, raw)},
    )
    assert response.status_code == 400
    assert booking.received[0].body is None


def test_scripted_answers_over_http(simulator: RunningSimulator, booking: BookingPlatform) -> None:
    scripted = httpx.post(
        f"{simulator.urls['booking']}/respond",
        json={"type": "appointment.rescheduled", "status": 409, "times": 2},
    )
    assert scripted.status_code == 200
    statuses = [post_webhook(simulator, event()).status_code for _ in range(3)]
    assert statuses == [409, 409, 200]
    assert post_webhook(simulator, event("appointment.cancelled")).status_code == 200
    assert [w.status for w in booking.received] == [409, 409, 200, 200]
    assert all(w.verified for w in booking.received)


def test_scripted_answer_until_cleared(
    simulator: RunningSimulator, booking: BookingPlatform
) -> None:
    booking.respond_with("*", 500)
    assert [post_webhook(simulator, event(t)).status_code for t in ("a", "b", "c")] == [500] * 3
    assert httpx.delete(f"{simulator.urls['booking']}/respond").status_code == 204
    assert post_webhook(simulator, event()).status_code == 200


@pytest.mark.parametrize(
    "spec", [{"status": 409}, {"type": "x", "status": "soon"}, {"type": "x", "status": 42}]
)
def test_bad_scripts_are_refused(
    simulator: RunningSimulator, booking: BookingPlatform, spec: dict[str, Any]
) -> None:
    response = httpx.post(f"{simulator.urls['booking']}/respond", json=spec)
    assert response.status_code == 400
    assert post_webhook(simulator, event()).status_code == 200


def test_wait_for_and_signature_helper() -> None:
    platform = BookingPlatform({"o": "s"})
    assert platform.wait_for(1, timeout=0.05) == []
    raw = b'{"org": "o"}'
    header = sign("s", raw, timestamp=1_700_000_000)
    assert verify_signature(header, raw, "s", now=1_700_000_100) is None
    assert verify_signature(header, raw, "s", now=1_700_000_400) is not None
    assert verify_signature(header, raw, "other", now=1_700_000_000) == "signature mismatch"
