"""Exchange Online push: Graph change notifications and the subscriptions that bring them.

- :mod:`notifications` — ``NotificationIntake``, behind the notification and lifecycle URLs:
  the validation handshake, the clientState check, one coalesced ``mailbox-sync`` per mailbox;
- :mod:`subscriptions` — ``SubscriptionManager``: one subscription per Graph mailbox, made when
  the mailbox is assigned, renewed long before it lapses, reauthorized and made anew when Graph
  asks, deleted when the mailbox leaves the connection.

What a notification leads to is the ordinary mailbox sync (``shared.mailbox_sync``), reading the
Graph adapter's calendarView delta; the Graph sweep there reads every Graph mailbox every 15
minutes whatever the notifications did.
"""
