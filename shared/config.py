"""Settings and secret resolution.

Settings come from app settings / environment variables (``local.settings.json`` in local
development) and are read once per process (:func:`get_settings`). Secrets are never stored in
tables: a table holds a *secret reference*, resolved here against Azure Key Vault when
``CALBRIDGE_KEY_VAULT_URL`` is set, otherwise against environment variables (local development).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Protocol

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

AZURITE_DEVELOPMENT_CONNECTION_STRING = "UseDevelopmentStorage=true"


class Settings(BaseSettings):
    """Process-wide settings, read from the environment once."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    storage_connection_string: str = Field(
        default=AZURITE_DEVELOPMENT_CONNECTION_STRING,
        validation_alias=AliasChoices("AzureWebJobsStorage", "CALBRIDGE_STORAGE"),
    )
    key_vault_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CALBRIDGE_KEY_VAULT_URL")
    )
    admin_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CALBRIDGE_ADMIN_KEY")
    )
    table_prefix: str = Field(default="", validation_alias=AliasChoices("CALBRIDGE_TABLE_PREFIX"))
    queue_prefix: str = Field(default="", validation_alias=AliasChoices("CALBRIDGE_QUEUE_PREFIX"))
    max_request_bytes: int = Field(
        default=64 * 1024, validation_alias=AliasChoices("CALBRIDGE_MAX_REQUEST_BYTES")
    )
    signature_tolerance_seconds: int = Field(
        default=300, validation_alias=AliasChoices("CALBRIDGE_SIGNATURE_TOLERANCE_SECONDS")
    )
    # Which Exchange URLs administrators may set (``shared.exchange.endpoint_policy``): loopback
    # only for local runs against the simulator; private networks for an on-premises Exchange
    # reached through a virtual network. Both off unless the operator turns them on.
    allow_loopback_exchange: bool = Field(
        default=False, validation_alias=AliasChoices("CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE")
    )
    allow_private_exchange_networks: bool = Field(
        default=False,
        validation_alias=AliasChoices("CALBRIDGE_ALLOW_PRIVATE_EXCHANGE_NETWORKS"),
    )
    # Microsoft Graph endpoints: the real cloud by default; the simulator stands in locally.
    graph_url: str = Field(
        default="https://graph.microsoft.com/v1.0",
        validation_alias=AliasChoices("CALBRIDGE_GRAPH_URL"),
    )
    graph_authority: str = Field(
        default="login.microsoftonline.com",
        validation_alias=AliasChoices("CALBRIDGE_GRAPH_AUTHORITY"),
    )
    # A PEM bundle to trust for the token endpoint (the simulator's own CA); None: system trust.
    graph_ca_bundle: str | None = Field(
        default=None, validation_alias=AliasChoices("CALBRIDGE_GRAPH_CA_BUNDLE")
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


class SecretResolver(Protocol):
    """Turns a secret reference (a name) into the secret's value."""

    def resolve(self, reference: str) -> str: ...


class SecretNotFound(LookupError):
    """A secret reference that names no secret. The message names the reference, never a value."""


class SecretUnavailable(Exception):
    """The secret store could not be read (unreachable, throttled, refused the app's identity):
    a transient failure to answer with 503, not a missing secret. Names the reference only."""


def environment_variable_for(reference: str) -> str:
    """``org-dev-signing-secret`` → ``CALBRIDGE_SECRET_ORG_DEV_SIGNING_SECRET``."""
    return "CALBRIDGE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", reference).upper()


class EnvironmentSecretResolver:
    """Local development: secrets live in environment variables
    (see ``environment_variable_for``)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        self._environ = environ if environ is not None else os.environ

    def resolve(self, reference: str) -> str:
        value = self._environ.get(environment_variable_for(reference))
        if value is None:
            raise SecretNotFound(f"secret {reference!r} is not configured")
        return value


class KeyVaultSecretResolver:
    """Azure: secrets live in Key Vault, read with the function app's managed identity.

    Answers (a value, or "no such secret") are kept for ``cache_seconds``: a rotated secret, or a
    previous signing secret added or deleted for a rotation, is seen within that time without a
    Key Vault call on every request. Failures are never kept.
    """

    def __init__(
        self,
        vault_url: str,
        *,
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        client: Any = None,
        **client_options: Any,
    ) -> None:
        if client is None:
            from azure.identity import DefaultAzureCredential
            from azure.keyvault.secrets import SecretClient

            client = SecretClient(
                vault_url=vault_url, credential=DefaultAzureCredential(), **client_options
            )
        self._client = client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, reference: str) -> str:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(reference)
        if cached is None or now - cached[0] >= self._cache_seconds:
            cached = (now, self._read(reference))
            with self._lock:
                self._cache[reference] = cached
        value = cached[1]
        if value is None:
            raise SecretNotFound(f"secret {reference!r} is not in the key vault")
        return value

    def _read(self, reference: str) -> str | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            value = self._client.get_secret(reference).value
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise SecretUnavailable(
                f"secret {reference!r}: the key vault failed: {type(exc).__name__}"
            ) from exc
        return value if value else None


def secret_resolver(settings: Settings) -> SecretResolver:
    """The resolver the settings call for."""
    if settings.key_vault_url:
        return KeyVaultSecretResolver(settings.key_vault_url)
    return EnvironmentSecretResolver()


def org_signing_secret_reference(org: str) -> str:
    """The secret reference of an organization's shared HMAC secret (intake and webhooks)."""
    return f"org-{org}-signing-secret"


def org_previous_signing_secret_reference(org: str) -> str:
    """Where an organization's previous HMAC secret stays while a rotation's grace period lasts:
    requests signed with it still verify until the operator deletes it."""
    return f"org-{org}-signing-secret-previous"


def connection_secret_name(org: str, reference: str) -> str:
    """Where a connection's secret lives: ``org-<org>--<reference>``.

    A connection names its secret relative to its own organization, so an administrator can
    never point a connection at another organization's secret (or at calbridge's own keys) and
    have it sent to a server of their choosing. Organization ids contain no ``--``, so the name
    says unambiguously whose secret it is.
    """
    return f"org-{org}--{reference}"
