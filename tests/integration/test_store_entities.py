"""Models ↔ table properties: what is stored, what comes back, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.models import AppointmentSnapshot, BusyBlock, ConnectionConfig, EventMapping
from shared.store.entities import (
    MAX_STRING_PROPERTY_CHARS,
    EntityCodec,
    canonical_datetime,
    check_entity_size,
)
from shared.store.errors import UnstorableEntity
from shared.store.records import MailboxRecord
from tests.builders import snapshot as build_snapshot


def snapshot(version: int = 3, **fields: Any) -> AppointmentSnapshot:
    return build_snapshot(
        version,
        secondaries=("s2",),
        clients=({"name": "Ada", "email": "ada@example.com"},),
        **fields,
    )


def test_snapshot_properties_are_camel_case_scalars_and_json() -> None:
    properties = EntityCodec(AppointmentSnapshot, "Appointments").to_properties(snapshot())
    assert properties["version"] == 3
    assert properties["organizerStaffId"] == "s1"
    assert properties["start"] == "2026-03-02T08:00:00.000000Z"
    assert properties["staff"] == (
        '[{"staffId":"s1","role":"organizer"},{"staffId":"s2","role":"secondary"}]'
    )
    assert "notes" not in properties  # None is an absent property
    assert all(isinstance(v, str | int | float | bool) for v in properties.values())


def test_snapshot_round_trips_to_an_equal_model() -> None:
    codec = EntityCodec(AppointmentSnapshot, "Appointments")
    original = snapshot(notes="Bring ID", location="Branch 4")
    assert codec.from_properties(codec.to_properties(original)) == original


def test_nullable_field_without_default_comes_back_as_none() -> None:
    codec = EntityCodec(EventMapping, "EventMap")
    mapping = EventMapping(
        organizer_staff_id="s1",
        mailbox="s1@example.com",
        connection_id="c1",
        item_id=None,
        applied_version=2,
        cancelled=True,
    )
    assert codec.from_properties(codec.to_properties(mapping)) == mapping


def test_large_versions_survive() -> None:
    codec = EntityCodec(AppointmentSnapshot, "Appointments")
    big = snapshot(version=2**53)
    assert codec.from_properties(codec.to_properties(big)).version == 2**53


def test_a_version_beyond_int64_is_refused_not_sent() -> None:
    # Table Storage holds Int64: the SDK would raise a TypeError mid-request instead.
    codec = EntityCodec(AppointmentSnapshot, "Appointments")
    with pytest.raises(UnstorableEntity, match=r"Appointments property 'version'"):
        codec.to_properties(snapshot(version=2**63))
    assert codec.from_properties(codec.to_properties(snapshot(version=2**63 - 1))).version == (
        2**63 - 1
    )


def test_a_datetime_without_a_utc_form_is_refused() -> None:
    late = datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=5)))
    early = datetime(1, 1, 1, 0, 10, tzinfo=timezone(timedelta(hours=1)))
    for instant in (late, early):
        with pytest.raises(UnstorableEntity, match="UTC"):
            canonical_datetime(instant)


def test_a_string_over_32k_characters_is_refused_not_truncated() -> None:
    codec = EntityCodec(MailboxRecord, "Mailboxes")
    record = MailboxRecord(
        staff_id="s1",
        connection_id="c1",
        address="s1@example.com",
        sync_state="x" * (MAX_STRING_PROPERTY_CHARS + 1),
    )
    with pytest.raises(UnstorableEntity, match=r"Mailboxes property 'syncState'"):
        codec.to_properties(record)
    at_limit = record.model_copy(update={"sync_state": "x" * MAX_STRING_PROPERTY_CHARS})
    assert codec.from_properties(codec.to_properties(at_limit)) == at_limit


def test_non_bmp_characters_count_twice_toward_the_limit() -> None:
    codec = EntityCodec(MailboxRecord, "Mailboxes")
    record = MailboxRecord(
        staff_id="s1",
        connection_id="c1",
        address="s1@example.com",
        sync_state="😀" * (MAX_STRING_PROPERTY_CHARS // 2 + 1),
    )
    with pytest.raises(UnstorableEntity):
        codec.to_properties(record)


def test_an_entity_over_one_mib_is_refused() -> None:
    properties = {f"p{i}": "x" * 30_000 for i in range(20)}
    with pytest.raises(UnstorableEntity, match="1048576"):
        check_entity_size("Outbox", "acme", "e1", properties)
    check_entity_size("Outbox", "acme", "e1", {f"p{i}": "x" * 30_000 for i in range(15)})


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(UnstorableEntity):
        canonical_datetime(datetime(2026, 1, 1))


aware = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


@given(aware, aware)
def test_property_canonical_datetimes_sort_like_the_instants(a: datetime, b: datetime) -> None:
    assert (canonical_datetime(a) < canonical_datetime(b)) == (a < b)
    assert (canonical_datetime(a) == canonical_datetime(b)) == (a == b)


@given(
    aware,
    st.timedeltas(min_value=timedelta(seconds=1), max_value=timedelta(days=3)),
    st.booleans(),
    st.text(max_size=50),
)
def test_property_busy_blocks_round_trip(
    start: datetime, length: timedelta, private: bool, subject: str
) -> None:
    codec = EntityCodec(BusyBlock, "BusyBlocks")
    block = BusyBlock(
        start=start,
        end=start + length,
        private=private,
        subject=None if private else subject,
        event_id="AAMk+/=",
    )
    assert codec.from_properties(codec.to_properties(block)) == block
    assert codec.from_many([codec.to_properties(block)] * 2) == [block, block]


def test_many_rows_decode_as_each_row_does() -> None:
    """Rows decoded together read as each one alone: structured fields, absent nullable ones,
    defaults."""
    codec = EntityCodec(AppointmentSnapshot, "Appointments")
    first = snapshot(3)
    second = snapshot(4, notes=None)
    rows = [codec.to_properties(first), codec.to_properties(second)]
    assert codec.from_many(rows) == [codec.from_properties(row) for row in rows] == [first, second]
    assert codec.from_many([]) == []


# --- models stored in the state tables ---------------------------------------------------------


def ews(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "kind": "ews",
        "ewsUrl": "https://mail.example.com/EWS/Exchange.asmx",
        "authType": "ntlm",
        "username": "EXAMPLE\\svc",
        "secretReference": "acme-ews-password",
    }
    fields.update(changes)
    return fields


def test_connection_configs_that_are_complete_validate() -> None:
    assert ConnectionConfig.model_validate(ews()).access_mode == "impersonation"
    graph = ConnectionConfig.model_validate(
        {
            "kind": "graph",
            "authType": "oauth",
            "tenantId": "tenant",
            "clientId": "client",
            "secretReference": "acme-graph-secret",
            "accessMode": "delegate",
        }
    )
    assert graph.enabled


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"ewsUrl": None}, "ewsUrl is required"),
        ({"kind": "graph", "authType": "basic"}, "authType must be oauth"),
        ({"username": None}, "username is required for ntlm"),
        ({"authType": "oauth"}, "tenantId and clientId are required"),
        ({"secretReference": None}, "secretReference is required"),
        ({"secretReference": "has spaces"}, "secretReference"),
        ({"ewsUrl": "ftp://x"}, "ewsUrl"),
        ({"password": "hunter2"}, "password"),
    ],
)
def test_incomplete_connection_configs_are_refused_naming_the_field(
    changes: dict[str, object], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        ConnectionConfig.model_validate(ews(**changes))


def test_a_private_busy_block_cannot_carry_a_subject() -> None:
    with pytest.raises(ValidationError, match="subject must be null for a private event"):
        BusyBlock(
            start=datetime(2026, 1, 1, tzinfo=UTC),
            end=datetime(2026, 1, 1, 1, tzinfo=UTC),
            private=True,
            subject="Therapy",
            event_id="e1",
        )
