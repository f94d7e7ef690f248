"""Exchange → booking: reading staff mailboxes.

- :mod:`fanout` — the timers that queue syncs: the EWS poll (every minute, each mailbox at its
  organization's poll interval) and the Graph sweep (every 15 minutes, every Graph mailbox,
  whatever the notifications did);
- :mod:`pending` — the pending mark that keeps at most one sync of a mailbox waiting (the
  fan-outs, the notification endpoint and the subscription worker all claim it);
- :mod:`service` — the ``mailbox-sync`` worker: changes since the stored cursor (EWS
  SyncFolderItems or Graph calendarView delta, through one port) → busy time, Outlook-side
  changes to calbridge's appointments, events for the booking platform.

The rules it applies are pure and live in ``shared.engine`` (``busy``, ``outlook``); the events
are delivered by ``shared.webhooks``; Graph's notifications arrive through ``shared.push``.
"""
