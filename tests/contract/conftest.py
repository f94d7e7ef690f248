"""The ``calendar_world`` fixture: the contract suite runs once per registered world.

The worlds are the in-memory fake, the EWS adapter and the Graph adapter (both through the
simulator). Register another implementation with one line in ``WORLDS`` (name → world factory,
see ``tests/contract/worlds.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.ews_world import ews_world
from tests.contract.graph_world import graph_world
from tests.contract.worlds import CalendarWorld, WorldFactory, fake_world

WORLDS: dict[str, WorldFactory] = {
    "ews": ews_world,
    "fake": fake_world,
    "graph": graph_world,
}


# The worlds whose gateway also reads changes (``CalendarReader``): all of them.
READER_WORLDS: tuple[str, ...] = ("ews", "fake", "graph")


@pytest.fixture(params=sorted(WORLDS))
def calendar_world(request: pytest.FixtureRequest) -> Iterator[CalendarWorld]:
    with WORLDS[request.param](request) as world:
        yield world


@pytest.fixture(params=READER_WORLDS)
def reader_world(request: pytest.FixtureRequest) -> Iterator[CalendarWorld]:
    with WORLDS[request.param](request) as world:
        yield world
