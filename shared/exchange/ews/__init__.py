"""The EWS adapter (Exchange Server on premises): the calendar port over exchangelib 5.6.

- ``gateway``: ``EwsCalendarGateway`` — the port's operations and how many EWS requests each
  costs;
- ``connection``: ``EwsEndpoint`` (URL, service account, auth, access mode, server version) and
  ``EwsConnection``, exchangelib's protocol, accounts and calendar folders, built once;
- ``items``: draft → CalendarItem fields, CalendarItem → ``ExchangeEvent``, the properties each
  request asks for (never the body);
- ``properties``: the marker and PidLidCleanGlobalObjectId as exchangelib extended properties,
  calbridge's deterministic UIDs;
- ``errors``: exchangelib exceptions → the port's typed errors.

Importing this package imports exchangelib (≈ 0.5 s): only ``shared.exchange.factory`` does, and
only when an EWS connection is used, so ``import function_app`` stays cheap.
"""

from __future__ import annotations

from shared.exchange.ews.connection import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SERVER_BUILD,
    EwsConnection,
    EwsEndpoint,
)
from shared.exchange.ews.gateway import EwsCalendarGateway
from shared.models import ConnectionConfig


class EwsConnectionNotSupported(ValueError):
    """The connection asks for something this adapter cannot do (yet); names the setting."""


def build_gateway(
    connection: ConnectionConfig,
    secret: str,
    *,
    connection_id: str = "ews",
    server_build: tuple[int, ...] = DEFAULT_SERVER_BUILD,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> EwsCalendarGateway:
    """The gateway of an EWS connection; ``secret`` is the resolved password of its service
    account. Builds objects only: nothing is sent until the first port call."""
    if connection.kind != "ews":
        raise EwsConnectionNotSupported(f"kind: not an EWS connection ({connection.kind!r})")
    if connection.ews_url is None:
        raise EwsConnectionNotSupported("ewsUrl: an EWS connection needs the service URL")
    if connection.auth_type not in ("basic", "ntlm"):
        raise EwsConnectionNotSupported(
            f"authType: {connection.auth_type} is not supported for EWS yet (use basic or ntlm)"
        )
    if not connection.username:
        raise EwsConnectionNotSupported("username: basic and ntlm need the service account")
    endpoint = EwsEndpoint(
        url=connection.ews_url,
        username=connection.username,
        password=secret,
        auth=connection.auth_type,
        access=connection.access_mode,
        server_build=server_build,
        max_connections=max_connections,
    )
    return EwsCalendarGateway(EwsConnection(endpoint), connection_id=connection_id)


__all__ = [
    "EwsCalendarGateway",
    "EwsConnection",
    "EwsConnectionNotSupported",
    "EwsEndpoint",
    "build_gateway",
]
