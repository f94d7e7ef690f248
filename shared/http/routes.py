"""Every HTTP route calbridge serves, in one registry: method, path, auth, parameters, request
and response models.

The function decorators in ``functions/`` take route, method and auth level from here; the
OpenAPI document (:mod:`shared.http.openapi`) is generated from here; and tests check that
what the app registers equals this registry. Adding a route = one :class:`ApiRoute` appended to
:data:`ROUTES`, a decorated function using it, and ``python -m shared.http.openapi >
docs/openapi.json``.

Auth levels: booking-platform routes are ``ANONYMOUS`` at the Functions level because the
per-organization HMAC signature is their authentication (a function key would be one secret
shared by every organization, and a second thing for each platform to hold); admin routes use
the function key (``FUNCTION``). Graph's notification and lifecycle routes are ``ANONYMOUS``
too: Microsoft Graph calls them, and what authenticates a notification is the secret
``clientState`` of the subscription it names (a function key in the URL would be stored in
Graph's subscription, readable by anyone who may list it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel

from shared.http.admin_contract import (
    ConnectionList,
    ConnectionState,
    ConnectionTest,
    ConnectionView,
    ReplayReport,
    ReplayRequest,
    ResyncQueued,
)
from shared.http.answers import ApiError, ValidationFailed
from shared.http.contract import (
    ADMIN_KEY_HEADER,
    SIGNATURE_HEADER,
    AppointmentAccepted,
    AppointmentStale,
    ConnectionSaved,
    GraphNotificationBatch,
    OrgStatus,
    StaffMailboxAssignment,
    StaffSaved,
    WebhookReplayed,
)
from shared.models import AppointmentSnapshot, BusyBlock, ConnectionConfig, OrgSettings

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix

AuthLevel = Literal["ANONYMOUS", "FUNCTION", "ADMIN"]
# "admin": the function key (checked by the host) and the organization's admin key (checked by
# shared.admin), both required.
Security = Literal["signature", "functionKey", "admin"]

# Descriptions of the path parameters routes use; every one is an id (shared.models.ID_PATTERN).
PATH_PARAMETERS: dict[str, str] = {
    "org": (
        "The organization (every route is scoped by it): lower-case letters, digits and "
        "hyphens, as it also names the organization's secrets."
    ),
    "appointmentId": "The booking platform's id of the appointment.",
    "staffId": "The booking platform's id of the staff member.",
    "connectionId": "The id of an Exchange connection of the organization.",
    "eventId": "The id of an event calbridge sent (or tried to send) to the booking platform.",
}

_ROUTE_PARAMETER = re.compile(r"\{([A-Za-z]+)\}")


@dataclass(frozen=True)
class QueryParameter:
    name: str
    description: str
    required: bool = True
    format: str | None = None


@dataclass(frozen=True)
class Response:
    description: str
    model: type[BaseModel] | None = None
    array: bool = False  # a JSON array of ``model``
    media_type: str = "application/json"


@dataclass(frozen=True)
class ApiRoute:
    function_name: str
    method: str
    route: str  # the Functions route template, without the ``api/`` prefix
    auth_level: AuthLevel
    security: Security | None
    summary: str
    description: str
    responses: Mapping[int, Response]
    request_body: type[BaseModel] | None = None
    body_required: bool = True
    query: tuple[QueryParameter, ...] = ()
    tags: tuple[str, ...] = field(default=("booking",))

    @property
    def path(self) -> str:
        """The URL path as clients call it (``/api/...``)."""
        return f"/{ROUTE_PREFIX}/{self.route}"

    @property
    def path_parameters(self) -> list[str]:
        return _ROUTE_PARAMETER.findall(self.route)


def signed_route_errors(*, body: bool) -> dict[int, Response]:
    """The refusals every signed booking route can answer."""
    errors = {
        400: Response(
            "A path id, query parameter or the body is malformed (not JSON, a key twice).",
            ApiError,
        ),
        401: Response(
            f"The {SIGNATURE_HEADER} header is missing, malformed, expired or does not match "
            "(an unknown organization gets the same answer).",
            ApiError,
        ),
        404: Response("The organization id is not a valid id.", ApiError),
        413: Response("The body is larger than the configured limit.", ApiError),
        503: Response("Storage or the queue is unavailable; retry later.", ApiError),
    }
    if body:
        errors[422] = Response(
            "The body is not a valid snapshot; every problem is named.", ValidationFailed
        )
    return errors


PUT_APPOINTMENT = ApiRoute(
    function_name="put_appointment",
    method="PUT",
    route="orgs/{org}/appointments/{appointmentId}",
    auth_level="ANONYMOUS",
    security="signature",
    summary="Send the full current state of an appointment",
    description=(
        "A snapshot, not a diff. Idempotent: the same version again is accepted again; an "
        "older version is ignored; the same version with different content is a conflict."
    ),
    request_body=AppointmentSnapshot,
    responses={
        202: Response("Stored (or already stored); Exchange will follow.", AppointmentAccepted),
        200: Response("A newer version is stored; this one was ignored.", AppointmentStale),
        409: Response("This version is stored with different content.", ApiError),
        **signed_route_errors(body=True),
    },
)

GET_BUSY_TIME = ApiRoute(
    function_name="get_busy_time",
    method="GET",
    route="orgs/{org}/staff/{staffId}/busy",
    auth_level="ANONYMOUS",
    security="signature",
    summary="A staff member's busy time from Exchange",
    description=(
        "Blocks overlapping [start, end) from events calbridge did not write, by start time. "
        "Served from storage (never calls Exchange). Private events carry no subject. The "
        "signature covers the method, the path with its query string and the empty body. The "
        "window may span at most 62 days."
    ),
    query=(
        QueryParameter("start", "Window start, RFC 3339 with an offset.", format="date-time"),
        QueryParameter(
            "end", "Window end (after start), RFC 3339 with an offset.", format="date-time"
        ),
    ),
    responses={
        200: Response("Busy blocks overlapping the window, by start.", BusyBlock, array=True),
        **signed_route_errors(body=False),
    },
)

GET_OPENAPI = ApiRoute(
    function_name="get_openapi_document",
    method="GET",
    route="openapi.json",
    auth_level="ANONYMOUS",
    security=None,
    summary="This OpenAPI document",
    description="The contract of calbridge's HTTP routes.",
    responses={200: Response("The OpenAPI 3.1 document.")},
    tags=("meta",),
)


def admin_route_errors() -> dict[int, Response]:
    """The refusals every admin route with a body can answer."""
    return {
        400: Response(
            "A path id is malformed or the body is not JSON (or names a key twice).", ApiError
        ),
        401: Response(
            f"The {ADMIN_KEY_HEADER} header is missing or does not match "
            "(an unknown organization gets the same answer).",
            ApiError,
        ),
        404: Response("The organization id is not a valid id.", ApiError),
        409: Response("The row changed during the request; send it again.", ApiError),
        413: Response("The body is larger than the configured limit.", ApiError),
        422: Response("The body is not valid; every problem is named.", ValidationFailed),
        503: Response("Storage or the queue is unavailable; retry later.", ApiError),
    }


PUT_CONNECTION = ApiRoute(
    function_name="put_connection",
    method="PUT",
    route="orgs/{org}/connections/{connectionId}",
    auth_level="FUNCTION",
    security="admin",
    summary="Create or replace an Exchange connection",
    description=(
        "An EWS connection (on-premises Exchange: URL, Basic/NTLM/OAuth, impersonation or "
        "delegate access) or a Graph connection (Exchange Online, app-only OAuth). The secret "
        "is named by reference (a Key Vault secret name), never sent. NTLM sends NTLMv2 "
        "responses unless `ntlmVersion` is `v1` (for a server that takes nothing newer). OAuth "
        "(client credentials through azure-identity) uses a client secret, or with "
        "`credentialType` `certificate` a certificate: the secret then holds the PEM "
        "certificate with its unencrypted RSA private key. Saving a connection again with "
        "other authentication (e.g. NTLM to OAuth) keeps every mailbox's sync state and every "
        "appointment's event. Enabling a connection re-queues the changes held back while it "
        "was disabled."
    ),
    request_body=ConnectionConfig,
    responses={
        201: Response("Created.", ConnectionSaved),
        200: Response("Replaced.", ConnectionSaved),
        **admin_route_errors(),
    },
    tags=("admin",),
)

PUT_STAFF = ApiRoute(
    function_name="put_staff",
    method="PUT",
    route="orgs/{org}/staff/{staffId}",
    auth_level="FUNCTION",
    security="admin",
    summary="Assign a staff member's mailbox to a connection",
    description=(
        "Which mailbox (SMTP address, time zone) the staff member has, on which connection of "
        "the organization. A different mailbox or connection starts its sync afresh."
    ),
    request_body=StaffMailboxAssignment,
    responses={
        201: Response("Assigned.", StaffSaved),
        200: Response("Re-assigned.", StaffSaved),
        **admin_route_errors(),
    },
    tags=("admin",),
)

PUT_SETTINGS = ApiRoute(
    function_name="put_settings",
    method="PUT",
    route="orgs/{org}/settings",
    auth_level="FUNCTION",
    security="admin",
    summary="Set the organization's settings",
    description=(
        "Where the booking platform takes calbridge's signed webhooks (https; the same address "
        "rules as Exchange URLs), how many days ahead recurring series count as busy time, how "
        "often EWS mailboxes are polled, and the share of a mailbox's appointments one sync may "
        "cancel before it is held for a person to look at."
    ),
    request_body=OrgSettings,
    responses={
        201: Response("Set for the first time.", OrgSettings),
        200: Response("Replaced.", OrgSettings),
        **admin_route_errors(),
    },
    tags=("admin",),
)

GET_SETTINGS = ApiRoute(
    function_name="get_settings",
    method="GET",
    route="orgs/{org}/settings",
    auth_level="FUNCTION",
    security="admin",
    summary="The organization's settings",
    description="The stored settings, or the defaults when none were set.",
    responses={
        200: Response("The settings.", OrgSettings),
        **{
            status: response
            for status, response in admin_route_errors().items()
            if status in (401, 404, 503)
        },
    },
    tags=("admin",),
)

REPLAY_WEBHOOK = ApiRoute(
    function_name="replay_webhook",
    method="POST",
    route="orgs/{org}/webhooks/{eventId}/replay",
    auth_level="FUNCTION",
    security="admin",
    summary="Deliver an event to the booking platform again",
    description=(
        "An event that was not delivered (dead-lettered after its last try, or still being "
        "retried) starts its tries over. The same event id is sent, so the platform can drop "
        "a duplicate."
    ),
    responses={
        202: Response("Queued for delivery again.", WebhookReplayed),
        409: Response("The event was delivered already.", ApiError),
        **{
            status: response
            for status, response in admin_route_errors().items()
            if status in (400, 401, 404, 503)
        },
    },
    tags=("admin",),
)


def graph_route_errors() -> dict[int, Response]:
    """The refusals Graph's notification and lifecycle routes can answer."""
    return {
        400: Response(
            "Not a Graph notification batch (or one naming a key twice), or a validation "
            "request Graph would not send: a token that is empty, longer than 1024 characters "
            "or not printable text, or a body beside the token.",
            ApiError,
        ),
        403: Response(
            "No notification names a subscription of this organization with its clientState: "
            "nothing changes.",
            ApiError,
        ),
        404: Response("The organization id is not a valid id.", ApiError),
        413: Response("The body is larger than 1 MiB.", ApiError),
        503: Response("Storage or the queue is unavailable; Graph delivers again.", ApiError),
    }


VALIDATION_TOKEN = QueryParameter(
    "validationToken",
    "Graph's validation handshake when a subscription is made (no body): answered 200 "
    "text/plain with the decoded token and nothing else.",
    required=False,
)

GRAPH_NOTIFICATIONS = ApiRoute(
    function_name="graph_notifications",
    method="POST",
    route="graph/notifications/{org}",
    auth_level="ANONYMOUS",
    security=None,
    summary="Graph change notifications (called by Microsoft Graph)",
    description=(
        "The notificationUrl of the organization's Graph subscriptions (one per Exchange Online "
        "mailbox, on its events). Each notification must name a subscription of the "
        "organization and carry its clientState; valid ones queue one mailbox sync per mailbox "
        "(a burst is one sync). Answered 202 well within Graph's 3 seconds."
    ),
    request_body=GraphNotificationBatch,
    body_required=False,
    query=(VALIDATION_TOKEN,),
    responses={
        200: Response("The validation handshake: the decoded token.", media_type="text/plain"),
        202: Response("Accepted: the mailboxes named will be read."),
        **graph_route_errors(),
    },
    tags=("graph",),
)

GRAPH_LIFECYCLE = ApiRoute(
    function_name="graph_lifecycle",
    method="POST",
    route="graph/lifecycle/{org}",
    auth_level="ANONYMOUS",
    security=None,
    summary="Graph lifecycle notifications (called by Microsoft Graph)",
    description=(
        "The lifecycleNotificationUrl of the organization's Graph subscriptions, checked like "
        "change notifications: reauthorizationRequired → the subscription is reauthorized; "
        "subscriptionRemoved → it is made anew and the mailbox read; missed → the mailbox is "
        "read."
    ),
    request_body=GraphNotificationBatch,
    body_required=False,
    query=(VALIDATION_TOKEN,),
    responses={
        200: Response("The validation handshake: the decoded token.", media_type="text/plain"),
        202: Response("Accepted."),
        **graph_route_errors(),
    },
    tags=("graph",),
)

# --- status: the organization's health, and the page that shows it -----------------------------

GET_STATUS = ApiRoute(
    function_name="get_status",
    method="GET",
    route="orgs/{org}/status",
    auth_level="FUNCTION",
    security="admin",
    summary="The organization's health at a glance",
    description=(
        "Read from storage, never from Exchange. Per connection: kind, enabled, health (ok, "
        "auth_failed, throttled, unreachable, disabled), last error, resync progress (its "
        "mailboxes read in full / all) and parked changes. Per mailbox: last successful sync, "
        "lag (seconds since), health, last error, held, resyncing, pending work (parked "
        "changes, apply problems, undelivered webhooks), dead-lettered work, refused "
        "reschedules and the Graph subscription's expiry. Then the organization's totals, its "
        "dead letters and its newest errors. Never a secret, an event's content or a client's "
        "details. Answered with Cache-Control: no-store."
    ),
    responses={
        200: Response("The organization's status.", OrgStatus),
        **{
            status: response
            for status, response in admin_route_errors().items()
            if status in (401, 404, 503)
        },
    },
    tags=("admin",),
)

STATUS_PAGE_HEADERS = (
    "Served with a strict Content-Security-Policy (scripts, styles and requests from this "
    "origin only; no inline script), X-Content-Type-Options: nosniff and Cache-Control: "
    "no-store."
)

GET_STATUS_PAGE = ApiRoute(
    function_name="get_status_page",
    method="GET",
    route="status-page",
    auth_level="ANONYMOUS",
    security=None,
    summary="The status page (HTML)",
    description=(
        "One page where an administrator enters the organization id, the function key and the "
        "admin key (kept in the page's memory or the tab's sessionStorage, sent in headers, "
        "never put in a URL) and sees GET .../status at a glance, with resync, replay, disable "
        "and enable buttons calling the admin routes. The page itself holds no data. "
        + STATUS_PAGE_HEADERS
    ),
    responses={200: Response("The page.", media_type="text/html")},
    tags=("status",),
)

GET_STATUS_PAGE_SCRIPT = ApiRoute(
    function_name="get_status_page_script",
    method="GET",
    route="status-page/app.js",
    auth_level="ANONYMOUS",
    security=None,
    summary="The status page's script",
    description="Plain JavaScript, no framework. " + STATUS_PAGE_HEADERS,
    responses={200: Response("The script.", media_type="text/javascript")},
    tags=("status",),
)

GET_STATUS_PAGE_STYLE = ApiRoute(
    function_name="get_status_page_style",
    method="GET",
    route="status-page/style.css",
    auth_level="ANONYMOUS",
    security=None,
    summary="The status page's style sheet",
    description=STATUS_PAGE_HEADERS,
    responses={200: Response("The style sheet.", media_type="text/css")},
    tags=("status",),
)

ROUTES: tuple[ApiRoute, ...] = (
    PUT_APPOINTMENT,
    GET_BUSY_TIME,
    GET_OPENAPI,
    PUT_CONNECTION,
    PUT_STAFF,
    PUT_SETTINGS,
    GET_SETTINGS,
    REPLAY_WEBHOOK,
    GRAPH_NOTIFICATIONS,
    GRAPH_LIFECYCLE,
    # status
    GET_STATUS,
    GET_STATUS_PAGE,
    GET_STATUS_PAGE_SCRIPT,
    GET_STATUS_PAGE_STYLE,
)


# --- admin: connection operations (maintenance, test, resync, replay, reading back) -----------


def _admin_errors(*statuses: int) -> dict[int, Response]:
    return {status: r for status, r in admin_route_errors().items() if status in statuses}


_UNKNOWN_CONNECTION = Response("No such connection in the organization.", ApiError)

LIST_CONNECTIONS = ApiRoute(
    function_name="list_connections",
    method="GET",
    route="orgs/{org}/connections",
    auth_level="FUNCTION",
    security="admin",
    summary="The organization's Exchange connections",
    description=(
        "Every connection's settings as stored (the secret by reference, never the secret), "
        "its health and last error, and its mailboxes' resync progress."
    ),
    responses={200: Response("The connections.", ConnectionList), **_admin_errors(401, 404, 503)},
    tags=("admin",),
)

GET_CONNECTION = ApiRoute(
    function_name="get_connection",
    method="GET",
    route="orgs/{org}/connections/{connectionId}",
    auth_level="FUNCTION",
    security="admin",
    summary="One Exchange connection",
    description=(
        "The connection's settings as stored (the secret by reference, never the secret), its "
        "health and last error, and its mailboxes' resync progress."
    ),
    responses={
        200: Response("The connection.", ConnectionView),
        **_admin_errors(400, 401, 503),
        404: Response("No such connection (or the organization id is not valid).", ApiError),
    },
    tags=("admin",),
)


def _maintenance_route(name: str, action: str, summary: str, description: str) -> ApiRoute:
    return ApiRoute(
        function_name=name,
        method="POST",
        route=f"orgs/{{org}}/connections/{{connectionId}}/{action}",
        auth_level="FUNCTION",
        security="admin",
        summary=summary,
        description=description,
        body_required=False,
        responses={
            200: Response("The connection's state.", ConnectionState),
            **_admin_errors(400, 401, 409, 503),
            404: _UNKNOWN_CONNECTION,
        },
        tags=("admin",),
    )


DISABLE_CONNECTION = _maintenance_route(
    "disable_connection",
    "disable",
    "Pause a connection for maintenance",
    "From now on calbridge makes no call to this Exchange: timers skip its mailboxes, the "
    "workers park the appointment changes they would write, Graph sweeps and subscription "
    "renewals wait. Booking changes keep arriving and are kept. Tells the booking platform "
    "connection.health_changed (disabled). No body.",
)

ENABLE_CONNECTION = _maintenance_route(
    "enable_connection",
    "enable",
    "Resume a connection after maintenance",
    "The newest snapshot of each appointment parked meanwhile is applied once, and every "
    "mailbox of the connection is read from its stored cursor to catch up on what changed in "
    "Exchange. Also retries refused credentials. Tells the booking platform "
    "connection.health_changed (ok). No body.",
)

TEST_CONNECTION = ApiRoute(
    function_name="test_connection",
    method="POST",
    route="orgs/{org}/connections/{connectionId}/test",
    auth_level="FUNCTION",
    security="admin",
    summary="Test a connection on every assigned mailbox",
    description=(
        "For each mailbox on the connection: can calbridge read its calendar, and write there "
        "(a test event, free and in the past, made and removed at once), with which access mode; "
        "when not, why (refused credentials, no right on the mailbox, unknown mailbox, "
        "unreachable server, TLS failure, throttling, time limit). Mailboxes are tested several "
        "at a time and the answer comes within about 20 seconds. A test that reads a mailbox "
        "of a connection marked auth_failed recovers it. No body."
    ),
    body_required=False,
    responses={
        200: Response("What each mailbox's test found.", ConnectionTest),
        **_admin_errors(400, 401, 503),
        404: _UNKNOWN_CONNECTION,
    },
    tags=("admin",),
)

RESYNC_CONNECTION = ApiRoute(
    function_name="resync_connection",
    method="POST",
    route="orgs/{org}/connections/{connectionId}/resync",
    auth_level="FUNCTION",
    security="admin",
    summary="Read every mailbox of a connection in full",
    description=(
        "Each mailbox's calendar is read in full on its next sync (queued now) and compared "
        "with what calbridge knows: only real differences are reported. Progress: mailboxesRead "
        "of mailboxes in GET .../connections/{connectionId}. No body."
    ),
    body_required=False,
    responses={
        202: Response("Queued.", ResyncQueued),
        **_admin_errors(400, 401, 503),
        404: _UNKNOWN_CONNECTION,
    },
    tags=("admin",),
)

RESYNC_STAFF = ApiRoute(
    function_name="resync_staff",
    method="POST",
    route="orgs/{org}/staff/{staffId}/resync",
    auth_level="FUNCTION",
    security="admin",
    summary="Read one staff member's mailbox in full",
    description=(
        "The calendar is read in full on the mailbox's next sync (queued now) and compared with "
        "what calbridge knows: only real differences are reported. No body."
    ),
    body_required=False,
    responses={
        202: Response("Queued.", ResyncQueued),
        **_admin_errors(400, 401, 503),
        404: Response("The staff member has no mailbox in the organization.", ApiError),
    },
    tags=("admin",),
)

REPLAY = ApiRoute(
    function_name="replay_failed_work",
    method="POST",
    route="orgs/{org}/replay",
    auth_level="FUNCTION",
    security="admin",
    summary="Replay dead-lettered and poison work",
    description=(
        "Work that failed on its last try — messages in a queue's poison queue "
        "(<queue>-poison), dead letters, webhooks the delivery gave up on — is queued again "
        "(an appointment with its newest snapshot, a webhook with its tries started over). No "
        "body (or {}) replays all of the organization's; {queue, id} replays one."
    ),
    request_body=ReplayRequest,
    body_required=False,
    responses={
        202: Response("Queued again.", ReplayReport),
        **_admin_errors(400, 401, 413, 422, 503),
        404: Response("No such failed item (or the organization id is not valid).", ApiError),
    },
    tags=("admin",),
)

ROUTES = (
    *ROUTES,
    LIST_CONNECTIONS,
    GET_CONNECTION,
    DISABLE_CONNECTION,
    ENABLE_CONNECTION,
    TEST_CONNECTION,
    RESYNC_CONNECTION,
    RESYNC_STAFF,
    REPLAY,
)
