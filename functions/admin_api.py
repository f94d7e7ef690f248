"""HTTP triggers of the administrator's API: Exchange connections, staff mailboxes and the
organization's settings.

Function key at the host (``FUNCTION``), then the organization's admin key checked by
``shared.admin.AdminApi``, which does the work. Routes come from ``shared.http.routes``.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_functions import http_function, to_http_response
from shared import bootstrap, observability
from shared.http.contract import ADMIN_KEY_HEADER
from shared.http.routes import (
    GET_SETTINGS,
    GET_STATUS,
    PUT_CONNECTION,
    PUT_SETTINGS,
    PUT_STAFF,
    REPLAY_WEBHOOK,
)

bp = func.Blueprint()


@http_function(bp, PUT_CONNECTION, "PUT orgs/{org}/connections/{connectionId} FUNCTION")
def put_connection(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().admin.put_connection(
                org=req.route_params.get("org", ""),
                connection_id=req.route_params.get("connectionId", ""),
                body=req.get_body(),
                admin_key=req.headers.get(ADMIN_KEY_HEADER),
            )
        )


@http_function(bp, PUT_STAFF, "PUT orgs/{org}/staff/{staffId} FUNCTION")
def put_staff(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().admin.put_staff(
                org=req.route_params.get("org", ""),
                staff_id=req.route_params.get("staffId", ""),
                body=req.get_body(),
                admin_key=req.headers.get(ADMIN_KEY_HEADER),
            )
        )


@http_function(bp, PUT_SETTINGS, "PUT orgs/{org}/settings FUNCTION")
def put_settings(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().admin.put_settings(
                org=req.route_params.get("org", ""),
                body=req.get_body(),
                admin_key=req.headers.get(ADMIN_KEY_HEADER),
            )
        )


@http_function(bp, GET_SETTINGS, "GET orgs/{org}/settings FUNCTION")
def get_settings(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().admin.get_settings(
                org=req.route_params.get("org", ""), admin_key=req.headers.get(ADMIN_KEY_HEADER)
            )
        )


@http_function(bp, REPLAY_WEBHOOK, "POST orgs/{org}/webhooks/{eventId}/replay FUNCTION")
def replay_webhook(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().admin.replay_webhook(
                org=req.route_params.get("org", ""),
                event_id=req.route_params.get("eventId", ""),
                admin_key=req.headers.get(ADMIN_KEY_HEADER),
            )
        )


# --- status -----------------------------------------------------------------------------------


@http_function(bp, GET_STATUS, "GET orgs/{org}/status FUNCTION")
def get_status(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().status.get_status(
                org=req.route_params.get("org", ""), admin_key=req.headers.get(ADMIN_KEY_HEADER)
            )
        )
