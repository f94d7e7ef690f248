"""The sending port: what the services need to put a message on its queue."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Protocol

from pydantic import BaseModel

from shared.queues.names import MAX_VISIBILITY_DELAY


class QueueUnavailable(Exception):
    """A message could not be sent (the queue service failed or is unreachable)."""


class QueueSender(Protocol):
    """Sends queue messages, each to the queue of its kind."""

    def send(self, message: BaseModel, *, visibility_delay: timedelta | None = None) -> None:
        """Enqueue ``message``; with a delay it stays invisible that long (re-queue after
        throttling). Raises :class:`QueueUnavailable` when it cannot."""
        ...


def delay_seconds(visibility_delay: timedelta | None) -> int | None:
    """A visibility delay as the whole seconds a queue takes, checked against its limits."""
    if visibility_delay is None:
        return None
    if not timedelta(0) <= visibility_delay <= MAX_VISIBILITY_DELAY:
        raise ValueError(f"a visibility delay must be between 0 and {MAX_VISIBILITY_DELAY}")
    # Round up: a message must not come back before the delay a throttling answer asked for.
    return math.ceil(visibility_delay.total_seconds())
