"""Event content (snapshot → EventDraft) and the marker property, both pure."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.engine.content import event_body, event_draft
from shared.engine.marker import AppointmentMarker, marker_for, parse_marker
from shared.exchange.marker_property import (
    MARKER_GRAPH_ID,
    MARKER_PROPERTY_NAME,
    MARKER_PROPERTY_SET_ID,
    MARKER_PROPERTY_TYPE,
    graph_marker_filter,
)
from shared.exchange.port import EventDraft, ShowAs
from tests.unit.test_engine import APPOINTMENT, DIRECTORY, MARKER, ORG, START, address, snapshot

# --- content --------------------------------------------------------------------------------


def test_the_draft_carries_title_location_times_zone_marker_and_busy() -> None:
    draft = event_draft(ORG, APPOINTMENT, snapshot(title="Loan chat", location="Room 4"), DIRECTORY)

    assert draft.subject == "Loan chat"
    assert draft.location == "Room 4"
    assert draft.start == START
    assert draft.start.tzinfo == ZoneInfo("Europe/London")
    assert draft.time_zone == "Europe/London"
    assert draft.show_as is ShowAs.BUSY
    assert draft.marker == MARKER


def test_attendees_are_the_known_secondaries_in_order_without_the_organizer_or_repeats() -> None:
    directory = {**DIRECTORY, "eve": DIRECTORY["ben"].model_copy(update={"staff_id": "eve"})}
    snap = snapshot(organizer="ana", secondaries=("cai", "zed", "ben", "eve"))

    draft = event_draft(ORG, APPOINTMENT, snap, directory)

    # zed has no mailbox; eve shares ben's mailbox address.
    assert draft.required_attendees == (address("cai"), address("ben"))


def test_the_body_lists_service_clients_and_notes() -> None:
    snap = snapshot(
        service="Mortgages",
        clients=(
            {"name": "Ada Client", "email": "ada@client.example", "phone": "+44 20 7946 0000"},
            {"name": "Bob Client"},
        ),
        notes="Bring payslips.",
    )

    body = event_body(snap)

    assert body == (
        "Service: Mortgages\n"
        "Clients:\n"
        "- Ada Client, ada@client.example, +44 20 7946 0000\n"
        "- Bob Client\n"
        "Notes:\n"
        "Bring payslips.\n"
    )


def test_a_body_without_clients_says_so() -> None:
    assert event_body(snapshot(clients=(), service=None)) == "Clients: none\n"


def test_clients_never_become_attendees() -> None:
    snap = snapshot(secondaries=("ben",), clients=({"name": "A", "email": "a@client.example"},))

    draft = event_draft(ORG, APPOINTMENT, snap, DIRECTORY)

    assert draft.required_attendees == (address("ben"),)


def test_a_draft_refuses_an_end_before_its_start() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        EventDraft(
            subject="x",
            start=datetime(2030, 1, 1, 10, tzinfo=UTC),
            end=datetime(2030, 1, 1, 9, tzinfo=UTC),
            time_zone="UTC",
            marker=MARKER,
        )


def test_a_draft_keeps_its_body_out_of_repr() -> None:
    draft = event_draft(ORG, APPOINTMENT, snapshot(notes="private note"), DIRECTORY)

    assert "private note" in draft.body_text
    assert "private note" not in repr(draft)


# --- marker ---------------------------------------------------------------------------------


def test_the_marker_property_is_the_same_named_property_for_ews_and_graph() -> None:
    assert MARKER_PROPERTY_NAME == "CalbridgeAppointment"
    assert MARKER_PROPERTY_TYPE == "String"
    assert str(uuid.UUID(MARKER_PROPERTY_SET_ID)) == MARKER_PROPERTY_SET_ID
    assert MARKER_GRAPH_ID == (
        "String {8f0d4c1e-6b2a-4e57-9a3c-2d71c5e0b9a4} Name CalbridgeAppointment"
    )


def test_the_marker_names_org_and_appointment() -> None:
    assert marker_for("acme", "appt-1") == "calbridge/1/acme/appt-1"
    assert parse_marker("calbridge/1/acme/appt-1") == AppointmentMarker("acme", "appt-1")


@pytest.mark.parametrize(
    "value",
    [None, "", "calbridge/1/acme", "calbridge/1/acme/a/b", "calbridge/2/acme/a", "other", "x/y"],
)
def test_values_calbridge_did_not_write_are_not_markers(value: str | None) -> None:
    assert parse_marker(value) is None


def test_ids_that_would_not_parse_back_are_refused() -> None:
    with pytest.raises(ValueError, match="appointment id"):
        marker_for("acme", "a/b")


_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._~:@-]{0,30}\Z")


@given(org=_ids, appointment_id=_ids)
def test_every_valid_pair_round_trips_through_the_marker(org: str, appointment_id: str) -> None:
    value = marker_for(org, appointment_id)

    assert parse_marker(value) == AppointmentMarker(org, appointment_id)
    assert AppointmentMarker(org, appointment_id).value == value
    assert "'" not in graph_marker_filter(value).split("ep/value eq '")[1][:-2]


def test_the_graph_filter_matches_id_and_value() -> None:
    assert graph_marker_filter(MARKER) == (
        "singleValueExtendedProperties/Any(ep: ep/id eq "
        f"'{MARKER_GRAPH_ID}' and ep/value eq 'calbridge/1/acme/appt-1')"
    )
    with pytest.raises(ValueError, match="marker"):
        graph_marker_filter("x' or true or '")


def test_a_title_is_written_as_exchange_keeps_it_so_reading_it_back_changes_nothing() -> None:
    title = "Review " + "🙂" * 130  # 137 characters, 267 UTF-16 code units
    draft = event_draft(ORG, APPOINTMENT, snapshot(title=title), DIRECTORY)
    assert len(draft.subject.encode("utf-16-le")) // 2 <= 255
    assert draft.subject == "Review " + "🙂" * 124  # whole characters only
    assert event_draft(ORG, APPOINTMENT, snapshot(title="Short"), DIRECTORY).subject == "Short"
