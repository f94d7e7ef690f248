"""Hostile input past authentication, route by route from the registry: oversized, deeply nested
and malformed bodies, keys named twice, unknown fields, absurd times and numbers, and ids with
path separators, control characters or huge lengths, in path parameters and in bodies. Each is
a 4xx naming the problem (never a 5xx, never HTML, never the whole input echoed back), and the
world is exactly as before."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from shared.config import get_settings
from shared.http.routes import ROUTES, ApiRoute
from shared.push.notifications import MAX_NOTIFICATION_BYTES
from tests.builders import snapshot_document
from tests.security.conftest import ORG, Unchanged, World
from tests.security.surface import (
    Call,
    assert_refused,
    example_bodies,
    is_graph,
    route_id,
    routes_of,
    send_as_caller,
)

CALLED = routes_of("signature", "admin", "graph")
WITH_BODY = [route for route in CALLED if route.request_body is not None]
STRICT_BODY = [route for route in WITH_BODY if not is_graph(route)]


def body_limit(route: ApiRoute) -> int:
    if is_graph(route):
        return MAX_NOTIFICATION_BYTES
    return get_settings().max_request_bytes


def example(route: ApiRoute) -> dict[str, Any]:
    assert route.request_body is not None
    return dict(example_bodies().get(route.request_body.__name__, {}))


# --- bodies -----------------------------------------------------------------------------------


@pytest.mark.parametrize("route", WITH_BODY, ids=route_id)
def test_a_body_over_the_limit_is_413_and_changes_nothing(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    limit = body_limit(route)
    padded = json.dumps(example(route)).encode()
    padded = padded[:-1] + b" " * (limit + 1 - len(padded)) + b"}"
    for body in (padded, b"[" * (limit + 1)):
        answer = unchanged(send_as_caller, world, Call.of(route, body))
        assert_refused(answer, 413, "payload_too_large", str(limit))


MALFORMED = {
    "empty": b"",
    "not JSON": b"hello",
    "truncated": b'{"version": 1, "sta',
    "trailing garbage": b'{"a": 1} {"b": 2}',
    "invalid UTF-8": b'{"title": "\xff\xfe"}',
    "a lone surrogate": b'{"title": "\\ud800"}',
    "NaN": b'{"version": NaN}',
    "Infinity": b'{"massCancellationShare": Infinity}',
    "a number too large for any parser": b'{"version": 1' + b"0" * 5000 + b"}",
    # Under the size limit (64 KiB), so the depth is what is refused.
    "nested 30,000 deep (arrays)": b"[" * 30_000 + b"]" * 30_000,
    "nested 10,000 deep (objects)": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "nested 10,000 deep in a field": b'{"value": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "an array": b"[]",
    "null": b"null",
    "a string": b'"x"',
    "a number": b"7",
    "a UTF-16 body": '{"version": 1}'.encode("utf-16"),
    "a UTF-8 byte order mark": b'\xef\xbb\xbf{"version": 1}',
}


@pytest.mark.parametrize("route", WITH_BODY, ids=route_id)
def test_a_malformed_or_deeply_nested_body_is_a_4xx_and_changes_nothing(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    with unchanged.throughout():
        answers = {
            case: send_as_caller(world, Call.of(route, body)) for case, body in MALFORMED.items()
        }
    for case, answer in answers.items():
        if case == "empty" and not route.body_required:
            continue  # no body is a request of its own there (e.g. replay everything)
        assert answer.status_code in (400, 422), (case, answer.status_code, answer.text[:300])
        assert_refused(answer, (400, 422))
        assert len(answer.content) < 4096, case  # the input is not echoed back


@pytest.mark.parametrize("route", WITH_BODY, ids=route_id)
def test_a_key_named_twice_is_400_naming_it(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    document = example(route) or {"probe": 1}  # a route whose body has no example here
    first = next(iter(document))
    text = json.dumps(document)
    twice_at_top = text[:-1] + f', "{first}": null}}'
    nested = json.dumps({**document, "x": {"inner": 1}}).replace(
        '{"inner": 1}', '{"inner": 1, "inner": 2}'
    )
    for body, key in ((twice_at_top, first), (nested, "inner")):
        answer = unchanged(send_as_caller, world, Call.of(route, body.encode()))
        assert_refused(answer, 400, "more than once", key)


@pytest.mark.parametrize("route", STRICT_BODY, ids=route_id)
def test_an_unknown_field_is_422_naming_it(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    """Graph's notifications are Microsoft's format, which grows: unknown fields are ignored
    there by design (``GraphNotification``). Every other body is strict."""
    document = example(route)
    for unknown in ("isAdmin", "organizer_staff_id", "__proto__", "PartitionKey", "évil"):
        body = json.dumps({**document, unknown: True}).encode()
        answer = unchanged(send_as_caller, world, Call.of(route, body))
        assert_refused(answer, 422, "unknown field", unknown)


# --- ids in path parameters -------------------------------------------------------------------

BAD_IDS = {
    "a slash": "a/b",
    "a backslash": "a\\b",
    "dot dot": "..",
    "dot": ".",
    "a traversal": "../../orgs/rival/settings",
    "a NUL": "a\x00b",
    "a trailing line break": "ann\n",
    "CR LF and a header": "a\r\nX-Injected: 1",
    "markup": "<script>alert(1)</script>",
    "a double-encoded slash": "a%2Fb",
    "a right-to-left override": "a\u202eb",
    "129 characters": "x" * 129,
    "5,000 characters": "y" * 5000,
    "a Table Storage key character": "a#b?c",
}


def parameters() -> list[tuple[ApiRoute, str]]:
    return [(route, name) for route in CALLED for name in route.path_parameters]


@pytest.mark.parametrize(
    ("route", "parameter"),
    parameters(),
    ids=[f"{route_id(route)} {name}" for route, name in parameters()],
)
def test_an_id_that_is_no_id_is_refused_in_every_path_parameter(
    world: World, unchanged: Unchanged, route: ApiRoute, parameter: str
) -> None:
    with unchanged.throughout():
        answers = {
            case: send_as_caller(world, Call.of(route, None, **{parameter: value}))
            for case, value in BAD_IDS.items()
        }
    for case, answer in answers.items():
        if value_is_dot_segment(BAD_IDS[case]) and another_route_answered(route, answer):
            # A client removes "." and ".." segments (RFC 3986, 5.2.4) before sending: the
            # shorter path is another route's, which answered as itself.
            continue
        assert 400 <= answer.status_code < 500, (case, answer.status_code, answer.text[:200])
        # 405: a client drops a "." segment, and the shorter path is another route's.
        assert_refused(answer, (400, 401, 404, 405))
        if answer.status_code not in (404, 405):
            # Past the organization: named (an org that is no id is "no such organization").
            assert parameter in answer.text or answer.status_code == 401, (case, answer.text)
        assert len(answer.content) < 1024, case  # bounded, never the whole input


def value_is_dot_segment(value: str) -> bool:
    return value in (".", "..")


def another_route_answered(route: ApiRoute, answer: Any) -> bool:
    """The request's path, as the client sent it, is another registered route's."""
    sent = answer.request.url.path.rstrip("/")
    for other in ROUTES:
        if other is route or other.method != route.method:
            continue
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(other.path))
        if re.fullmatch(pattern, sent):
            return True
    return False


# --- ids, times and numbers in bodies ---------------------------------------------------------

BAD_BODY_IDS = ["a/b", "..", "a\x00b", "a\nb", "<b>x</b>", "z" * 5000]


def snapshot(**fields: Any) -> bytes:
    """A snapshot with ``fields`` replaced by their camelCase names (None: left out)."""
    document = {**snapshot_document(organizer="ann"), **fields}
    return json.dumps(
        {name: value for name, value in document.items() if value is not None}
    ).encode()


def put_snapshot(world: World, body: bytes) -> Any:
    [route] = [r for r in routes_of("signature") if r.method == "PUT"]
    return send_as_caller(world, Call.of(route, body, appointmentId="apt-hostile"))


def test_ids_in_a_snapshot_that_are_no_ids_are_422_naming_the_field(
    world: World, unchanged: Unchanged
) -> None:
    for value in BAD_BODY_IDS:
        cases = {
            "organizerStaffId": snapshot(
                organizerStaffId=value, staff=[{"staffId": value, "role": "organizer"}]
            ),
            "staff[1].staffId": snapshot(
                staff=[
                    {"staffId": "ann", "role": "organizer"},
                    {"staffId": value, "role": "secondary"},
                ]
            ),
        }
        for field, body in cases.items():
            answer = unchanged(put_snapshot, world, body)
            assert_refused(answer, 422, field)
            assert len(answer.content) < 2048


def test_ids_in_admin_bodies_that_are_no_ids_are_422_naming_the_field(
    world: World, unchanged: Unchanged
) -> None:
    for value in BAD_BODY_IDS:
        body = {"connectionId": value, "mailbox": "ann@bank.test", "timeZone": "Europe/Berlin"}
        answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/staff/ann", body)
        assert_refused(answer, 422, "connectionId")
        for field in ("secretReference", "clientId", "tenantId"):
            body = {**example_bodies()["ConnectionConfig"], field: value}
            answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/connections/cloud", body)
            assert_refused(answer, 422, field)
        if not value.isprintable() or len(value) > 255:  # CONTOSO\svc, a/b: account names
            body = {**example_bodies()["ConnectionConfig"], "username": value}
            answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/connections/cloud", body)
            assert_refused(answer, 422, "username")
        # (a/b@bank.test is an address: "/" may stand in its local part)
        for mailbox in (
            value,
            "ann@bank.test\n",
            "ann@bank.test\r\nBcc: x",
            "a\x00@bank.test",
            "ann@bank.test/../rita@bank.test",
        ):
            body = {"connectionId": "onprem", "mailbox": mailbox, "timeZone": "Europe/Berlin"}
            answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/staff/ann", body)
            assert_refused(answer, 422, "mailbox")


ABSURD_INSTANTS = [
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC
    "2026-02-30T10:00:00Z",
    "2026-03-02T25:00:00Z",
    "2026-03-02T10:00:60Z",
    "2026-03-02T10:00:00",  # no offset
    "2026-03-02T10:00:00+25:00",
    "2026-03-02",
    "now",
    "",
    "+275760-09-13T00:00:00Z",
    "2026-03-02T10:00:00.1234567890123456789Z",
    "1" * 400,
]


def test_absurd_times_in_a_snapshot_are_422_naming_the_field(
    world: World, unchanged: Unchanged
) -> None:
    for value in ABSURD_INSTANTS:
        for field in ("start", "end"):
            answer = unchanged(put_snapshot, world, snapshot(**{field: value}))
            assert_refused(answer, 422)
            # The field, or (a valid instant far from the other) the duration it makes.
            assert field in answer.text or "may last at most" in answer.text, answer.text
    reversed_times = snapshot(start="2026-03-02T11:00:00Z", end="2026-03-02T10:00:00Z")
    for body in (
        reversed_times,
        snapshot(start=1_700_000_000, end=1_700_003_600),
        snapshot(start=None),
        snapshot(timeZone="posix/Europe/Berlin"),
        snapshot(timeZone="../../etc/passwd"),
        snapshot(timeZone="x" * 5000),
    ):
        answer = unchanged(put_snapshot, world, body)
        assert_refused(answer, 422)


def test_absurd_numbers_are_422_naming_the_field(world: World, unchanged: Unchanged) -> None:
    for version in (2**63, 10**400, -1, 1.5, "1", True, None):
        body = json.dumps({**snapshot_document(organizer="ann"), "version": version}).encode()
        answer = unchanged(put_snapshot, world, body)
        assert_refused(answer, 422, "version")
    absurd: dict[str, list[Any]] = {
        "recurrenceHorizonDays": [10**30, -1, 0, 1.5, "180", True],
        "pollIntervalSeconds": [0, -60, 10**20, 59.9],
        "massCancellationShare": [0, -0.5, 1.0000001, 1e308, "0.5"],
    }
    for field, values in absurd.items():
        for value in values:
            answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/settings", {field: value})
            assert_refused(answer, 422, field)


def test_absurd_busy_windows_are_400_naming_the_parameter(
    world: World, unchanged: Unchanged
) -> None:
    [route] = [r for r in routes_of("signature") if r.method == "GET"]
    path = f"orgs/{ORG}/staff/ann/busy"
    good = "2026-03-02T00:00:00Z"
    queries = [f"start={value}&end={good}" for value in ABSURD_INSTANTS if value]
    queries += [
        f"start={good}&end=2026-03-01T00:00:00Z",
        f"start={good}&end={good}",
        f"start={good}&end=2026-06-02T00:00:00Z",
        f"start={good}",
        "",
        f"start={good}&start={good}&end=2026-03-03T00:00:00Z",
        "start=0001-01-01T00:00:00Z&end=9999-12-31T23:59:59Z",
        f"start={good}&end=2026-03-03T00:00:00%2B99:99",
    ]
    for query in queries:
        answer = unchanged(world.signed, route.method, f"{path}?{query}" if query else path)
        assert_refused(answer, 400)
