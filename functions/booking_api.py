"""HTTP triggers of the booking-platform contract: appointment snapshots, busy time, and the
OpenAPI document. Route, method and auth level come from ``shared.http.routes`` (and are shown
on each decorator); the work is done by ``shared.booking.intake.BookingIntake``.

The booking routes are ``ANONYMOUS`` for the Functions host: their authentication is the
per-organization HMAC signature (``X-Calbridge-Signature``) that the intake checks before
anything else, which a function key (one secret for every organization) could not replace.
The OpenAPI document is public.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_functions import http_function, signed_request, to_http_response
from shared import bootstrap, observability
from shared.http.contract import SIGNATURE_HEADER
from shared.http.openapi import document_json
from shared.http.routes import GET_BUSY_TIME, GET_OPENAPI, PUT_APPOINTMENT

bp = func.Blueprint()


@http_function(bp, PUT_APPOINTMENT, "PUT orgs/{org}/appointments/{appointmentId} ANONYMOUS")
def put_appointment(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().intake.put_appointment(
                org=req.route_params.get("org", ""),
                appointment_id=req.route_params.get("appointmentId", ""),
                request=signed_request(req),
                signature=req.headers.get(SIGNATURE_HEADER),
            )
        )


@http_function(bp, GET_BUSY_TIME, "GET orgs/{org}/staff/{staffId}/busy ANONYMOUS")
def get_busy_time(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(
            bootstrap.services().intake.busy_time(
                org=req.route_params.get("org", ""),
                staff_id=req.route_params.get("staffId", ""),
                start=req.params.get("start"),
                end=req.params.get("end"),
                request=signed_request(req),
                signature=req.headers.get(SIGNATURE_HEADER),
            )
        )


@http_function(bp, GET_OPENAPI, "GET openapi.json ANONYMOUS")
def get_openapi_document(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return func.HttpResponse(document_json(), mimetype="application/json", charset="utf-8")
