"""Graph's notification and lifecycle URLs (anonymous for the host: what authenticates a
notification is its subscription's clientState): spoofed notifications — an unknown
subscription, a wrong or missing clientState, another organization's subscription with its own
right clientState — are 403 and change nothing; the validation handshake answers the token as
sandboxed plain text, bounded, and refuses what Graph would never send rather than reflect it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.http.routes import ApiRoute
from tests.security.conftest import ORG, RIVAL, Unchanged, World
from tests.security.surface import assert_refused, route_id, routes_of

GRAPH = routes_of("graph")
UNKNOWN = "00000000-0000-0000-0000-000000000000"


def url(route: ApiRoute, org: str = ORG, query: str = "") -> str:
    path = route.route.replace("{org}", org)
    return f"{path}?{query}" if query else path


def batch(*notifications: dict[str, Any]) -> bytes:
    return json.dumps({"value": list(notifications)}).encode()


def notification(subscription_id: str, client_state: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "subscriptionId": subscription_id,
        "changeType": "updated",
        "resource": "Users/x/Events/y",
        "lifecycleEvent": "subscriptionRemoved",
    }
    if client_state is not None:
        found["clientState"] = client_state
    return found


@pytest.mark.parametrize("route", GRAPH, ids=route_id)
def test_spoofed_notifications_are_403_and_change_nothing(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    ours, our_state = world.client_states[ORG]
    theirs, their_state = world.client_states[RIVAL]
    forged = {
        "an unknown subscription": batch(notification(UNKNOWN, our_state)),
        "a wrong clientState": batch(notification(ours, "guessed")),
        "no clientState": batch(notification(ours, None)),
        "an empty clientState": batch(notification(ours, "")),
        "another subscription's clientState": batch(notification(ours, their_state)),
        "another organization's subscription, its own clientState": batch(
            notification(theirs, their_state)
        ),
        # Within the 256 characters allowed, but past what a row key can hold once encoded.
        "a subscription id no row key can hold": batch(notification("é" * 256, our_state)),
        "a thousand forgeries": batch(*[notification(ours, f"guess-{n}") for n in range(1000)]),
    }
    with unchanged.throughout():
        answers = {
            case: world.send("POST", url(route), body, {"Content-Type": "application/json"})
            for case, body in forged.items()
        }
        # Our subscription with its right clientState, sent to the other organization's URL.
        answers["our notification at another organization's URL"] = world.send(
            "POST", url(route, RIVAL), batch(notification(ours, our_state))
        )
    for case, answer in answers.items():
        assert answer.status_code == 403, (case, answer.text)
        assert_refused(answer, 403, "clientState")


@pytest.mark.parametrize("route", GRAPH, ids=route_id)
def test_bodies_that_are_not_graphs_are_400_and_change_nothing(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    ours, our_state = world.client_states[ORG]
    bodies = {
        "more than 1000 notifications": batch(*[notification(ours, our_state)] * 1001),
        "no notification": batch(),
        "a subscription id of 5,000 characters": batch(notification("s" * 5000, our_state)),
        "a clientState of 5,000 characters": batch(notification(ours, "c" * 5000)),
        "a subscription id that is a number": batch({"subscriptionId": 7}),
        "the clientState named twice": (
            b'{"value": [{"subscriptionId": "%s", "clientState": "guessed", "clientState": "%s"}]}'
            % (ours.encode(), our_state.encode())
        ),
    }
    with unchanged.throughout():
        answers = {
            case: world.send("POST", url(route), body, {"Content-Type": "application/json"})
            for case, body in bodies.items()
        }
    for case, answer in answers.items():
        assert answer.status_code == 400, (case, answer.text)
        assert_refused(answer, 400)


MARKUP = '<html><script>alert(document.cookie)</script><img src=x onerror="alert(1)"></html>'


@pytest.mark.parametrize("route", GRAPH, ids=route_id)
def test_the_validation_token_is_answered_as_sandboxed_plain_text_only(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    from urllib.parse import quote

    with unchanged.throughout():
        answer = world.send("POST", url(route, query=f"validationToken={quote(MARKUP)}"))
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == "text/plain"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in answer.headers["content-security-policy"]
    assert answer.text == MARKUP  # Graph requires the decoded token itself, nothing else


@pytest.mark.parametrize("route", GRAPH, ids=route_id)
def test_a_token_graph_would_never_send_is_refused_not_reflected(
    world: World, unchanged: Unchanged, route: ApiRoute
) -> None:
    tokens = {
        "empty": "",
        "1,025 characters": "t" * 1025,
        "CR LF and a header": "token%0D%0ASet-Cookie:%20stolen=1",
        "a NUL": "token%00",
        "a line break": "a%0Ab",
        "an escape sequence": "%1B%5B31mred",
    }
    ours, our_state = world.client_states[ORG]
    with unchanged.throughout():
        answers = {
            case: world.send("POST", url(route, query=f"validationToken={token}"))
            for case, token in tokens.items()
        }
        # Graph's handshake has no body: a token beside a notification is not Graph's.
        answers["a body beside the token"] = world.send(
            "POST", url(route, query="validationToken=abc"), batch(notification(ours, our_state))
        )
    for case, answer in answers.items():
        assert answer.status_code == 400, (case, answer.text)
        assert_refused(answer, 400, "validationToken")
        assert "stolen" not in answer.text
        assert "set-cookie" not in {name.lower() for name in answer.headers}


def test_a_notification_with_its_clientstate_is_accepted(world: World) -> None:
    """The other side of the checks above (they are not refusing everything): one valid
    notification among forged ones is taken and queues one sync of its mailbox."""
    [route] = [r for r in GRAPH if "notifications" in r.route]
    ours, our_state = world.client_states[ORG]
    before = world.state()
    answer = world.send(
        "POST",
        url(route),
        batch(notification(ours, "guessed"), notification(ours, our_state)),
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["accepted"] == 1
    # A sync queued, or (one already pending from an earlier notification) the notice counted.
    changed = before.differences(world.state())
    prefix = world.observer.prefix
    assert changed, "the valid notification changed nothing"
    assert all(
        f"queue {prefix}mailbox-sync" in change
        or f"table {prefix}Mailboxes row ('sec', 'dan')" in change
        for change in changed
    ), changed
