"""msgraph-sdk clients for the Graph simulator's contract tests, shared per test module.

msgraph-sdk's first request costs ~1.5 s (it loads its model modules) and httpx clients belong
to one event loop, so a module keeps one ``GraphSession``: one event loop, an app client
(azure-identity ``ClientSecretCredential`` against the simulator's token endpoint) and
user clients (password grant), reused by every test of the module.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sim.server import RunningSimulator, start_simulator
from tests.sim.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    LIMITED_CLIENT_ID,
    LIMITED_CLIENT_SECRET,
    TENANT_ID,
    graph_client,
    sample_config,
    user_credential,
)

T = TypeVar("T")
SET_BY_SESSION = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


class GraphSession:
    """An event loop and msgraph-sdk clients talking to one simulator."""

    def __init__(self, sim: RunningSimulator) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self._users: dict[str, Any] = {}
        self.app = self.client_for_app(CLIENT_ID, CLIENT_SECRET)
        self.limited_app = self.client_for_app(LIMITED_CLIENT_ID, LIMITED_CLIENT_SECRET)

    def client_for_app(self, client_id: str, secret: str) -> Any:
        from azure.identity import ClientSecretCredential

        authority = self.sim.urls["token"].removeprefix("https://")
        credential = ClientSecretCredential(
            TENANT_ID, client_id, secret, authority=authority, disable_instance_discovery=True
        )
        return graph_client(self.sim, credential)

    def user(self, address: str) -> Any:
        """A client signed in as a mailbox user (delegated token)."""
        if address not in self._users:
            self._users[address] = graph_client(self.sim, user_credential(self.sim, address))
        return self._users[address]

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.loop.close()


@contextmanager
def graph_simulator() -> Iterator[RunningSimulator]:
    """The sample organization without EWS schema validation (loading Microsoft's schema takes
    seconds and Graph tests send no EWS)."""
    with start_simulator(sample_config(), validate_ews=False) as running:
        yield running


@contextmanager
def graph_session(sim: RunningSimulator) -> Iterator[GraphSession]:
    """A session whose azure-identity trusts the simulator's token endpoint while it lasts."""
    saved = {name: os.environ.get(name) for name in SET_BY_SESSION}
    for name in SET_BY_SESSION:
        os.environ[name] = sim.ca_bundle
    session = GraphSession(sim)
    try:
        yield session
    finally:
        session.close()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
