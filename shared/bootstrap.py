"""Composition root: the one place where real clients are built from settings.

``services()`` builds, once per process, the Azure table service (repositories), the queue
sender and the secret resolver from :func:`shared.config.get_settings`; triggers call it on each
invocation (cheap after the first). Storage is reached with the connection string when the
settings have one (Azurite locally) and otherwise with the identity-based settings and the app's
managed identity (Azure), one credential shared by tables, queues and Key Vault. Tests either
point it at Azurite through the environment (``AzureWebJobsStorage``,
``CALBRIDGE_TABLE_PREFIX``, ``CALBRIDGE_QUEUE_PREFIX``, ``CALBRIDGE_SECRET_...``) and call
:func:`reset`, or compose their own :class:`Services` with :func:`build_services` (in-memory
tables, a memory queue) and :func:`install` it.

Each service, the settings and the Azure SDK modules are imported here only when first built,
so importing the function app (what the host does to index the functions) loads none of them,
and an invocation loads only the services it uses.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

    from shared.admin import AdminApi
    from shared.admin.operations import ConnectionAdmin
    from shared.admin.status import StatusReader
    from shared.apply.service import AppointmentApplier
    from shared.booking.intake import BookingIntake
    from shared.config import SecretResolver, Settings
    from shared.exchange.budget import BudgetFor
    from shared.exchange.gateways import GatewayCache
    from shared.exchange.port import CalendarGateway
    from shared.mailbox_sync.fanout import GraphSweep, PollFanOut
    from shared.mailbox_sync.service import MailboxSyncer
    from shared.models import ConnectionConfig
    from shared.push.notifications import NotificationIntake
    from shared.push.subscriptions import SubscriptionManager
    from shared.queues import QueueSender
    from shared.store import Repositories
    from shared.store.tables import TableService
    from shared.webhooks.delivery import WebhookDelivery
    from shared.webhooks.sweep import WebhookSweep

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"


@dataclass(frozen=True)
class HostQueueSettings:
    """The queue semantics the Functions host applies (host.json ``extensions.queues``)."""

    max_dequeue_count: int = 5


@lru_cache(maxsize=1)
def host_queue_settings() -> HostQueueSettings:
    """Read once from host.json, the file the host itself reads, so the two never disagree."""
    try:
        queues = json.loads(HOST_JSON.read_text())["extensions"]["queues"]
    except (OSError, KeyError, ValueError):
        return HostQueueSettings()
    return HostQueueSettings(max_dequeue_count=int(queues.get("maxDequeueCount", 5)))


@dataclass(frozen=True)
class Services:
    """What the triggers need, built once."""

    settings: Settings
    secrets: SecretResolver
    repositories: Repositories
    queue: QueueSender
    clock: Callable[[], float] = time.time

    @cached_property
    def admin(self) -> AdminApi:
        from shared.admin import AdminApi
        from shared.exchange.endpoint_policy import ExchangeEndpointPolicy

        admin_key = self.settings.admin_key
        return AdminApi(
            self.repositories,
            self.queue,
            self.secrets,
            operator_key=admin_key.get_secret_value() if admin_key else None,
            max_request_bytes=self.settings.max_request_bytes,
            endpoints=ExchangeEndpointPolicy.from_settings(self.settings),
        )

    @cached_property
    def status(self) -> StatusReader:
        from shared.admin.status import StatusReader

        return StatusReader(self.repositories, self.admin.authenticate)

    @cached_property
    def connection_admin(self) -> ConnectionAdmin:
        from shared.admin.operations import ConnectionAdmin
        from shared.queues import MemoryPoisonQueues, PoisonQueues

        # The queue sender reads its poison queues back for a replay (Azure's and the
        # in-memory one of tests that give one); otherwise there are none to read.
        poison = self.queue if hasattr(self.queue, "drain") else MemoryPoisonQueues()
        return ConnectionAdmin(
            self.admin,
            self.repositories,
            self.queue,
            self.gateways,
            cast(PoisonQueues, poison),
        )

    @cached_property
    def gateways(self) -> GatewayCache:
        from shared.exchange.budget import CallBudgets
        from shared.exchange.gateways import GatewayCache
        from shared.store.threads import in_storage_thread

        return GatewayCache(
            self.settings,
            self.secrets,
            calendar_gateway,
            budgets=CallBudgets(self.repositories.call_slots, run=in_storage_thread),
        )

    @cached_property
    def appointment_applier(self) -> AppointmentApplier:
        from shared.apply.service import AppointmentApplier

        return AppointmentApplier(
            self.repositories,
            self.queue,
            self.gateways,
            max_dequeue_count=host_queue_settings().max_dequeue_count,
            secrets=self.secrets,
        )

    def now(self) -> datetime:
        """``clock`` as an aware UTC time: what the sync's fan-outs and worker go by."""
        return datetime.fromtimestamp(self.clock(), UTC)

    @cached_property
    def mailbox_syncer(self) -> MailboxSyncer:
        from shared.mailbox_sync.service import MailboxSyncer

        return MailboxSyncer(
            self.repositories, self.queue, self.gateways, self.secrets, now=self.now
        )

    @cached_property
    def poll_fanout(self) -> PollFanOut:
        from shared.mailbox_sync.fanout import PollFanOut

        return PollFanOut(self.repositories, self.queue, self.secrets, now=self.now)

    @cached_property
    def graph_sweep(self) -> GraphSweep:
        from shared.mailbox_sync.fanout import GraphSweep

        return GraphSweep(self.repositories, self.queue, self.secrets, now=self.now)

    @cached_property
    def notification_intake(self) -> NotificationIntake:
        from shared.push.notifications import NotificationIntake

        return NotificationIntake(self.repositories, self.queue)

    @cached_property
    def subscription_manager(self) -> SubscriptionManager:
        from shared.push.subscriptions import SubscriptionManager

        return SubscriptionManager(
            self.repositories,
            self.queue,
            self.gateways,
            functions_url=self.settings.functions_url,
        )

    @cached_property
    def webhook_delivery(self) -> WebhookDelivery:
        from shared.exchange.endpoint_policy import ExchangeEndpointPolicy
        from shared.webhooks.delivery import WebhookDelivery

        return WebhookDelivery(
            self.repositories,
            self.queue,
            self.secrets,
            endpoints=ExchangeEndpointPolicy.from_settings(self.settings),
        )

    @cached_property
    def webhook_sweep(self) -> WebhookSweep:
        from shared.webhooks.sweep import WebhookSweep

        return WebhookSweep(self.repositories, self.queue)

    @cached_property
    def intake(self) -> BookingIntake:
        from shared.booking.intake import BookingIntake

        return BookingIntake(
            appointments=self.repositories.appointments,
            busy_blocks=self.repositories.busy_blocks,
            queue=self.queue,
            secrets=self.secrets,
            max_request_bytes=self.settings.max_request_bytes,
            signature_tolerance_seconds=self.settings.signature_tolerance_seconds,
            clock=self.clock,
        )


def calendar_gateway(
    connection: ConnectionConfig,
    secret: str,
    settings: Settings,
    connection_id: str,
    /,
    *,
    account_secrets: Mapping[str, str] | None = None,
    budget_for: BudgetFor | None = None,
) -> CalendarGateway:
    """The one place that picks the adapter for a connection, by its kind.

    Each adapter package is imported here, and only for the kind asked for: exchangelib and
    msgraph-sdk cost hundreds of milliseconds to import, and ``import function_app`` must stay
    cheap (cold start). Graph's endpoints and the OAuth token authority (EWS and Graph) come
    from the settings (real Microsoft by default, the simulator locally); the secret is resolved
    by the caller and only passed through.
    """
    if connection.kind == "ews":
        from shared.exchange.ews import EwsCalendarGateway
        from shared.exchange.oauth import TokenAuthority

        return EwsCalendarGateway.from_connection(
            connection,
            secret,
            connection_id=connection_id,
            account_secrets=account_secrets,
            budget_for=budget_for,
            authority=TokenAuthority.from_settings(settings),
        )
    if connection.kind == "graph":
        from shared.exchange.graph import GraphCalendarGateway, GraphEndpoints

        return GraphCalendarGateway.from_connection(
            connection, secret, GraphEndpoints.from_settings(settings), connection_id=connection_id
        )
    raise ValueError(f"kind: no calendar adapter for {connection.kind!r} connections")


def storage_client_options() -> dict[str, Any]:
    """What calbridge's table and queue clients are built with: a transport whose connection
    pool holds a connection for every storage thread (requests' default of 10 would open and
    drop connections under a queue batch), and which ignores the ``requests`` library's
    environment settings (proxies, ``REQUESTS_CA_BUNDLE``, ``.netrc``), looked up again on every
    call otherwise and a third of a call's CPU: storage is reached directly, with the default
    trust store."""
    import requests
    from azure.core.pipeline.transport import RequestsTransport

    from shared.store.threads import STORAGE_THREADS

    session = requests.Session()
    # The transport applies use_env_settings only to sessions it makes itself: this one is ours.
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=STORAGE_THREADS + 8)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return {
        "transport": RequestsTransport(session=session, session_owner=True, use_env_settings=False)
    }


def azure_table_service(
    settings: Settings, credential: TokenCredential | None = None
) -> TableService:
    """The storage account's tables: through the connection string when the settings have one,
    otherwise through the table endpoint as the app's identity."""
    from shared.config import azure_credential
    from shared.store.azure_tables import AzureTableService

    if settings.storage_connection_string is not None:
        return AzureTableService.from_connection_string(
            settings.storage_connection_string, settings.table_prefix, **storage_client_options()
        )
    assert settings.storage_table_service_uri is not None  # Settings checks both endpoints
    return AzureTableService.from_service_uri(
        settings.storage_table_service_uri,
        credential or azure_credential(settings),
        settings.table_prefix,
        **storage_client_options(),
    )


def azure_queue_sender(
    settings: Settings, credential: TokenCredential | None = None
) -> QueueSender:
    """The storage account's queues: through the connection string when the settings have one,
    otherwise through the queue endpoint as the app's identity."""
    from shared.config import azure_credential
    from shared.queues.azure import AzureQueueSender

    if settings.storage_connection_string is not None:
        return AzureQueueSender.from_connection_string(
            settings.storage_connection_string, settings.queue_prefix, **storage_client_options()
        )
    assert settings.storage_queue_service_uri is not None  # Settings checks both endpoints
    return AzureQueueSender.from_service_uri(
        settings.storage_queue_service_uri,
        credential or azure_credential(settings),
        settings.queue_prefix,
        **storage_client_options(),
    )


def build_services(
    settings: Settings | None = None,
    *,
    tables: TableService | None = None,
    queue: QueueSender | None = None,
    secrets: SecretResolver | None = None,
    clock: Callable[[], float] = time.time,
) -> Services:
    """Services from settings; any part given replaces the real one."""
    from shared.config import azure_credential, get_settings, secret_resolver
    from shared.store import build_repositories

    settings = settings or get_settings()
    # One credential for everything reached as the app's identity, so its tokens are cached
    # once; not built at all when nothing needs it (local runs on Azurite and env secrets).
    needs_identity = (settings.storage_uses_identity and (tables is None or queue is None)) or (
        secrets is None and bool(settings.key_vault_url)
    )
    credential = azure_credential(settings) if needs_identity else None
    if tables is None:
        tables = azure_table_service(settings, credential)
    if queue is None:
        queue = azure_queue_sender(settings, credential)
    if secrets is None:
        secrets = secret_resolver(settings, credential)
    return Services(
        settings=settings,
        secrets=secrets,
        repositories=build_repositories(tables),
        queue=queue,
        clock=clock,
    )


_current: Services | None = None
_lock = threading.Lock()


def services() -> Services:
    """The process's services, built on first use."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = build_services()
    return _current


def install(replacement: Services) -> None:
    """Use ``replacement`` from now on (tests composing their own services)."""
    global _current
    with _lock:
        _current = replacement


def reset() -> None:
    """Forget the built services and the cached settings: the next call reads the environment
    again."""
    from shared.config import get_settings

    global _current
    with _lock:
        _current = None
        get_settings.cache_clear()
