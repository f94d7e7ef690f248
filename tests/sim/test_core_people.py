"""Acting as staff in Outlook through ``sim.people.Outlook`` (the same actions the control API
exposes): what each action does to the person's calendar and to the other side of a meeting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sim.config import build_store, load_config
from sim.people import Outlook
from sim.store import (
    ExchangeStore,
    FreeBusy,
    ItemType,
    Recurrence,
    ResponseType,
    Sensitivity,
    SimError,
)
from tests.sim.conftest import ANN, BOB, CARA, sample_config


@pytest.fixture
def store() -> ExchangeStore:
    return build_store(load_config(sample_config()))


def test_naive_times_are_in_the_persons_time_zone(store: ExchangeStore) -> None:
    ann, cara = Outlook(store, ANN), Outlook(store, CARA)
    toronto = ann.create_event("Dentist", datetime(2026, 7, 1, 9), datetime(2026, 7, 1, 10))
    london = cara.create_event("Dentist", datetime(2026, 7, 1, 9), datetime(2026, 7, 1, 10))
    assert toronto.start == datetime(2026, 7, 1, 13, tzinfo=UTC)
    assert toronto.time_zone == "America/Toronto"
    assert london.start == datetime(2026, 7, 1, 8, tzinfo=UTC)
    assert not toronto.is_meeting


def test_meeting_invitation_response_and_update_round_trip(store: ExchangeStore) -> None:
    ann, bob, cara = Outlook(store, ANN), Outlook(store, BOB), Outlook(store, CARA)
    meeting = ann.create_event(
        "Review",
        datetime(2026, 7, 2, 14),
        datetime(2026, 7, 2, 15),
        attendees=[BOB],
        optional_attendees=[CARA],
        body="numbers",
    )
    bob_copy = bob.invitation(meeting.uid)
    cara_copy = cara.invitation(meeting.uid)
    assert bob_copy.response_type == ResponseType.NO_RESPONSE
    bob.accept(bob_copy.id)
    cara.tentatively_accept(cara_copy.id)
    responses = {
        a.address: a.response for a in meeting.required_attendees + meeting.optional_attendees
    }
    assert responses == {BOB: ResponseType.ACCEPT, CARA: ResponseType.TENTATIVE}
    assert cara_copy.free_busy == FreeBusy.TENTATIVE

    ann.rename(meeting.id, "Review (final)")
    assert bob_copy.subject == "Review (final)"
    assert bob_copy.response_type == ResponseType.ACCEPT
    ann.move(meeting.id, datetime(2026, 7, 3, 14), datetime(2026, 7, 3, 15))
    assert bob_copy.start == datetime(2026, 7, 3, 18, tzinfo=UTC)
    assert bob_copy.response_type == ResponseType.NO_RESPONSE

    bob.decline(bob_copy.id)
    assert bob.find(uid=meeting.uid) == []
    assert meeting.required_attendees[0].response == ResponseType.DECLINE


def test_mark_private_reaches_attendees(store: ExchangeStore) -> None:
    ann, bob = Outlook(store, ANN), Outlook(store, BOB)
    meeting = ann.create_event(
        "Health", datetime(2026, 7, 6, 9), datetime(2026, 7, 6, 10), attendees=[BOB]
    )
    ann.mark_private(meeting.id)
    assert meeting.sensitivity == Sensitivity.PRIVATE
    assert bob.invitation(meeting.uid).sensitivity == Sensitivity.PRIVATE
    ann.mark_private(meeting.id, private=False)
    assert bob.invitation(meeting.uid).sensitivity == Sensitivity.NORMAL


def test_organizer_delete_cancels_and_attendee_cannot_cancel(store: ExchangeStore) -> None:
    ann, bob = Outlook(store, ANN), Outlook(store, BOB)
    meeting = ann.create_event(
        "Offsite", datetime(2026, 7, 7, 9), datetime(2026, 7, 7, 17), attendees=[BOB]
    )
    copy = bob.invitation(meeting.uid)
    with pytest.raises(SimError):
        bob.cancel(copy.id)
    ann.delete(meeting.id)
    assert ann.items() == []
    assert copy.is_cancelled


def test_people_only_touch_their_own_calendar(store: ExchangeStore) -> None:
    ann, bob = Outlook(store, ANN), Outlook(store, BOB)
    mine = ann.create_event("Mine", datetime(2026, 7, 8, 9), datetime(2026, 7, 8, 10))
    for action in (bob.delete, bob.accept, lambda item_id: bob.rename(item_id, "Stolen")):
        with pytest.raises(SimError):
            action(mine.id)
    assert mine.subject == "Mine"
    assert not mine.deleted


def test_series_with_one_edited_and_one_deleted_occurrence(store: ExchangeStore) -> None:
    ann, bob = Outlook(store, ANN), Outlook(store, BOB)
    series = ann.create_series(
        "1:1",
        datetime(2026, 7, 6, 11),
        datetime(2026, 7, 6, 11, 30),
        Recurrence("weekly", days_of_week=["Monday"], count=4),
        attendees=[BOB],
    )
    moved = ann.edit_occurrence(
        series.id, 2, start=datetime(2026, 7, 14, 11), end=datetime(2026, 7, 14, 11, 30)
    )
    assert moved.item_type == ItemType.EXCEPTION
    ann.delete_occurrence(series.id, 3)
    ann_view = ann.view(datetime(2026, 7, 1), datetime(2026, 8, 1))
    bob_view = bob.view(datetime(2026, 7, 1), datetime(2026, 8, 1))
    expected = [datetime(2026, 7, d, 15, tzinfo=UTC) for d in (6, 14, 27)]
    assert [item.start for item in ann_view] == expected
    assert [item.start for item in bob_view] == expected
    assert [item.item_type for item in bob_view] == [
        ItemType.OCCURRENCE,
        ItemType.EXCEPTION,
        ItemType.OCCURRENCE,
    ]
