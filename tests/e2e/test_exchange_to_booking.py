"""Exchange → booking platform over EWS, end to end: staff act in Outlook (the simulator's people
actions), a mailbox sync runs through the registered ``sync_mailbox`` function (the message the
poll fan-out sends), and the booking platform stand-in receives signed webhooks; busy time is
read back through the signed busy-time route."""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient

from shared import bootstrap
from shared.booking.signature import sign_request
from shared.http.contract import SIGNATURE_HEADER
from shared.models import Health
from shared.queues import MAILBOX_SYNC, MailboxSyncRequested
from sim.booking import ReceivedWebhook
from sim.people import Outlook
from sim.store import CalendarItem, Fault, FreeBusy, Recurrence
from tests.e2e.conftest import ORG, SIGNING_SECRET, STAFF, World
from tests.e2e.test_booking_to_exchange import attendee_addresses, put, snapshot, unique
from tests.waiting import wait_until

(ANN, ANN_MAILBOX), (BOB, BOB_MAILBOX), (CARA, CARA_MAILBOX) = STAFF["ews"].items()
PRIVATE_SUBJECT = "Therapy session XQZ-7"


@pytest.fixture(scope="module", autouse=True)
def webhooks_go_to_the_stand_in(world: World) -> None:
    response = world.admin_put("settings", {"webhookUrl": world.sim.urls["booking"] + "/webhooks"})
    assert response.status_code in (200, 201), response.text


def synced(world: World, staff_id: str) -> None:
    """Sync one mailbox as the poll fan-out would, and wait until it has run.

    A sync already under way (queued by the poll timer, or by an earlier step) may have read the
    mailbox before this test's Outlook actions: its end must not pass for this sync's. So first
    wait until no sync message is waiting or in flight."""
    repos = bootstrap.services().repositories
    syncs = QueueClient.from_connection_string(world.storage, world.queue_prefix + MAILBOX_SYNC)
    wait_until(
        lambda: syncs.get_queue_properties().approximate_message_count == 0,
        what="syncs under way to end",
    )
    before = repos.mailboxes.get(ORG, staff_id)
    assert before is not None
    last = before.value.last_sync_at
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll"))

    def done() -> bool:
        now = repos.mailboxes.get(ORG, staff_id)
        return (
            now is not None
            and now.value.last_sync_at is not None
            and now.value.last_sync_at != last
        )

    wait_until(done, what=f"{staff_id}'s mailbox to sync")


def webhooks(world: World, event_type: str, **data: Any) -> list[ReceivedWebhook]:
    return [
        hook
        for hook in world.sim.booking.received
        if hook.event_type == event_type
        and all(hook.body["data"].get(name) == value for name, value in data.items())
    ]


def received(world: World, event_type: str, **data: Any) -> ReceivedWebhook:
    """The one change of that type reported: under one webhook id, which may be delivered more
    than once (at least once: two syncs that both read the change both queue its delivery)."""
    hooks = wait_until(
        lambda: webhooks(world, event_type, **data), what=f"a {event_type} webhook {data}"
    )
    ids = {hook.body["id"] for hook in hooks}
    assert len(ids) == 1, f"one change reported under {len(ids)} webhook ids"
    for hook in hooks:
        assert hook.verified, hook.reason
        assert hook.status == 200
    return hooks[0]


def busy(world: World, staff_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    target = (
        f"/api/orgs/{ORG}/staff/{staff_id}/busy?start={start.isoformat().replace('+', '%2B')}"
        f"&end={end.isoformat().replace('+', '%2B')}"
    )
    url = world.runner.base_url.removesuffix("/api") + target
    signature = sign_request(SIGNING_SECRET, "GET", target, b"", int(time.time()))
    response = world.http.get(url, headers={SIGNATURE_HEADER: signature})
    assert response.status_code == 200, response.text
    return list(response.json())


def organizer_item(world: World, title: str) -> CalendarItem:
    [item] = world.live(ANN_MAILBOX, title)
    return item


def test_the_staffs_own_events_become_busy_time_private_ones_without_a_subject(
    world: World,
) -> None:
    day = datetime(2027, 4, 5, tzinfo=UTC)
    ann = Outlook(world.sim.store, ANN_MAILBOX)
    ann.create_event("Dentist", day.replace(hour=14), day.replace(hour=15))
    ann.create_event("Therapy (secret)", day.replace(hour=16), day.replace(hour=17), private=True)
    ann.create_event(
        "Lunch walk", day.replace(hour=12), day.replace(hour=13), free_busy=FreeBusy.FREE
    )
    ann.create_event("Conference", date(2027, 4, 6), date(2027, 4, 7), is_all_day=True)
    synced(world, ANN)

    blocks = busy(world, ANN, day, day + timedelta(days=2))
    subjects = [(b["subject"], b["private"], b["allDay"]) for b in blocks]
    assert ("Dentist", False, False) in subjects
    assert (None, True, False) in subjects  # private: busy, nothing else
    assert ("Conference", False, True) in subjects
    assert all(b["subject"] != "Lunch walk" for b in blocks)  # shown as free: not busy
    [all_day] = [b for b in blocks if b["allDay"]]
    # A whole day in the staff member's zone (America/Toronto: UTC-4 in April).
    assert (all_day["start"], all_day["end"]) == ("2027-04-06T04:00:00Z", "2027-04-07T04:00:00Z")
    hook = received(world, "busy_time.changed", staffId=ANN)
    assert hook.body["org"] == ORG

    # The private subject is in no table row and no webhook.
    tables = TableServiceClient.from_connection_string(world.storage)
    for table in tables.list_tables():
        if table.name.startswith(world.queue_prefix):
            for row in tables.get_table_client(table.name).list_entities():
                assert PRIVATE_SUBJECT not in json.dumps(row, default=str)
    assert all(PRIVATE_SUBJECT not in hook.raw for hook in world.sim.booking.received)


def book(world: World, title_prefix: str) -> tuple[str, str, dict[str, Any]]:
    appointment_id, title, day = unique(title_prefix)
    body = snapshot(1, ANN, [BOB], title=title, day=day)
    put(world, appointment_id, body)
    return appointment_id, title, body


def test_calbridges_own_writes_are_never_reported(world: World) -> None:
    appointment_id, title, body = book(world, "Echo")
    synced(world, ANN)
    synced(world, BOB)
    assert not [
        hook
        for hook in world.sim.booking.received
        if hook.body and hook.body.get("data", {}).get("appointmentId") == appointment_id
    ]
    start = datetime.fromisoformat(body["start"])
    for staff_id in (ANN, BOB):
        assert all(
            b["subject"] != title for b in busy(world, staff_id, start, start + timedelta(hours=2))
        )


def test_an_outlook_move_is_reported_once_and_a_redelivered_snapshot_does_not_undo_it(
    world: World,
) -> None:
    appointment_id, title, body = book(world, "Moved")
    item = organizer_item(world, title)
    new_start = datetime.fromisoformat(body["start"]) + timedelta(hours=3)
    Outlook(world.sim.store, ANN_MAILBOX).move(
        item.id, new_start, new_start + timedelta(minutes=45)
    )
    synced(world, ANN)
    hook = received(world, "appointment.rescheduled", appointmentId=appointment_id)
    assert datetime.fromisoformat(hook.body["data"]["start"]) == new_start
    assert hook.body["data"]["by"] == ANN
    # The same snapshot again (a retry by the platform) leaves the event where Outlook put it.
    put(world, appointment_id, body)
    assert organizer_item(world, title).start == new_start
    assert [c.start for c in world.live(BOB_MAILBOX, title)] == [new_start]
    synced(world, ANN)
    assert len(webhooks(world, "appointment.rescheduled", appointmentId=appointment_id)) == 1


def test_a_move_the_platform_refuses_is_moved_back_and_recorded(world: World) -> None:
    appointment_id, title, body = book(world, "Refused")
    world.sim.booking.respond_with("appointment.rescheduled", 409, times=1)
    booked = datetime.fromisoformat(body["start"])
    item = organizer_item(world, title)
    Outlook(world.sim.store, ANN_MAILBOX).move(
        item.id, booked + timedelta(days=1), booked + timedelta(days=1, minutes=45)
    )
    synced(world, ANN)
    wait_until(lambda: organizer_item(world, title).start == booked, what="the event to move back")
    problem = world.problem(appointment_id)
    assert problem is not None
    assert "409" in problem.problem


def test_an_organizer_who_deletes_the_meeting_cancels_the_appointment_and_every_copy(
    world: World,
) -> None:
    appointment_id, title, _ = book(world, "Deleted")
    item = organizer_item(world, title)
    # Deleted without sending cancellations: the copies would stay behind.
    world.sim.store.delete_item(ANN_MAILBOX, item.id)
    synced(world, ANN)
    hook = received(world, "appointment.cancelled", appointmentId=appointment_id)
    assert hook.body["data"]["by"] == ANN
    wait_until(lambda: not world.live(BOB_MAILBOX, title), what="bob's copy to be cancelled")


def test_a_secondary_who_declines_is_reported_and_the_appointment_stays(world: World) -> None:
    appointment_id, title, body = book(world, "Declined")
    [copy] = world.live(BOB_MAILBOX, title)
    Outlook(world.sim.store, BOB_MAILBOX).decline(copy.id)
    synced(world, ANN)
    received(world, "appointment.staff_declined", appointmentId=appointment_id, staffId=BOB)
    assert organizer_item(world, title)  # still booked
    assert not webhooks(world, "appointment.cancelled", appointmentId=appointment_id)
    # The organizer's item shows the decline.
    assert responses_on(organizer_item(world, title)).get(BOB_MAILBOX) == "Decline"
    # The platform drops bob: nothing is written (a write would reach him), so the organizer's
    # item still shows his decline and his calendar stays empty.
    shown = organizer_item(world, title).change_key
    day = _day_of(body)
    put(world, appointment_id, snapshot(2, ANN, [], title=title, day=day))
    assert organizer_item(world, title).change_key == shown
    assert responses_on(organizer_item(world, title)).get(BOB_MAILBOX) == "Decline"
    assert world.live(BOB_MAILBOX, title) == []
    # The next change the appointment needs anyway leaves him off the item, not re-invited.
    put(world, appointment_id, snapshot(3, ANN, [], title=title, day=day, hour=15))
    assert BOB_MAILBOX not in attendee_addresses(organizer_item(world, title))
    assert world.live(BOB_MAILBOX, title) == []
    # Booked again later, he is invited afresh.
    put(world, appointment_id, snapshot(4, ANN, [BOB], title=title, day=day, hour=15))
    assert len(world.live(BOB_MAILBOX, title)) == 1


def responses_on(item: CalendarItem) -> dict[str, str]:
    return {a.address: a.response.value for a in item.required_attendees}


def test_a_decline_not_answered_yet_is_not_undone_by_the_platforms_next_change(
    world: World,
) -> None:
    # Found by the convergence machine: bob declined; before the platform dropped him it sent
    # another change (a new time) that still named him. The update reached bob as a new
    # invitation (Exchange sends an update to every attendee the meeting lists, one who
    # declined included), and when the platform then dropped him his decline was still on
    # record: calbridge left him on the meeting, and the appointment stayed in his calendar.
    appointment_id, title, body = book(world, "Declined, then moved")
    [copy] = world.live(BOB_MAILBOX, title)
    Outlook(world.sim.store, BOB_MAILBOX).decline(copy.id)
    synced(world, ANN)
    received(world, "appointment.staff_declined", appointmentId=appointment_id, staffId=BOB)
    day = _day_of(body)
    put(world, appointment_id, snapshot(2, ANN, [BOB], title=title, day=day, hour=15))
    assert world.live(BOB_MAILBOX, title) == []  # not invited again: his decline stands
    moved = organizer_item(world, title).start
    assert moved is not None
    assert moved.hour == 15
    put(world, appointment_id, snapshot(3, ANN, [], title=title, day=day, hour=15))
    assert world.live(BOB_MAILBOX, title) == []
    synced(world, ANN)
    declines = webhooks(world, "appointment.staff_declined", appointmentId=appointment_id)
    assert len(declines) == 1


def test_a_decline_not_read_yet_is_reported_before_a_newer_snapshot_is_written(
    world: World,
) -> None:
    appointment_id, title, body = book(world, "Declined, then renamed")
    synced(world, ANN)
    [copy] = world.live(BOB_MAILBOX, title)
    Outlook(world.sim.store, BOB_MAILBOX).decline(copy.id)
    # Before any poll reads the decline, the platform renames the appointment: the write would
    # leave the sync only calbridge's own change key to see. The organizer's mailbox is read
    # first, then the newer snapshot is written.
    renamed = f"{title} (renamed)"
    put(world, appointment_id, snapshot(2, ANN, [BOB], title=renamed, day=_day_of(body)))
    received(world, "appointment.staff_declined", appointmentId=appointment_id, staffId=BOB)
    assert organizer_item(world, renamed).subject == renamed


def _day_of(body: dict[str, Any]) -> int:
    start = datetime.fromisoformat(body["start"])
    return (start.date() - date(2027, 3, 1)).days


def test_a_weekly_series_blocks_each_occurrence_across_a_dst_change_with_its_exceptions(
    world: World,
) -> None:
    cara = Outlook(world.sim.store, CARA_MAILBOX)
    weekly = Recurrence(
        pattern="weekly", days_of_week=["Monday"], start_date=date(2027, 3, 1), count=5
    )
    series = cara.create_series(
        "Team sync",
        datetime(2027, 3, 1, 10, 0),
        datetime(2027, 3, 1, 11, 0),
        weekly,
        time_zone="America/Toronto",
    )
    synced(world, CARA)
    window = (datetime(2027, 2, 28, tzinfo=UTC), datetime(2027, 4, 5, tzinfo=UTC))

    def starts() -> list[str]:
        return [b["start"] for b in busy(world, CARA, *window) if b["subject"] == "Team sync"]

    # 10:00 in Toronto: 15:00 UTC before the change to daylight time on 14 March, 14:00 after.
    assert starts() == [
        "2027-03-01T15:00:00Z",
        "2027-03-08T15:00:00Z",
        "2027-03-15T14:00:00Z",
        "2027-03-22T14:00:00Z",
        "2027-03-29T14:00:00Z",
    ]
    # Occurrences are numbered from 1, as EWS numbers them.
    cara.edit_occurrence(  # 15 March, moved to the afternoon
        series.id, 3, start=datetime(2027, 3, 15, 14, 0), end=datetime(2027, 3, 15, 15, 0)
    )
    cara.delete_occurrence(series.id, 4)  # 22 March
    synced(world, CARA)
    assert starts() == [
        "2027-03-01T15:00:00Z",
        "2027-03-08T15:00:00Z",
        "2027-03-15T18:00:00Z",
        "2027-03-29T14:00:00Z",
    ]


def test_no_request_calbridge_made_asked_exchange_for_an_event_body(world: World) -> None:
    # Every read of this module's scenarios (the apply worker's and the syncs') went through the
    # simulator, which notes what each asked for. None may ask for a body, in any form, nor for
    # every property (AllProperties includes the body).
    shapes = world.sim.store.requested_shapes
    assert {operation for operation, _, _ in shapes} >= {"ews:SyncFolderItems", "ews:GetItem"}
    body_fields = {"item:Body", "item:TextBody", "item:UniqueBody"}
    for operation, base, properties in shapes:
        assert base != "AllProperties", operation
        assert not properties & body_fields, (operation, sorted(properties))


def test_a_throttled_sync_comes_back_after_the_servers_delay_and_completes(world: World) -> None:
    world.sim.store.add_fault(
        Fault(
            kind="server_busy", operation="SyncFolderItems", mailbox=CARA_MAILBOX, back_off_ms=1500
        )
    )
    began = time.monotonic()
    synced(world, CARA)
    assert time.monotonic() - began >= 1.5  # came back after BackOffMilliseconds, no sleep
    assert world.sim.store.take_fault(CARA_MAILBOX, "ews:SyncFolderItems") is None


def test_refused_credentials_mark_the_connection_and_tell_the_platform(world: World) -> None:
    repos = bootstrap.services().repositories
    world.sim.store.add_fault(
        Fault(kind="unauthorized", operation="*", mailbox=BOB_MAILBOX, remaining=None)
    )
    try:
        bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=BOB, reason="poll"))
        hook = received(world, "connection.health_changed", connectionId="onprem")
        assert hook.body["data"]["health"] == "auth_failed"
        connection = repos.connections.get(ORG, "onprem")
        assert connection is not None
        assert connection.value.health is Health.AUTH_FAILED
    finally:
        world.sim.store.clear_faults(BOB_MAILBOX)
        # The administrator fixes the connection (PUT again): it is tried afresh.
        current = repos.connections.get(ORG, "onprem")
        assert current is not None
        repos.connections.put(
            ORG,
            "onprem",
            current.value.model_copy(update={"health": None, "failed_secret_fingerprint": None}),
            current.etag,
        )


def test_a_staff_member_whose_calendar_does_not_count_has_no_busy_time(world: World) -> None:
    day = datetime(2027, 5, 10, tzinfo=UTC)
    window = (day, day + timedelta(days=1))
    Outlook(world.sim.store, BOB_MAILBOX).create_event(
        "Gym class", day.replace(hour=7), day.replace(hour=8)
    )
    synced(world, BOB)
    assert [b["subject"] for b in busy(world, BOB, *window)] == ["Gym class"]

    def switch(counts: bool) -> None:
        body = {
            "connectionId": "onprem",
            "mailbox": BOB_MAILBOX,
            "timeZone": "America/Toronto",
            "busyTime": counts,
        }
        response = world.admin_put(f"staff/{BOB}", body)
        assert response.status_code == 200, response.text

    told = len(webhooks(world, "busy_time.changed", staffId=BOB))
    switch(False)
    synced(world, BOB)
    assert busy(world, BOB, *window) == []
    # The platform is told to read the window again.
    wait_until(lambda: len(webhooks(world, "busy_time.changed", staffId=BOB)) > told, what="hook")

    switch(True)
    synced(world, BOB)
    assert [b["subject"] for b in busy(world, BOB, *window)] == ["Gym class"]
