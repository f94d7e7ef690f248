"""The poison-queue port: messages the host moved to ``<queue>-poison`` after their last try,
read back so that an administrator can replay them (``POST .../replay``).

``drain`` hands each poison message's body (the JSON text, base64 undone) to ``handle``; a
message whose handler answers True (it was sent again) is deleted from the poison queue, any
other is left there, visible again. The handler sends before the delete, so a crash in between
replays a message twice (harmless: messages carry ids only), never loses it.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from typing import Protocol

from shared.queues.names import POISON_SUFFIX, queue_name

# At most this many poison messages are looked at per queue and replay (a replay again goes on).
DRAIN_LIMIT = 1000


class PoisonQueues(Protocol):
    def drain(self, queue: str, handle: Callable[[str], bool], limit: int = DRAIN_LIMIT) -> int:
        """Offer the poison messages of ``queue`` (a base name) to ``handle``; delete those it
        took. Returns how many were taken."""
        ...


def message_text(raw: str) -> str:
    """A poison message's JSON text: the host keeps the body as it was sent (base64 here)."""
    stripped = raw.strip()
    if stripped.startswith("{"):
        return stripped
    try:
        return base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return stripped


class MemoryPoisonQueues:
    """Poison queues in memory, for tests: ``put`` a raw body on a base name's poison queue."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self.queues: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def put(self, queue: str, raw: str) -> None:
        name = queue_name(self._prefix, queue) + POISON_SUFFIX
        with self._lock:
            self.queues.setdefault(name, []).append(raw)

    def drain(self, queue: str, handle: Callable[[str], bool], limit: int = DRAIN_LIMIT) -> int:
        name = queue_name(self._prefix, queue) + POISON_SUFFIX
        with self._lock:
            waiting = list(self.queues.get(name, []))[:limit]
        taken = 0
        for raw in waiting:
            if handle(message_text(raw)):
                with self._lock:
                    self.queues[name].remove(raw)
                taken += 1
        return taken
