"""The parts of ``host.json`` the local runner honours, as a typed object.

Read from the repository's ``host.json`` for ``make run``; tests build a :class:`HostConfig`
directly with small intervals so retries and back-off take milliseconds instead of seconds.
Defaults are the Azure Functions host's defaults for the keys host.json leaves out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"

# [d.]hh:mm:ss[.fffffff], the .NET TimeSpan format host.json uses.
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> float:
    """``"00:00:02"`` → 2.0 seconds; ``"1.00:00:00"`` → 86400.0; ``"00:00:00.5"`` → 0.5."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a TimeSpan ([d.]hh:mm:ss[.fffffff])")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    return total + (float("0." + fraction) if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """``extensions.queues``: how queue triggers poll, retry and give up."""

    batch_size: int = 16
    new_batch_threshold: int | None = None  # host default: batch_size // 2
    max_polling_interval: float = 60.0  # seconds; idle back-off grows up to this
    visibility_timeout: float = 0.0  # seconds a failed message stays invisible before a retry
    max_dequeue_count: int = 5
    message_encoding: str = "base64"  # or "none"

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 32:
            raise ValueError(f"queues.batchSize must be 1-32, got {self.batch_size}")
        if self.max_dequeue_count < 1:
            raise ValueError(f"queues.maxDequeueCount must be >= 1, got {self.max_dequeue_count}")
        if self.message_encoding not in ("base64", "none"):
            raise ValueError(
                f"queues.messageEncoding must be 'base64' or 'none', got {self.message_encoding!r}"
            )

    @property
    def effective_new_batch_threshold(self) -> int:
        if self.new_batch_threshold is not None:
            return self.new_batch_threshold
        return self.batch_size // 2


@dataclass(frozen=True)
class HostConfig:
    """What the runner reads from host.json."""

    route_prefix: str = "api"
    function_timeout: float = 300.0
    queues: QueueOptions = field(default_factory=QueueOptions)

    @classmethod
    def from_mapping(cls, document: Mapping[str, Any]) -> HostConfig:
        extensions = document.get("extensions", {})
        queues = extensions.get("queues", {})
        http = extensions.get("http", {})
        options = QueueOptions(
            batch_size=int(queues.get("batchSize", 16)),
            new_batch_threshold=(
                int(queues["newBatchThreshold"]) if "newBatchThreshold" in queues else None
            ),
            max_polling_interval=parse_timespan(queues.get("maxPollingInterval", "00:01:00")),
            visibility_timeout=parse_timespan(queues.get("visibilityTimeout", "00:00:00")),
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            message_encoding=str(queues.get("messageEncoding", "base64")).lower(),
        )
        return cls(
            route_prefix=str(http.get("routePrefix", "api")).strip("/"),
            function_timeout=parse_timespan(document.get("functionTimeout", "00:05:00")),
            queues=options,
        )

    @classmethod
    def load(cls, path: Path = REPO_HOST_JSON) -> HostConfig:
        return cls.from_mapping(json.loads(path.read_text(encoding="utf-8")))
