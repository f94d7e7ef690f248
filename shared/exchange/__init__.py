"""Exchange, seen from calbridge: one port and the adapters behind it.

- ``port``: the ``CalendarGateway`` protocol every adapter implements, its SDK-free models
  (``EventDraft``, ``ExchangeEvent``, ``EventRef``), its typed errors and ``live_first``.
- ``common``: what the EWS and Graph adapters share (protocol spellings, HTTP statuses as
  errors, ``Retry-After``, the deadline of every call).
- ``ews`` / ``graph``: the exchangelib and msgraph-sdk adapters. Their SDKs are imported only
  inside those packages, and those packages only by ``shared.bootstrap.calendar_gateway``, so
  importing this package stays cheap.
- ``fake``: an in-memory Exchange with meeting semantics and fault injection, for tests.
- ``gateways``: the gateway of a connection for the workers (``Gateways``, ``GatewayCache``).
- ``endpoint_policy``: which Exchange URLs an administrator may set.

What an appointment looks like as an event (``content``) and the marker that tags calbridge's
events (``marker``) are domain rules: they live with the engine, in ``shared.engine``.
"""
