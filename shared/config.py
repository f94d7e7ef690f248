"""Settings, the app's Azure identity and secret resolution.

Settings come from app settings / environment variables (``local.settings.json`` in local
development) and are read once per process (:func:`get_settings`). Storage is reached either
with a connection string (``AzureWebJobsStorage``: Azurite locally) or, in Azure, with the
identity-based settings the Functions host itself uses (``AzureWebJobsStorage__queueServiceUri``,
``__tableServiceUri`` and ``__clientId``) and the app's managed identity (:func:`azure_credential`).
Secrets are never stored in tables: a table holds a *secret reference*, resolved here against
Azure Key Vault when ``CALBRIDGE_KEY_VAULT_URL`` is set, otherwise against environment variables
(local development).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

AZURITE_DEVELOPMENT_CONNECTION_STRING = "UseDevelopmentStorage=true"
# What App Service leaves in an app setting whose Key Vault reference it could not resolve.
UNRESOLVED_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


class Settings(BaseSettings):
    """Process-wide settings, read from the environment once."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Storage: a connection string wins (Azurite locally). Without one, the identity-based
    # settings the Functions host reads for its own bindings name the account's endpoints and the
    # user-assigned identity, so the host and calbridge's clients reach one account as one
    # identity. With neither, the local Azurite default.
    storage_connection_string: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AzureWebJobsStorage", "CALBRIDGE_STORAGE"),
    )
    storage_table_service_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__tableServiceUri")
    )
    storage_queue_service_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__queueServiceUri")
    )
    # The app's one user-assigned identity: the host uses it for storage, calbridge for storage
    # and Key Vault. Unset: DefaultAzureCredential's own choice (a system-assigned identity, or
    # the developer's sign-in).
    managed_identity_client_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AzureWebJobsStorage__clientId")
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
    # Where Graph reaches calbridge's HTTP functions (the base its change-notification and
    # lifecycle URLs are made from, ``.../api``): the operator's own name for the app (a custom
    # domain) or, by default, the host name App Service gives it (``WEBSITE_HOSTNAME``, set by
    # the platform itself). Locally, the runner's own address.
    public_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CALBRIDGE_PUBLIC_URL")
    )
    website_hostname: str | None = Field(
        default=None, validation_alias=AliasChoices("WEBSITE_HOSTNAME")
    )

    @field_validator(
        "storage_connection_string",
        "storage_table_service_uri",
        "storage_queue_service_uri",
        "managed_identity_client_id",
        "public_url",
        "website_hostname",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An app setting kept but emptied (``AzureWebJobsStorage=""`` beside the identity-based
        # settings) means "not this way", not "a connection string of no characters".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("admin_key", mode="before")
    @classmethod
    def _unresolved_reference_is_no_key(cls, value: Any) -> Any:
        # App Service leaves a Key Vault reference it cannot resolve (secret missing, no access)
        # in the setting as written; that text names the vault and the secret, so taking it as
        # the operator key would make a guessable key. No key is the safe reading.
        if isinstance(value, str) and value.strip().startswith(UNRESOLVED_KEY_VAULT_REFERENCE):
            return None
        return value

    @model_validator(mode="after")
    def _storage_is_reachable(self) -> Settings:
        if self.storage_connection_string is not None:
            return self
        endpoints = {
            "AzureWebJobsStorage__tableServiceUri": self.storage_table_service_uri,
            "AzureWebJobsStorage__queueServiceUri": self.storage_queue_service_uri,
        }
        missing = [name for name, value in endpoints.items() if value is None]
        if len(missing) == len(endpoints):
            self.storage_connection_string = AZURITE_DEVELOPMENT_CONNECTION_STRING
        elif missing:
            raise ValueError(
                f"{', '.join(missing)} is not set: identity-based storage needs the table and "
                "the queue endpoint (or set AzureWebJobsStorage to a connection string)"
            )
        return self

    @property
    def functions_url(self) -> str | None:
        """The public base of the HTTP functions (``https://host/api``); None when unknown."""
        if self.public_url:
            return self.public_url.rstrip("/")
        if self.website_hostname:
            return f"https://{self.website_hostname.strip().rstrip('/')}/api"
        return None

    @property
    def storage_uses_identity(self) -> bool:
        """True when storage is reached with the managed identity, not a connection string."""
        return self.storage_connection_string is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


def azure_credential(settings: Settings) -> TokenCredential:
    """The app's identity towards Azure (storage, Key Vault): ``DefaultAzureCredential`` told
    which user-assigned managed identity to use, when the settings name one. Built without any
    network call; the first token is asked for on first use."""
    from azure.identity import DefaultAzureCredential

    if settings.managed_identity_client_id:
        return DefaultAzureCredential(
            managed_identity_client_id=settings.managed_identity_client_id
        )
    return DefaultAzureCredential()


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
        credential: TokenCredential | None = None,
        **client_options: Any,
    ) -> None:
        if client is None:
            from azure.keyvault.secrets import SecretClient

            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            client = SecretClient(vault_url=vault_url, credential=credential, **client_options)
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


def secret_resolver(
    settings: Settings, credential: TokenCredential | None = None
) -> SecretResolver:
    """The resolver the settings call for; Key Vault is read as ``credential`` (by default the
    app's identity, :func:`azure_credential`)."""
    if settings.key_vault_url:
        return KeyVaultSecretResolver(
            settings.key_vault_url, credential=credential or azure_credential(settings)
        )
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
