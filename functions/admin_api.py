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
    DISABLE_CONNECTION,
    ENABLE_CONNECTION,
    GET_CONNECTION,
    GET_SETTINGS,
    GET_STATUS,
    LIST_CONNECTIONS,
    PUT_CONNECTION,
    PUT_SETTINGS,
    PUT_STAFF,
    REPLAY,
    REPLAY_WEBHOOK,
    RESYNC_CONNECTION,
    RESYNC_STAFF,
    TEST_CONNECTION,
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


# --- connection operations: reading back, maintenance, test, resync, replay --------------------


def _admin_key(req: func.HttpRequest) -> str | None:
    return req.headers.get(ADMIN_KEY_HEADER)


@http_function(bp, LIST_CONNECTIONS, "GET orgs/{org}/connections FUNCTION")
def list_connections(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().connection_admin.list_connections(
                org=req.route_params.get("org", ""), admin_key=_admin_key(req)
            )
        )


@http_function(bp, GET_CONNECTION, "GET orgs/{org}/connections/{connectionId} FUNCTION")
def get_connection(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().connection_admin.get_connection(
                org=req.route_params.get("org", ""),
                connection_id=req.route_params.get("connectionId", ""),
                admin_key=_admin_key(req),
            )
        )


def _set_enabled(req: func.HttpRequest, enabled: bool) -> func.HttpResponse:
    return to_http_response(
        bootstrap.services().connection_admin.set_enabled(
            org=req.route_params.get("org", ""),
            connection_id=req.route_params.get("connectionId", ""),
            enabled=enabled,
            body=req.get_body(),
            admin_key=_admin_key(req),
        )
    )


@http_function(
    bp, DISABLE_CONNECTION, "POST orgs/{org}/connections/{connectionId}/disable FUNCTION"
)
def disable_connection(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return _set_enabled(req, False)


@http_function(bp, ENABLE_CONNECTION, "POST orgs/{org}/connections/{connectionId}/enable FUNCTION")
def enable_connection(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return _set_enabled(req, True)


@http_function(bp, TEST_CONNECTION, "POST orgs/{org}/connections/{connectionId}/test FUNCTION")
async def test_connection(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            await bootstrap.services().connection_admin.test_connection(
                org=req.route_params.get("org", ""),
                connection_id=req.route_params.get("connectionId", ""),
                body=req.get_body(),
                admin_key=_admin_key(req),
            )
        )


@http_function(bp, RESYNC_CONNECTION, "POST orgs/{org}/connections/{connectionId}/resync FUNCTION")
def resync_connection(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().connection_admin.resync_connection(
                org=req.route_params.get("org", ""),
                connection_id=req.route_params.get("connectionId", ""),
                body=req.get_body(),
                admin_key=_admin_key(req),
            )
        )


@http_function(bp, RESYNC_STAFF, "POST orgs/{org}/staff/{staffId}/resync FUNCTION")
def resync_staff(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().connection_admin.resync_staff(
                org=req.route_params.get("org", ""),
                staff_id=req.route_params.get("staffId", ""),
                body=req.get_body(),
                admin_key=_admin_key(req),
            )
        )


@http_function(bp, REPLAY, "POST orgs/{org}/replay FUNCTION")
def replay_failed_work(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().connection_admin.replay(
                org=req.route_params.get("org", ""),
                body=req.get_body(),
                admin_key=_admin_key(req),
            )
        )
