"""What every HTTP blueprint shares: registering a function from the route registry
(``shared.http.routes``), reading what a request's signature covers, and turning a service's
``HttpAnswer`` into a ``func.HttpResponse``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from shared import observability
from shared.http.answers import HttpAnswer
from shared.http.requests import SignedRequest
from shared.http.routes import ApiRoute


def http_function(
    bp: func.Blueprint, route: ApiRoute, shown: str
) -> Callable[[Callable[..., Any]], Any]:
    """Register a function under the registry's name, route, method and auth level.

    ``shown`` repeats them for the reader of the trigger file, as ``"METHOD route AUTH_LEVEL"``;
    it must agree with the registry (checked when the app is imported), so it cannot drift.
    """
    registered = f"{route.method} {route.route} {route.auth_level}"
    if shown != registered:
        raise ValueError(
            f"{route.function_name}: the trigger says {shown!r}, the registry {registered!r}"
        )

    def register(function: Callable[..., Any]) -> Any:
        routed = bp.route(
            route=route.route,
            methods=[route.method],
            auth_level=func.AuthLevel[route.auth_level],
        )(function)
        return bp.function_name(route.function_name)(routed)

    return register


def to_http_response(answer: HttpAnswer) -> func.HttpResponse:
    observability.answered(answer.status)
    return func.HttpResponse(
        answer.body_text(),
        status_code=answer.status,
        headers=dict(answer.headers),
        mimetype=answer.media_type,
        charset="utf-8",
    )


def signed_request(req: func.HttpRequest) -> SignedRequest:
    """The method, the request target as the client sent it (path and query string, still
    percent-encoded) and the raw body: what the booking platform's signature covers."""
    url = urlsplit(req.url)
    target = url.path + (f"?{url.query}" if url.query else "")
    return SignedRequest(method=req.method.upper(), target=target, body=req.get_body())
