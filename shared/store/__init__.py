"""Table Storage repositories: calbridge's state, with optimistic concurrency on ETags.

- :mod:`keys` — reversible key escaping (EWS ItemIds contain ``/`` and ``+``).
- :mod:`entities` — pydantic models ↔ table properties, refusing what would be truncated.
- :mod:`tables` — the table port; :mod:`azure_tables` (Azure/Azurite) and :mod:`memory`
  implement it.
- :mod:`entity_repository` — the generic ETag repository; :mod:`repositories` the state tables.
- :mod:`records` — row models that are not part of the booking contract.
- :mod:`errors` — ``ConcurrencyConflict`` and friends, ``decided_afresh`` to retry a write
  that lost a race.
- :mod:`threads` — the thread pool async services run storage calls on.

The Azure Storage SDKs are imported in two modules only: :mod:`azure_tables` here and
``shared.queues.azure``, both loaded by ``shared.bootstrap`` when it builds real clients
(``shared.config`` imports Key Vault's for secrets).
"""

from shared.store.entity_repository import EntityKey, Versioned
from shared.store.errors import (
    ConcurrencyConflict,
    StoreError,
    StoreUnavailable,
    UnstorableEntity,
    decided_afresh,
)
from shared.store.repositories import (
    AppointmentRepository,
    BusyBlockRepository,
    ConnectionRepository,
    EventMapRepository,
    MailboxRepository,
    OutboxRepository,
    Repositories,
    SaveOutcome,
    SaveResult,
    SubscriptionRepository,
    build_repositories,
)

__all__ = [
    "AppointmentRepository",
    "BusyBlockRepository",
    "ConcurrencyConflict",
    "ConnectionRepository",
    "EntityKey",
    "EventMapRepository",
    "MailboxRepository",
    "OutboxRepository",
    "Repositories",
    "SaveOutcome",
    "SaveResult",
    "StoreError",
    "StoreUnavailable",
    "SubscriptionRepository",
    "UnstorableEntity",
    "Versioned",
    "build_repositories",
    "decided_afresh",
]
