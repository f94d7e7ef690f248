"""The EWS calendar world: ``EwsCalendarGateway`` (exchangelib) against the Exchange simulator.

Each test gets a simulator of its own (in-process, free ports, ≈ 0.3 s) holding the world's
mailboxes, so calendars start empty. The gateway signs in as a service account — with
impersonation rights on every mailbox (``ews_world``), or as their delegate
(``ews_delegate_world``) — exactly as calbridge would in production. Owner-side reads go to the
simulator's store, not through the gateway under test: ``SimulatorWorld`` turns store items into
``ExchangeEvent`` with the protocol's own item ids (given as ``ids``, so a Graph world can reuse
it with Graph's ids).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import pytest

from shared.exchange.common import (
    attendee_response,
    event_item_type,
    event_sensitivity,
    event_show_as,
)
from shared.exchange.ews import EwsCalendarGateway, EwsEndpoint
from shared.exchange.marker_property import (
    MARKER_PROPERTY_NAME,
    MARKER_PROPERTY_SET_ID,
    WRITTEN_PROPERTY_NAME,
)
from shared.exchange.oauth import ClientCredentials, TokenAuthority
from shared.exchange.port import Attendee, CalendarGateway, ExchangeEvent
from sim.ews.calendar_items import ews_item_id
from sim.ews.ids import decode_item_id, encode_change_key
from sim.people import Outlook
from sim.server import RunningSimulator, start_simulator
from sim.store import CalendarItem, ExtendedPropertyKey, Fault, iter_attendees
from tests.certificates import self_signed
from tests.contract.worlds import THROTTLE_SECONDS, ExchangeFault

T = TypeVar("T")

SERVICE_ACCOUNT = "svc-calbridge@bank.example"
SERVICE_PASSWORD = "Svc:calbridge#1"
ORGANIZER = "olivia.organizer@bank.example"
ATTENDEES = ("ava.attendee@bank.example", "bo.attendee@bank.example", "cy.attendee@bank.example")
MISSING_MAILBOX = "nobody@bank.example"
MARKER_KEY = ExtendedPropertyKey(MARKER_PROPERTY_SET_ID.lower(), MARKER_PROPERTY_NAME, "String")
WRITTEN_KEY = ExtendedPropertyKey(MARKER_PROPERTY_SET_ID.lower(), WRITTEN_PROPERTY_NAME, "String")

AccessMode = Literal["impersonation", "delegate"]
OAUTH_TENANT = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
OAUTH_CLIENT = "4c5d6e7f-8091-4a2b-8c3d-4e5f60718293"
OAUTH_CERTIFICATE = self_signed("contract-ews-app")


def world_config(access: AccessMode) -> dict[str, Any]:
    """A simulator organization with the world's mailboxes, calbridge's service account and an
    application (``OAUTH_CLIENT``) registered with ``OAUTH_CERTIFICATE``."""
    mailboxes = (ORGANIZER, *ATTENDEES)
    return {
        "oauthClients": [
            {
                "tenantId": OAUTH_TENANT,
                "clientId": OAUTH_CLIENT,
                "certificates": [OAUTH_CERTIFICATE.certificate_pem],
                "mailboxes": ["*"],
            }
        ],
        "mailboxes": [
            {"address": address, "timeZone": "Europe/Berlin", "password": f"Pw!{index}"}
            for index, address in enumerate(mailboxes)
        ],
        "serviceAccounts": [
            {
                "username": SERVICE_ACCOUNT,
                "password": SERVICE_PASSWORD,
                "impersonate": ["*"] if access == "impersonation" else [],
                "delegateFor": list(mailboxes) if access == "delegate" else [],
            }
        ],
    }


def event_from_store(
    item: CalendarItem,
    ids: Callable[[CalendarItem], str],
    change_keys: Callable[[str], str] = encode_change_key,
) -> ExchangeEvent:
    """A store item as its owner sees it, in the port's terms (ids and change keys as the
    protocol spells them: EWS's by default; Graph passes its own)."""
    assert item.start is not None
    assert item.end is not None
    return ExchangeEvent(
        item_id=ids(item),
        change_key=change_keys(item.change_key),
        uid=item.uid or None,
        subject=item.subject,
        start=item.start.astimezone(UTC),
        end=item.end.astimezone(UTC),
        is_all_day=item.is_all_day,
        location=item.location or None,
        organizer=item.organizer.address if item.organizer else None,
        attendees=tuple(
            Attendee(address=a.address, response=attendee_response(a.response.value))
            for a in iter_attendees(item)
        ),
        is_cancelled=item.is_cancelled,
        marker=item.extended_properties.get(MARKER_KEY),
        written=item.extended_properties.get(WRITTEN_KEY),
        show_as=event_show_as(item.free_busy.value),
        sensitivity=event_sensitivity(item.sensitivity.value),
        item_type=event_item_type(item.item_type.value),
        last_modified=item.last_modified,
    )


@dataclass
class SimulatorWorld:
    """A gateway under test plus owner-side views of the simulator's mailboxes."""

    sim: RunningSimulator
    gateway: CalendarGateway
    ids: Callable[[CalendarItem], str]
    internal_id: Callable[[str], str]
    organizer: str = ORGANIZER
    attendees: tuple[str, str, str] = ATTENDEES
    missing_mailbox: str = MISSING_MAILBOX
    transaction_ids: bool = False  # EWS has none; graph_world sets it
    change_keys: Callable[[str], str] = encode_change_key
    # How this protocol throttles: EWS ErrorServerBusy, or Graph's 429 (``graph_world``).
    throttle: Fault = field(
        default_factory=lambda: Fault(kind="server_busy", back_off_ms=THROTTLE_SECONDS * 1000)
    )
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)
    _faulted: set[str] = field(default_factory=set)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def calendar(self, mailbox: str) -> list[ExchangeEvent]:
        items = sorted(
            self.sim.store.calendar_items(mailbox),
            key=lambda item: (item.start or datetime.min.replace(tzinfo=UTC), item.created),
        )
        return [event_from_store(item, self.ids, self.change_keys) for item in items]

    def body_of(self, mailbox: str, item_id: str) -> str:
        item = self.sim.store.get_item(self.internal_id(item_id))
        assert item.mailbox == mailbox.lower()
        return item.body

    def add_personal_event(
        self, mailbox: str, subject: str, start: datetime, end: datetime
    ) -> ExchangeEvent:
        item = Outlook(self.sim.store, mailbox).create_event(subject, start, end)
        return event_from_store(item, self.ids, self.change_keys)

    def delete_as_owner(self, mailbox: str, item_id: str) -> None:
        Outlook(self.sim.store, mailbox).delete(self.internal_id(item_id))

    def move_as_owner(self, mailbox: str, item_id: str, start: datetime, end: datetime) -> None:
        Outlook(self.sim.store, mailbox).move(self.internal_id(item_id), start, end)

    def inject(self, fault: ExchangeFault, mailbox: str) -> None:
        injected = {
            ExchangeFault.THROTTLED: self.throttle,
            ExchangeFault.SERVER_ERROR: Fault(kind="http_503"),
            ExchangeFault.RESET: Fault(kind="reset"),
            # Every request, the sign-in's retries included, until cleared.
            ExchangeFault.UNAUTHORIZED: Fault(kind="unauthorized", remaining=None),
        }[fault]
        self.sim.store.add_fault(replace(injected, mailbox=mailbox))
        self._faulted.add(mailbox)

    def clear_faults(self) -> None:
        for mailbox in self._faulted:
            self.sim.store.clear_faults(mailbox)
        self._faulted.clear()


def ews_gateway(
    sim: RunningSimulator, access: AccessMode, *, oauth: bool = False
) -> EwsCalendarGateway:
    """calbridge's gateway for the simulator's EWS endpoint, signed in as the service account
    (NTLM), or with ``oauth`` as the application with its certificate."""
    if oauth:
        endpoint = EwsEndpoint(
            url=sim.urls["ews"],
            username="",
            password="",
            auth="oauth",
            access=access,
            oauth=ClientCredentials(
                OAUTH_TENANT, OAUTH_CLIENT, OAUTH_CERTIFICATE.secret, kind="certificate"
            ),
            authority=TokenAuthority(sim.urls["token"], sim.ca_bundle),
        )
    else:
        endpoint = EwsEndpoint(
            url=sim.urls["ews"],
            username=SERVICE_ACCOUNT,
            password=SERVICE_PASSWORD,
            auth="ntlm",
            access=access,
        )
    return EwsCalendarGateway.for_endpoint(endpoint, connection_id=f"ews-{access}")


@contextmanager
def simulated_ews_world(access: AccessMode, *, oauth: bool = False) -> Iterator[SimulatorWorld]:
    with start_simulator(world_config(access), validate_ews=False) as sim:
        gateway = ews_gateway(sim, access, oauth=oauth)
        world = SimulatorWorld(
            sim=sim, gateway=gateway, ids=ews_item_id, internal_id=decode_item_id
        )
        try:
            yield world
        finally:
            world.runner.close()
            gateway.close()


@contextmanager
def ews_world(request: pytest.FixtureRequest) -> Iterator[SimulatorWorld]:
    """The contract world: a service account with impersonation rights."""
    with simulated_ews_world("impersonation") as world:
        yield world


@contextmanager
def ews_delegate_world(request: pytest.FixtureRequest) -> Iterator[SimulatorWorld]:
    """The same with a service account that has delegate access to every mailbox."""
    with simulated_ews_world("delegate") as world:
        yield world


@contextmanager
def ews_oauth_world(request: pytest.FixtureRequest) -> Iterator[SimulatorWorld]:
    """The contract world reached as an application with a certificate (OAuth, impersonation)."""
    with simulated_ews_world("impersonation", oauth=True) as world:
        yield world
