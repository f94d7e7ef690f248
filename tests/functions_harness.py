"""Call the functions that ``function_app.app`` registers, the way the Functions host would.

- :func:`registered_functions` indexes the app ONCE per process (a second
  ``app.get_functions()`` raises on duplicate names) and returns the functions by name.
- :func:`http_call` routes through the local runner's router (``devhost.http_triggers``): the
  same route matching, 404 and 405 (the runner's answers) and ``func.HttpRequest`` (route
  params, query params, headers, body) as ``make run``, then calls the user function (awaited
  if it is a coroutine function); its exceptions reach the caller.
- :func:`queue_call` and :func:`timer_call` call queue- and timer-triggered functions with the
  real ``azure.functions`` message and timer objects.
- :func:`signed_call` sends a request signed as the booking platform signs it (method, request
  target and body); :func:`signed_headers` makes just the header; :func:`app_environment`
  points the app's settings at a storage account (Azurite) with a name prefix and signing
  secrets, and resets ``shared.bootstrap`` on entry and exit.

Auth levels are not enforced here (the host's job, and the local runner's): the router gets no
functions key, so calls arrive as if the key, where one is required, was right.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import azure.functions as func
from azure.functions.decorators.function_app import Function
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from devhost.http_triggers import HttpAnswer, HttpRouter
from devhost.invocation import InvocationContext
from shared import bootstrap
from shared.booking.signature import SIGNATURE_HEADER, sign_request
from shared.config import environment_variable_for, org_signing_secret_reference
from shared.http.routes import ROUTE_PREFIX
from shared.queues import QUEUE_PREFIX_SETTING

REPO_ROOT = Path(__file__).resolve().parents[1]

__all__ = [
    "app_environment",
    "call_queue_function",
    "call_timer_function",
    "function_bindings",
    "http_call",
    "queue_call",
    "registered_functions",
    "request_target",
    "signed_call",
    "signed_headers",
    "timer_call",
    "trigger_binding",
]


@lru_cache(maxsize=1)
def registered_functions() -> dict[str, Function]:
    """The app's functions by name, indexed once per process (the index is shared with the
    local runner, since ``get_functions()`` may run only once per app object)."""
    import function_app
    from devhost.indexing import indexed_functions

    return {str(fn.get_function_name()): fn for fn in indexed_functions(function_app.app)}


def function_bindings(fn: Function) -> list[dict[str, Any]]:
    """The bindings as the host reads them (function.json)."""
    bindings: list[dict[str, Any]] = json.loads(fn.get_function_json())["bindings"]
    return bindings


def trigger_binding(fn: Function) -> dict[str, Any]:
    """The function's trigger binding (``httpTrigger``, ``queueTrigger``, ``timerTrigger``...)."""
    triggers = [b for b in function_bindings(fn) if b["type"].endswith("Trigger")]
    if len(triggers) != 1:
        raise AssertionError(f"{fn.get_function_name()} has {len(triggers)} triggers")
    return triggers[0]


def _invoke(fn: Function, argument: Any) -> Any:
    """Call the user function with its trigger argument (and a ``context`` when it declares
    one, as the worker gives), awaiting a coroutine function."""
    user_function = fn.get_user_function()
    kwargs = {trigger_binding(fn)["name"]: argument}
    if "context" in inspect.signature(user_function).parameters:
        kwargs["context"] = InvocationContext(str(fn.get_function_name()), str(REPO_ROOT))
    if inspect.iscoroutinefunction(user_function):
        return asyncio.run(user_function(**kwargs))
    return user_function(**kwargs)


@lru_cache(maxsize=1)
def _router() -> HttpRouter:
    """The local runner's router over the app's HTTP functions (one route matcher for both),
    without a functions key: the harness does not enforce auth levels."""
    import function_app
    from devhost.indexing import index_app

    return HttpRouter(index_app(function_app.app).http, ROUTE_PREFIX, functions_key=None)


def _runner_answer(answer: HttpAnswer) -> func.HttpResponse:
    """The runner's own answer (404, 405 with ``Allow``) as an HttpResponse."""
    headers = dict(answer.headers)
    content_type = headers.pop("Content-Type", "text/plain")
    return func.HttpResponse(
        answer.body,
        status_code=answer.status,
        headers=headers,
        mimetype=content_type.split(";")[0].strip(),
    )


def http_call(
    method: str,
    path: str,
    body: bytes | str = b"",
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> func.HttpResponse:
    """Send one request to the app: ``path`` as a client calls it (``/api/orgs/...``, a query
    string allowed) or relative to the route prefix."""
    target = request_target(path, params)
    raw_body = body.encode("utf-8") if isinstance(body, str) else body
    routed = _router().route(
        method.upper(), f"http://localhost{target}", dict(headers or {}), raw_body
    )
    if isinstance(routed, HttpAnswer):
        return _runner_answer(routed)
    fn = registered_functions()[routed.function.name]
    response = _invoke(fn, routed.request)
    if not isinstance(response, func.HttpResponse):
        raise AssertionError(f"{fn.get_function_name()} returned {type(response).__name__}")
    return response


def queue_call(function_name: str, body: str, dequeue_count: int = 1) -> Any:
    """Deliver one (already base64-decoded) message body to a queue-triggered function."""
    return call_queue_function(registered_functions()[function_name], body, dequeue_count)


def call_queue_function(fn: Function, body: str, dequeue_count: int = 1) -> Any:
    """Call a queue-triggered function with a host-like ``QueueMessage``."""
    if trigger_binding(fn)["type"] != "queueTrigger":
        raise AssertionError(f"{fn.get_function_name()} is not queue-triggered")
    now = datetime.now(UTC)
    message = QueueMessage(
        id=str(uuid.uuid4()),
        body=body.encode("utf-8"),
        dequeue_count=dequeue_count,
        insertion_time=now,
        time_next_visible=now,
        pop_receipt=str(uuid.uuid4()),
    )
    return _invoke(fn, message)


def timer_call(function_name: str, past_due: bool = False) -> Any:
    """Fire a timer-triggered function once."""
    return call_timer_function(registered_functions()[function_name], past_due)


def call_timer_function(fn: Function, past_due: bool = False) -> Any:
    """Call a timer-triggered function with a ``TimerRequest``."""
    if trigger_binding(fn)["type"] != "timerTrigger":
        raise AssertionError(f"{fn.get_function_name()} is not timer-triggered")
    return _invoke(fn, TimerRequest(past_due=past_due))


def request_target(path: str, params: Mapping[str, str] | None = None) -> str:
    """The request target a client sends for ``path`` (``/api/orgs/...`` or relative to the
    route prefix, a query string allowed) plus ``params``: what the function reads from the
    request's URL, and what a booking platform signature covers."""
    split = urllib.parse.urlsplit(path)
    route_path = split.path.lstrip("/")
    if route_path == ROUTE_PREFIX or route_path.startswith(ROUTE_PREFIX + "/"):
        route_path = route_path[len(ROUTE_PREFIX) :]
    query = split.query
    if params:
        query += ("&" if query else "") + urllib.parse.urlencode(params)
    return f"/{ROUTE_PREFIX}/{route_path.lstrip('/')}" + (f"?{query}" if query else "")


def signed_headers(
    secret: str,
    method: str,
    target: str,
    body: bytes | str = b"",
    timestamp: int | None = None,
) -> dict[str, str]:
    """The ``X-Calbridge-Signature`` header for a request (now unless a timestamp is given)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    stamp = int(time.time()) if timestamp is None else timestamp
    return {SIGNATURE_HEADER: sign_request(secret, method, target, raw, stamp)}


def signed_call(
    secret: str,
    method: str,
    path: str,
    body: bytes | str = b"",
    params: Mapping[str, str] | None = None,
    timestamp: int | None = None,
) -> func.HttpResponse:
    """``http_call`` signed as the booking platform signs (method, request target, body)."""
    target = request_target(path, params)
    return http_call(
        method, target, body, headers=signed_headers(secret, method, target, body, timestamp)
    )


@contextmanager
def app_environment(
    connection_string: str,
    prefix: str,
    signing_secrets: Mapping[str, str],
    **settings: str,
) -> Iterator[None]:
    """Point the app at a storage account, with table and queue names prefixed and the given
    organizations' signing secrets; the environment and ``shared.bootstrap`` are restored on
    exit. Extra keyword arguments set further variables (``CALBRIDGE_MAX_REQUEST_BYTES="10"``)."""
    values = {
        "AzureWebJobsStorage": connection_string,
        "CALBRIDGE_TABLE_PREFIX": prefix,
        QUEUE_PREFIX_SETTING: prefix,
        **{
            environment_variable_for(org_signing_secret_reference(org)): secret
            for org, secret in signing_secrets.items()
        },
        **settings,
    }
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    bootstrap.reset()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        bootstrap.reset()
