"""Exchange → booking: reading staff mailboxes.

- :mod:`fanout` — the poll fan-out (a timer): one ``mailbox-sync`` message per due mailbox of
  every enabled EWS connection;
- :mod:`service` — the ``mailbox-sync`` worker: changes since the stored cursor → busy time,
  Outlook-side changes to calbridge's appointments, events for the booking platform.

The rules it applies are pure and live in ``shared.engine`` (``busy``, ``outlook``); the events
are delivered by ``shared.webhooks``.
"""
