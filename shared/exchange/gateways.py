"""The calendar gateway of a connection: ``Gateways`` (what the workers ask for) and
``GatewayCache`` (its implementation: one gateway per connection, built once per process by the
composition root's builder, ``shared.bootstrap.calendar_gateway``).

A gateway holds what is costly to make again (exchangelib protocol and accounts, msgraph-sdk
clients and tokens), so workers share one per connection. The cache key includes the
connection's configuration and its secret's fingerprint: editing a connection, or rotating its
secret, builds a fresh gateway on the next call instead of reusing stale credentials. A gateway
is only built for an EWS URL the operator's endpoint policy allows
(``shared.exchange.endpoint_policy``).

A connection with several service accounts has each account's secret resolved and handed to the
builder (``account_secrets``); an EWS connection with delegate access also gets its accounts'
shared call budgets (``budget_for``, ``shared.exchange.budget``), kept here across rebuilds so
the slots they hold are not forgotten.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from shared.config import SecretResolver, Settings, connection_secret_name
from shared.exchange.budget import BudgetFor, CallBudget, CallBudgets
from shared.exchange.endpoint_policy import (
    EndpointRefused,
    ExchangeEndpointPolicy,
    Resolver,
    resolve_host,
)
from shared.exchange.port import CalendarError, CalendarGateway
from shared.models import ConnectionConfig
from shared.store.records import ConnectionRecord


class GatewayBuilder(Protocol):
    """Builds the gateway of a connection from its configuration, resolved secret, the settings
    and its id (the composition root picks the adapter by the connection's kind). Given only
    when needed: ``account_secrets`` (secret reference → secret, several service accounts) and
    ``budget_for`` (EWS delegate access)."""

    def __call__(
        self,
        connection: ConnectionConfig,
        secret: str,
        settings: Settings,
        connection_id: str,
        /,
        *,
        account_secrets: Mapping[str, str] | None = None,
        budget_for: BudgetFor | None = None,
    ) -> CalendarGateway: ...


class Gateways(Protocol):
    """The calendar gateway of one organization's connection."""

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway: ...


class MissingSecret(Exception):
    """A connection's secret reference names no secret (the message names the reference)."""


class GatewayCache:
    """``Gateways`` for the workers: builds each connection's gateway once and keeps it."""

    def __init__(
        self,
        settings: Settings,
        secrets: SecretResolver,
        builder: GatewayBuilder,
        resolve: Resolver = resolve_host,
        budgets: CallBudgets | None = None,
    ) -> None:
        self._settings = settings
        self._endpoints = ExchangeEndpointPolicy.from_settings(settings)
        self._resolve = resolve
        self._secrets = secrets
        self._builder = builder
        self._budgets = budgets
        self._gateways: dict[tuple[str, str], tuple[str, CalendarGateway]] = {}
        self._lock = threading.Lock()

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        references = connection.secret_references()
        if not references:
            raise MissingSecret(f"connection {connection.connection_id!r} has no secret reference")
        secrets = {
            reference: self._secrets.resolve(connection_secret_name(org, reference))
            for reference in references
        }
        secret = secrets[references[0]]
        config = ConnectionConfig.model_validate(
            connection.model_dump(include=set(ConnectionConfig.model_fields))
        )
        fingerprint = hashlib.sha256(
            "\0".join([config.model_dump_json(), *secrets.values()]).encode()
        ).hexdigest()
        key = (org, connection.connection_id)
        with self._lock:
            cached = self._gateways.get(key)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            if config.ews_url is not None:
                # Checked again here, not only when saved: a row written before the policy, or a
                # host name that resolves elsewhere now, is refused before the secret is sent.
                try:
                    self._endpoints.check(config.ews_url, resolve=self._resolve)
                except EndpointRefused as refused:
                    raise CalendarError(
                        f"connection {connection.connection_id!r}: ewsUrl {refused}"
                    ) from None
            gateway = self._builder(
                config,
                secret,
                self._settings,
                connection.connection_id,
                **self._access(org, connection.connection_id, config, secrets),
            )
            self._gateways[key] = (fingerprint, gateway)
            return gateway

    def _access(
        self, org: str, connection_id: str, config: ConnectionConfig, secrets: dict[str, str]
    ) -> dict[str, Any]:
        access: dict[str, Any] = {}
        if len(secrets) > 1:
            access["account_secrets"] = secrets
        budgets = self._budgets
        if config.kind == "ews" and config.access_mode == "delegate" and budgets is not None:
            slots = config.max_concurrent_calls

            def budget_for(username: str, local_limit: int) -> CallBudget:
                return budgets.budget(org, connection_id, username, slots, local_limit)

            access["budget_for"] = budget_for
        return access
