"""The OpenAPI 3.1 document of calbridge's HTTP routes, generated from the route registry
(:mod:`shared.http.routes`) and the pydantic models.

``python -m shared.http.openapi > docs/openapi.json`` regenerates the committed copy; a test
fails when the committed copy, the registry, the models or the registered functions drift apart.
The app serves the same document at ``GET /api/openapi.json`` (built in memory, since ``docs/``
is not deployed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from shared.http.contract import ADMIN_KEY_HEADER, SIGNATURE_HEADER
from shared.http.routes import PATH_PARAMETERS, ROUTES, ApiRoute, Response
from shared.models import ID_PATTERN, ORG_ID_MAX_LENGTH, ORG_ID_PATTERN

SCHEMA_REF_TEMPLATE = "#/components/schemas/{model}"
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "signature": {
        "type": "apiKey",
        "in": "header",
        "name": SIGNATURE_HEADER,
        "description": (
            't=<unix seconds>,v2=<hex HMAC-SHA256 of "{t}.{METHOD}.{target}.{raw body}" under '
            "the organization's shared secret>: METHOD upper case, target the request target as "
            "sent (path and query string, e.g. /api/orgs/dev/staff/ann/busy?start=...&end=...), "
            "raw body empty for a GET. v1 (body only) is refused. Refused when t is more than 5 "
            "minutes from now. During a secret rotation the current and the previous secret "
            "both verify."
        ),
    },
    "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
    "adminKey": {
        "type": "apiKey",
        "in": "header",
        "name": ADMIN_KEY_HEADER,
        "description": "The organization's admin key (or the operator's).",
    },
}
# A route's security → the schemes it requires together.
SECURITY_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "signature": ("signature",),
    "functionKey": ("functionKey",),
    "admin": ("functionKey", "adminKey"),
}

ModelUse = tuple[type[BaseModel], Literal["validation", "serialization"]]


def _model_uses(routes: tuple[ApiRoute, ...]) -> list[ModelUse]:
    uses: list[ModelUse] = []
    for route in routes:
        if route.request_body is not None:
            uses.append((route.request_body, "validation"))
        for response in route.responses.values():
            if response.model is not None:
                uses.append((response.model, "serialization"))
    return list(dict.fromkeys(uses))


def _content(schema: dict[str, Any], response: Response | None = None) -> dict[str, Any]:
    media_type = "application/json" if response is None else response.media_type
    return {media_type: {"schema": schema}}


SchemaRefs = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _operation(route: ApiRoute, refs: SchemaRefs) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = []
    for name in route.path_parameters:
        if name not in PATH_PARAMETERS:
            raise KeyError(
                f"route {route.route}: describe path parameter {name!r} in PATH_PARAMETERS"
            )
        parameters.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "description": PATH_PARAMETERS[name],
                "schema": {
                    "type": "string",
                    "pattern": ORG_ID_PATTERN if name == "org" else ID_PATTERN,
                    **({"maxLength": ORG_ID_MAX_LENGTH} if name == "org" else {}),
                },
            }
        )
    for query in route.query:
        schema: dict[str, Any] = {"type": "string"}
        if query.format:
            schema["format"] = query.format
        parameters.append(
            {
                "name": query.name,
                "in": "query",
                "required": query.required,
                "description": query.description,
                "schema": schema,
            }
        )
    operation: dict[str, Any] = {
        "operationId": route.function_name,
        "summary": route.summary,
        "description": route.description,
        "tags": list(route.tags),
        "security": (
            [{scheme: [] for scheme in SECURITY_REQUIREMENTS[route.security]}]
            if route.security
            else []
        ),
    }
    if parameters:
        operation["parameters"] = parameters
    if route.request_body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": _content(refs[(route.request_body, "validation")]),
        }
    responses: dict[str, Any] = {}
    for status in sorted(route.responses):
        response = route.responses[status]
        entry: dict[str, Any] = {"description": response.description}
        if response.model is not None:
            schema = refs[(response.model, "serialization")]
            entry["content"] = _content(
                {"type": "array", "items": schema} if response.array else schema, response
            )
        elif response.media_type == "application/json":
            entry["content"] = _content({"type": "object"}, response)
        else:  # text: plain, or the status page's HTML, script and style sheet
            entry["content"] = _content({"type": "string"}, response)
        responses[str(status)] = entry
    operation["responses"] = responses
    return operation


def build_document(routes: tuple[ApiRoute, ...] = ROUTES) -> dict[str, Any]:
    """The OpenAPI document for ``routes``."""
    refs, definitions = models_json_schema(
        _model_uses(routes), by_alias=True, ref_template=SCHEMA_REF_TEMPLATE
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    used_schemes = sorted(
        {
            scheme
            for route in routes
            if route.security
            for scheme in SECURITY_REQUIREMENTS[route.security]
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "calbridge",
            "version": "1.0.0",
            "description": (
                "Two-way sync between a booking platform and Microsoft Exchange calendars. "
                "All routes are scoped by organization; bodies are JSON; timestamps are "
                "RFC 3339 with an offset; unknown fields are refused with 422."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {name: SECURITY_SCHEMES[name] for name in used_schemes},
        },
    }


@lru_cache(maxsize=1)
def document_json() -> str:
    """The document as the committed ``docs/openapi.json`` holds it."""
    return json.dumps(build_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    print(document_json(), end="")
