"""The app settings main.bicep gives the Function App: every setting calbridge's code reads is
there (the list comes from ``shared.config.Settings``, not from a copy), the local-only ones and
the ones Flex Consumption refuses are not, and with the template's defaults they make valid
``Settings`` that reach storage as the managed identity."""

from __future__ import annotations

import pytest
from pydantic import AliasChoices

from shared import bootstrap
from shared.config import Settings
from shared.observability.export import CONNECTION_STRING_SETTING, SECOND_EXPORTER_SETTINGS
from shared.store.azure_tables import AzureTableService
from tests.infra.templates import evaluate, main_variable, parameter_defaults

# Settings the code reads that Azure must not get, and why. Every other Settings field must be
# set by the template under one of its names.
NOT_DEPLOYED = {
    "storage_connection_string": "the account refuses shared keys: identity-based settings instead",
    "allow_loopback_exchange": "local runs against the simulator only",
    "graph_ca_bundle": "the simulator's own CA, local runs only",
    "public_url": "only for a custom domain: by default the platform's WEBSITE_HOSTNAME",
    "website_hostname": "set by App Service itself, never by the template",
}
# App settings the Flex Consumption plan deprecates or rejects (the runtime is
# functionAppConfig.runtime, the package comes from the deployment container).
FLEX_REFUSES = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}
# Module outputs the settings use, as Azure would fill them in.
SAMPLE_OUTPUTS = {
    "identity.outputs.clientId": "0b7e4f0c-3a51-4f3e-9d0a-6c1e2f3a4b5c",
    "storage.outputs.blobEndpoint": "https://stcalbridgex.blob.core.windows.net/",
    "storage.outputs.queueEndpoint": "https://stcalbridgex.queue.core.windows.net/",
    "storage.outputs.tableEndpoint": "https://stcalbridgex.table.core.windows.net/",
    "appInsights.outputs.connectionString": "InstrumentationKey=00000000-0000-0000-0000-0",
    "keyVault.outputs.uri": "https://kv-calbridge-x.vault.azure.net/",
    "keyVault.outputs.name": "kv-calbridge-x",
}


def setting_names(field: str) -> list[str]:
    alias = Settings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices), f"{field} is read under no app-setting name"
    return [str(choice) for choice in alias.choices]


def deployed() -> dict[str, object]:
    settings = main_variable("appSettings")
    assert isinstance(settings, dict)
    return settings


def test_every_setting_the_code_reads_is_deployed() -> None:
    missing = [
        f"{field} ({' or '.join(setting_names(field))})"
        for field in Settings.model_fields
        if field not in NOT_DEPLOYED and not set(setting_names(field)) & set(deployed())
    ]
    assert missing == []


def test_what_stays_local_is_a_setting_the_code_reads_and_is_never_deployed() -> None:
    for field in NOT_DEPLOYED:
        assert field in Settings.model_fields  # the exception still names a real setting
        assert not set(setting_names(field)) & set(deployed()), field


def test_nothing_flex_consumption_refuses_is_set() -> None:
    assert FLEX_REFUSES & set(deployed()) == set()


def test_the_host_and_calbridge_reach_storage_as_the_user_assigned_identity() -> None:
    settings = deployed()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for service in ("blob", "queue", "table"):
        assert f"AzureWebJobsStorage__{service}ServiceUri" in settings
    assert "AzureWebJobsStorage__clientId" in settings
    assert str(settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]).endswith(";Authorization=AAD")


def test_telemetry_has_one_exporter_the_apps_own() -> None:
    settings = deployed()
    # The app's exporter (shared.observability.export) and the identity it sends as.
    assert CONNECTION_STRING_SETTING in settings
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in settings
    # That would make the Python worker configure a second exporter of its own.
    for name in SECOND_EXPORTER_SETTINGS:
        assert str(settings.get(name, "false")).lower() != "true", name


@pytest.fixture
def no_local_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the deployed values may count, not this machine's environment."""
    for field in Settings.model_fields:
        for name in setting_names(field):
            monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_local_settings")
def test_the_deployed_values_are_valid_settings_that_use_the_identity() -> None:
    values = {
        name: evaluate(value, parameter_defaults(), SAMPLE_OUTPUTS)
        for name, value in deployed().items()
    }
    settings = Settings(**values)  # app-setting names, as in Azure
    assert settings.storage_uses_identity
    assert settings.managed_identity_client_id == SAMPLE_OUTPUTS["identity.outputs.clientId"]
    assert settings.key_vault_url == SAMPLE_OUTPUTS["keyVault.outputs.uri"]
    assert settings.queue_prefix  # queue-trigger bindings need a non-empty prefix
    # The operator key is a Key Vault reference: until App Service resolves it, no key.
    assert str(values["CALBRIDGE_ADMIN_KEY"]).startswith("@Microsoft.KeyVault(")
    assert settings.admin_key is None
    defaults = Settings.model_construct()
    assert settings.max_request_bytes == defaults.max_request_bytes
    assert settings.signature_tolerance_seconds == defaults.signature_tolerance_seconds
    assert settings.graph_url == defaults.graph_url
    assert settings.graph_authority == defaults.graph_authority
    assert settings.allow_private_exchange_networks is False
    tables = bootstrap.azure_table_service(settings)
    assert isinstance(tables, AzureTableService)
    assert tables.endpoint.rstrip("/") == SAMPLE_OUTPUTS["storage.outputs.tableEndpoint"].rstrip(
        "/"
    )
