"""The Graph calendar world: ``GraphCalendarGateway`` (msgraph-sdk, azure-identity) against the
Exchange simulator's Graph endpoint, with owner-side views read straight from the simulator store
(``SimulatorWorld`` of the EWS world, given Graph's ids and change keys).

One simulator serves every Graph-world test of the session (started on first use, stopped when
the session ends); each test gets fresh mailboxes in it and its own gateway — an app-only OAuth
client reaching every mailbox, which gets its token from the simulator's HTTPS token endpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import pytest

from shared.exchange.graph import GraphCalendarGateway, GraphCredentials, GraphEndpoints
from sim.graph.ids import event_id, internal_event_id
from sim.server import RunningSimulator, start_simulator
from sim.store import CalendarItem, Fault, Mailbox
from tests.contract.ews_world import SimulatorWorld
from tests.contract.worlds import THROTTLE_SECONDS

TENANT_ID: Final = "4f6c2a1e-8b3d-4e5f-9a7b-1c2d3e4f5a6b"
CLIENT_ID: Final = "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8"
CLIENT_SECRET: Final = "graph-world~secret"

_numbers = itertools.count(1)
_running: dict[str, RunningSimulator] = {}


def world_simulator_config() -> dict[str, Any]:
    """No mailboxes at start (each test adds its own); one OAuth client for all of them."""
    return {
        "mailboxes": [],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": ["*"],
            }
        ],
    }


def shared_simulator(request: pytest.FixtureRequest) -> RunningSimulator:
    """The session's Graph-world simulator, started on first use."""
    running = _running.get("graph")
    if running is None:
        running = start_simulator(world_simulator_config(), validate_ews=False)
        _running["graph"] = running

        def stop() -> None:
            _running.pop("graph", None)
            running.stop()

        request.config.add_cleanup(stop)
    return running


def simulator_endpoints(simulator: RunningSimulator) -> GraphEndpoints:
    """Graph and its token endpoint as the simulator serves them (trusting its CA)."""
    return GraphEndpoints(
        graph_url=simulator.urls["graph"],
        authority=simulator.urls["token"],
        ca_bundle=simulator.ca_bundle,
    )


def graph_item_id(item: CalendarItem) -> str:
    return event_id(item.id)


def graph_change_key(change_key: str) -> str:
    """Graph's ``changeKey`` is the store's, unencoded."""
    return change_key


def add_mailboxes(simulator: RunningSimulator, domain: str, *names: str) -> list[str]:
    """Fresh mailboxes ``name.N@domain`` in the simulator (N unique in this process)."""
    number = next(_numbers)
    addresses = []
    for name in names:
        address = f"{name}.{number}@{domain}"
        simulator.store.add_mailbox(Mailbox(address, name.replace(".", " ").title(), "UTC"))
        addresses.append(address)
    return addresses


@contextmanager
def graph_world(request: pytest.FixtureRequest) -> Iterator[SimulatorWorld]:
    simulator = shared_simulator(request)
    organizer, ava, bo, cy = add_mailboxes(
        simulator, "bank.example", "olivia.organizer", "ava.attendee", "bo.attendee", "cy.attendee"
    )
    gateway = GraphCalendarGateway(
        GraphCredentials(TENANT_ID, CLIENT_ID, CLIENT_SECRET), simulator_endpoints(simulator)
    )
    world = SimulatorWorld(
        sim=simulator,
        gateway=gateway,
        ids=graph_item_id,
        internal_id=internal_event_id,
        organizer=organizer,
        attendees=(ava, bo, cy),
        missing_mailbox=f"nobody.{next(_numbers)}@bank.example",
        change_keys=graph_change_key,
        transaction_ids=True,
        throttle=Fault(kind="throttle", retry_after=THROTTLE_SECONDS),
    )
    try:
        yield world
    finally:
        world.run(gateway.aclose())
        world.runner.close()
