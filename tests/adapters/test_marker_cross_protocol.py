"""The marker is one named MAPI property, whichever protocol wrote it: an event calbridge created
through EWS is found by its marker through Graph and vice versa, and the other protocol can go on
managing it (what happens when a mailbox moves from Exchange Server to Exchange Online, or back).

Both gateways talk to one Exchange simulator: EWS as a service account with impersonation
(exchangelib, NTLM), Graph as an app-only OAuth client (msgraph-sdk, azure-identity).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from shared.engine.marker import marker_for
from shared.exchange.ews import EwsCalendarGateway, EwsEndpoint
from shared.exchange.graph import GraphCalendarGateway, GraphCredentials
from shared.exchange.port import EventDraft, ExchangeEvent
from sim.people import Outlook
from sim.server import RunningSimulator, start_simulator
from tests.contract.graph_world import simulator_endpoints

ORGANIZER = "olivia@bank.example"
ATTENDEE = "ava@bank.example"
SERVICE_ACCOUNT = "svc-calbridge@bank.example"
SERVICE_PASSWORD = "Svc:calbridge#2"
TENANT_ID = "2d9a8c7b-6e5f-4a3b-9c1d-0e2f4a6b8c0d"
CLIENT_ID = "8e7d6c5b-4a39-4281-9f0e-1d2c3b4a5968"
CLIENT_SECRET = "cross~protocol~secret"
PARIS = ZoneInfo("Europe/Paris")
START = datetime(2031, 10, 14, 15, 0, tzinfo=PARIS)
_appointments = itertools.count(1)


def simulator_config() -> dict[str, Any]:
    return {
        "mailboxes": [
            {"address": ORGANIZER, "timeZone": "Europe/Paris", "password": "Olivia!1"},
            {"address": ATTENDEE, "timeZone": "Europe/Paris", "password": "Ava!2"},
        ],
        "serviceAccounts": [
            {
                "username": SERVICE_ACCOUNT,
                "password": SERVICE_PASSWORD,
                "impersonate": ["*"],
                "delegateFor": [],
            }
        ],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": ["*"],
            }
        ],
    }


@dataclass
class Protocols:
    """Both gateways on one simulator, run on one event loop."""

    simulator: RunningSimulator
    ews: EwsCalendarGateway
    graph: GraphCalendarGateway
    run: Callable[[Coroutine[Any, Any, Any]], Any]


@pytest.fixture
def protocols() -> Iterator[Protocols]:
    with both_protocols() as opened:
        yield opened


@contextmanager
def both_protocols(*, validate_ews: bool = False) -> Iterator[Protocols]:
    import asyncio

    with start_simulator(simulator_config(), validate_ews=validate_ews) as simulator:
        ews = EwsCalendarGateway.for_endpoint(
            EwsEndpoint(
                url=simulator.urls["ews"],
                username=SERVICE_ACCOUNT,
                password=SERVICE_PASSWORD,
                auth="ntlm",
                access="impersonation",
            )
        )
        graph = GraphCalendarGateway(
            GraphCredentials(TENANT_ID, CLIENT_ID, CLIENT_SECRET), simulator_endpoints(simulator)
        )
        with asyncio.Runner() as runner:
            yield Protocols(simulator, ews, graph, runner.run)
            runner.run(graph.aclose())
        ews.close()


def new_marker() -> str:
    return marker_for("cross", f"appt-{next(_appointments)}")


def draft(marker: str, *, subject: str = "Account opening") -> EventDraft:
    return EventDraft(
        subject=subject,
        start=START,
        end=START + timedelta(hours=1),
        time_zone="Europe/Paris",
        location="Branch 9",
        body_text="Clients:\n- Ines Client, ines@client.example\n",
        required_attendees=(ATTENDEE,),
        marker=marker,
    )


def assert_same_event(first: ExchangeEvent, second: ExchangeEvent) -> None:
    """The same item read through both protocols. (Not the organizer or attendees: EWS's
    FindItem does not return their addresses, see ``shared.exchange.ews.items``.)"""
    assert first.uid == second.uid
    assert (first.start, first.end) == (second.start, second.end)
    assert first.subject == second.subject
    assert first.location == second.location
    assert first.marker == second.marker
    assert first.written == second.written  # the stamp too: one named property set for both
    assert first.is_cancelled == second.is_cancelled


def test_an_event_made_through_ews_is_found_by_marker_through_graph(protocols: Protocols) -> None:
    p = protocols
    marker = new_marker()
    ref = p.run(p.ews.create_event(ORGANIZER, draft(marker), "tx-ews-made"))
    [through_ews] = p.run(p.ews.find_by_marker(ORGANIZER, marker))

    [through_graph] = p.run(p.graph.find_by_marker(ORGANIZER, marker))

    assert through_graph.marker == marker
    assert through_graph.uid == ref.uid
    assert_same_event(through_ews, through_graph)
    assert p.run(p.graph.find_by_marker(ORGANIZER, new_marker())) == []
    # The attendee's copy carries no marker in either protocol; the UID finds it in both.
    assert p.run(p.graph.find_by_marker(ATTENDEE, marker)) == []
    copy_through_graph = p.run(p.graph.find_by_uid(ATTENDEE, ref.uid or ""))
    copy_through_ews = p.run(p.ews.find_by_uid(ATTENDEE, ref.uid or ""))
    assert copy_through_graph is not None
    assert copy_through_ews is not None
    assert_same_event(copy_through_graph, copy_through_ews)


def test_graph_manages_an_event_ews_made_after_the_mailbox_moves(protocols: Protocols) -> None:
    p = protocols
    marker = new_marker()
    ref = p.run(p.ews.create_event(ORGANIZER, draft(marker), "tx-moved-1"))
    [found] = p.run(p.graph.find_by_marker(ORGANIZER, marker))

    p.run(p.graph.update_event(ORGANIZER, found.item_id, draft(marker, subject="Moved"), None))
    [renamed] = p.run(p.ews.find_by_marker(ORGANIZER, marker))
    assert renamed.subject == "Moved"
    assert renamed.marker == marker  # Graph's update kept the property EWS wrote

    p.run(p.graph.cancel_event(ORGANIZER, found.item_id))

    assert p.run(p.ews.find_by_marker(ORGANIZER, marker)) == []
    [copy] = Outlook(p.simulator.store, ATTENDEE).find(uid=ref.uid)
    assert copy.is_cancelled


def test_an_event_made_through_graph_is_found_by_marker_through_ews(protocols: Protocols) -> None:
    p = protocols
    marker = new_marker()
    ref = p.run(p.graph.create_event(ORGANIZER, draft(marker), "tx-graph-made"))
    [through_graph] = p.run(p.graph.find_by_marker(ORGANIZER, marker))

    [through_ews] = p.run(p.ews.find_by_marker(ORGANIZER, marker))

    assert through_ews.marker == marker
    assert through_ews.uid == ref.uid
    assert_same_event(through_graph, through_ews)
    assert p.run(p.ews.find_by_marker(ORGANIZER, new_marker())) == []
    # And EWS can manage it from here (a mailbox moved back on premises).
    p.run(
        p.ews.update_event(
            ORGANIZER, through_ews.item_id, draft(marker, subject="Back"), through_ews.change_key
        )
    )
    [renamed] = p.run(p.graph.find_by_marker(ORGANIZER, marker))
    assert renamed.subject == "Back"
