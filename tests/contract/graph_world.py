"""The Graph calendar world: ``GraphCalendarGateway`` (msgraph-sdk, azure-identity) against the
Exchange simulator's Graph endpoint, with owner-side views read straight from the simulator store.

One simulator serves every Graph-world test of the session (started on first use, stopped when
the session ends); each test gets fresh mailboxes in it and its own gateway — an app-only OAuth
client reaching every mailbox, which gets its token from the simulator's HTTPS token endpoint.

``event_as_owner_sees_it`` turns a store item into the port's ``ExchangeEvent`` with the id a
protocol uses for it; it is protocol-neutral, so the EWS world can use it too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import pytest

from shared.exchange.common import (
    attendee_response,
    event_item_type,
    event_sensitivity,
    event_show_as,
)
from shared.exchange.graph import GraphCalendarGateway, GraphCredentials, GraphEndpoints
from shared.exchange.marker import MARKER_PROPERTY_NAME, MARKER_PROPERTY_SET_ID
from shared.exchange.port import Attendee, ExchangeEvent
from sim.graph.ids import event_id, internal_event_id
from sim.people import Outlook
from sim.server import RunningSimulator, start_simulator
from sim.store import CalendarItem, ExtendedPropertyKey, Mailbox
from tests.contract.worlds import CalendarWorld

T = TypeVar("T")

TENANT_ID: Final = "4f6c2a1e-8b3d-4e5f-9a7b-1c2d3e4f5a6b"
CLIENT_ID: Final = "c1a2b3c4-d5e6-4f70-8192-a3b4c5d6e7f8"
CLIENT_SECRET: Final = "graph-world~secret"
MARKER_KEY: Final = ExtendedPropertyKey(MARKER_PROPERTY_SET_ID.lower(), MARKER_PROPERTY_NAME)

_worlds = itertools.count(1)
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
        running = start_simulator(world_simulator_config())
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


def event_as_owner_sees_it(item: CalendarItem, item_id: str) -> ExchangeEvent:
    """A store item as the port's model, named by ``item_id`` (the protocol's id for it)."""
    assert item.start is not None
    assert item.end is not None
    attendees = [*item.required_attendees, *item.optional_attendees]
    return ExchangeEvent(
        item_id=item_id,
        change_key=item.change_key,
        uid=item.uid,
        subject=item.subject,
        start=item.start.astimezone(UTC),
        end=item.end.astimezone(UTC),
        is_all_day=item.is_all_day,
        location=item.location or None,
        organizer=item.organizer.address if item.organizer else item.mailbox,
        attendees=tuple(
            Attendee(address=a.address, response=attendee_response(a.response.value))
            for a in attendees
        ),
        is_cancelled=item.is_cancelled,
        marker=item.extended_properties.get(MARKER_KEY),
        show_as=event_show_as(item.free_busy.value),
        sensitivity=event_sensitivity(item.sensitivity.value),
        item_type=event_item_type(item.item_type.value),
        last_modified=item.last_modified,
    )


@dataclass
class SimulatorCalendarWorld:
    """A gateway under test plus owner-side views of the simulator's store.

    ``item_id_of`` / ``store_id_of`` translate between the store's ids and the protocol's."""

    simulator: RunningSimulator
    gateway: Any
    organizer: str
    attendees: tuple[str, str, str]
    missing_mailbox: str
    item_id_of: Callable[[CalendarItem], str]
    store_id_of: Callable[[str], str]
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def calendar(self, mailbox: str) -> list[ExchangeEvent]:
        items = sorted(
            self.simulator.store.calendar_items(mailbox),
            key=lambda item: (item.start or datetime.min.replace(tzinfo=UTC), item.created),
        )
        return [event_as_owner_sees_it(item, self.item_id_of(item)) for item in items]

    def body_of(self, mailbox: str, item_id: str) -> str:
        item = self.simulator.store.get_item(self.store_id_of(item_id))
        assert item.mailbox == mailbox.lower()
        return item.body

    def add_personal_event(
        self, mailbox: str, subject: str, start: datetime, end: datetime
    ) -> ExchangeEvent:
        item = Outlook(self.simulator.store, mailbox).create_event(subject, start, end)
        return event_as_owner_sees_it(item, self.item_id_of(item))


def add_mailboxes(simulator: RunningSimulator, domain: str, *names: str) -> list[str]:
    """Fresh mailboxes ``name.N@domain`` in the simulator (N unique in this process)."""
    number = next(_worlds)
    addresses = []
    for name in names:
        address = f"{name}.{number}@{domain}"
        simulator.store.add_mailbox(Mailbox(address, name.replace(".", " ").title(), "UTC"))
        addresses.append(address)
    return addresses


@contextmanager
def graph_world(request: pytest.FixtureRequest) -> Iterator[CalendarWorld]:
    simulator = shared_simulator(request)
    organizer, ava, bo, cy = add_mailboxes(
        simulator, "bank.example", "olivia.organizer", "ava.attendee", "bo.attendee", "cy.attendee"
    )
    gateway = GraphCalendarGateway(
        GraphCredentials(TENANT_ID, CLIENT_ID, CLIENT_SECRET), simulator_endpoints(simulator)
    )
    world = SimulatorCalendarWorld(
        simulator=simulator,
        gateway=gateway,
        organizer=organizer,
        attendees=(ava, bo, cy),
        missing_mailbox=f"nobody.{next(_worlds)}@bank.example",
        item_id_of=lambda item: event_id(item.id),
        store_id_of=internal_event_id,
    )
    try:
        yield world
    finally:
        world.run(gateway.aclose())
        world.runner.close()
