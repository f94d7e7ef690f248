"""The Microsoft Graph adapter (Exchange Online): the calendar port over msgraph-sdk.

- ``gateway``: ``GraphCalendarGateway`` (the port's operations; ``from_connection``);
- ``session``: credential (azure-identity), httpx client and msgraph-sdk request adapter of one
  connection, per event loop; ``GraphEndpoints`` (from settings) and ``GraphCredentials``;
- ``events``: Graph event JSON to and from the port's models, parsed by hand;
- ``errors``: Graph answers and transport exceptions as the port's typed errors.

msgraph-sdk, kiota, httpx and azure-identity are imported inside functions only, so importing this
package (and ``function_app``) costs nothing until a Graph connection is actually used; and the
SDK's typed models are never loaded (their first use costs ≈ 1.5 s, see ``bench/graph_cold_start``).
"""

from shared.exchange.graph.gateway import GraphCalendarGateway
from shared.exchange.graph.session import GraphCredentials, GraphEndpoints

__all__ = ["GraphCalendarGateway", "GraphCredentials", "GraphEndpoints"]
