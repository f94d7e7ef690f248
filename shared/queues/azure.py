"""``AzureQueueSender``: the sending port over Azure Storage queues (Azurite locally). The only
module of ``shared.queues`` that imports the Azure SDK."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy
from pydantic import BaseModel

from shared.queues.messages import message_body, queue_of
from shared.queues.names import queue_name
from shared.queues.sender import QueueUnavailable, delay_seconds


class AzureQueueSender:
    """Sends to Azure Storage queues, creating each queue on its first use by this sender."""

    def __init__(self, connection_string: str, prefix: str = "", **client_options: Any) -> None:
        self._service = QueueServiceClient.from_connection_string(
            connection_string, **client_options
        )
        # Per queue client: the service client does not pass its encode policy on to them.
        self._encode_policy = TextBase64EncodePolicy()
        self._prefix = prefix
        self._created: set[str] = set()
        self._lock = threading.Lock()

    def send(self, message: BaseModel, *, visibility_delay: timedelta | None = None) -> None:
        name = queue_name(self._prefix, queue_of(message))
        delay = delay_seconds(visibility_delay)
        client = self._service.get_queue_client(name, message_encode_policy=self._encode_policy)
        try:
            if name not in self._created:
                with self._lock:
                    with contextlib.suppress(ResourceExistsError):
                        client.create_queue()
                    self._created.add(name)
            client.send_message(message_body(message), visibility_timeout=delay)
        except AzureError as exc:
            raise QueueUnavailable(f"queue {name}: {type(exc).__name__}") from exc
