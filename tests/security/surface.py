"""The attack surface, read from the route registry (``shared.http.routes.ROUTES``): every route
the app serves, how a legitimate caller reaches it (the booking platform's signature, the
administrator's keys, a Graph subscription's clientState, or nothing), and a request for it that
only the attack under test makes wrong. A route added to the registry is attacked by every
parametrized test without a change here.

Path parameters get a valid id (``VALID_IDS``, any other name a generic one); request bodies
an example of their model where one is known (``EXAMPLE_BODIES``), otherwise ``{}``: every check
that refuses before the body is read (size, organization, authentication, path ids, JSON syntax)
is the same for any body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from shared.http.routes import ROUTES, ApiRoute
from tests.builders import snapshot_document
from tests.security.conftest import APPOINTMENT, ORG, SIGNING_SECRETS, World

VALID_IDS: dict[str, str] = {
    "org": ORG,
    "appointmentId": APPOINTMENT,
    "staffId": "ann",
    "connectionId": "onprem",
    "eventId": "evt-1",
}
GENERIC_ID = "probe-1"


def example_bodies() -> dict[str, dict[str, Any]]:
    """A valid body by request model name (what a legitimate caller sends)."""
    return {
        "AppointmentSnapshot": snapshot_document(version=1, organizer="ann", secondaries=["bob"]),
        "ConnectionConfig": {
            "kind": "graph",
            "authType": "oauth",
            "tenantId": "7d0e0a55-41b4-4a0e-9f3c-0d1b2c3d4e5f",
            "clientId": "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f",
            "secretReference": "sec-graph-secret",
        },
        "StaffMailboxAssignment": {
            "connectionId": "onprem",
            "mailbox": "ann@bank.test",
            "timeZone": "Europe/Berlin",
        },
        "OrgSettings": {"recurrenceHorizonDays": 90},
        "GraphNotificationBatch": {
            "value": [{"subscriptionId": "00000000-0000-0000-0000-000000000000"}]
        },
    }


def is_graph(route: ApiRoute) -> bool:
    """Graph's notification and lifecycle URLs: no key, the clientState in the body."""
    return route.route.startswith("graph/")


def kind(route: ApiRoute) -> str:
    """How a legitimate caller authenticates: signature, admin, graph or public."""
    if route.security == "signature":
        return "signature"
    if route.security in ("admin", "functionKey") or route.auth_level != "ANONYMOUS":
        return "admin"
    if is_graph(route):
        return "graph"
    return "public"


def routes_of(*kinds: str) -> list[ApiRoute]:
    return [route for route in ROUTES if kind(route) in kinds]


def route_id(route: ApiRoute) -> str:
    return f"{route.method} {route.route}"


def path_for(route: ApiRoute, **ids: str) -> str:
    """The route's path below the prefix, each parameter a valid id unless given (percent-encoded
    as a client sends it: a ``/`` in an id arrives inside its segment)."""
    path = route.route
    for name in route.path_parameters:
        value = ids.get(name, VALID_IDS.get(name, GENERIC_ID))
        path = path.replace("{" + name + "}", quote(value, safe=""))
    return path


def query_for(route: ApiRoute, **values: str) -> str:
    """A valid query string for the route's required parameters (instants a day apart)."""
    defaults = {"start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
    pairs = {
        parameter.name: values.get(parameter.name, defaults.get(parameter.name, "x"))
        for parameter in route.query
        if parameter.required or parameter.name in values
    }
    return "&".join(f"{quote(name)}={quote(value, safe='')}" for name, value in pairs.items())


def body_for(route: ApiRoute) -> bytes:
    if route.request_body is None:
        return b""
    document = example_bodies().get(route.request_body.__name__, {})
    return json.dumps(document).encode()


@dataclass(frozen=True)
class Call:
    """One request to a route, before authentication is added."""

    route: ApiRoute
    path: str
    body: bytes

    @classmethod
    def of(cls, route: ApiRoute, body: bytes | None = None, **ids: str) -> Call:
        query = query_for(route)
        path = path_for(route, **ids) + (f"?{query}" if query else "")
        return cls(route, path, body_for(route) if body is None else body)


def send_as_caller(
    world: World,
    call: Call,
    *,
    org: str = ORG,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """The request with the credentials a legitimate caller of ``org`` presents."""
    method = call.route.method
    extra = {"Content-Type": "application/json", **(headers or {})}
    match kind(call.route):
        case "signature":
            return world.signed(
                method, call.path, call.body, secret=SIGNING_SECRETS[org], headers=extra
            )
        case "admin":
            return world.send(method, call.path, call.body, {**world.admin_headers(org), **extra})
        case _:
            return world.send(method, call.path, call.body, extra)


def assert_refused(response: httpx.Response, status: int | tuple[int, ...], *words: str) -> None:
    """A clear refusal: the status, a JSON ``{"error", "message"}`` naming the problem (each of
    ``words`` in it, case-insensitive), never HTML."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("error"), body
    assert body.get("message"), body
    text = json.dumps(body, ensure_ascii=False).lower()
    for word in words:
        assert word.lower() in text, (word, body)
