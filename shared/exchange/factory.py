"""The calendar gateway of a connection: picks the adapter by ``ConnectionConfig.kind``.

Each adapter package is imported here, inside ``build_gateway``, and only for the kind asked
for: exchangelib (``shared.exchange.ews``) and msgraph-sdk (``shared.exchange.graph``) cost
hundreds of milliseconds to import, and ``import function_app`` must stay cheap (cold start).

Endpoints that are not part of a connection (Graph's base URL and token authority, real
Microsoft by default, the simulator locally) come from ``Settings``. The secret is resolved by
the caller (``SecretResolver``) and only passed through.
"""

from __future__ import annotations

from shared.config import Settings
from shared.exchange.port import CalendarGateway
from shared.models import ConnectionConfig


class UnknownConnectionKind(ValueError):
    """A connection kind no adapter serves."""


def build_gateway(
    connection: ConnectionConfig,
    secret: str,
    settings: Settings,
    *,
    connection_id: str,
) -> CalendarGateway:
    """A gateway for ``connection`` (not yet connected: the first port call opens it)."""
    if connection.kind == "ews":
        from shared.exchange.ews import build_gateway as build_ews_gateway

        return build_ews_gateway(connection, secret, connection_id=connection_id)
    if connection.kind == "graph":
        from shared.exchange.graph import GraphEndpoints
        from shared.exchange.graph import build_gateway as build_graph_gateway

        return build_graph_gateway(
            connection,
            secret,
            GraphEndpoints.from_settings(settings),
            connection_id=connection_id,
        )
    raise UnknownConnectionKind(f"kind: no calendar adapter for {connection.kind!r} connections")
