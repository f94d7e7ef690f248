"""The EWS adapter (Exchange Server on premises): the calendar port over exchangelib 5.6.

- ``gateway``: ``EwsCalendarGateway`` — the port's operations and how many EWS requests each
  costs; ``EwsCalendarGateway.from_connection`` builds one from a stored connection;
- ``connection``: ``EwsEndpoint`` (URL, service account, auth, access mode, server version) and
  ``EwsConnection``, exchangelib's protocol, accounts and calendar folders, built once;
- ``items``: draft → CalendarItem fields, CalendarItem → ``ExchangeEvent``, the properties each
  request asks for (never the body);
- ``properties``: the marker and PidLidCleanGlobalObjectId as exchangelib extended properties,
  calbridge's deterministic UIDs;
- ``errors``: exchangelib exceptions → the port's typed errors.

Importing this package imports exchangelib (≈ 0.5 s): only the composition root
(``shared.bootstrap.calendar_gateway``) does, and only when an EWS connection is used, so
``import function_app`` stays cheap.
"""

from __future__ import annotations

from shared.exchange.ews.connection import EwsConnection, EwsEndpoint
from shared.exchange.ews.gateway import EwsCalendarGateway, EwsConnectionNotSupported

__all__ = [
    "EwsCalendarGateway",
    "EwsConnection",
    "EwsConnectionNotSupported",
    "EwsEndpoint",
]
