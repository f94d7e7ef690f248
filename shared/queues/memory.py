"""``MemoryQueueSender``: the sending port in memory, for tests: it keeps what was sent."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel

from shared.queues.messages import message_body, queue_of
from shared.queues.names import queue_name
from shared.queues.sender import delay_seconds


@dataclass(frozen=True)
class SentMessage:
    queue: str
    body: str
    visibility_delay: timedelta | None


class MemoryQueueSender:
    """Keeps sent messages in a list. ``failure`` set to an exception makes every send raise it
    until reset to None."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self.sent: list[SentMessage] = []
        self.failure: Exception | None = None
        self._lock = threading.Lock()

    def send(self, message: BaseModel, *, visibility_delay: timedelta | None = None) -> None:
        name = queue_name(self._prefix, queue_of(message))
        delay_seconds(visibility_delay)
        if self.failure is not None:
            raise self.failure
        with self._lock:
            self.sent.append(SentMessage(name, message_body(message), visibility_delay))

    def bodies(self, base_name: str) -> list[dict[str, Any]]:
        """The JSON bodies sent to one queue (by base name), oldest first."""
        name = queue_name(self._prefix, base_name)
        return [json.loads(sent.body) for sent in self.sent if sent.queue == name]
