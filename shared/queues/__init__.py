"""Queues: their names, the messages they carry (ids, and read hints), and the senders that put
them there.

Shaped like ``shared.store``: the port and its in-memory implementation are importable from
here; the Azure implementation is in :mod:`azure` (the only module of this package that imports
the Azure SDK), loaded by ``shared.bootstrap`` when it builds real clients.

- :mod:`names` — queue names, the prefix convention, the trigger bindings' ``%SETTING%`` names;
- :mod:`messages` — the message models and their JSON bodies;
- :mod:`sender` — the ``QueueSender`` port and its errors;
- :mod:`azure` — ``AzureQueueSender`` (Azure Storage queues, Azurite locally);
- :mod:`memory` — ``MemoryQueueSender`` (tests).

Messages carry ids: workers decide from the latest stored state, so a duplicate or reordered
message is harmless. A message may add a read hint (the staff an appointment names; a mailbox's
row as the poll fan-out wrote it, with its ETag), which saves a worker a read and never a
decision: every write it leads to is conditional on the ETag, and a row changed since is read
again. Bodies are JSON (camelCase), sent base64-encoded because the
Functions host decodes base64 by default (host.json ``messageEncoding: base64``).
"""

from shared.queues.memory import MemoryQueueSender, SentMessage
from shared.queues.messages import (
    QUEUE_OF_MESSAGE,
    AppointmentChanged,
    InvalidQueueMessage,
    ListedMailbox,
    MailboxSyncRequested,
    MessageBody,
    QueueMessageModel,
    SubscriptionWork,
    WebhookDeliveryDue,
    message_body,
    parse_message,
    parse_queue_message,
    queue_of,
)
from shared.queues.names import (
    APPOINTMENT_CHANGES,
    MAILBOX_SUBSCRIPTIONS,
    MAILBOX_SYNC,
    MAX_VISIBILITY_DELAY,
    POISON_SUFFIX,
    QUEUE_PREFIX_SETTING,
    STORAGE_CONNECTION_SETTING,
    WEBHOOK_DELIVERIES,
    binding_queue_name,
    queue_name,
)
from shared.queues.poison import MemoryPoisonQueues, PoisonQueues
from shared.queues.sender import QueueSender, QueueUnavailable

__all__ = [
    "APPOINTMENT_CHANGES",
    "MAILBOX_SUBSCRIPTIONS",
    "MAILBOX_SYNC",
    "MAX_VISIBILITY_DELAY",
    "POISON_SUFFIX",
    "QUEUE_OF_MESSAGE",
    "QUEUE_PREFIX_SETTING",
    "STORAGE_CONNECTION_SETTING",
    "WEBHOOK_DELIVERIES",
    "AppointmentChanged",
    "InvalidQueueMessage",
    "ListedMailbox",
    "MailboxSyncRequested",
    "MemoryPoisonQueues",
    "MemoryQueueSender",
    "MessageBody",
    "PoisonQueues",
    "QueueMessageModel",
    "QueueSender",
    "QueueUnavailable",
    "SentMessage",
    "SubscriptionWork",
    "WebhookDeliveryDue",
    "binding_queue_name",
    "message_body",
    "parse_message",
    "parse_queue_message",
    "queue_name",
    "queue_of",
]
