"""Shared fixtures: a real Azurite per test session, fresh table/queue names per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from devhost.azurite import Azurite, start_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite process for the test session (per xdist worker), on free loopback ports."""
    with start_azurite() as running:
        yield running


@pytest.fixture
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string


@pytest.fixture
def name_prefix() -> str:
    """A unique table/queue name prefix so tests never see each other's data."""
    return "t" + uuid.uuid4().hex[:10]
