"""The mailbox store's meeting semantics, change log, sync tokens, faults and counters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sim.store import (
    Attendee,
    CalendarItem,
    Change,
    ChangeKind,
    ExchangeStore,
    ExtendedPropertyKey,
    Fault,
    FreeBusy,
    ItemType,
    Mailbox,
    Recurrence,
    ResponseType,
    SendMode,
    Sensitivity,
    SimError,
)

ANN = "ann@contoso.test"
BOB = "bob@contoso.test"
CARA = "cara@contoso.test"
OUTSIDER = "zed@elsewhere.test"
APPOINTMENT_KEY = ExtendedPropertyKey("c11ff724-aa03-4555-9952-8fa248a11c3e", "AppointmentId")
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


@pytest.fixture
def store() -> ExchangeStore:
    store = ExchangeStore()
    store.add_mailbox(Mailbox("Ann@Contoso.test", "Ann Lee", "America/Toronto"))
    store.add_mailbox(Mailbox(BOB, "Bob Ray", "Europe/Berlin"))
    store.add_mailbox(Mailbox(CARA, "Cara Diaz", "UTC"))
    return store


def meeting(*attendees: str, subject: str = "Planning") -> CalendarItem:
    return CalendarItem(
        id="",
        mailbox="",
        subject=subject,
        body="agenda: secret numbers",
        start=START,
        end=START + timedelta(hours=1),
        time_zone="America/Toronto",
        location="Room 1",
        required_attendees=[Attendee(address) for address in attendees],
    )


def test_mailbox_lookup_is_case_insensitive_and_unknown_is_refused(store: ExchangeStore) -> None:
    assert store.mailbox("ANN@contoso.TEST").name == "Ann Lee"
    with pytest.raises(SimError) as refused:
        store.mailbox("nobody@contoso.test")
    assert refused.value.code == "ErrorNonExistentMailbox"


def test_create_assigns_identity_and_logs_a_change(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    assert item.id
    assert item.uid.startswith("040000008200E00074C5B7101A82E008")
    assert item.change_key
    assert item.created == item.last_modified
    assert item.organizer is not None
    assert item.organizer.address == ANN
    assert item.response_type == ResponseType.ORGANIZER
    assert item.item_type == ItemType.SINGLE
    assert store.get_item(item.id) is item
    assert store.changes_since(ANN, 0) == [Change(1, item.id, ChangeKind.CREATE)]
    assert store.current_seq(ANN) == 1
    assert store.current_seq(BOB) == 0


def test_sending_invitations_puts_a_copy_in_each_attendee_calendar(store: ExchangeStore) -> None:
    store.add_listener(lambda mailbox, change: heard.append((mailbox, change.kind)))
    heard: list[tuple[str, ChangeKind]] = []
    organizer_item = store.create_item(
        ANN,
        meeting(BOB, CARA, OUTSIDER),
        SendMode.ALL_AND_SAVE_COPY,
    )
    assert organizer_item.is_meeting
    assert organizer_item.meeting_request_was_sent
    assert [a.response for a in organizer_item.required_attendees] == [ResponseType.UNKNOWN] * 3
    for address in (BOB, CARA):
        [copy] = store.calendar_items(address)
        assert copy.uid == organizer_item.uid
        assert copy.id != organizer_item.id
        assert copy.subject == "Planning"
        assert copy.start == START
        assert copy.organizer is not None
        assert copy.organizer.address == ANN
        assert copy.response_type == ResponseType.NO_RESPONSE
        assert copy.free_busy == FreeBusy.TENTATIVE
        assert not copy.is_organizer
        assert store.changes_since(address, 0) == [Change(1, copy.id, ChangeKind.CREATE)]
    assert (BOB, ChangeKind.CREATE) in heard
    assert (ANN, ChangeKind.CREATE) in heard


def test_extended_properties_stay_with_the_organizer(store: ExchangeStore) -> None:
    item = meeting(BOB)
    item.extended_properties[APPOINTMENT_KEY] = "appt-1"
    created = store.create_item(ANN, item, SendMode.ALL_AND_SAVE_COPY)
    assert store.find_by_extended_property(ANN, APPOINTMENT_KEY, "appt-1") == [created]
    assert store.find_by_extended_property(ANN, APPOINTMENT_KEY, "other") == []
    [copy] = store.calendar_items(BOB)
    assert copy.extended_properties == {}
    assert store.find_by_uid(BOB, created.uid) == [copy]


def test_without_sending_nobody_gets_a_copy(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(BOB), SendMode.NONE)
    assert not item.is_meeting
    assert store.calendar_items(BOB) == []
    # Sending it later delivers it.
    store.update_item(ANN, item.id, {"subject": "Planning v2"}, send=SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    assert copy.subject == "Planning v2"


def test_accept_reaches_the_organizer(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    key_before = organizer_item.change_key
    [copy] = store.calendar_items(BOB)
    accepted = store.respond(BOB, copy.id, ResponseType.ACCEPT)
    assert accepted is copy
    assert copy.response_type == ResponseType.ACCEPT
    assert copy.free_busy == FreeBusy.BUSY
    [bob] = organizer_item.required_attendees
    assert bob.response == ResponseType.ACCEPT
    assert bob.response_time is not None
    assert organizer_item.change_key != key_before
    assert store.changes_since(ANN, 1) == [Change(2, organizer_item.id, ChangeKind.UPDATE)]


def test_tentative_without_sending_stays_with_the_attendee(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    store.respond(BOB, copy.id, ResponseType.TENTATIVE, send_response=False)
    assert copy.free_busy == FreeBusy.TENTATIVE
    assert copy.response_type == ResponseType.TENTATIVE
    assert organizer_item.required_attendees[0].response == ResponseType.UNKNOWN
    assert store.current_seq(ANN) == 1


def test_decline_removes_the_copy_and_shows_on_the_organizer(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB, CARA), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    assert store.respond(BOB, copy.id, ResponseType.DECLINE) is None
    assert store.calendar_items(BOB) == []
    with pytest.raises(SimError) as gone:
        store.get_item(copy.id)
    assert gone.value.code == "ErrorItemNotFound"
    assert store.get_item(copy.id, include_deleted=True).deleted
    assert store.changes_since(BOB, 1) == [Change(2, copy.id, ChangeKind.DELETE)]
    responses = {a.address: a.response for a in organizer_item.required_attendees}
    assert responses == {BOB: ResponseType.DECLINE, CARA: ResponseType.UNKNOWN}


def test_organizer_cannot_respond_or_be_cancelled_by_attendee(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    with pytest.raises(SimError) as refused:
        store.respond(ANN, organizer_item.id, ResponseType.ACCEPT)
    assert refused.value.code == "ErrorInvalidOperation"
    with pytest.raises(SimError) as refused:
        store.cancel_meeting(BOB, copy.id)
    assert refused.value.code == "ErrorInvalidOperation"
    assert not copy.deleted


def test_items_are_only_reachable_through_their_own_mailbox(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    with pytest.raises(SimError) as refused:
        store.update_item(BOB, item.id, {"subject": "mine now"})
    assert refused.value.code == "ErrorItemNotFound"
    with pytest.raises(SimError):
        store.delete_item(BOB, item.id)
    assert item.subject == "Planning"


def test_organizer_update_reaches_copies_and_time_change_resets_responses(
    store: ExchangeStore,
) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    store.respond(BOB, copy.id, ResponseType.ACCEPT)

    store.update_item(
        ANN, organizer_item.id, {"location": "Room 2"}, send=SendMode.ALL_AND_SAVE_COPY
    )
    assert copy.location == "Room 2"
    assert copy.response_type == ResponseType.ACCEPT

    moved = START + timedelta(days=1)
    store.update_item(
        ANN,
        organizer_item.id,
        {"start": moved, "end": moved + timedelta(hours=2)},
        send=SendMode.ALL_AND_SAVE_COPY,
    )
    assert copy.start == moved
    assert copy.end == moved + timedelta(hours=2)
    assert copy.response_type == ResponseType.NO_RESPONSE
    assert copy.free_busy == FreeBusy.TENTATIVE
    kinds = [change.kind for change in store.changes_since(BOB, 0)]
    assert kinds == [ChangeKind.CREATE, ChangeKind.UPDATE, ChangeKind.UPDATE, ChangeKind.UPDATE]


def test_update_without_sending_leaves_copies_alone(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    store.update_item(ANN, organizer_item.id, {"subject": "Draft"}, send=SendMode.NONE)
    assert organizer_item.subject == "Draft"
    assert copy.subject == "Planning"


def test_added_attendee_gets_a_copy_and_removed_attendee_is_cancelled(
    store: ExchangeStore,
) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [bob_copy] = store.calendar_items(BOB)
    store.update_item(
        ANN,
        organizer_item.id,
        {"required_attendees": [Attendee(CARA)]},
        send=SendMode.CHANGED_AND_SAVE_COPY,
    )
    assert bob_copy.is_cancelled
    assert bob_copy.subject == "Canceled: Planning"
    [cara_copy] = store.calendar_items(CARA)
    assert cara_copy.uid == organizer_item.uid
    assert not cara_copy.is_cancelled


def test_only_to_changed_without_content_change_updates_only_new_attendees(
    store: ExchangeStore,
) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [bob_copy] = store.calendar_items(BOB)
    bob_key = bob_copy.change_key
    store.update_item(
        ANN,
        organizer_item.id,
        {"optional_attendees": [Attendee(CARA)]},
        send=SendMode.ONLY_TO_CHANGED,
    )
    assert len(store.calendar_items(CARA)) == 1
    # The optional attendee list is content Bob's copy shows, so Bob hears about it too.
    assert bob_copy.change_key != bob_key
    assert [a.address for a in bob_copy.optional_attendees] == [CARA]


def test_change_key_conflict(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    stale = item.change_key
    store.update_item(ANN, item.id, {"subject": "One"}, change_key=stale)
    with pytest.raises(SimError) as conflict:
        store.update_item(ANN, item.id, {"subject": "Two"}, change_key=stale)
    assert conflict.value.code == "ErrorIrresolvableConflict"
    assert item.subject == "One"
    store.update_item(ANN, item.id, {"subject": "Three"}, change_key=stale, always_overwrite=True)
    assert item.subject == "Three"


def test_bad_updates_change_nothing(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    key, seq = item.change_key, store.current_seq(ANN)
    with pytest.raises(SimError) as refused:
        store.update_item(ANN, item.id, {"start": START + timedelta(hours=5)})
    assert refused.value.code == "ErrorCalendarEndDateIsEarlierThanStartDate"
    with pytest.raises(SimError) as refused:
        store.update_item(ANN, item.id, {"id": "hijack"})
    assert refused.value.code == "ErrorInvalidPropertySet"
    with pytest.raises(SimError):
        store.update_item(ANN, item.id, {"sensitivity": "Secret"})
    assert (item.change_key, store.current_seq(ANN), item.start) == (key, seq, START)


def test_enum_fields_and_extended_properties_update(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    store.update_item(
        ANN,
        item.id,
        {"sensitivity": "Private", "free_busy": "OOF"},
        extended={APPOINTMENT_KEY: "appt-9"},
    )
    assert item.sensitivity is Sensitivity.PRIVATE
    assert item.free_busy is FreeBusy.OOF
    assert item.extended_properties == {APPOINTMENT_KEY: "appt-9"}
    store.update_item(ANN, item.id, {}, extended={APPOINTMENT_KEY: None})
    assert item.extended_properties == {}


def test_delete_with_cancellations_cancels_copies(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB, CARA), SendMode.ALL_AND_SAVE_COPY)
    store.delete_item(ANN, organizer_item.id, SendMode.ALL_AND_SAVE_COPY)
    assert store.calendar_items(ANN) == []
    assert store.changes_since(ANN, 1) == [Change(2, organizer_item.id, ChangeKind.DELETE)]
    for address in (BOB, CARA):
        [copy] = store.calendar_items(address)
        assert copy.is_cancelled
        assert copy.subject == "Canceled: Planning"
        assert copy.free_busy == FreeBusy.FREE


def test_delete_without_cancellations_leaves_copies(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    store.delete_item(ANN, organizer_item.id)
    [copy] = store.calendar_items(BOB)
    assert not copy.is_cancelled


def test_attendee_deleting_their_copy_tells_nobody(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    store.delete_item(BOB, copy.id, SendMode.ALL_AND_SAVE_COPY)
    assert store.calendar_items(BOB) == []
    assert organizer_item.required_attendees[0].response == ResponseType.UNKNOWN
    assert store.current_seq(ANN) == 1


def test_cancel_meeting(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    store.cancel_meeting(ANN, organizer_item.id, "sorry")
    assert store.calendar_items(ANN) == []
    [copy] = store.calendar_items(BOB)
    assert copy.is_cancelled
    with pytest.raises(SimError):
        store.cancel_meeting(ANN, organizer_item.id)


def test_calendar_view_window_and_cancelled_items(store: ExchangeStore) -> None:
    first = store.create_item(ANN, meeting(BOB, subject="First"), SendMode.ALL_AND_SAVE_COPY)
    later = meeting(subject="Later")
    later.start = START + timedelta(days=2)
    later.end = later.start + timedelta(minutes=30)
    store.create_item(ANN, later, SendMode.NONE)
    window = store.calendar_view(ANN, START - timedelta(days=1), START + timedelta(days=3))
    assert [item.subject for item in window] == ["First", "Later"]
    # At the edges, Exchange's CalendarView rule: an item ending exactly at the view's start is
    # returned, one starting exactly at its end is not (see test_calendar_view_edges.py).
    edges = store.calendar_view(ANN, START + timedelta(hours=1), START + timedelta(days=2))
    assert [item.subject for item in edges] == ["First"]
    store.cancel_meeting(ANN, first.id)
    [cancelled] = store.calendar_view(BOB, START, START + timedelta(hours=1))
    assert cancelled.is_cancelled


def test_sync_state_round_trip_and_tamper_evidence(store: ExchangeStore) -> None:
    store.create_item(ANN, meeting(), SendMode.NONE)
    token = store.encode_sync_state(ANN, 1, window="2026-03-01/2026-04-01")
    assert store.decode_sync_state(ANN, token) == (1, {"window": "2026-03-01/2026-04-01"})
    assert store.decode_sync_state("ANN@contoso.test", token)[0] == 1
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for bad in (tampered, "garbage", "", token + "x" * 7):
        with pytest.raises(SimError) as refused:
            store.decode_sync_state(ANN, bad)
        assert refused.value.code == "ErrorInvalidSyncStateData"
    with pytest.raises(SimError):
        store.decode_sync_state(BOB, token)  # another mailbox's token
    with pytest.raises(SimError):
        store.decode_sync_state(ANN, store.encode_sync_state(ANN, 99))  # from the future


def test_invalidated_sync_states_are_refused(store: ExchangeStore) -> None:
    old = store.encode_sync_state(ANN, 0)
    bob_token = store.encode_sync_state(BOB, 0)
    store.invalidate_sync_states(ANN)
    with pytest.raises(SimError):
        store.decode_sync_state(ANN, old)
    assert store.decode_sync_state(ANN, store.encode_sync_state(ANN, 0)) == (0, {})
    assert store.decode_sync_state(BOB, bob_token) == (0, {})


def test_changes_since_is_the_exact_tail(store: ExchangeStore) -> None:
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    store.update_item(ANN, item.id, {"subject": "a"})
    store.update_item(ANN, item.id, {"subject": "b"})
    store.delete_item(ANN, item.id)
    assert [c.kind for c in store.changes_since(ANN, 0)] == [
        ChangeKind.CREATE,
        ChangeKind.UPDATE,
        ChangeKind.UPDATE,
        ChangeKind.DELETE,
    ]
    assert [c.seq for c in store.changes_since(ANN, 2)] == [3, 4]
    assert store.changes_since(ANN, 4) == []


def test_listener_may_read_the_store_and_failures_do_not_undo_writes(
    store: ExchangeStore,
) -> None:
    seen: list[str] = []

    def reading_listener(mailbox: str, change: Change) -> None:
        seen.append(store.get_item(change.item_id, include_deleted=True).subject)

    def broken_listener(mailbox: str, change: Change) -> None:
        raise RuntimeError("subscriber is down")

    store.add_listener(broken_listener)
    store.add_listener(reading_listener)
    item = store.create_item(ANN, meeting(), SendMode.NONE)
    assert seen == ["Planning"]
    assert store.get_item(item.id) is item


def test_faults_match_mailbox_and_operation_and_run_out(store: ExchangeStore) -> None:
    store.add_fault(Fault("server_busy", operation="SyncFolderItems", mailbox=ANN, remaining=2))
    store.add_fault(Fault("http_503", operation="graph:delta", remaining=None))
    assert store.take_fault(BOB, "ews:SyncFolderItems") is None
    assert store.take_fault(ANN, "ews:GetItem") is None
    first = store.take_fault("ANN@contoso.test", "ews:SyncFolderItems")
    assert first is not None
    assert first.kind == "server_busy"
    assert store.take_fault(ANN, "ews:SyncFolderItems") is first
    assert store.take_fault(ANN, "ews:SyncFolderItems") is None
    for _ in range(3):
        hit = store.take_fault(CARA, "graph:delta")
        assert hit is not None
        assert hit.kind == "http_503"
    store.clear_faults(CARA)  # aimed at "*", so it stays
    assert store.take_fault(CARA, "graph:delta") is not None
    store.clear_faults()
    assert store.take_fault(CARA, "graph:delta") is None


def test_counters(store: ExchangeStore) -> None:
    store.count("ews:SyncFolderItems", ANN)
    store.count("ews:SyncFolderItems", "Ann@contoso.test")
    store.count("graph:delta", BOB)
    assert store.counter_snapshot() == {
        "ews:SyncFolderItems": {ANN: 2},
        "graph:delta": {BOB: 1},
    }
    store.reset_counters()
    assert store.counter_snapshot() == {}


def test_store_is_safe_under_concurrent_writers(store: ExchangeStore) -> None:
    import threading

    def create_many(address: str) -> None:
        for n in range(50):
            store.create_item(address, meeting(subject=f"{address} {n}"), SendMode.NONE)

    threads = [threading.Thread(target=create_many, args=(a,)) for a in (ANN, ANN, BOB)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(store.calendar_items(ANN)) == 100
    assert [c.seq for c in store.changes_since(ANN, 0)] == list(range(1, 101))


def test_update_re_invites_a_decliner_only_when_it_concerns_them(store: ExchangeStore) -> None:
    organizer_item = store.create_item(ANN, meeting(BOB), SendMode.ALL_AND_SAVE_COPY)
    [copy] = store.calendar_items(BOB)
    store.respond(BOB, copy.id, ResponseType.DECLINE)
    # Adding an attendee with SendOnlyToChanged concerns only the new attendee.
    store.update_item(
        ANN,
        organizer_item.id,
        {"optional_attendees": [Attendee(CARA)]},
        send=SendMode.ONLY_TO_CHANGED,
    )
    assert len(store.calendar_items(CARA)) == 1
    # Optional attendees are shown content, so this was a content change for Bob too.
    [again] = store.calendar_items(BOB)
    assert again.response_type == ResponseType.NO_RESPONSE
    store.respond(BOB, again.id, ResponseType.DECLINE)
    store.update_item(
        ANN,
        organizer_item.id,
        {"required_attendees": [Attendee(BOB), Attendee(OUTSIDER)]},
        send=SendMode.ONLY_TO_CHANGED,
    )
    assert len(store.calendar_items(BOB)) == 1  # the attendee list changed: Bob hears of it
    [bob_copy] = store.calendar_items(BOB)
    store.respond(BOB, bob_copy.id, ResponseType.DECLINE)
    store.update_item(ANN, organizer_item.id, {"free_busy": "OOF"}, send=SendMode.ONLY_TO_CHANGED)
    assert store.calendar_items(BOB) == []  # free/busy is the organizer's own business


def test_a_new_uid_is_the_series_and_its_exceptions_but_never_one_occurrence(
    store: ExchangeStore,
) -> None:
    series = meeting()
    series.recurrence = Recurrence(pattern="daily", count=3)
    master = store.create_item(ANN, series, SendMode.NONE)
    second = store.occurrence_id(master.id, START + timedelta(days=1))
    exception = store.update_item(ANN, second, {"location": "Room 2"})

    with pytest.raises(SimError) as refused:
        store.update_item(ANN, second, {"uid": "occurrence-uid"})
    store.update_item(ANN, master.id, {"uid": "  series-uid@calbridge.test "})

    assert refused.value.code == "ErrorInvalidPropertySet"
    assert master.uid == exception.uid == "series-uid@calbridge.test"
    assert store.get_item(second).uid == "series-uid@calbridge.test"
