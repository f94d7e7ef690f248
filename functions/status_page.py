"""HTTP triggers of the status page: its HTML, script and style sheet (``shared.status_page``).

``ANONYMOUS`` at the host: the files hold no data; what the page shows it reads from
``GET .../status`` with the keys the administrator types in.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_functions import http_function, to_http_response
from shared import observability
from shared.http.routes import GET_STATUS_PAGE, GET_STATUS_PAGE_SCRIPT, GET_STATUS_PAGE_STYLE
from shared.status_page import page_file

bp = func.Blueprint()


@http_function(bp, GET_STATUS_PAGE, "GET status-page ANONYMOUS")
def get_status_page(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(page_file("index.html"))


@http_function(bp, GET_STATUS_PAGE_SCRIPT, "GET status-page/app.js ANONYMOUS")
def get_status_page_script(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(page_file("app.js"))


@http_function(bp, GET_STATUS_PAGE_STYLE, "GET status-page/style.css ANONYMOUS")
def get_status_page_style(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    with observability.http_invocation(context, req):
        return to_http_response(page_file("style.css"))
