"""The pure rules of a mailbox moved to another connection: which mapping is adopted by marker,
and which busy time is a change for the booking platform when every item has a new id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.engine.busy import content_changed_window
from shared.engine.outlook import adopted_after_move
from shared.exchange.port import ExchangeEvent
from shared.models import BusyBlock, EventMapping

BASE = datetime(2031, 3, 3, 8, tzinfo=UTC)


def mapping(**fields: object) -> EventMapping:
    values: dict[str, object] = {
        "organizer_staff_id": "ann",
        "mailbox": "ann@bank.test",
        "connection_id": "onprem",
        "item_id": "ews-id",
        "change_key": "ews-ck",
        "applied_version": 2,
    }
    return EventMapping.model_validate(values | fields)


def event(item_id: str = "graph-id") -> ExchangeEvent:
    return ExchangeEvent(
        item_id=item_id, change_key="graph-ck", start=BASE, end=BASE + timedelta(minutes=30)
    )


def test_an_event_found_on_the_new_connection_is_adopted_with_the_old_change_key() -> None:
    adopted = adopted_after_move(event(), mapping(), "ANN@bank.test", "cloud")
    assert adopted is not None
    assert (adopted.item_id, adopted.connection_id) == ("graph-id", "cloud")
    # Kept, so the rule that judges the item tells a real Outlook change from what is known.
    assert adopted.change_key == "ews-ck"


def test_nothing_is_adopted_without_a_move() -> None:
    assert adopted_after_move(event("ews-id"), mapping(), "ann@bank.test", "cloud") is None
    assert adopted_after_move(event(), mapping(), "ann@bank.test", "onprem") is None
    assert adopted_after_move(event(), mapping(), "bob@bank.test", "cloud") is None
    assert adopted_after_move(event(), mapping(cancelled=True), "ann@bank.test", "cloud") is None
    assert adopted_after_move(event(), None, "ann@bank.test", "cloud") is None


blocks = st.lists(
    st.builds(
        lambda start, minutes, private, subject, n: BusyBlock(
            start=BASE + timedelta(minutes=15 * start),
            end=BASE + timedelta(minutes=15 * start + 15 * minutes),
            private=private,
            subject=None if private else subject,
            event_id=f"old-{n}",
        ),
        st.integers(0, 96),
        st.integers(1, 8),
        st.booleans(),
        st.sampled_from(["Dentist", "Gym", "Lunch"]),
        st.integers(0, 10_000),
    ),
    max_size=12,
)


@given(blocks)
def test_the_same_busy_time_under_new_ids_is_no_change(before: list[BusyBlock]) -> None:
    renamed = [b.model_copy(update={"event_id": f"new-{i}"}) for i, b in enumerate(before)]
    assert content_changed_window(before, list(reversed(renamed))) is None


@given(blocks, blocks)
def test_a_real_difference_is_covered_by_the_window(
    before: list[BusyBlock], after: list[BusyBlock]
) -> None:
    window = content_changed_window(before, after)
    key = lambda b: (b.start, b.end, b.all_day, b.private, b.subject)  # noqa: E731
    differing = [b for b in before if key(b) not in map(key, after)] + [
        b for b in after if key(b) not in map(key, before)
    ]
    if sorted(map(key, before)) == sorted(map(key, after)):
        assert window is None
    else:
        assert window is not None
        assert all(window[0] <= b.start and b.end <= window[1] for b in differing)


def test_an_item_where_a_newer_snapshot_puts_it_is_the_apply_workers_write() -> None:
    from shared.engine.outlook import organizer_item_changed
    from tests.builders import snapshot

    newer = snapshot(3, organizer="ann", start=BASE + timedelta(hours=2))
    applied = mapping(applied_version=1, booked_start=BASE, booked_end=BASE + timedelta(minutes=30))
    written = ExchangeEvent(item_id="ews-id", change_key="new-ck", start=newer.start, end=newer.end)
    verdict = organizer_item_changed("apt", written, applied, newer, {})
    assert verdict.events == ()
    moved = written.model_copy(
        update={"start": BASE + timedelta(hours=5), "end": BASE + timedelta(hours=6)}
    )
    assert len(organizer_item_changed("apt", moved, applied, newer, {}).events) == 1
    # What staff did meanwhile is still told: a secondary's decline.
    from shared.exchange.port import Attendee, ResponseType

    declined = written.model_copy(
        update={"attendees": (Attendee(address="bob@bank.test", response=ResponseType.DECLINED),)}
    )
    with_bob = snapshot(3, organizer="ann", secondaries=["bob"], start=BASE + timedelta(hours=2))
    told = organizer_item_changed("apt", declined, applied, with_bob, {"bob@bank.test": "bob"})
    assert [type(e).__name__ for e in told.events] == ["StaffDeclined"]
