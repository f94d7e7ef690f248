"""The Function App main.bicep deploys: Flex Consumption, Python 3.11 (what the code is written
for), one user-assigned identity, HTTPS only with TLS 1.2, no FTP, the roles its identity needs,
bindings that find their storage settings, and the URLs the outputs announce."""

from __future__ import annotations

import json
import tomllib
from typing import Any

import function_app
from devhost.indexing import indexed_functions
from shared.http.routes import GRAPH_LIFECYCLE, GRAPH_NOTIFICATIONS, ROUTE_PREFIX
from shared.push.subscriptions import notification_urls
from tests.infra.templates import (
    REPO,
    dotted,
    main_variable,
    module_path,
    resources,
    template,
)

# Built-in role definition ids (the same in every tenant) the app's identity must hold.
APP_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


def bodies(module: str, resource_type: str) -> list[dict[str, Any]]:
    return [body for kind, _, body in resources(module_path(module)) if kind == resource_type]


def test_the_plan_is_flex_consumption_on_linux() -> None:
    [plan] = bodies("functionApp", "Microsoft.Web/serverfarms")
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    assert plan["properties"]["reserved"] is True


def test_the_app_runs_the_python_the_code_is_written_for() -> None:
    [app] = bodies("functionApp", "Microsoft.Web/sites")
    runtime = app["properties"]["functionAppConfig"]["runtime"]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert runtime["name"] == "python"
    assert project["project"]["requires-python"] == f">={runtime['version']}"
    assert project["tool"]["mypy"]["python_version"] == runtime["version"]


def test_https_only_tls_1_2_no_ftp_no_basic_auth_publishing() -> None:
    [app] = bodies("functionApp", "Microsoft.Web/sites")
    properties = app["properties"]
    assert properties["httpsOnly"] is True
    assert properties["siteConfig"]["minTlsVersion"] == "1.2"
    assert properties["siteConfig"]["scmMinTlsVersion"] == "1.2"
    assert properties["siteConfig"]["ftpsState"] == "Disabled"
    policies = bodies("functionApp", "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {(p["name"], p["properties"]["allow"]) for p in policies} == {
        ("ftp", False),
        ("scm", False),
    }


def test_the_app_runs_as_one_user_assigned_identity_for_everything() -> None:
    [app] = bodies("functionApp", "Microsoft.Web/sites")
    assert app["identity"]["type"] == "UserAssigned"
    properties = app["properties"]
    assert properties["keyVaultReferenceIdentity"] == "identityId"
    authentication = properties["functionAppConfig"]["deployment"]["storage"]["authentication"]
    assert authentication == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    # The settings are the app's, complete: each name with its value.
    assert properties["siteConfig"]["appSettings"]["loop_type"]["detail"]["array_name"] == {
        "function": {"type": "items", "parameters": {"arg_1": "appSettings"}}
    }
    assert template()["modules"]["functionApp"]["config"]["params"]["appSettings"] == (
        "appSettings"
    )


def test_the_identity_holds_each_role_it_needs() -> None:
    path = module_path("roles")
    variables = {name: v["value"] for name, v in template(path)["variables"].items()}
    granted = set()
    for kind, loop, body in resources(path):
        if kind != "Microsoft.Authorization/roleAssignments":
            continue
        if body["properties"]["principalId"] != "appPrincipalId":
            continue
        assert body["properties"]["principalType"] == "ServicePrincipal"
        role = body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        names = variables[loop] if loop else [role]
        granted |= {variables[name] for name in names}
    assert {APP_ROLES[role] for role in granted} == set(APP_ROLES.values())


def test_every_queue_trigger_finds_its_identity_based_connection() -> None:
    settings = main_variable("appSettings")
    triggers = [
        binding.get_dict_repr()
        for function in indexed_functions(function_app.app)
        for binding in function.get_bindings()
        if binding.get_dict_repr().get("type") == "queueTrigger"
    ]
    assert triggers
    for trigger in triggers:
        connection = trigger["connection"]
        assert connection not in settings  # no connection string: the account takes no keys
        assert f"{connection}__queueServiceUri" in settings
        assert f"{connection}__credential" in settings
        assert f"{connection}__clientId" in settings


def test_the_outputs_name_the_app_and_the_graph_urls_the_routes_serve() -> None:
    outputs = template()["outputs"]
    assert dotted(outputs["FUNCTION_APP_URL"]["value"]) == "functionApp.outputs.url"
    prefix = "${functionApp.outputs.url}/" + ROUTE_PREFIX
    assert outputs["FUNCTIONS_API_URL"]["value"] == prefix
    # Each organization's URL is the output followed by /{org}, as the routes say.
    assert outputs["GRAPH_NOTIFICATION_URL"]["value"] + "/{org}" == (
        prefix + "/" + GRAPH_NOTIFICATIONS.route
    )
    assert (
        outputs["GRAPH_LIFECYCLE_URL"]["value"] + "/{org}" == prefix + "/" + GRAPH_LIFECYCLE.route
    )
    assert notification_urls("https://x/api", "o") == (
        "https://x/api/" + GRAPH_NOTIFICATIONS.route.replace("{org}", "o"),
        "https://x/api/" + GRAPH_LIFECYCLE.route.replace("{org}", "o"),
    )
    host = json.loads((REPO / "host.json").read_text())
    assert host["extensions"]["http"]["routePrefix"] == ROUTE_PREFIX
    [url] = [o for o in template(module_path("functionApp"))["outputs"].items() if o[0] == "url"]
    assert url[1]["value"] == "https://${app.properties.defaultHostName}"
