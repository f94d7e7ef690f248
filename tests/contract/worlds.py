"""Calendar worlds: an implementation of the port plus a way to read calendars as their owners do.

A world hands the contract suite (a) the ``CalendarGateway`` of the calbridge connection and
(b) owner-side views of every mailbox, which do not go through the gateway under test: for the
fake the ``FakeExchange`` itself; for EWS and Graph the simulator's store. Each world runs its
coroutines on one event loop (``run``) so adapters holding async HTTP clients keep a single loop.

To add an implementation, write a factory like ``fake_world`` (a context manager taking the pytest
request, so it can use other fixtures such as a running simulator) and register it with one line
in ``tests/contract/conftest.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Protocol, TypeVar

import pytest

from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import (
    AuthenticationFailed,
    CalendarError,
    CalendarGateway,
    ExchangeEvent,
    ExchangeUnavailable,
    RetryAfter,
)

T = TypeVar("T")

# How long a throttled call is told to wait, in every world.
THROTTLE_SECONDS: Final = 3


class ExchangeFault(StrEnum):
    """A failure of Exchange itself, injected into a world for one mailbox."""

    THROTTLED = "throttled"  # EWS ErrorServerBusy / Graph 429, asking for THROTTLE_SECONDS
    SERVER_ERROR = "server_error"  # HTTP 503
    RESET = "reset"  # the connection drops without an answer
    UNAUTHORIZED = "unauthorized"  # HTTP 401 on every request until cleared


class CalendarWorld(Protocol):
    """What the contract suite needs from an implementation under test."""

    gateway: CalendarGateway
    organizer: str  # mailbox addresses the gateway may open, fresh for each test
    attendees: tuple[str, str, str]
    missing_mailbox: str  # an address with no mailbox behind it
    # A create repeated with the same transaction id returns the first event (Graph's
    # transactionId, the fake); EWS has no such id, so a repeat is preceded by a marker lookup.
    transaction_ids: bool

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await the coroutine on the world's event loop."""
        ...

    def calendar(self, mailbox: str) -> list[ExchangeEvent]:
        """Every item on the mailbox's calendar as its owner sees it (cancelled copies too)."""
        ...

    def body_of(self, mailbox: str, item_id: str) -> str:
        """An item's body text, as its owner reads it."""
        ...

    def add_personal_event(
        self, mailbox: str, subject: str, start: datetime, end: datetime
    ) -> ExchangeEvent:
        """The owner adds an event of their own (not calbridge's) in Outlook."""
        ...

    def delete_as_owner(self, mailbox: str, item_id: str) -> None:
        """The owner deletes an item of their calendar in Outlook."""
        ...

    def move_as_owner(self, mailbox: str, item_id: str, start: datetime, end: datetime) -> None:
        """The owner moves an item of their calendar in Outlook (a meeting's copies follow)."""
        ...

    def inject(self, fault: ExchangeFault, mailbox: str) -> None:
        """Make Exchange fail the next request on ``mailbox`` that way (UNAUTHORIZED: every
        request until ``clear_faults``)."""
        ...

    def clear_faults(self) -> None: ...


WorldFactory = Callable[[pytest.FixtureRequest], AbstractContextManager[CalendarWorld]]


@dataclass
class FakeWorld:
    """The in-memory implementation: ``FakeCalendarGateway`` over a ``FakeExchange``."""

    exchange: FakeExchange
    gateway: CalendarGateway
    organizer: str = "olivia.organizer@bank.example"
    attendees: tuple[str, str, str] = (
        "ava.attendee@bank.example",
        "bo.attendee@bank.example",
        "cy.attendee@bank.example",
    )
    missing_mailbox: str = "nobody@bank.example"
    transaction_ids: bool = True
    runner: asyncio.Runner = field(default_factory=asyncio.Runner)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coroutine)

    def calendar(self, mailbox: str) -> list[ExchangeEvent]:
        return self.exchange.calendar(mailbox)

    def body_of(self, mailbox: str, item_id: str) -> str:
        return self.exchange.body_of(mailbox, item_id)

    def add_personal_event(
        self, mailbox: str, subject: str, start: datetime, end: datetime
    ) -> ExchangeEvent:
        return self.exchange.add_personal_event(mailbox, subject, start, end)

    def delete_as_owner(self, mailbox: str, item_id: str) -> None:
        self.exchange.delete_as_owner(mailbox, item_id)

    def move_as_owner(self, mailbox: str, item_id: str, start: datetime, end: datetime) -> None:
        self.exchange.move_as_organizer(mailbox, item_id, start, end)

    def inject(self, fault: ExchangeFault, mailbox: str) -> None:
        errors: dict[ExchangeFault, CalendarError] = {
            ExchangeFault.THROTTLED: RetryAfter(THROTTLE_SECONDS, mailbox=mailbox),
            ExchangeFault.SERVER_ERROR: ExchangeUnavailable("HTTP 503", mailbox=mailbox),
            ExchangeFault.RESET: ExchangeUnavailable("connection reset", mailbox=mailbox),
            ExchangeFault.UNAUTHORIZED: AuthenticationFailed("HTTP 401", mailbox=mailbox),
        }
        times = 1_000 if fault is ExchangeFault.UNAUTHORIZED else 1
        self.exchange.fail_next("*", errors[fault], mailbox=mailbox, times=times)

    def clear_faults(self) -> None:
        self.exchange.clear_faults()


@contextmanager
def fake_world(request: pytest.FixtureRequest) -> Iterator[CalendarWorld]:
    exchange = FakeExchange()
    world = FakeWorld(exchange=exchange, gateway=FakeCalendarGateway(exchange))
    for address in (world.organizer, *world.attendees):
        exchange.add_mailbox(address)
    try:
        yield world
    finally:
        world.runner.close()
