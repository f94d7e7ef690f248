"""The Graph service's pure parts: $filter/$expand/Prefer parsing, ids and time zones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sim.graph import ids, timezones
from sim.graph.errors import GraphError
from sim.graph.odata import (
    format_extended_id,
    parse_expand,
    parse_extended_id,
    parse_filter,
    parse_prefer,
    parse_select,
)
from sim.store import ExchangeStore, ExtendedPropertyKey

ANY = "singleValueExtendedProperties/any"
PROPERTY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name AppointmentId"
EVENT = {
    "subject": "Checkup",
    "isCancelled": False,
    "start": {"dateTime": "2027-03-01T15:00:00.0000000", "timeZone": "UTC"},
    "singleValueExtendedProperties": [{"id": PROPERTY, "value": "appt-1"}],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (
            f"{ANY}(ep: ep/id eq '{PROPERTY}' and ep/value eq 'appt-1')",
            True,
        ),
        (f"singleValueExtendedProperties/any(x: x/id eq '{PROPERTY.upper()}')", True),
        (
            f"{ANY}(ep: ep/id eq '{PROPERTY}' and ep/value eq 'appt-2')",
            False,
        ),
        ("subject eq 'checkup' and not (isCancelled eq true)", True),
        ("subject eq 'Other' or start/dateTime ge 2027-03-01T00:00:00Z", True),
        ("start/dateTime lt '2027-03-01T00:00:00'", False),
        ("subject eq 'It''s'", False),
    ],
)
def test_filter_expressions(expression: str, expected: bool) -> None:
    predicate = parse_filter(expression)

    assert predicate is not None
    assert predicate(EVENT) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "subject like 'x'",
        "subject eq",
        "(subject eq 'x'",
        "singleValueExtendedProperties/any(ep: id eq 'x')",
    ],
)
def test_unsupported_filters_are_400(expression: str) -> None:
    with pytest.raises(GraphError) as refused:
        parse_filter(expression)

    assert refused.value.status == 400


def test_expand_selects_extended_properties_by_id() -> None:
    expansions = parse_expand(f"singleValueExtendedProperties($filter=id eq '{PROPERTY}')")

    expansion = expansions["singleValueExtendedProperties"]
    assert expansion.wants({"id": PROPERTY, "value": "x"})
    assert not expansion.wants({"id": PROPERTY.replace("AppointmentId", "Other"), "value": "x"})
    with pytest.raises(GraphError):
        parse_expand("attachments")


def test_expand_takes_both_extended_property_collections() -> None:
    multi = "StringArray {66f5a359-4659-4830-9070-00050ec6ac6e} Name Recreation"
    expansions = parse_expand(
        f"singleValueExtendedProperties($filter=id eq '{PROPERTY}'),"
        f"multiValueExtendedProperties($filter=id eq '{multi}')"
    )

    assert set(expansions) == {"singleValueExtendedProperties", "multiValueExtendedProperties"}
    assert expansions["multiValueExtendedProperties"].wants({"id": multi, "value": ["Food"]})
    assert parse_expand(None) == {}


def test_expand_names_each_collection_once() -> None:
    with pytest.raises(GraphError) as refused:
        parse_expand(
            "multiValueExtendedProperties($filter=id eq 'a'),"
            "multiValueExtendedProperties($filter=id eq 'b')"
        )

    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("graph_id", "key", "written"),
    [
        # The three forms of https://learn.microsoft.com/graph/api/resources/extended-properties-overview
        (
            "String {8ECCC264-6880-4EBE-992F-8888D2EEAA1D} Name TestProperty",
            ExtendedPropertyKey("8eccc264-6880-4ebe-992f-8888d2eeaa1d", "TestProperty", "String"),
            "String {8eccc264-6880-4ebe-992f-8888d2eeaa1d} Name TestProperty",
        ),
        (
            "IntegerArray {8ECCC264-6880-4EBE-992F-8888D2EEAA1D} Id 0x8013",
            ExtendedPropertyKey("8eccc264-6880-4ebe-992f-8888d2eeaa1d", "0x8013", "IntegerArray"),
            "IntegerArray {8eccc264-6880-4ebe-992f-8888d2eeaa1d} Id 0x8013",
        ),
        (
            "StringArray 0x4002101E",
            ExtendedPropertyKey("", "0x4002", "StringArray"),
            "StringArray 0x4002101F",
        ),
    ],
)
def test_extended_property_ids(graph_id: str, key: ExtendedPropertyKey, written: str) -> None:
    assert parse_extended_id(graph_id) == key
    assert format_extended_id(key) == written


def test_extended_property_ids_name_a_type_that_holds_values() -> None:
    for graph_id in ("Object 0x4001000D", "Blob {8ECCC264-6880-4EBE-992F-8888D2EEAA1D} Name X"):
        with pytest.raises(GraphError):
            parse_extended_id(graph_id)


def test_any_over_a_collection_of_strings() -> None:
    # https://learn.microsoft.com/graph/filter-query-parameter: "any ... returns true if the
    # expression is true for at least one item of the collection"; for a collection of strings
    # the range variable is the value (imAddresses/any(i:i eq 'admin@contoso.com')).
    predicate = parse_filter("categories/any(c:c eq 'Red category')")

    assert predicate is not None
    assert predicate({"categories": ["Blue category", "Red category"]})
    assert not predicate({"categories": ["Blue category"]})
    assert not predicate({"categories": []})


def test_prefer_and_select() -> None:
    prefer = parse_prefer('outlook.timezone="Pacific Standard Time", odata.maxpagesize=25')

    assert prefer == {"outlook.timezone": "Pacific Standard Time", "odata.maxpagesize": "25"}
    assert parse_select("subject, start") == {"subject", "start"}


def test_event_ids_are_reversible_and_look_like_graphs() -> None:
    occurrence = ExchangeStore.occurrence_id("abc123", datetime(2027, 3, 1, 15, tzinfo=UTC))

    for internal in ("abc123", occurrence):
        graph_id = ids.event_id(internal)
        assert graph_id.startswith("AAMkAD")
        assert "+" not in graph_id
        assert "/" not in graph_id
        assert ids.internal_event_id(graph_id) == internal
    with pytest.raises(ids.MalformedId):
        ids.internal_event_id("AAAA")


def test_windows_and_iana_zone_names() -> None:
    assert timezones.iana_name("Eastern Standard Time") == "America/New_York"
    assert timezones.iana_name("Europe/Paris") == "Europe/Paris"
    assert timezones.windows_name("America/Toronto") == "Eastern Standard Time"
    assert timezones.windows_name("UTC") == "UTC"
    instant = timezones.parse_date_time("2027-07-01T09:30:00.0000000", "W. Europe Standard Time")
    assert instant == datetime(2027, 7, 1, 7, 30, tzinfo=UTC)
    assert timezones.format_local(instant, "Pacific Standard Time") == "2027-07-01T00:30:00.0000000"
    assert timezones.parse_instant("2027-07-01T09:30:00 02:00") == datetime(
        2027, 7, 1, 7, 30, tzinfo=UTC
    )
    with pytest.raises(timezones.UnknownTimeZone):
        timezones.resolve_zone("Mars Standard Time")
