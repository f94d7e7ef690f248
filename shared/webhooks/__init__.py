"""Exchange → booking: the events calbridge tells the booking platform, and their delivery.

- :mod:`events` — the event envelope (``{"id", "type", "occurredAt", "org", "data"}``) and the
  outbox row that holds it, with ids derived from what happened, so a change read twice is
  told once;
- :mod:`delivery` — the ``webhook-deliveries`` worker: signed POSTs, at least once, retried with
  exponential backoff by re-queueing (never sleeping), dead-lettered after the last try.
"""
