"""Authentication, route by route from the registry: missing, malformed, wrong, expired and
replayed signatures; another organization's secret; missing and wrong admin keys, another
organization's admin key, a missing functions key. Each is a 401 naming the problem, and the
world (tables, queues, the simulator, the booking stand-in) is exactly as before."""

from __future__ import annotations

import time

import httpx
import pytest

from shared.admin.service import org_admin_key_reference
from shared.booking.signature import sign_request, sign_webhook
from shared.config import (
    environment_variable_for,
    org_previous_signing_secret_reference,
    org_signing_secret_reference,
)
from shared.http.contract import ADMIN_KEY_HEADER, SIGNATURE_HEADER
from shared.http.routes import ApiRoute
from tests.e2e.privacy import Sensitive
from tests.security.conftest import ADMIN_KEYS, ORG, RIVAL, SIGNING_SECRETS, Unchanged, World
from tests.security.surface import Call, assert_refused, route_id, routes_of, send_as_caller

SECRET = SIGNING_SECRETS[ORG]


def target_of(world: World, path: str) -> str:
    return httpx.URL(world.url(path)).raw_path.decode()


def signature_cases(world: World, call: Call) -> dict[str, tuple[str, str]]:
    """Header value → the error code it must get, for one signed call."""
    method, path, body = call.route.method, call.path, call.body
    now = int(time.time())
    target = target_of(world, path)
    other_body = body + b" " if body else b"{}"
    other_method = "POST" if method != "POST" else "PUT"
    other_target = target.replace(f"/orgs/{ORG}/", f"/orgs/{RIVAL}/")
    cases = {
        "missing": ("", "signature_missing"),
        "garbage": ("hello", "signature_malformed"),
        "no digest": (f"t={now}", "signature_malformed"),
        "short digest": (f"t={now},v2=abcd", "signature_malformed"),
        "two timestamps": (f"t={now},t={now},v2={'0' * 64}", "signature_malformed"),
        "too long": (f"t={now},v2={'0' * 64}," + "x=y," * 300, "signature_malformed"),
        "v1 only (body)": (sign_webhook(SECRET, body, now), "signature_malformed"),
        "wrong secret": (sign_request("guessed", method, target, body, now), "signature_mismatch"),
        "another organization's secret": (
            sign_request(SIGNING_SECRETS[RIVAL], method, target, body, now),
            "signature_mismatch",
        ),
        "expired (5 min 1 s old)": (
            sign_request(SECRET, method, target, body, now - 301),
            "signature_expired",
        ),
        "from the future": (
            # Well beyond: the server's clock reads later than this test's by the time it checks.
            sign_request(SECRET, method, target, body, now + 330),
            "signature_expired",
        ),
        "an absurd timestamp": (
            sign_request(SECRET, method, target, body, 10**40),
            "signature_expired",
        ),
        "another body": (
            sign_request(SECRET, method, target, other_body, now),
            "signature_mismatch",
        ),
        "another method": (
            sign_request(SECRET, other_method, target, body, now),
            "signature_mismatch",
        ),
        "another organization's path": (
            sign_request(SECRET, method, other_target, body, now),
            "signature_mismatch",
        ),
        "the path without its query": (
            sign_request(SECRET, method, target.split("?")[0] + "?", body, now),
            "signature_mismatch",
        ),
    }
    return cases


SIGNED = routes_of("signature")
ADMIN = routes_of("admin")


@pytest.mark.parametrize("route", SIGNED, ids=route_id)
def test_every_bad_signature_is_a_401_naming_it_and_changes_nothing(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    call = Call.of(route)
    for case, (header, code) in signature_cases(world, call).items():
        headers = {"Content-Type": "application/json"}
        if header:
            headers[SIGNATURE_HEADER] = header
        answer = unchanged(world.send, route.method, call.path, call.body, headers)
        assert answer.status_code == 401, (case, answer.text)
        assert_refused(answer, 401, code)
        assert answer.json()["error"] == code, case


@pytest.mark.parametrize("route", SIGNED, ids=route_id)
def test_one_organizations_signed_request_does_not_open_another_organization(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    """The rival's request, signed with its own secret for its own path, replayed on ours;
    and ours, signed right, sent to the rival's path."""
    ours = Call.of(route)
    theirs = Call.of(route, org=RIVAL)
    now = int(time.time())
    captured = sign_request(
        SIGNING_SECRETS[RIVAL], route.method, target_of(world, theirs.path), theirs.body, now
    )
    answer = unchanged(world.send, route.method, ours.path, ours.body, {SIGNATURE_HEADER: captured})
    assert_refused(answer, 401, "signature_mismatch")
    answer = unchanged(world.signed, route.method, theirs.path, theirs.body, secret=SECRET)
    assert_refused(answer, 401, "signature_mismatch")


def test_an_unknown_organization_is_answered_like_a_wrong_signature(
    world: World, unchanged: Unchanged
) -> None:
    for route in SIGNED:
        call = Call.of(route, org="no-such-org")
        answer = unchanged(world.signed, route.method, call.path, call.body)
        assert_refused(answer, 401, "signature_mismatch")


@pytest.mark.parametrize("route", SIGNED, ids=route_id)
def test_a_request_replayed_after_five_minutes_is_refused(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    """The very request the platform sent (same signature, same bytes), captured and sent
    again once its five minutes have passed: refused, whatever it would have done."""
    call = Call.of(route)
    then = int(time.time()) - 301
    header = sign_request(SECRET, route.method, target_of(world, call.path), call.body, then)
    answer = unchanged(world.send, route.method, call.path, call.body, {SIGNATURE_HEADER: header})
    assert_refused(answer, 401, "signature_expired")


def test_a_snapshot_replayed_within_five_minutes_changes_no_stored_row(world: World) -> None:
    """Inside the window a replay is the same snapshot again: idempotent (the platform's own
    retry), so it rewrites no row; it may announce the change again, which the worker settles
    by reading the stored state."""
    [route] = [r for r in SIGNED if r.method == "PUT"]
    call = Call.of(route, appointmentId="apt-replayed")
    first = world.signed(route.method, call.path, call.body)
    assert first.status_code in (200, 202), first.text
    before = world.observer.snapshot()
    captured = {SIGNATURE_HEADER: first.request.headers[SIGNATURE_HEADER]}
    replayed = world.send(route.method, call.path, call.body, captured)
    assert replayed.status_code == first.status_code
    after = world.observer.snapshot()
    assert before.rows == after.rows


def admin_cases(world: World) -> dict[str, tuple[dict[str, str], str]]:
    key = world.runner.functions_key
    return {
        "no admin key": ({"x-functions-key": key}, "header is missing"),
        "an empty admin key": ({"x-functions-key": key, ADMIN_KEY_HEADER: ""}, "missing"),
        "a wrong admin key": ({"x-functions-key": key, ADMIN_KEY_HEADER: "guessed"}, "not match"),
        "another organization's admin key": (
            {"x-functions-key": key, ADMIN_KEY_HEADER: ADMIN_KEYS[RIVAL]},
            "does not match",
        ),
        "a long admin key": (
            {"x-functions-key": key, ADMIN_KEY_HEADER: "k" * 6000},
            "does not match",
        ),
        "the signing secret as admin key": (
            {"x-functions-key": key, ADMIN_KEY_HEADER: SIGNING_SECRETS[ORG]},
            "does not match",
        ),
        "no functions key": ({ADMIN_KEY_HEADER: ADMIN_KEYS[ORG]}, "functions key"),
        "a wrong functions key": (
            {"x-functions-key": "guessed", ADMIN_KEY_HEADER: ADMIN_KEYS[ORG]},
            "functions key",
        ),
    }


@pytest.mark.parametrize("route", ADMIN, ids=route_id)
def test_every_missing_or_wrong_admin_key_is_a_401_naming_it_and_changes_nothing(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    call = Call.of(route)
    for case, (headers, words) in admin_cases(world).items():
        sent = {"Content-Type": "application/json", **headers}
        answer = unchanged(world.send, route.method, call.path, call.body, sent)
        assert answer.status_code == 401, (case, answer.text)
        assert_refused(answer, 401, words)


@pytest.mark.parametrize("route", ADMIN, ids=route_id)
def test_an_organizations_admin_key_never_opens_another_organization(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    for org, other in ((ORG, RIVAL), (RIVAL, ORG)):
        call = Call.of(route, org=other)
        answer = unchanged(send_as_caller, world, call, org=org)
        assert_refused(answer, 401, "does not match")


def test_the_function_key_in_the_query_string_is_the_hosts_not_an_admin_key(
    world: World, unchanged: Unchanged
) -> None:
    """``?code=`` is the host's functions key; it never stands in for the admin key."""
    for route in ADMIN:
        call = Call.of(route)
        sep = "&" if "?" in call.path else "?"
        path = f"{call.path}{sep}code={world.runner.functions_key}"
        answer = unchanged(world.send, route.method, path, call.body)
        assert_refused(answer, 401, "missing")


def test_a_rotated_out_admin_key_or_signing_secret_no_longer_opens_anything(
    world: World, unchanged: Unchanged, monkeypatch: pytest.MonkeyPatch, sensitive: Sensitive
) -> None:
    """Expired credentials: once an organization's admin key or signing secret is replaced
    (and the previous secret's grace period is over), the old one is refused everywhere; the new
    one works (a read, which changes nothing)."""
    new_key, new_secret = "sec-admin-key-rotated-71d0", "sec-signing-secret-rotated-2e95"
    sensitive.secrets([new_key, new_secret])
    monkeypatch.setenv(environment_variable_for(org_admin_key_reference(ORG)), new_key)
    monkeypatch.setenv(environment_variable_for(org_signing_secret_reference(ORG)), new_secret)
    monkeypatch.delenv(
        environment_variable_for(org_previous_signing_secret_reference(ORG)), raising=False
    )
    for route in ADMIN:
        call = Call.of(route)
        answer = unchanged(send_as_caller, world, call)  # the old key
        assert_refused(answer, 401, "does not match")
    for route in SIGNED:
        call = Call.of(route)
        answer = unchanged(world.signed, route.method, call.path, call.body)  # the old secret
        assert_refused(answer, 401, "signature_mismatch")
    headers = {**world.admin_headers(), ADMIN_KEY_HEADER: new_key}
    for read in [r for r in ADMIN if r.method == "GET" and r.route == "orgs/{org}/settings"]:
        assert unchanged(world.send, "GET", Call.of(read).path, b"", headers).status_code == 200
    [busy] = [r for r in SIGNED if r.method == "GET"]
    call = Call.of(busy)
    answer = unchanged(world.signed, "GET", call.path, b"", secret=new_secret)
    assert answer.status_code == 200, answer.text
