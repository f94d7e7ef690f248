"""Queues: their names, the messages they carry (ids only), and senders.

Messages carry ids, never state: workers read the latest stored state, so a duplicate or
reordered message is harmless. Bodies are JSON (camelCase), sent base64-encoded with
``TextBase64EncodePolicy`` because the Functions host decodes base64 by default (host.json
``messageEncoding: base64``).

Queue names and the prefix convention
-------------------------------------
A queue's name is ``CALBRIDGE_QUEUE_PREFIX + base name`` (``appointment-changes``, ...). Senders
read the prefix from settings; queue-trigger decorators cannot (the host indexes the bindings
before any code runs), so they use the app-setting expression :func:`binding_queue_name`,
``%CALBRIDGE_QUEUE_PREFIX%appointment-changes``, which azure-functions writes to the binding as
is and the host resolves from the app settings. The local runner resolves ``%NAME%`` from the
environment the same way. One setting thus names the queue for both sides, and tests isolate
themselves with a unique prefix per test, through the real triggers too.

The host refuses a ``%NAME%`` that resolves to an empty value ("does not resolve to a value",
Azure/Azure-Functions#1189), so every deployment sets a non-empty prefix (e.g. ``calbridge-``;
``local.settings.json`` and the Bicep templates set it). Keep base names short: prefix + name +
the host's ``-poison`` suffix must fit in 63 characters.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import BaseModel, Field, StringConstraints, ValidationError

from shared.models import CamelModel, Identifier, OrgId

APPOINTMENT_CHANGES = "appointment-changes"
MAILBOX_SYNC = "mailbox-sync"
WEBHOOK_DELIVERIES = "webhook-deliveries"

QUEUE_PREFIX_SETTING = "CALBRIDGE_QUEUE_PREFIX"
# The app setting holding the storage connection string, as queue-trigger bindings name it.
STORAGE_CONNECTION_SETTING = "AzureWebJobsStorage"
POISON_SUFFIX = "-poison"
MAX_VISIBILITY_DELAY = timedelta(days=7)

_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


def binding_queue_name(name: str) -> str:
    """The queue name for a queue-trigger decorator: resolved by the host from app settings."""
    return f"%{QUEUE_PREFIX_SETTING}%{name}"


def queue_name(prefix: str, name: str) -> str:
    """``prefix + name``, checked against Azure's rules (3-63 lower-case letters, digits and
    single hyphens, starting and ending with a letter or digit)."""
    full = prefix + name
    if not _QUEUE_NAME.match(full):
        raise ValueError(
            f"queue name {full!r} is invalid: 3-63 lower-case letters, digits and single "
            f"hyphens (check {QUEUE_PREFIX_SETTING})"
        )
    return full


class AppointmentChanged(CamelModel):
    """``appointment-changes``: an appointment's snapshot was stored; make Exchange match it."""

    org: OrgId
    appointment_id: Identifier
    version: Annotated[int, Field(ge=0)]


class MailboxSyncRequested(CamelModel):
    """``mailbox-sync``: read what changed in one staff member's mailbox."""

    org: OrgId
    staff_id: Identifier
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class WebhookDeliveryDue(CamelModel):
    """``webhook-deliveries``: deliver (or retry) one outbox row."""

    org: OrgId
    event_id: Identifier


QueueMessageModel = AppointmentChanged | MailboxSyncRequested | WebhookDeliveryDue
QUEUE_OF_MESSAGE: dict[type[BaseModel], str] = {
    AppointmentChanged: APPOINTMENT_CHANGES,
    MailboxSyncRequested: MAILBOX_SYNC,
    WebhookDeliveryDue: WEBHOOK_DELIVERIES,
}

M = TypeVar("M", bound=BaseModel)


class InvalidQueueMessage(ValueError):
    """A queue message that is not the expected model (bad JSON or failed validation).

    Retrying cannot fix it: workers log it and let it go (or poison it)."""


class QueueUnavailable(Exception):
    """A message could not be sent (the queue service failed or is unreachable)."""


class MessageBody(Protocol):
    """What a Functions queue message offers (``azure.functions.QueueMessage``)."""

    def get_body(self) -> bytes: ...


def parse_message(model: type[M], body: str | bytes) -> M:
    """A message body (JSON text, already base64-decoded) as ``model``."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise InvalidQueueMessage(f"not a valid {model.__name__}: {problems}") from exc


def parse_queue_message(model: type[M], message: MessageBody) -> M:
    """A Functions ``QueueMessage`` as ``model``."""
    return parse_message(model, message.get_body())


def message_body(message: BaseModel) -> str:
    """The JSON a message is sent as (camelCase)."""
    return message.model_dump_json(by_alias=True)


def queue_of(message: BaseModel) -> str:
    """The base name of the queue that carries this kind of message."""
    try:
        return QUEUE_OF_MESSAGE[type(message)]
    except KeyError as exc:
        raise TypeError(f"{type(message).__name__} is not a queue message") from exc


def _delay_seconds(visibility_delay: timedelta | None) -> int | None:
    if visibility_delay is None:
        return None
    if not timedelta(0) <= visibility_delay <= MAX_VISIBILITY_DELAY:
        raise ValueError(f"a visibility delay must be between 0 and {MAX_VISIBILITY_DELAY}")
    # Round up: a message must not come back before the delay a throttling answer asked for.
    return math.ceil(visibility_delay.total_seconds())


class QueueSender(Protocol):
    """Sends queue messages, each to the queue of its kind."""

    def send(self, message: BaseModel, *, visibility_delay: timedelta | None = None) -> None:
        """Enqueue ``message``; with a delay it stays invisible that long (re-queue after
        throttling). Raises :class:`QueueUnavailable` when it cannot."""
        ...


# Queues known to exist, per queue endpoint, for the life of the process.
_created_queues: set[tuple[str, str]] = set()
_created_lock = threading.Lock()


class AzureQueueSender:
    """Sends to Azure Storage queues (or Azurite), creating each queue on first use."""

    def __init__(self, connection_string: str, prefix: str = "", **client_options: Any) -> None:
        from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

        self._service = QueueServiceClient.from_connection_string(
            connection_string, **client_options
        )
        # Per queue client: the service client does not pass its encode policy on to them.
        self._encode_policy = TextBase64EncodePolicy()
        self._prefix = prefix

    def send(self, message: BaseModel, *, visibility_delay: timedelta | None = None) -> None:
        from azure.core.exceptions import AzureError, ResourceExistsError

        name = queue_name(self._prefix, queue_of(message))
        delay = _delay_seconds(visibility_delay)
        client = self._service.get_queue_client(name, message_encode_policy=self._encode_policy)
        marker = (self._service.url, name)
        try:
            if marker not in _created_queues:
                with _created_lock:
                    with contextlib.suppress(ResourceExistsError):
                        client.create_queue()
                    _created_queues.add(marker)
            client.send_message(message_body(message), visibility_timeout=delay)
        except AzureError as exc:
            raise QueueUnavailable(f"queue {name}: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class SentMessage:
    queue: str
    body: str
    visibility_delay: timedelta | None


class MemoryQueueSender:
    """Keeps sent messages in a list (unit tests). ``failure`` set to an exception makes every
    send raise it until reset to None."""

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self.sent: list[SentMessage] = []
        self.failure: Exception | None = None
        self._lock = threading.Lock()

    def send(self, message: BaseModel, *, visibility_delay: timedelta | None = None) -> None:
        name = queue_name(self._prefix, queue_of(message))
        _delay_seconds(visibility_delay)
        if self.failure is not None:
            raise self.failure
        with self._lock:
            self.sent.append(SentMessage(name, message_body(message), visibility_delay))

    def bodies(self, base_name: str) -> list[dict[str, Any]]:
        """The JSON bodies sent to one queue (by base name), oldest first."""
        name = queue_name(self._prefix, base_name)
        return [json.loads(sent.body) for sent in self.sent if sent.queue == name]
