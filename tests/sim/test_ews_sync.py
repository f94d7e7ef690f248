"""EWS contract: SyncFolderItems through exchangelib's ``sync_items`` — exactly the changes since
a sync state (creates, updates, deletes; an item born and removed in between is not reported),
paging with ``max_changes_returned``, an idle sync in one request, invalid sync states, and an
attendee's calendar following the organizer. Changes are arranged with the people API, as staff
would make them in Outlook; each test has its own simulator so its change log is its own.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from exchangelib.errors import ErrorInvalidSyncStateData
from exchangelib.protocol import close_connections

from sim.server import RunningSimulator
from sim.store import Fault, Recurrence
from tests.sim.conftest import ANN, BOB, exchangelib_account

StartSim = Callable[..., RunningSimulator]


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols() -> Iterator[None]:
    yield
    close_connections()


@pytest.fixture
def sim(start_sim: StartSim) -> Iterator[RunningSimulator]:
    running = start_sim()
    yield running
    assert running.ews.schema_failures == []


def when(day: int, hour: int) -> datetime.datetime:
    return datetime.datetime(2027, 4, day, hour, 0)


def sync(folder: Any, state: str | None, **options: Any) -> tuple[list[tuple[str, Any]], str]:
    folder.item_sync_state = None  # exchangelib falls back to the folder's last state otherwise
    changes = list(folder.sync_items(sync_state=state, **options))
    return changes, folder.item_sync_state


def described(changes: list[tuple[str, Any]]) -> set[tuple[str, str]]:
    """(kind, subject) for creates/updates, (kind, item id) for deletes."""
    return {(kind, item.id if kind == "delete" else item.subject) for kind, item in changes}


def sync_requests(sim: RunningSimulator, mailbox: str) -> int:
    return sim.store.counter_snapshot().get("ews:SyncFolderItems", {}).get(mailbox, 0)


def test_sync_returns_exactly_the_changes_since_the_state(sim: RunningSimulator) -> None:
    outlook = sim.person(ANN)
    outlook.create_event("Kept", when(1, 9), when(1, 10))
    moved = outlook.create_event("Moved later", when(1, 11), when(1, 12))
    gone = outlook.create_event("Gone later", when(1, 13), when(1, 14))
    calendar = exchangelib_account(sim, ANN, auth="basic").calendar

    first, state = sync(calendar, None)
    assert sorted(described(first)) == [
        ("create", "Gone later"),
        ("create", "Kept"),
        ("create", "Moved later"),
    ]
    ids = {item.subject: item.id for _, item in first}

    outlook.move(moved.id, when(2, 15), when(2, 16))
    outlook.delete(gone.id)
    outlook.create_event("New", when(3, 9), when(3, 10))
    flash = outlook.create_event("Flash", when(3, 11), when(3, 12))
    outlook.rename(flash.id, "Flash (renamed)")
    outlook.delete(flash.id)

    second, state_after = sync(calendar, state)
    assert len(second) == 3
    assert described(second) == {
        ("update", "Moved later"),
        ("delete", ids["Gone later"]),
        ("create", "New"),
    }
    [(_, updated)] = [change for change in second if change[0] == "update"]
    assert updated.id == ids["Moved later"]
    assert updated.start == when(2, 15).replace(tzinfo=datetime.UTC) + datetime.timedelta(
        hours=4
    )  # 15:00 in Toronto (EDT) is 19:00 UTC

    third, state_idle = sync(calendar, state_after)
    assert third == []
    assert state_idle == state_after


def test_paging_with_max_changes_returned(sim: RunningSimulator) -> None:
    outlook = sim.person(ANN)
    created = [outlook.create_event(f"Page {n}", when(5, 8 + n), when(5, 9 + n)) for n in range(7)]
    calendar = exchangelib_account(sim, ANN, auth="basic").calendar
    before = sync_requests(sim, ANN)

    first, state = sync(calendar, None, max_changes_returned=3)

    assert sync_requests(sim, ANN) - before == 3  # 3 + 3 + 1
    assert sorted(item.subject for _, item in first) == sorted(f"Page {n}" for n in range(7))
    assert {kind for kind, _ in first} == {"create"}

    outlook.rename(created[0].id, "Page 0 (renamed)")
    outlook.delete(created[1].id)
    outlook.rename(created[2].id, "Page 2 (renamed)")
    outlook.create_event("Page 7", when(6, 8), when(6, 9))
    before = sync_requests(sim, ANN)

    second, _ = sync(calendar, state, max_changes_returned=2)

    assert sync_requests(sim, ANN) - before == 2
    assert [kind for kind, _ in second] == ["update", "delete", "update", "create"]
    assert [item.subject for kind, item in second if kind != "delete"] == [
        "Page 0 (renamed)",
        "Page 2 (renamed)",
        "Page 7",
    ]


def test_idle_sync_is_one_request_with_nothing_in_it(sim: RunningSimulator) -> None:
    sim.person(ANN).create_event("Idle", when(7, 9), when(7, 10))
    calendar = exchangelib_account(sim, ANN, auth="basic").calendar
    _, state = sync(calendar, None)
    before = sync_requests(sim, ANN)

    changes, state_after = sync(calendar, state)

    assert changes == []
    assert state_after == state
    assert sync_requests(sim, ANN) - before == 1


def test_invalid_sync_states_are_refused(sim: RunningSimulator) -> None:
    ann_calendar = exchangelib_account(sim, ANN, auth="basic").calendar
    bob_calendar = exchangelib_account(sim, BOB, auth="basic").calendar
    sim.person(ANN).create_event("Valid", when(8, 9), when(8, 10))
    _, ann_state = sync(ann_calendar, None)
    _, bob_state = sync(bob_calendar, None)

    with pytest.raises(ErrorInvalidSyncStateData):
        sync(ann_calendar, "bm90IGEgc3luYyBzdGF0ZQ")
    with pytest.raises(ErrorInvalidSyncStateData):
        sync(ann_calendar, bob_state)  # another mailbox's state

    sim.store.add_fault(Fault(kind="invalid_sync_state", operation="ews:SyncFolderItems"))
    with pytest.raises(ErrorInvalidSyncStateData):
        sync(ann_calendar, ann_state)
    changes, _ = sync(ann_calendar, ann_state)  # the fault hit once
    assert changes == []


def test_attendee_calendar_follows_the_organizer(sim: RunningSimulator) -> None:
    organizer = sim.person(ANN)
    attendee_calendar = exchangelib_account(sim, BOB, auth="basic").calendar
    _, state = sync(attendee_calendar, None)

    meeting = organizer.create_event("Planning", when(9, 9), when(9, 10), attendees=[BOB])
    created, state = sync(attendee_calendar, state)
    assert [(kind, item.subject, item.my_response_type) for kind, item in created] == [
        ("create", "Planning", "NoResponseReceived")
    ]

    organizer.cancel(meeting.id)
    cancelled, state = sync(attendee_calendar, state)
    assert [(kind, item.subject, item.is_cancelled) for kind, item in cancelled] == [
        ("update", "Canceled: Planning", True)
    ]

    copy_id = created[0][1].id
    attendee_calendar.get(id=copy_id).delete()
    removed, _ = sync(attendee_calendar, state)
    assert [(kind, item.id) for kind, item in removed] == [("delete", copy_id)]


def test_occurrence_changes_are_updates_of_the_series(sim: RunningSimulator) -> None:
    outlook = sim.person(ANN)
    series = outlook.create_series(
        "Weekly review",
        when(12, 9),
        when(12, 10),
        Recurrence(pattern="weekly", days_of_week=["Monday"], count=4),
    )
    calendar = exchangelib_account(sim, ANN, auth="basic").calendar
    _, state = sync(calendar, None)

    outlook.edit_occurrence(series.id, 2, subject="Weekly review (special)")
    outlook.delete_occurrence(series.id, 3)
    changes, _ = sync(calendar, state)

    [(kind, master)] = changes
    assert kind == "update"
    assert master.type == "RecurringMaster"
    assert [o.start.date() for o in master.modified_occurrences] == [datetime.date(2027, 4, 19)]
    assert [d.start.date() for d in master.deleted_occurrences] == [datetime.date(2027, 4, 26)]


def test_only_fields_limit_what_sync_returns(sim: RunningSimulator) -> None:
    sim.person(ANN).create_event(
        "Slim", when(14, 9), when(14, 10), location="Room 9", body="private notes"
    )
    calendar = exchangelib_account(sim, ANN, auth="basic").calendar

    [(kind, item)], _ = sync(calendar, None, only_fields=["subject"])

    assert (kind, item.subject) == ("create", "Slim")
    assert item.location is None
    assert item.body is None
    assert item.changekey
