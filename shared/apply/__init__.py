"""Booking → Exchange: the ``appointment-changes`` worker's service.

- :mod:`service` — ``AppointmentApplier``: one message → read the latest snapshot and mapping,
  run one pass, store the outcome, decide what happens to the message;
- :mod:`executor` — one pass: observe, decide (``shared.engine``), carry out the actions through
  the calendar port, compute the mapping to store.

The Exchange → booking direction (mailbox sync, outbound webhooks) gets rooms of its own beside
this one.
"""
