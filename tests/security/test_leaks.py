"""Secrets and private data in logs, errors and answers. Every test of the suite is checked for
them already (``no_secret_in_logs_or_answers``: every log record of calbridge, every answer);
these tests send what would tempt a leak — a presented key or signature that is wrong (perhaps
another organization's real one), a refused snapshot full of a client's details, credentials
inside a URL — and the registry test keeps every route under attack."""

from __future__ import annotations

import json
import time

import httpx

from shared.booking.signature import sign_request
from shared.http.contract import ADMIN_KEY_HEADER, SIGNATURE_HEADER
from shared.http.routes import (
    GET_OPENAPI,
    GET_STATUS_PAGE,
    GET_STATUS_PAGE_SCRIPT,
    GET_STATUS_PAGE_STYLE,
    ROUTES,
)
from tests.builders import snapshot_document
from tests.e2e.privacy import Sensitive
from tests.security.conftest import ORG, SIGNING_SECRETS, Unchanged, World
from tests.security.surface import Call, assert_refused, kind, routes_of

PRESENTED_KEY = "presented-admin-key-4c1f9e"
PRESENTED_SECRET = "presented-signing-secret-b83d"


def test_every_route_of_the_registry_is_under_attack() -> None:
    """A route is attacked as what it is: signed, admin, Graph's or public. A new route that is
    none of them must be made one (or added to the public ones here, on purpose)."""
    # Public on purpose: the contract, and the status page's static files (they hold no data;
    # the page asks for the keys and calls the admin routes; tests/integration/test_status_api.py
    # checks their security headers).
    public = {
        route.function_name
        for route in (GET_OPENAPI, GET_STATUS_PAGE, GET_STATUS_PAGE_SCRIPT, GET_STATUS_PAGE_STYLE)
    }
    for route in ROUTES:
        assert kind(route) != "public" or route.function_name in public, route.function_name
    for what in ("signature", "admin", "graph"):
        assert routes_of(what), what


def test_presented_keys_and_signatures_are_never_repeated(
    world: World, unchanged: Unchanged, sensitive: Sensitive
) -> None:
    sensitive.secrets([PRESENTED_KEY, PRESENTED_SECRET])
    for route in routes_of("admin"):
        call = Call.of(route)
        headers = {"x-functions-key": world.runner.functions_key, ADMIN_KEY_HEADER: PRESENTED_KEY}
        answer = unchanged(world.send, route.method, call.path, call.body, headers)
        assert_refused(answer, 401)
    for route in routes_of("signature"):
        call = Call.of(route)
        target = httpx.URL(world.url(call.path)).raw_path.decode()
        now = int(time.time())
        wrong = sign_request(PRESENTED_SECRET, route.method, target, call.body, now)
        right = sign_request(SIGNING_SECRETS[ORG], route.method, target, call.body, now)
        answer = unchanged(
            world.send, route.method, call.path, call.body, {SIGNATURE_HEADER: wrong}
        )
        assert_refused(answer, 401, "signature_mismatch")
        # Neither what was sent nor what was expected comes back (or reaches a log line).
        for digest in (wrong.split("v2=")[1], right.split("v2=")[1]):
            assert digest not in answer.text
        sensitive.secrets([right.split("v2=")[1], wrong.split("v2=")[1]])
        garbage = f"t={now},v2={PRESENTED_SECRET}"
        answer = unchanged(
            world.send, route.method, call.path, call.body, {SIGNATURE_HEADER: garbage}
        )
        assert_refused(answer, 401, "signature_malformed")


def test_a_refused_snapshot_never_repeats_its_clients_details(
    world: World, unchanged: Unchanged, sensitive: Sensitive
) -> None:
    client = {
        "name": "Philippa Oyelaran-Whitcombe",
        "email": "philippa.ow@@client.test",  # not an address: refused, and not repeated
        "phone": "+1 555 0177 ext 9",
    }
    notes = "Discussing the custody arrangement and the second mortgage"
    document = snapshot_document(organizer="ann", clients=[client], notes=notes)
    sensitive.snapshot(document)
    sensitive.add("client", client["email"])
    [route] = [r for r in routes_of("signature") if r.method == "PUT"]
    for broken in (
        document,
        {**document, "end": "2020-01-01T00:00:00Z"},
        {**document, "clients": [{**client, "email": "ok@client.test", "nickname": "Pip"}]},
        {**document, "notes": notes * 200},
    ):
        body = json.dumps(broken).encode()
        answer = unchanged(world.signed, route.method, f"orgs/{ORG}/appointments/apt-private", body)
        assert_refused(answer, 422)
    # (The checks after the test find none of it in an answer or a log record.)


def test_credentials_inside_a_url_are_never_repeated(
    world: World, unchanged: Unchanged, sensitive: Sensitive
) -> None:
    password = "Url-Passw0rd-77e1"
    sensitive.secrets([password])
    url = f"https://svc:{password}@mail.contoso.com/EWS/Exchange.asmx"
    body = {
        "kind": "ews",
        "ewsUrl": url,
        "authType": "basic",
        "username": "svc",
        "secretReference": "ews-password",
    }
    answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/connections/leaky", body)
    assert_refused(answer, 422, "ewsUrl")
    answer = unchanged(world.admin, "PUT", f"orgs/{ORG}/settings", {"webhookUrl": url})
    assert_refused(answer, 422, "webhookUrl")
