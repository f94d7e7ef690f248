"""Exchange, seen from calbridge: one port and the adapters behind it.

- ``port``: the ``CalendarGateway`` protocol every adapter implements, its SDK-free models
  (``EventDraft``, ``ExchangeEvent``, ``EventRef``) and its typed errors.
- ``marker``: the hidden extended property that tags calbridge-made events (same MAPI property
  through EWS and Graph).
- ``content``: what an appointment looks like as an Exchange event (snapshot → ``EventDraft``).
- ``fake``: an in-memory Exchange with meeting semantics and fault injection, for tests.
- ``ews`` / ``graph`` (later): the exchangelib and msgraph-sdk adapters. Their SDKs are imported
  only inside those packages, so importing this package stays cheap.
"""
