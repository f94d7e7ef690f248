"""The outbox sweep (a timer, every five minutes): webhooks whose queue message was lost are
queued again.

Every event is written to the Outbox before its delivery is queued, and a delivery re-queues
itself after writing the row's next try. A worker that dies between the two (or a queue that
refuses the message) leaves a row nobody will deliver: the redelivered work that wrote it may
find nothing new to tell. Each undelivered row says when its next try is due
(``OutboxRecord.next_attempt_at``); a row overdue by ``OVERDUE_AFTER`` is moved on to now,
under its ETag, then queued. A row whose message merely waits behind others is queued twice at
worst: a delivery of a settled row sends nothing, and the booking platform sees each event's id
at least once, as ``booking-api.md`` promises.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.queues import QueueSender, WebhookDeliveryDue
from shared.store import ConcurrencyConflict, Repositories

log = logging.getLogger(__name__)

# Longer than a queued delivery takes to be picked up and tried on a healthy worker, so a
# row is queued again only when its message is gone (or stuck far behind).
OVERDUE_AFTER: Final = timedelta(minutes=10)


class WebhookSweep:
    """Queues the deliveries of overdue outbox rows again."""

    def __init__(
        self,
        repositories: Repositories,
        queue: QueueSender,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repos = repositories
        self._queue = queue
        self._now = now

    def run(self) -> int:
        """Queue each overdue row once; the number queued."""
        now = self._now()
        queued = 0
        for org, row in self._repos.outbox.overdue(now - OVERDUE_AFTER):
            due_now = row.value.model_copy(update={"next_attempt_at": now})
            try:
                # Moved on first, so the next sweep leaves it alone while this message is out.
                self._repos.outbox.put(org, row.value.event_id, due_now, row.etag)
            except ConcurrencyConflict:
                continue  # a delivery wrote it meanwhile: it is in hand
            self._queue.send(WebhookDeliveryDue(org=org, event_id=row.value.event_id))
            log.warning(
                "webhook queued again: its delivery was overdue",
                extra={"org": org, "event": row.value.event_id, "type": row.value.event_type},
            )
            queued += 1
        return queued
