"""Exchange Online push, end to end: the Graph mailboxes got their subscriptions when the
administrator assigned them (the simulator validated the runner's notification and lifecycle
URLs); staff act in Outlook through the simulator; the simulator posts real change
notifications to the runner's HTTP server; the registered functions check them, sync the mailbox
over calendarView delta and deliver signed webhooks to the booking platform stand-in — no timer
involved. Spoofed notifications, every lifecycle event, dropped notifications caught by the
sweep, an expired delta token and throttling, then every Outlook-side behaviour of the EWS path
for Graph mailboxes and for organizations that mix the two protocols."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

import pytest

from shared import bootstrap
from shared.queues import MailboxSyncRequested
from shared.store.records import MailboxRecord, SubscriptionRecord
from sim.people import Outlook
from sim.store import CalendarItem, Fault, Recurrence
from tests.builders import snapshot_document
from tests.e2e.conftest import ORG, STAFF, World
from tests.e2e.test_booking_to_exchange import attendee_addresses, put
from tests.e2e.test_exchange_to_booking import busy, received, webhooks
from tests.waiting import wait_until

(ANN, ANN_MAILBOX), (BOB, BOB_MAILBOX), _ = STAFF["ews"].items()
(DAN, DAN_MAILBOX), (EVE, EVE_MAILBOX), (FAY, FAY_MAILBOX) = STAFF["graph"].items()
GRAPH_STAFF = (DAN, EVE, FAY)
# Inside the delta window (the recurrence horizon from today), whatever day the tests run.
BASE = datetime.combine(date.today() + timedelta(days=10), datetime.min.time(), tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture(scope="module", autouse=True)
def pushed(world: World) -> None:
    """Webhooks go to the stand-in; every Graph mailbox has its subscription and has been read
    once (the sync that follows a new subscription)."""
    response = world.admin_put("settings", {"webhookUrl": world.sim.urls["booking"] + "/webhooks"})
    assert response.status_code in (200, 201), response.text

    def ready(staff_id: str) -> bool:
        read = mailbox(staff_id)
        return (
            subscription_of(staff_id) is not None
            and read.last_full_read_at is not None
            and read.sync_pending_since is None
        )

    for staff_id in GRAPH_STAFF:
        wait_until(partial(ready, staff_id), what=f"{staff_id}'s subscription and first sync")


def mailbox(staff_id: str) -> MailboxRecord:
    found = bootstrap.services().repositories.mailboxes.get(ORG, staff_id)
    assert found is not None
    return found.value


def subscription_of(staff_id: str) -> SubscriptionRecord | None:
    rows = bootstrap.services().repositories.subscriptions.list_by_org(ORG).values()
    mine = [row.value for row in rows if row.value.staff_id == staff_id]
    return mine[0] if len(mine) == 1 else None


def synced_after(staff_id: str, before: datetime | None, timeout: float = 30.0) -> None:
    def done() -> bool:
        now = mailbox(staff_id)
        return now.last_sync_at is not None and now.last_sync_at != before

    wait_until(done, timeout, f"{staff_id}'s mailbox to sync")


def post(world: World, path: str, body: bytes, query: str = "") -> Any:
    url = f"{world.runner.base_url}/graph/{path}/{ORG}" + (f"?{query}" if query else "")
    return world.http.post(url, content=body, headers={"Content-Type": "application/json"})


def book(
    world: World, prefix: str, organizer: str, secondaries: list[str]
) -> tuple[str, str, dict[str, Any]]:
    n = next(_ids)
    appointment_id, title = f"push-{n}", f"{prefix} #{n}"
    body = snapshot_document(
        1,
        organizer=organizer,
        secondaries=secondaries,
        start=BASE + timedelta(days=n % 40, hours=13),
        minutes=45,
        time_zone="America/Toronto",
        title=title,
        location="Branch 12",
        clients=({"name": "Grace Hopper", "email": "grace@client.test"},),
    )
    put(world, appointment_id, body)
    return appointment_id, title, body


def only(world: World, address: str, title: str) -> CalendarItem:
    [item] = world.live(address, title)
    return item


def settled(staff_id: str) -> None:
    """Wait until no sync of the mailbox is pending (a notification's sync has run)."""
    wait_until(lambda: not mailbox(staff_id).sync_pending_since, what=f"{staff_id} to settle")


# --- the endpoint ---------------------------------------------------------------------------


def test_the_validation_handshake_answers_the_token_as_plain_text(world: World) -> None:
    token = "Validation: Testing client application reachability for subscription <b>x</b>"
    for path in ("notifications", "lifecycle"):
        answer = post(world, path, b"", query=f"validationToken={token.replace(' ', '%20')}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text == token
    # The simulator validated both URLs of every Graph mailbox's subscription before making it.
    made = [
        s
        for s in world.sim.graph.subscriptions._subscriptions.values()
        if s.mailbox in STAFF["graph"].values()
    ]
    assert len(made) == len(GRAPH_STAFF)
    assert all(s.notification_url.endswith(f"/graph/notifications/{ORG}") for s in made)
    assert all(
        s.lifecycle_url and s.lifecycle_url.endswith(f"/graph/lifecycle/{ORG}") for s in made
    )


def test_spoofed_notifications_change_nothing(world: World) -> None:
    record = subscription_of(FAY)
    assert record is not None
    before = mailbox(FAY)
    forged = [
        {"subscriptionId": record.subscription_id, "clientState": "guessed", "changeType": "x"},
        {"subscriptionId": "00000000-0000-0000-0000-000000000000", "clientState": "guessed"},
    ]
    for notification in forged:
        answer = post(world, "notifications", json.dumps({"value": [notification]}).encode())
        assert answer.status_code == 403, answer.text
        lifecycle = {**notification, "lifecycleEvent": "subscriptionRemoved"}
        answer = post(world, "lifecycle", json.dumps({"value": [lifecycle]}).encode())
        assert answer.status_code == 403
    assert post(world, "notifications", b"not json").status_code == 400
    assert mailbox(FAY) == before
    assert subscription_of(FAY) == record


def test_an_outlook_change_reaches_the_booking_platform_through_a_notification(
    world: World,
) -> None:
    before = mailbox(DAN)
    day = BASE + timedelta(days=3)
    began = time.monotonic()
    Outlook(world.sim.store, DAN_MAILBOX).create_event(
        "Dentist", day.replace(hour=14), day.replace(hour=15)
    )
    hook = received(world, "busy_time.changed", staffId=DAN)
    assert time.monotonic() - began < 10  # seconds, not a poll interval
    assert mailbox(DAN).notices > before.notices  # it came through a notification
    assert hook.verified
    subjects = [b["subject"] for b in busy(world, DAN, day, day + timedelta(days=1))]
    assert subjects == ["Dentist"]


def test_calbridges_own_writes_are_never_reported(world: World) -> None:
    appointment_id, title, _ = book(world, "Echo", DAN, [EVE])
    settled(DAN)
    settled(EVE)
    update = snapshot_document(
        2,
        organizer=DAN,
        secondaries=[EVE],
        start=BASE + timedelta(days=2, hours=16),
        minutes=45,
        time_zone="America/Toronto",
        title=title,
    )
    notified = mailbox(DAN).notices
    put(world, appointment_id, update)
    wait_until(lambda: mailbox(DAN).notices > notified, what="the notification of the update")
    settled(DAN)
    settled(EVE)
    assert not [
        hook
        for hook in world.sim.booking.received
        if hook.body and hook.body.get("data", {}).get("appointmentId") == appointment_id
    ]


# --- Outlook-side behaviour over Graph --------------------------------------------------------


def test_an_organizer_move_is_reported_and_the_copies_follow(world: World) -> None:
    appointment_id, title, body = book(world, "Moved", DAN, [EVE])
    item = only(world, DAN_MAILBOX, title)
    new_start = datetime.fromisoformat(body["start"]) + timedelta(hours=2)
    Outlook(world.sim.store, DAN_MAILBOX).move(
        item.id, new_start, new_start + timedelta(minutes=45)
    )
    hook = received(world, "appointment.rescheduled", appointmentId=appointment_id)
    assert datetime.fromisoformat(hook.body["data"]["start"]) == new_start
    assert hook.body["data"]["by"] == DAN
    assert [c.start for c in world.live(EVE_MAILBOX, title)] == [new_start]
    # The platform sends the old snapshot again: the event stays where Outlook put it.
    put(world, appointment_id, body)
    assert only(world, DAN_MAILBOX, title).start == new_start


def test_a_move_the_platform_refuses_is_moved_back(world: World) -> None:
    appointment_id, title, body = book(world, "Refused", DAN, [])
    world.sim.booking.respond_with("appointment.rescheduled", 409, times=1)
    booked = datetime.fromisoformat(body["start"])
    item = only(world, DAN_MAILBOX, title)
    Outlook(world.sim.store, DAN_MAILBOX).move(
        item.id, booked + timedelta(days=1), booked + timedelta(days=1, minutes=45)
    )
    wait_until(lambda: only(world, DAN_MAILBOX, title).start == booked, what="the move-back")
    problem = world.problem(appointment_id)
    assert problem is not None
    assert "409" in problem.problem


def test_an_organizer_who_cancels_cancels_the_appointment_and_every_copy(world: World) -> None:
    appointment_id, title, _ = book(world, "Cancelled", DAN, [EVE, FAY])
    item = only(world, DAN_MAILBOX, title)
    Outlook(world.sim.store, DAN_MAILBOX).cancel(item.id)
    hook = received(world, "appointment.cancelled", appointmentId=appointment_id)
    assert hook.body["data"]["by"] == DAN
    for address in (EVE_MAILBOX, FAY_MAILBOX):

        def gone(where: str = address) -> bool:
            return not world.live(where, title)

        wait_until(gone, what=f"{address}'s copy cancelled")


def test_an_organizer_who_deletes_without_cancellations_still_cancels_every_copy(
    world: World,
) -> None:
    appointment_id, title, _ = book(world, "Deleted", DAN, [EVE])
    item = only(world, DAN_MAILBOX, title)
    world.sim.store.delete_item(DAN_MAILBOX, item.id)  # no cancellation sent
    received(world, "appointment.cancelled", appointmentId=appointment_id)
    wait_until(lambda: not world.live(EVE_MAILBOX, title), what="eve's copy to be cancelled")


def test_a_secondary_who_declines_is_reported_and_the_appointment_stays(world: World) -> None:
    appointment_id, title, body = book(world, "Declined", DAN, [EVE])
    copy = only(world, EVE_MAILBOX, title)
    Outlook(world.sim.store, EVE_MAILBOX).decline(copy.id)
    received(world, "appointment.staff_declined", appointmentId=appointment_id, staffId=EVE)
    assert only(world, DAN_MAILBOX, title)
    assert not webhooks(world, "appointment.cancelled", appointmentId=appointment_id)

    # The organizer's item shows the decline, and still does once the platform drops eve:
    # nothing is written (a write would reach her), and her calendar stays empty.
    def responses() -> dict[str, str]:
        item = only(world, DAN_MAILBOX, title)
        return {a.address: a.response.value for a in item.required_attendees}

    assert responses().get(EVE_MAILBOX) == "Decline"
    shown = only(world, DAN_MAILBOX, title).change_key
    dropped = {**body, "version": 2, "staff": [{"staffId": DAN, "role": "organizer"}]}
    put(world, appointment_id, dropped)
    assert only(world, DAN_MAILBOX, title).change_key == shown
    assert responses().get(EVE_MAILBOX) == "Decline"
    assert world.live(EVE_MAILBOX, title) == []
    # The next change the appointment needs anyway leaves her off the item, not re-invited.
    renamed = f"{title} (renamed)"
    put(world, appointment_id, {**dropped, "version": 3, "title": renamed})
    assert EVE_MAILBOX not in attendee_addresses(only(world, DAN_MAILBOX, renamed))
    assert world.live(EVE_MAILBOX, renamed) == []


# --- organizations mixing EWS and Graph ---------------------------------------------------------


def poll(world: World, staff_id: str) -> None:
    """An EWS mailbox is read when the poll fan-out queues it: queue it as the fan-out would."""
    before = mailbox(staff_id).last_sync_at
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll"))
    synced_after(staff_id, before)


def test_an_ews_organizer_hears_a_graph_secondary_decline_at_the_next_poll(world: World) -> None:
    appointment_id, title, _ = book(world, "Mixed decline", ANN, [DAN])
    copy = only(world, DAN_MAILBOX, title)  # Exchange invited the Graph mailbox
    Outlook(world.sim.store, DAN_MAILBOX).decline(copy.id)
    poll(world, ANN)
    received(world, "appointment.staff_declined", appointmentId=appointment_id, staffId=DAN)


def test_a_graph_organizer_hears_an_ews_secondary_decline_through_a_notification(
    world: World,
) -> None:
    appointment_id, title, _ = book(world, "Mixed decline back", DAN, [BOB])
    copy = only(world, BOB_MAILBOX, title)
    Outlook(world.sim.store, BOB_MAILBOX).decline(copy.id)
    received(world, "appointment.staff_declined", appointmentId=appointment_id, staffId=BOB)


def test_a_graph_organizer_who_deletes_cancels_the_ews_copies_and_the_reverse(
    world: World,
) -> None:
    graph_led, title, _ = book(world, "Mixed delete", DAN, [BOB])
    world.sim.store.delete_item(DAN_MAILBOX, only(world, DAN_MAILBOX, title).id)
    received(world, "appointment.cancelled", appointmentId=graph_led)
    wait_until(lambda: not world.live(BOB_MAILBOX, title), what="bob's EWS copy cancelled")

    ews_led, other, _ = book(world, "Mixed delete back", ANN, [EVE])
    world.sim.store.delete_item(ANN_MAILBOX, only(world, ANN_MAILBOX, other).id)
    poll(world, ANN)
    received(world, "appointment.cancelled", appointmentId=ews_led)
    wait_until(lambda: not world.live(EVE_MAILBOX, other), what="eve's Graph copy cancelled")


def test_a_graph_organizer_move_is_reported_with_an_ews_secondary_following(world: World) -> None:
    appointment_id, title, body = book(world, "Mixed move", DAN, [ANN])
    new_start = datetime.fromisoformat(body["start"]) + timedelta(hours=1)
    Outlook(world.sim.store, DAN_MAILBOX).move(
        only(world, DAN_MAILBOX, title).id, new_start, new_start + timedelta(minutes=45)
    )
    received(world, "appointment.rescheduled", appointmentId=appointment_id)
    assert [c.start for c in world.live(ANN_MAILBOX, title)] == [new_start]


# --- faults and the safety nets -------------------------------------------------------------------


def test_dropped_notifications_are_caught_by_the_sweep(world: World) -> None:
    settled(FAY)
    world.sim.store.add_fault(Fault(kind="drop_notifications", mailbox=FAY_MAILBOX, remaining=1))
    before = mailbox(FAY)
    day = BASE + timedelta(days=5)
    Outlook(world.sim.store, FAY_MAILBOX).create_event(
        "Unnoticed", day.replace(hour=9), day.replace(hour=10)
    )
    assert world.sim.graph.subscriptions.wait_for_deliveries()  # dropped: nothing was sent
    assert mailbox(FAY).notices == before.notices
    assert not webhooks(world, "busy_time.changed", staffId=FAY)
    bootstrap.services().graph_sweep.run()  # what the 15-minute timer does
    received(world, "busy_time.changed", staffId=FAY)


def test_an_expired_delta_token_reads_everything_again_without_duplicates(world: World) -> None:
    settled(EVE)
    day = BASE + timedelta(days=6)
    eve = Outlook(world.sim.store, EVE_MAILBOX)
    eve.create_event("Standing", day.replace(hour=9), day.replace(hour=10))
    received(world, "busy_time.changed", staffId=EVE)
    settled(EVE)
    told = len(webhooks(world, "busy_time.changed", staffId=EVE))
    blocks = busy(world, EVE, day, day + timedelta(days=1))
    world.sim.store.invalidate_sync_states(EVE_MAILBOX)
    eve.create_event("New", day.replace(hour=12), day.replace(hour=13))
    wait_until(
        lambda: len(webhooks(world, "busy_time.changed", staffId=EVE)) > told, what="the new block"
    )
    settled(EVE)
    after = busy(world, EVE, day, day + timedelta(days=1))
    assert [b["subject"] for b in after] == ["Standing", "New"]
    assert [b for b in after if b["subject"] == "Standing"] == blocks
    assert mailbox(EVE).last_full_read_at is not None
    assert len(webhooks(world, "busy_time.changed", staffId=EVE)) == told + 1


def test_a_throttled_sync_comes_back_after_graphs_delay(world: World) -> None:
    settled(FAY)
    world.sim.store.add_fault(
        Fault(kind="throttle", operation="graph:delta", mailbox=FAY_MAILBOX, retry_after=2)
    )
    day = BASE + timedelta(days=7)
    began = time.monotonic()
    Outlook(world.sim.store, FAY_MAILBOX).create_event(
        "After the wait", day.replace(hour=9), day.replace(hour=10)
    )
    wait_until(
        lambda: any(
            b["subject"] == "After the wait" for b in busy(world, FAY, day, day + timedelta(days=1))
        ),
        what="the block after throttling",
    )
    assert time.monotonic() - began >= 2  # came back after Retry-After, no sleep in a worker
    assert world.sim.store.take_fault(FAY_MAILBOX, "graph:delta") is None


def test_lifecycle_events_reauthorize_recreate_and_resync(world: World) -> None:
    settled(DAN)
    record = subscription_of(DAN)
    assert record is not None
    reauthorized = world.sim.store.counter_snapshot().get("graph:reauthorize", {})
    world.sim.graph.send_lifecycle(record.subscription_id, "reauthorizationRequired")
    wait_until(
        lambda: world.sim.store.counter_snapshot().get("graph:reauthorize", {}) != reauthorized,
        what="the subscription to be reauthorized",
    )

    before = mailbox(DAN).last_sync_at
    world.sim.graph.send_lifecycle(record.subscription_id, "missed")
    synced_after(DAN, before)

    before = mailbox(DAN).last_sync_at
    world.sim.graph.send_lifecycle(record.subscription_id, "subscriptionRemoved")

    def replaced() -> SubscriptionRecord | None:
        now = subscription_of(DAN)
        return now if now is not None and now.subscription_id != record.subscription_id else None

    renewed = wait_until(replaced, what="a new subscription")
    synced_after(DAN, before)  # and the mailbox read again
    # The new subscription works: a change arrives through it.
    day = BASE + timedelta(days=8)
    Outlook(world.sim.store, DAN_MAILBOX).create_event(
        "After renewal", day.replace(hour=9), day.replace(hour=10)
    )
    wait_until(
        lambda: any(
            b["subject"] == "After renewal" for b in busy(world, DAN, day, day + timedelta(days=1))
        ),
        what="the change through the new subscription",
    )
    assert renewed.subscription_id in world.sim.graph.subscriptions._subscriptions


def test_a_graph_series_blocks_its_occurrences_with_exceptions(world: World) -> None:
    fay = Outlook(world.sim.store, FAY_MAILBOX)
    first = (BASE + timedelta(days=14)).replace(hour=15, tzinfo=None)
    weekly = Recurrence(
        pattern="weekly", days_of_week=[first.strftime("%A")], start_date=first.date(), count=4
    )
    series = fay.create_series(
        "Team sync", first, first + timedelta(hours=1), weekly, time_zone="UTC"
    )
    window = (BASE + timedelta(days=13), BASE + timedelta(days=45))

    def starts() -> list[str]:
        return [b["start"] for b in busy(world, FAY, *window) if b["subject"] == "Team sync"]

    wait_until(lambda: len(starts()) == 4, what="four occurrences")
    fay.edit_occurrence(
        series.id,
        2,
        start=first + timedelta(days=7, hours=2),
        end=first + timedelta(days=7, hours=3),
    )
    fay.delete_occurrence(series.id, 3)
    expected = [
        (first + timedelta(days=0)).replace(tzinfo=UTC),
        (first + timedelta(days=7, hours=2)).replace(tzinfo=UTC),
        (first + timedelta(days=21)).replace(tzinfo=UTC),
    ]
    wanted = [moment.isoformat().replace("+00:00", "Z") for moment in expected]
    wait_until(lambda: starts() == wanted, what="the edited and deleted occurrences")


def test_private_subjects_and_bodies_stay_in_exchange(world: World) -> None:
    day = BASE + timedelta(days=9)
    Outlook(world.sim.store, EVE_MAILBOX).create_event(
        "Therapy XQZ-8", day.replace(hour=9), day.replace(hour=10), private=True
    )
    wait_until(
        lambda: any(b["private"] for b in busy(world, EVE, day, day + timedelta(days=1))),
        what="the private block",
    )
    assert all("Therapy XQZ-8" not in hook.raw for hook in world.sim.booking.received)
    body_fields = {"body", "bodypreview", "uniquebody"}
    graph_reads = [s for s in world.sim.store.requested_shapes if s[0].startswith("graph:")]
    assert {operation for operation, _, _ in graph_reads} >= {"graph:delta", "graph:getEvent"}
    for operation, base, properties in graph_reads:
        assert base != "AllProperties", operation
        assert not {p.lower() for p in properties} & body_fields, operation
