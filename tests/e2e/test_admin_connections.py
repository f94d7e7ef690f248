"""The administrator's connection operations end to end, against the simulator through the
registered functions: a connection paused while bookings and Outlook changes happen and resumed
with nothing lost or duplicated; the connection test on every mailbox with the reason of each
failure; refused credentials holding the work until a test or the slow retry recovers it; a
mailbox moved from the EWS side to the Graph side with appointments in flight; resync and
replay."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.azurite import free_port
from shared import bootstrap
from shared.config import connection_secret_name, environment_variable_for
from shared.connections import AUTH_RETRY_EVERY
from shared.models import Health
from shared.queues import MailboxSyncRequested
from sim.people import Outlook
from sim.store import Fault
from tests.e2e.conftest import (
    CLIENT_ID,
    ORG,
    SERVICE,
    SERVICE_PASSWORD,
    STAFF,
    TENANT_ID,
    World,
)
from tests.e2e.test_booking_to_exchange import snapshot
from tests.waiting import wait_until

(ANN, ANN_MAILBOX), (BOB, BOB_MAILBOX), (CARA, CARA_MAILBOX) = STAFF["ews"].items()
EWS_MAILBOXES = (ANN_MAILBOX, BOB_MAILBOX, CARA_MAILBOX)
_ids = itertools.count(1)
# Inside the recurrence horizon (what Graph's calendarView delta reads) from March 2027 on.
_days = itertools.count(20)
_far_days = itertools.count(500)


@pytest.fixture(scope="module", autouse=True)
def webhooks_go_to_the_stand_in(world: World) -> None:
    response = world.admin_put("settings", {"webhookUrl": world.sim.urls["booking"] + "/webhooks"})
    assert response.status_code in (200, 201), response.text


def unique(title: str) -> tuple[str, str, int]:
    n = next(_ids)
    return f"adm-{n}", f"{title} #{n}", next(_days)


def accepted(world: World, appointment_id: str, body: dict[str, Any]) -> None:
    response = world.put_appointment(appointment_id, body)
    assert response.status_code == 202, response.text


def repos() -> Any:
    return bootstrap.services().repositories


def parked(appointment_id: str) -> bool:
    return repos().parked.get(ORG, appointment_id) is not None


def synced(staff_id: str, reason: str = "poll") -> None:
    """Queue a mailbox sync as the poll fan-out would and wait until it has run."""
    before = repos().mailboxes.get(ORG, staff_id)
    last = before.value.last_sync_at if before else None
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason=reason))

    def done() -> bool:
        now = repos().mailboxes.get(ORG, staff_id)
        return now is not None and now.value.last_sync_at not in (None, last)

    wait_until(done, what=f"{staff_id}'s mailbox to sync")


def health_events(world: World, connection_id: str) -> list[str]:
    return [
        hook.body["data"]["health"]
        for hook in world.sim.booking.received
        if hook.event_type == "connection.health_changed"
        and hook.body["data"]["connectionId"] == connection_id
    ]


def hooks(world: World, event_type: str, **data: Any) -> list[Any]:
    return [
        hook
        for hook in world.sim.booking.received
        if hook.event_type == event_type
        and all(hook.body["data"].get(name) == value for name, value in data.items())
    ]


def ews_requests(world: World) -> int:
    """Requests the simulator counted for the on-premises mailboxes, whatever the protocol."""
    counters = world.sim.store.counter_snapshot()
    return sum(
        n
        for operation, by_mailbox in counters.items()
        if operation != "graph:notification"  # the simulator's own posts to calbridge
        for mailbox, n in by_mailbox.items()
        if mailbox in EWS_MAILBOXES
    )


def told(staff_id: str) -> int:
    """``busy_time.changed`` events kept for the staff member (written by a sync before it
    ends, so counting them needs no wait for the deliveries)."""
    rows = repos().outbox.list_by_org(ORG).values()
    return sum(
        1
        for row in rows
        if row.value.event_type == "busy_time.changed"
        and f'"staffId":"{staff_id}"' in row.value.payload
    )


def connection_health(connection_id: str) -> Health | None:
    found = repos().connections.get(ORG, connection_id)
    assert found is not None
    return found.value.health


# --- maintenance ------------------------------------------------------------------------------


def test_a_paused_connection_keeps_every_change_and_applies_it_once_when_resumed(
    world: World,
) -> None:
    moved_id, moved_title, day = unique("Paused move")
    world.put_appointment(moved_id, snapshot(1, ANN, [BOB], title=moved_title, day=day))
    world.applied(moved_id, 1)
    synced(ANN)
    ann = Outlook(world.sim.store, ANN_MAILBOX)

    disabled = world.admin_call("POST", "connections/onprem/disable")
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["health"] == "disabled"
    wait_until(lambda: "disabled" in health_events(world, "onprem"), what="health disabled")
    requests_before = ews_requests(world)

    # Bookings keep arriving: a reschedule then a rename of one, a new one.
    accepted(world, moved_id, snapshot(2, ANN, [BOB], title=moved_title, day=day, hour=11))
    accepted(
        world, moved_id, snapshot(3, ANN, [BOB], title=moved_title + " (renamed)", day=day, hour=11)
    )
    new_id, new_title, new_day = unique("Paused new")
    accepted(world, new_id, snapshot(1, ANN, [CARA], title=new_title, day=new_day))
    wait_until(lambda: parked(moved_id) and parked(new_id), what="both changes parked")
    # Staff keep working in Outlook.
    start = datetime(2027, 9, 6, 15, tzinfo=UTC)
    ann.create_event("Dentist while paused", start, start + timedelta(hours=1))
    # The timers and a queued sync make no call either.
    report = bootstrap.services().poll_fanout.run()
    assert report.skipped_connections >= 1
    synced_during = repos().mailboxes.get(ORG, ANN).value.last_sync_at
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=ANN, reason="poll"))
    wait_until(
        lambda: repos().mailboxes.get(ORG, ANN).value.sync_pending_since is None,
        what="the queued sync to be skipped",
    )
    assert repos().mailboxes.get(ORG, ANN).value.last_sync_at == synced_during
    assert ews_requests(world) == requests_before

    enabled = world.admin_call("POST", "connections/onprem/enable")
    assert enabled.status_code == 200, enabled.text
    state = enabled.json()
    on_premises = [
        row
        for row in repos().mailboxes.list_by_org(ORG).values()
        if row.value.connection_id == "onprem"
    ]
    assert (state["health"], state["requeuedParkedChanges"], state["syncsQueued"]) == (
        "ok",
        2,
        len(on_premises),
    )
    world.applied(moved_id, 3)
    world.applied(new_id, 1)
    # The newest snapshot, once: one event each, nothing parked.
    [item] = world.live(ANN_MAILBOX, moved_title)
    assert item.subject == moved_title + " (renamed)"
    assert item.start == datetime(2027, 3, 1, 11, tzinfo=UTC) + timedelta(days=day)
    assert len(world.live(BOB_MAILBOX, moved_title)) == 1
    assert len(world.live(ANN_MAILBOX, new_title)) == 1
    assert len(world.live(CARA_MAILBOX, new_title)) == 1
    assert not parked(moved_id)
    assert not parked(new_id)
    # The Outlook change made meanwhile is caught up through the stored cursor.
    wait_until(lambda: hooks(world, "busy_time.changed", staffId=ANN), what="ann's busy time")
    wait_until(lambda: health_events(world, "onprem")[-2:] == ["disabled", "ok"], what="health ok")
    assert connection_health("onprem") is Health.OK
    # Calbridge's own writes are not reported back as Outlook changes.
    synced(ANN)
    assert hooks(world, "appointment.rescheduled", appointmentId=moved_id) == []
    assert hooks(world, "appointment.cancelled", appointmentId=moved_id) == []


# --- the connection test ----------------------------------------------------------------------


@pytest.fixture
def broken_connections(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Connections the administrator is setting up, disabled so that no worker calls them:
    only the test does. Staff ids → the connection each is on."""
    world.sensitive.secrets(["not-the-password", "not-the-client-secret"])
    monkeypatch.setenv(
        environment_variable_for(connection_secret_name(ORG, "adm-wrong-password")),
        "not-the-password",
    )
    monkeypatch.setenv(
        environment_variable_for(connection_secret_name(ORG, "adm-right-password")),
        SERVICE_PASSWORD,
    )
    monkeypatch.setenv(
        environment_variable_for(connection_secret_name(ORG, "adm-wrong-secret")),
        "not-the-client-secret",
    )
    ews_url = world.sim.urls["ews"]
    ews = {"kind": "ews", "authType": "basic", "username": SERVICE, "enabled": False}
    connections = {
        "wrongpw": {**ews, "ewsUrl": ews_url, "secretReference": "adm-wrong-password"},
        "rights": {**ews, "ewsUrl": ews_url, "secretReference": "adm-right-password"},
        "nowhere": {
            **ews,
            "ewsUrl": f"http://127.0.0.1:{free_port()}/EWS/Exchange.asmx",
            "secretReference": "adm-right-password",
        },
        "tls": {
            **ews,
            "ewsUrl": ews_url.replace("http://", "https://"),
            "secretReference": "adm-right-password",
        },
        "badtoken": {
            "kind": "graph",
            "authType": "oauth",
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "secretReference": "adm-wrong-secret",
            "enabled": False,
        },
    }
    for connection_id, body in connections.items():
        response = world.admin_put(f"connections/{connection_id}", body)
        assert response.status_code in (200, 201), response.text
    staff = {
        "t-wrongpw": ("wrongpw", ANN_MAILBOX),
        "t-norights": ("rights", STAFF["graph"]["dan"]),  # no impersonation right on dan
        "t-unknown": ("rights", "nobody@bank.test"),
        "t-nowhere": ("nowhere", ANN_MAILBOX),
        "t-tls": ("tls", ANN_MAILBOX),
        "t-badtoken": ("badtoken", STAFF["graph"]["dan"]),
    }
    for staff_id, (connection_id, mailbox) in staff.items():
        body = {"connectionId": connection_id, "mailbox": mailbox, "timeZone": "America/Toronto"}
        response = world.admin_put(f"staff/{staff_id}", body)
        assert response.status_code in (200, 201), response.text
    return {staff_id: connection_id for staff_id, (connection_id, _) in staff.items()}


def test_the_connection_test_reads_and_writes_every_mailbox_and_leaves_nothing(
    world: World,
) -> None:
    on_premises = sorted(
        row.value.address
        for row in repos().mailboxes.list_by_org(ORG).values()
        if row.value.connection_id == "onprem"
    )
    before = {address: len(world.calendar(address)) for address in EWS_MAILBOXES}
    response = world.admin_call("POST", "connections/onprem/test")
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["ok"] is True
    assert result["accessMode"] == "impersonation"
    assert sorted(m["mailbox"] for m in result["mailboxes"]) == on_premises
    assert all(m["canRead"] and m["canWrite"] for m in result["mailboxes"])
    assert {address: len(world.calendar(address)) for address in EWS_MAILBOXES} == before

    graph = world.admin_call("POST", "connections/cloud/test").json()
    assert graph["ok"] is True
    assert graph["accessMode"] == "application"


def test_the_connection_test_says_why_each_mailbox_fails(
    world: World, broken_connections: dict[str, str]
) -> None:
    problems: dict[str, tuple[str | None, str]] = {}
    for connection_id in sorted(set(broken_connections.values())):
        response = world.admin_call("POST", f"connections/{connection_id}/test")
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["ok"] is False
        for mailbox in result["mailboxes"]:
            problems[mailbox["staffId"]] = (mailbox["problem"], mailbox["detail"] or "")
    assert problems["t-wrongpw"][0] == "auth_refused"
    assert "password" in problems["t-wrongpw"][1]
    assert problems["t-norights"][0] == "access_denied"
    assert problems["t-unknown"][0] == "mailbox_not_found"
    assert problems["t-nowhere"][0] == "unreachable"
    assert problems["t-tls"][0] == "tls_failure"
    assert problems["t-badtoken"][0] == "auth_refused"
    assert "token" in problems["t-badtoken"][1]
    for _, detail in problems.values():
        assert SERVICE_PASSWORD not in detail
        assert "not-the-password" not in detail


# --- refused credentials ----------------------------------------------------------------------


def test_a_401_holds_the_work_until_the_slow_retry_or_a_test_recovers_the_connection(
    world: World,
) -> None:
    appointment_id, title, day = unique("Refused")
    world.sim.store.add_fault(
        Fault(kind="unauthorized", operation="*", mailbox=ANN_MAILBOX, remaining=None)
    )
    try:
        accepted(world, appointment_id, snapshot(1, ANN, [BOB], title=title, day=day))
        wait_until(lambda: parked(appointment_id), what="the change held")
        assert connection_health("onprem") is Health.AUTH_FAILED
        wait_until(lambda: "auth_failed" in health_events(world, "onprem"), what="auth_failed")
        requests_before = ews_requests(world)
        accepted(world, appointment_id, snapshot(2, ANN, [BOB], title=title, day=day, hour=13))
        wait_until(
            lambda: repos().appointments.get(ORG, appointment_id).value.version == 2,
            what="v2 stored",
        )
        # Not yet due: the timer does not retry, and no call is made.
        bootstrap.services().poll_fanout.run()
        assert ews_requests(world) == requests_before
    finally:
        # Fixed on the Exchange side (or in Key Vault): nothing told calbridge.
        world.sim.store.clear_faults()
    # The slow retry comes due.
    current = repos().connections.get(ORG, "onprem")
    assert current is not None
    long_ago = datetime.now(UTC) - AUTH_RETRY_EVERY - timedelta(minutes=1)
    repos().connections.put(
        ORG, "onprem", current.value.model_copy(update={"auth_retried_at": long_ago}), current.etag
    )
    bootstrap.services().poll_fanout.run()
    world.applied(appointment_id, 2)
    [item] = world.live(ANN_MAILBOX, title)
    assert item.start == datetime(2027, 3, 1, 13, tzinfo=UTC) + timedelta(days=day)
    assert connection_health("onprem") is Health.OK
    assert not parked(appointment_id)

    # Refused again, then a successful connection test recovers it at once.
    second_id, second_title, second_day = unique("Refused again")
    world.sim.store.add_fault(
        Fault(kind="unauthorized", operation="*", mailbox=ANN_MAILBOX, remaining=None)
    )
    try:
        accepted(world, second_id, snapshot(1, ANN, [], title=second_title, day=second_day))
        wait_until(lambda: parked(second_id), what="the change held")
    finally:
        world.sim.store.clear_faults()
    tested = world.admin_call("POST", "connections/onprem/test").json()
    assert tested["health"] == "ok"
    world.applied(second_id, 1)
    assert len(world.live(ANN_MAILBOX, second_title)) == 1


# --- migration --------------------------------------------------------------------------------


def test_a_mailbox_moved_from_ews_to_graph_keeps_every_appointment_once(world: World) -> None:
    cara = Outlook(world.sim.store, CARA_MAILBOX)
    gym = datetime(2027, 3, 4, 7, tzinfo=UTC)
    cara.create_event("Gym before the move", gym, gym + timedelta(hours=1))
    booked = []
    for name in ("Moved with attendee", "Moved alone"):
        appointment_id, title, day = unique(name)
        secondaries = [ANN] if "attendee" in name else []
        world.put_appointment(appointment_id, snapshot(1, CARA, secondaries, title=title, day=day))
        world.applied(appointment_id, 1)
        booked.append((appointment_id, title, day, secondaries))
    # One far ahead, beyond the window Graph reads: adopted by its marker all the same.
    far_id, far_title, far_day = f"adm-far-{next(_ids)}", "Moved far ahead", next(_far_days)
    world.put_appointment(far_id, snapshot(1, CARA, [], title=far_title, day=far_day))
    world.applied(far_id, 1)
    synced(CARA)
    before_move = told(CARA)
    assert before_move >= 1  # the gym
    (with_id, with_title, with_day, _), (alone_id, alone_title, alone_day, _) = booked

    # In flight: a reschedule sent just before the move, a new booking just after.
    accepted(world, with_id, snapshot(2, CARA, [ANN], title=with_title, day=with_day, hour=14))
    moved = world.admin_put(
        f"staff/{CARA}",
        {"connectionId": "cloud", "mailbox": CARA_MAILBOX, "timeZone": "America/Toronto"},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["syncReset"] is True
    new_id, new_title, new_day = unique("Booked after the move")
    accepted(world, new_id, snapshot(1, CARA, [], title=new_title, day=new_day))
    world.applied(with_id, 2)
    world.applied(new_id, 1)

    # The first read on the Graph side: a new baseline.
    synced(CARA, reason="full")
    mailbox = repos().mailboxes.get(ORG, CARA).value
    assert mailbox.connection_id == "cloud"
    assert mailbox.rebaseline is False
    assert mailbox.last_full_read_at is not None
    # Nothing lost, nothing duplicated, nothing reported that the platform already knows.
    [with_item] = world.live(CARA_MAILBOX, with_title)
    assert with_item.start == datetime(2027, 3, 1, 14, tzinfo=UTC) + timedelta(days=with_day)
    assert len(world.live(ANN_MAILBOX, with_title)) == 1
    assert len(world.live(CARA_MAILBOX, alone_title)) == 1
    assert len(world.live(CARA_MAILBOX, new_title)) == 1
    assert len(world.live(CARA_MAILBOX, "Gym before the move")) == 1
    assert len(world.live(CARA_MAILBOX, far_title)) == 1
    for appointment_id in (with_id, alone_id, new_id, far_id):
        assert hooks(world, "appointment.cancelled", appointmentId=appointment_id) == []
        assert hooks(world, "appointment.rescheduled", appointmentId=appointment_id) == []
        mapping = world.mapping(appointment_id)
        assert mapping is not None
        assert mapping.connection_id == "cloud"
    assert told(CARA) == before_move
    gyms = [
        block
        for block in repos().busy_blocks.blocks_of(ORG, CARA)
        if block.value.subject == "Gym before the move"
    ]
    assert len(gyms) == 1

    # The adopted event is managed through Graph from now on: an Outlook move is reported.
    [alone_item] = world.live(CARA_MAILBOX, alone_title)
    later = datetime(2027, 3, 1, 16, tzinfo=UTC) + timedelta(days=alone_day)
    cara.move(alone_item.id, later, later + timedelta(minutes=45))
    synced(CARA)
    wait_until(
        lambda: hooks(world, "appointment.rescheduled", appointmentId=alone_id),
        what="the move reported",
    )
    # A booking change after the move is one write to the adopted event.
    accepted(world, alone_id, snapshot(2, CARA, [], title=alone_title + " v2", day=alone_day))
    world.applied(alone_id, 2)
    assert len(world.live(CARA_MAILBOX, alone_title)) == 1


# --- resync and replay ------------------------------------------------------------------------


def test_a_resync_reads_the_mailboxes_again_and_reports_progress(world: World) -> None:
    def kept_events() -> set[str]:
        return {
            event_id
            for event_id, row in repos().outbox.list_by_org(ORG).items()
            if row.value.event_type != "connection.health_changed"
        }

    for staff_id in (ANN, BOB):
        synced(staff_id)  # nothing left unread before the resync
    before = kept_events()
    response = world.admin_call("POST", "connections/onprem/resync")
    assert response.status_code == 202, response.text
    staff = response.json()["staffIds"]
    assert set(staff) >= {ANN, BOB}

    def progress() -> bool:
        view = world.admin_call("GET", "connections/onprem").json()
        return view["mailboxesRead"] == view["mailboxes"]

    wait_until(progress, what="every mailbox read again")
    # Nothing changed: nothing new to tell.
    assert kept_events() == before


def test_poisoned_work_is_replayed_once_exchange_is_back(world: World) -> None:
    appointment_id, title, day = unique("Poisoned")
    world.sim.store.add_fault(
        Fault(kind="http_500", operation="CreateItem", mailbox=ANN_MAILBOX, remaining=None)
    )
    try:
        accepted(world, appointment_id, snapshot(1, ANN, [], title=title, day=day))
        wait_until(
            lambda: any(
                letter.subject_id == appointment_id for letter in repos().dead_letters.of_org(ORG)
            ),
            what="the change dead-lettered",
        )
    finally:
        world.sim.store.clear_faults()
    response = world.admin_call(
        "POST", "replay", {"queue": "appointment-changes", "id": appointment_id}
    )
    assert response.status_code == 202, response.text
    assert {item["id"] for item in response.json()["replayed"]} == {appointment_id}
    world.applied(appointment_id, 1)
    assert len(world.live(ANN_MAILBOX, title)) == 1
    assert all(letter.subject_id != appointment_id for letter in repos().dead_letters.of_org(ORG))


def test_a_paused_graph_connection_is_neither_swept_nor_renewed_and_catches_up_on_resume(
    world: World,
) -> None:
    dan_id, dan_mailbox = next(iter(STAFF["graph"].items()))
    synced(dan_id)
    on_cloud = {
        row.value.address
        for row in repos().mailboxes.list_by_org(ORG).values()
        if row.value.connection_id == "cloud"
    }

    def graph_requests() -> int:
        """Requests calbridge made for those mailboxes (not the notifications the simulator
        posted to calbridge, which it counts too)."""
        counters = world.sim.store.counter_snapshot()
        return sum(
            n
            for operation, by_mailbox in counters.items()
            if operation != "graph:notification"
            for mailbox, n in by_mailbox.items()
            if mailbox in on_cloud
        )

    assert world.admin_call("POST", "connections/cloud/disable").status_code == 200
    wait_until(lambda: "disabled" in health_events(world, "cloud"), what="cloud disabled")
    before = graph_requests()
    last_sync = repos().mailboxes.get(ORG, dan_id).value.last_sync_at
    # Dan works in Outlook: Graph notifies calbridge, whose queued sync makes no call.
    start = datetime(2027, 3, 9, 15, tzinfo=UTC)
    Outlook(world.sim.store, dan_mailbox).create_event(
        "Physio while paused", start, start + timedelta(hours=1)
    )
    assert bootstrap.services().graph_sweep.run().queued == 0
    assert bootstrap.services().subscription_manager.due() == 0
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=dan_id, reason="sweep"))
    wait_until(
        lambda: repos().mailboxes.get(ORG, dan_id).value.sync_pending_since is None,
        what="the queued sync to be skipped",
    )
    assert repos().mailboxes.get(ORG, dan_id).value.last_sync_at == last_sync
    assert graph_requests() == before

    enabled = world.admin_call("POST", "connections/cloud/enable")
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["syncsQueued"] == len(on_cloud)
    wait_until(
        lambda: repos().mailboxes.get(ORG, dan_id).value.last_sync_at != last_sync,
        what="dan's mailbox caught up",
    )
    blocks = repos().busy_blocks.blocks_of(ORG, dan_id)
    assert [b.value.subject for b in blocks].count("Physio while paused") == 1
    wait_until(lambda: hooks(world, "busy_time.changed", staffId=dan_id), what="dan's busy time")
    wait_until(
        lambda: health_events(world, "cloud")[-2:] == ["disabled", "ok"], what="cloud ok again"
    )
