"""How calbridge reaches storage: the connection string locally (Azurite), the identity-based
settings in Azure (``AzureWebJobsStorage__tableServiceUri``, ``__queueServiceUri``,
``__clientId``), parsed by ``shared.config.Settings`` and turned into SDK clients by
``shared.bootstrap``. Nothing here talks to a server: building a client or a credential sends no
request."""

from __future__ import annotations

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.identity import DefaultAzureCredential

from shared import bootstrap
from shared.config import (
    AZURITE_DEVELOPMENT_CONNECTION_STRING,
    KeyVaultSecretResolver,
    Settings,
    azure_credential,
)
from shared.queues.azure import AzureQueueSender
from shared.store.azure_tables import AzureTableService

ACCOUNT = "stcalbridgetest"
TABLES = f"https://{ACCOUNT}.table.core.windows.net"
QUEUES = f"https://{ACCOUNT}.queue.core.windows.net"
CLIENT_ID = "0b7e4f0c-3a51-4f3e-9d0a-6c1e2f3a4b5c"
IDENTITY = {
    "AzureWebJobsStorage__credential": "managedidentity",
    "AzureWebJobsStorage__clientId": CLIENT_ID,
    "AzureWebJobsStorage__tableServiceUri": TABLES,
    "AzureWebJobsStorage__queueServiceUri": QUEUES,
    "AzureWebJobsStorage__blobServiceUri": f"https://{ACCOUNT}.blob.core.windows.net",
}
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the process environment too: only what a test passes may count."""
    for name in (*IDENTITY, "AzureWebJobsStorage", "CALBRIDGE_STORAGE", "CALBRIDGE_ADMIN_KEY"):
        monkeypatch.delenv(name, raising=False)


def settings(**values: str) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]  # app-setting names, as the host passes


def test_locally_the_connection_string_is_the_way_in() -> None:
    local = settings(AzureWebJobsStorage=AZURITE, CALBRIDGE_TABLE_PREFIX="t1")
    assert local.storage_connection_string == AZURITE
    assert not local.storage_uses_identity


def test_with_no_storage_settings_at_all_it_is_the_local_azurite() -> None:
    assert settings().storage_connection_string == AZURITE_DEVELOPMENT_CONNECTION_STRING


def test_in_azure_the_identity_based_settings_name_endpoints_and_identity() -> None:
    azure = settings(**IDENTITY)
    assert azure.storage_uses_identity
    assert azure.storage_connection_string is None
    assert azure.storage_table_service_uri == TABLES
    assert azure.storage_queue_service_uri == QUEUES
    assert azure.managed_identity_client_id == CLIENT_ID


def test_an_emptied_connection_string_beside_the_identity_settings_is_no_connection_string() -> (
    None
):
    assert settings(AzureWebJobsStorage="", **IDENTITY).storage_uses_identity


def test_a_connection_string_wins_over_the_identity_settings() -> None:
    both = settings(AzureWebJobsStorage=AZURITE, **IDENTITY)
    assert both.storage_connection_string == AZURITE
    assert not both.storage_uses_identity


@pytest.mark.parametrize(
    "missing", ["AzureWebJobsStorage__tableServiceUri", "AzureWebJobsStorage__queueServiceUri"]
)
def test_one_endpoint_without_the_other_is_refused_naming_the_missing_one(missing: str) -> None:
    partial = {name: value for name, value in IDENTITY.items() if name != missing}
    with pytest.raises(ValueError, match=missing):
        settings(**partial)


def test_an_unresolved_key_vault_reference_is_no_operator_key() -> None:
    # What App Service leaves in the setting when the secret is missing: the vault's and the
    # secret's names, which must never open the admin API.
    unresolved = "@Microsoft.KeyVault(VaultName=kv-calbridge;SecretName=calbridge-admin-key)"
    assert settings(CALBRIDGE_ADMIN_KEY=unresolved).admin_key is None
    key = settings(CALBRIDGE_ADMIN_KEY="resolved-operator-key").admin_key
    assert key is not None
    assert key.get_secret_value() == "resolved-operator-key"


def test_the_credential_is_the_default_chain_for_the_named_identity() -> None:
    assert isinstance(azure_credential(settings(**IDENTITY)), DefaultAzureCredential)
    assert isinstance(azure_credential(settings()), DefaultAzureCredential)


def test_in_azure_tables_and_queues_are_reached_at_their_endpoints_as_the_identity() -> None:
    azure = settings(CALBRIDGE_TABLE_PREFIX="cb", CALBRIDGE_QUEUE_PREFIX="calbridge-", **IDENTITY)
    credential = azure_credential(azure)
    tables = bootstrap.azure_table_service(azure, credential)
    queue = bootstrap.azure_queue_sender(azure, credential)
    assert isinstance(tables, AzureTableService)
    assert isinstance(queue, AzureQueueSender)
    assert tables.endpoint.rstrip("/") == TABLES
    assert queue.endpoint.rstrip("/") == QUEUES
    assert tables.credential is credential
    assert queue.credential is credential


def test_locally_tables_and_queues_sign_with_the_connection_strings_key() -> None:
    local = settings(AzureWebJobsStorage=AZURITE)
    tables = bootstrap.azure_table_service(local)
    queue = bootstrap.azure_queue_sender(local)
    assert isinstance(tables, AzureTableService)
    assert isinstance(queue, AzureQueueSender)
    assert tables.endpoint.rstrip("/") == "http://127.0.0.1:10002/devstoreaccount1"
    assert queue.endpoint.rstrip("/") == "http://127.0.0.1:10001/devstoreaccount1"
    # The account key of the connection string, never a token credential (the SDKs keep it as a
    # named key and as a signing policy respectively).
    assert isinstance(tables.credential, AzureNamedKeyCredential)
    assert not hasattr(queue.credential, "get_token")


def test_the_composition_root_builds_every_azure_client_as_the_identity() -> None:
    azure = settings(CALBRIDGE_KEY_VAULT_URL="https://kv-calbridge.vault.azure.net", **IDENTITY)
    services = bootstrap.build_services(azure)
    assert isinstance(services.queue, AzureQueueSender)
    assert isinstance(services.queue.credential, DefaultAzureCredential)
    assert isinstance(services.secrets, KeyVaultSecretResolver)
