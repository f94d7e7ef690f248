"""One gate for every route: the booking platform's and the administrator's requests are
refused in the same order with the same words (size 413 before organization 404), and a backing
service that fails is the same 503."""

from __future__ import annotations

import json
from collections.abc import Iterator

import azure.functions as func
import pytest

from devhost.azurite import Azurite
from shared.http.contract import ADMIN_KEY_HEADER
from tests.functions_harness import app_environment, http_call

LIMIT = 100
ROUTES = {
    "booking": ("PUT", "/api/orgs/{org}/appointments/apt-1", {}),
    "admin": ("PUT", "/api/orgs/{org}/staff/ann", {ADMIN_KEY_HEADER: "operator"}),
}


@pytest.fixture
def app(azurite: Azurite, name_prefix: str) -> Iterator[None]:
    with app_environment(
        azurite.connection_string,
        name_prefix,
        {"acme": "secret"},
        CALBRIDGE_MAX_REQUEST_BYTES=str(LIMIT),
        CALBRIDGE_ADMIN_KEY="operator",
    ):
        yield


def call(route: str, org: str, body: bytes) -> func.HttpResponse:
    method, path, headers = ROUTES[route]
    return http_call(method, path.format(org=org), body, headers=headers)


def answer(response: func.HttpResponse) -> dict[str, str]:
    return dict(json.loads(response.get_body()))


@pytest.mark.usefixtures("app")
def test_every_route_refuses_a_large_body_first_and_an_invalid_organization_next() -> None:
    large = b"{" + b" " * LIMIT + b"}"
    answers = {}
    for route in ROUTES:
        too_large = call(route, "Not An Org", large)  # both wrong: the size is named first
        assert too_large.status_code == 413
        no_org = call(route, "Not An Org", b"{}")
        assert no_org.status_code == 404
        answers[route] = (answer(too_large), answer(no_org))
    assert answers["booking"] == answers["admin"]
    assert answers["booking"][0] == {
        "error": "payload_too_large",
        "message": f"the body is {LIMIT + 2} bytes; at most {LIMIT} are accepted",
    }
    assert answers["booking"][1] == {"error": "not_found", "message": "no such organization"}
