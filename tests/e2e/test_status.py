"""``GET /api/orgs/{org}/status`` end to end: what the workers record while staff act in Outlook
and the booking platform answers is what the status shows, over HTTP through the local runner;
and the answer carries nothing the privacy scan looks for (clients' details, event bodies,
private subjects, secrets)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.admin import ADMIN_KEY_HEADER
from sim.people import Outlook
from tests.e2e.conftest import OPERATOR_KEY, ORG, STAFF, World
from tests.e2e.test_booking_to_exchange import put, snapshot, unique
from tests.e2e.test_exchange_to_booking import synced
from tests.waiting import wait_until

ANN, BOB = "ann", "bob"
ANN_MAILBOX = STAFF["ews"][ANN]


@pytest.fixture(scope="module", autouse=True)
def webhooks_go_to_the_stand_in(world: World) -> None:
    response = world.admin_put("settings", {"webhookUrl": world.sim.urls["booking"] + "/webhooks"})
    assert response.status_code in (200, 201), response.text


def status(world: World) -> Any:
    response = world.http.get(
        f"{world.runner.base_url}/orgs/{ORG}/status",
        headers={ADMIN_KEY_HEADER: OPERATOR_KEY, "x-functions-key": world.runner.functions_key},
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    text = response.text.casefold()
    leaked = [kind for value, kind in world.sensitive.values().items() if value in text]
    assert leaked == [], f"the status answer carries {leaked}"
    return response.json()


def mailbox(answer: Any, staff_id: str) -> Any:
    return next(m for m in answer["mailboxes"] if m["staffId"] == staff_id)


def test_a_synced_mailbox_shows_its_lag_and_a_refused_move_is_counted(world: World) -> None:
    appointment_id, title, day = unique("Status")
    body = snapshot(
        1,
        ANN,
        [BOB],
        title=title,
        day=day,
        clients=[{"name": "Zora Quill", "email": "zora.quill@example.net"}],
        notes="Bring the deeds XQ-55",
    )
    put(world, appointment_id, body)
    world.sim.booking.respond_with("appointment.rescheduled", 409, times=1)
    booked = datetime.fromisoformat(body["start"])
    [item] = world.live(ANN_MAILBOX, title)
    Outlook(world.sim.store, ANN_MAILBOX).move(
        item.id, booked + timedelta(days=1), booked + timedelta(days=1, minutes=45)
    )
    synced(world, ANN)
    wait_until(lambda: world.problem(appointment_id), what="the refusal to be recorded")

    answer = status(world)
    ann = mailbox(answer, ANN)
    assert ann["health"] == "ok"
    assert ann["resyncing"] is False  # the first sync read the calendar in full
    assert 0 <= ann["lagSeconds"] < 120
    assert ann["refusedReschedules"] == 1
    assert ann["mailbox"] == ANN_MAILBOX
    onprem = next(c for c in answer["connections"] if c["connectionId"] == "onprem")
    assert onprem["health"] == "ok"
    assert onprem["resync"]["total"] == 3
    refusals = [e for e in answer["errors"] if e["subjectId"] == appointment_id]
    assert [(e["source"], e["staffId"]) for e in refusals] == [("apply", ANN)]
