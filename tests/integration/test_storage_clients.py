"""The storage clients calbridge builds (``bootstrap.storage_client_options``) reach the account
directly: the ``requests`` library's environment settings (proxies, ``.netrc``, CA bundle) play
no part, so they are neither looked up on every call nor able to divert storage traffic."""

from __future__ import annotations

import pytest

from devhost.azurite import Azurite
from shared.bootstrap import storage_client_options
from shared.queues import MailboxSyncRequested
from shared.queues.azure import AzureQueueSender
from shared.store.azure_tables import AzureTableService

# Nothing listens here: a client that took the proxy from the environment could not connect.
DEAD_PROXY = "http://127.0.0.1:9"


@pytest.fixture
def proxied_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("proxied_environment")
def test_tables_and_queues_ignore_proxies_set_in_the_environment(
    azurite: Azurite, name_prefix: str
) -> None:
    tables = AzureTableService.from_connection_string(
        azurite.connection_string, name_prefix, **storage_client_options()
    )
    table = tables.table("Direct")
    etag = table.insert("p", "r", {"n": 1})
    stored = table.get("p", "r")
    assert stored is not None
    assert stored.etag == etag

    queues = AzureQueueSender.from_connection_string(
        azurite.connection_string, name_prefix + "-", **storage_client_options()
    )
    queues.send(MailboxSyncRequested(org="acme", staff_id="ann", reason="poll"))
