"""The OpenAPI document: committed copy == generated == served, valid OpenAPI 3.1, its routes
== the HTTP functions the app registers, its schemas == the pydantic models' JSON schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from shared.http.answers import ApiError, ValidationFailed
from shared.http.contract import AppointmentAccepted, AppointmentStale
from shared.http.openapi import SCHEMA_REF_TEMPLATE, build_document, document_json
from shared.http.routes import GET_BUSY_TIME, PUT_APPOINTMENT, ROUTE_PREFIX, ROUTES
from shared.models import AppointmentSnapshot, BusyBlock
from tests.functions_harness import http_call, registered_functions, trigger_binding

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
REGENERATE = "python -m shared.http.openapi > docs/openapi.json"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return loaded


def test_committed_document_is_the_generated_one() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == document_json(), (
        f"docs/openapi.json is out of date: run `{REGENERATE}`"
    )


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_documented_operations_are_the_registered_http_functions(document: dict[str, Any]) -> None:
    documented = {
        (path, method.upper(), operation["operationId"])
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    registered = set()
    for name, fn in registered_functions().items():
        trigger = trigger_binding(fn)
        if trigger["type"] != "httpTrigger":
            continue
        for method in trigger["methods"]:
            registered.add((f"/{ROUTE_PREFIX}/{trigger['route']}", method.upper(), name))
    assert documented == registered


def test_every_registry_route_is_documented(document: dict[str, Any]) -> None:
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["operationId"] == route.function_name
        path_parameters = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert path_parameters == route.path_parameters


def model_schema(
    model: type[BaseModel], mode: JsonSchemaMode
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's own JSON schema (by alias) and its nested definitions."""
    schema = model.model_json_schema(by_alias=True, ref_template=SCHEMA_REF_TEMPLATE, mode=mode)
    return schema, schema.pop("$defs", {})


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        (AppointmentSnapshot, "validation"),
        (BusyBlock, "serialization"),
        (AppointmentAccepted, "serialization"),
        (AppointmentStale, "serialization"),
        (ApiError, "serialization"),
        (ValidationFailed, "serialization"),
    ],
)
def test_component_schemas_equal_the_models_json_schemas(
    document: dict[str, Any], model: type[BaseModel], mode: JsonSchemaMode
) -> None:
    components = document["components"]["schemas"]
    schema, definitions = model_schema(model, mode)
    assert components[model.__name__] == schema
    for name, definition in definitions.items():
        assert components[name] == definition


def test_request_and_response_bodies_reference_the_models(document: dict[str, Any]) -> None:
    put = document["paths"][PUT_APPOINTMENT.path]["put"]
    assert put["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AppointmentSnapshot"
    }
    responses = put["responses"]
    assert responses["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AppointmentAccepted"
    }
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationFailed"
    }
    busy = document["paths"][GET_BUSY_TIME.path]["get"]
    assert busy["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/BusyBlock"},
    }
    assert {p["name"] for p in busy["parameters"] if p["in"] == "query"} == {"start", "end"}


def test_the_app_serves_the_committed_document() -> None:
    response = http_call("GET", "/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_body().decode("utf-8") == COMMITTED.read_text(encoding="utf-8")


def test_a_route_with_an_undescribed_path_parameter_is_refused() -> None:
    from dataclasses import replace

    odd = replace(GET_BUSY_TIME, route="orgs/{org}/widgets/{widgetId}")
    with pytest.raises(KeyError, match="widgetId"):
        build_document((odd,))
