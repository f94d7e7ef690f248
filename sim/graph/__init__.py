"""The simulator's Microsoft Graph service (``/v1.0``): events, calendarView and its delta,
extended properties, ``$batch``, subscriptions with change and lifecycle notifications, and
Graph's throttling — all over the shared ``ExchangeStore``.

Modules: ``service`` (routing, access, throttling, the routes), ``events`` (event JSON out and
in), ``delta`` (change-tracking rounds), ``subscriptions`` (subscriptions and notification
delivery), ``batch`` ($batch), ``odata`` ($filter/$expand/$select/Prefer), ``timezones``,
``ids``, ``errors``.
"""

from sim.graph.service import GraphService
from sim.graph.subscriptions import DeliveryPolicy

__all__ = ["DeliveryPolicy", "GraphService"]
