"""The workers' ``GatewayCache``: one gateway per connection, rebuilt when the connection or its
secret changes, and a connection's secret always looked up within its own organization."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import SecretNotFound, Settings
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.gateways import GatewayCache
from shared.exchange.port import CalendarError, CalendarGateway
from shared.models import ConnectionConfig
from shared.store.records import ConnectionRecord


class DictSecrets:
    def __init__(self, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.asked: list[str] = []

    def resolve(self, reference: str) -> str:
        self.asked.append(reference)
        if reference not in self.secrets:
            raise SecretNotFound(f"secret {reference!r} is not configured")
        return self.secrets[reference]


def connection(reference: str = "ews-password", **changes: Any) -> ConnectionRecord:
    config = ConnectionConfig(
        kind="ews",
        ews_url="https://mail.acme.test/EWS/Exchange.asmx",
        auth_type="ntlm",
        username="svc@acme.test",
        secret_reference=reference,
    )
    return ConnectionRecord(connection_id="onprem", **{**config.model_dump(), **changes})


class Builds:
    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.access: list[dict[str, Any]] = []

    def __call__(
        self,
        config: ConnectionConfig,
        secret: str,
        settings: Settings,
        connection_id: str,
        /,
        **access: Any,
    ) -> CalendarGateway:
        self.secrets.append(secret)
        self.access.append(access)
        return FakeCalendarGateway(FakeExchange(), connection_id=connection_id)


def test_a_connections_secret_is_named_within_its_organization() -> None:
    secrets = DictSecrets({"org-acme--ews-password": "acme's password"})
    builds = Builds()
    gateways = GatewayCache(Settings(), secrets, builds)
    gateways.for_connection("acme", connection())
    assert secrets.asked == ["org-acme--ews-password"]
    assert builds.secrets == ["acme's password"]


def test_an_organization_cannot_reach_another_organizations_secret() -> None:
    # globex names acme's secret by its plain name: it is looked up under globex only.
    secrets = DictSecrets({"org-acme--ews-password": "acme's password"})
    gateways = GatewayCache(Settings(), secrets, Builds())
    with pytest.raises(SecretNotFound):
        gateways.for_connection("globex", connection("ews-password"))
    with pytest.raises(SecretNotFound):
        gateways.for_connection("globex", connection("org-acme--ews-password"))
    assert secrets.asked == ["org-globex--ews-password", "org-globex--org-acme--ews-password"]


def test_a_gateway_is_reused_until_the_connection_or_its_secret_changes() -> None:
    secrets = DictSecrets({"org-acme--ews-password": "one"})
    builds = Builds()
    gateways = GatewayCache(Settings(), secrets, builds)
    first = gateways.for_connection("acme", connection())
    assert gateways.for_connection("acme", connection()) is first
    secrets.secrets["org-acme--ews-password"] = "two"  # rotated
    rotated = gateways.for_connection("acme", connection())
    assert rotated is not first
    moved = gateways.for_connection("acme", connection(access_mode="delegate"))
    assert moved is not rotated
    assert builds.secrets == ["one", "two", "two"]


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("https://169.254.169.254/EWS/Exchange.asmx", []),
        # A name that now resolves to the metadata address (saved when it resolved elsewhere).
        ("https://mail.acme.test/EWS/Exchange.asmx", ["169.254.169.254"]),
        ("https://mail.acme.test/EWS/Exchange.asmx", ["10.0.0.5"]),
    ],
)
def test_no_gateway_is_built_for_an_exchange_url_the_policy_refuses(
    url: str, resolved: list[str]
) -> None:
    secrets = DictSecrets({"org-acme--ews-password": "secret"})
    builds = Builds()
    gateways = GatewayCache(Settings(), secrets, builds, resolve=lambda host: resolved)
    with pytest.raises(CalendarError, match="ewsUrl must not point at"):
        gateways.for_connection("acme", connection(ews_url=url))
    assert builds.secrets == []  # the secret was never handed to an adapter


def test_a_host_that_resolves_to_a_public_address_gets_its_gateway() -> None:
    secrets = DictSecrets({"org-acme--ews-password": "secret"})
    builds = Builds()
    gateways = GatewayCache(
        Settings(), secrets, builds, resolve=lambda host: ["203.0.113.7", "20.50.1.2"]
    )
    with pytest.raises(CalendarError, match=r"203\.0\.113\.7"):  # documentation range: not public
        gateways.for_connection("acme", connection())
    gateways = GatewayCache(Settings(), secrets, builds, resolve=lambda host: ["20.50.1.2"])
    gateways.for_connection("acme", connection())
    assert builds.secrets == ["secret"]
