"""``AzureQueueSender``: the sending port over Azure Storage queues (Azurite locally). The only
module of ``shared.queues`` that imports the Azure SDK.

An account is reached through a connection string (Azurite, local runs) or through its queue
endpoint with a token credential (Azure: the app's managed identity, no shared keys)."""

from __future__ import annotations

import contextlib
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy
from pydantic import BaseModel

from shared.queues.messages import message_body, queue_of
from shared.queues.names import POISON_SUFFIX, queue_name
from shared.queues.poison import DRAIN_LIMIT, message_text
from shared.queues.sender import QueueUnavailable, delay_seconds

if TYPE_CHECKING:
    from collections.abc import Callable

    from azure.core.credentials import TokenCredential

# How long a poison message being looked at stays hidden from another replay.
_DRAIN_VISIBILITY_SECONDS = 60


class AzureQueueSender:
    """Sends to Azure Storage queues, creating each queue on its first use by this sender."""

    def __init__(self, service: QueueServiceClient, prefix: str = "") -> None:
        self._service = service
        # Per queue client: the service client does not pass its encode policy on to them.
        self._encode_policy = TextBase64EncodePolicy()
        self._prefix = prefix
        self._created: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, prefix: str = "", **client_options: Any
    ) -> AzureQueueSender:
        """Through a connection string: Azurite locally, or an account that allows keys."""
        return cls(
            QueueServiceClient.from_connection_string(connection_string, **client_options), prefix
        )

    @classmethod
    def from_service_uri(
        cls, endpoint: str, credential: TokenCredential, prefix: str = "", **client_options: Any
    ) -> AzureQueueSender:
        """Through the account's queue endpoint (``https://<account>.queue.core.windows.net``)
        as an identity: what Azure uses, where the account refuses shared keys."""
        return cls(
            QueueServiceClient(account_url=endpoint, credential=credential, **client_options),
            prefix,
        )

    @property
    def endpoint(self) -> str:
        """The queue endpoint this sender talks to."""
        return str(self._service.url)

    @property
    def credential(self) -> Any:
        """How it signs in: a token credential, or the account key of a connection string."""
        return self._service.credential

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

    def drain(self, queue: str, handle: Callable[[str], bool], limit: int = DRAIN_LIMIT) -> int:
        """``PoisonQueues.drain`` over ``<prefix><queue>-poison`` (missing: nothing to drain).
        Bodies are read raw (the host keeps them as sent) and handed over as JSON text."""
        name = queue_name(self._prefix, queue) + POISON_SUFFIX
        client = self._service.get_queue_client(name)
        taken = 0
        looked = 0
        left = []
        try:
            while looked < limit:
                page = list(
                    client.receive_messages(
                        messages_per_page=32,
                        max_messages=min(32, limit - looked),
                        visibility_timeout=_DRAIN_VISIBILITY_SECONDS,
                    )
                )
                if not page:
                    break
                for message in page:
                    looked += 1
                    if handle(message_text(str(message.content))):
                        client.delete_message(message)
                        taken += 1
                    else:
                        left.append(message)
            for message in left:
                # Another organization's, or one that cannot be replayed: visible again now.
                client.update_message(message, visibility_timeout=0)
        except ResourceNotFoundError:
            return taken
        except AzureError as exc:
            raise QueueUnavailable(f"queue {name}: {type(exc).__name__}") from exc
        return taken
