"""JSON ``$batch``: up to 20 requests in one POST, each run as if sent alone.

Requests run in an order that honours ``dependsOn`` (msgraph-sdk spells it ``depends_on``); a
request whose dependency failed gets 424 Failed Dependency without running. The batch holds up
to four concurrency slots of its mailbox while it runs (``GraphService.execute``). Each request is
counted, throttled and fault-injected under its own operation; an injected 500/503/401 becomes
that request's status inside the batch (a connection reset still drops the whole connection).
Bodies travel as JSON objects, or base64 for anything else, as Graph does.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from sim.graph.errors import GraphError, bad_request, error_body
from sim.store import InjectedFault
from sim.wire import SimRequest, SimResponse

if TYPE_CHECKING:
    from sim.graph.service import Call, GraphService

MAX_REQUESTS = 20
# What an injected fault looks like inside a batch (the same codes the server sends alone).
_INJECTED = {
    "http_500": (500, "generalException", "Injected fault: http_500"),
    "http_503": (503, "serviceNotAvailable", "Injected fault: http_503"),
    "unauthorized": (401, "InvalidAuthenticationToken", "Access token has expired."),
}


def _parse_requests(body: object) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise bad_request("A $batch body needs a 'requests' array.")
    requests: list[dict[str, Any]] = body["requests"]
    if not requests:
        raise bad_request("A $batch request needs at least one request.")
    if len(requests) > MAX_REQUESTS:
        raise bad_request(
            f"Number of batch requests ({len(requests)}) exceeds the maximum of {MAX_REQUESTS}."
        )
    seen: set[str] = set()
    for index, entry in enumerate(requests):
        if not isinstance(entry, dict):
            raise bad_request(f"requests[{index}] must be an object")
        for name in ("id", "method", "url"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise bad_request(f"requests[{index}].{name} is required")
        if entry["id"] in seen:
            raise bad_request(f"Request id {entry['id']!r} appears more than once in the batch.")
        seen.add(entry["id"])
    return requests


def _dependencies(entry: dict[str, Any]) -> list[str]:
    value = entry.get("dependsOn", entry.get("depends_on")) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request(f"dependsOn of request {entry['id']!r} must be a list of request ids")
    return value


def _execution_order(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {entry["id"]: entry for entry in requests}
    order: list[dict[str, Any]] = []
    state: dict[str, str] = {}

    def visit(entry: dict[str, Any]) -> None:
        mark = state.get(entry["id"])
        if mark == "done":
            return
        if mark == "visiting":
            raise bad_request(f"dependsOn forms a cycle at request {entry['id']!r}.")
        state[entry["id"]] = "visiting"
        for dependency in _dependencies(entry):
            if dependency not in by_id:
                raise bad_request(
                    f"Request {entry['id']!r} depends on {dependency!r}, which is not in the batch."
                )
            visit(by_id[dependency])
        state[entry["id"]] = "done"
        order.append(entry)

    for entry in requests:
        visit(entry)
    return order


def _inner_request(call: Call, entry: dict[str, Any]) -> SimRequest:
    url = entry["url"]
    if "://" in url:
        raise bad_request(f"request {entry['id']!r}: url must be relative, like /me/events")
    parts = urlsplit(url if url.startswith("/") else "/" + url)
    headers = {str(k).lower(): str(v) for k, v in (entry.get("headers") or {}).items()}
    for name in ("prefer", "client-request-id"):
        if name not in headers and call.request.header(name):
            headers[name] = call.request.header(name) or ""
    body = entry.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, dict | list):
        raw = json.dumps(body).encode()
    elif isinstance(body, str):
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raw = body.encode()
    else:
        raise bad_request(f"body of request {entry['id']!r} must be a JSON object or base64 text")
    return SimRequest(
        method=entry["method"].upper(),
        path="/v1.0" + parts.path,
        query=parse_qs(parts.query, keep_blank_values=True),
        headers=headers,
        body=raw,
        principal=call.principal,
    )


def _inner_response(entry_id: str, response: SimResponse) -> dict[str, Any]:
    result: dict[str, Any] = {"id": entry_id, "status": response.status}
    headers = dict(response.headers)
    if response.content_type:
        headers["Content-Type"] = response.content_type
    result["headers"] = headers
    if response.body:
        if response.content_type.startswith("application/json"):
            result["body"] = json.loads(response.body)
        else:
            result["body"] = base64.b64encode(response.body).decode()
    return result


def _injected_response(injected: InjectedFault) -> SimResponse:
    from sim.graph.service import JSON_TYPE

    known = _INJECTED.get(injected.fault.kind)
    if known is None:
        raise injected  # a reset drops the whole connection, as it would for one request
    status, code, message = known
    headers = {"Retry-After": str(injected.fault.retry_after)} if status == 503 else {}
    return SimResponse(
        status, error_body(GraphError(status, code, message), "", ""), headers, JSON_TYPE
    )


def run_batch(service: GraphService, call: Call) -> SimResponse:
    from sim.graph.service import JSON_TYPE, json_response

    requests = _parse_requests(call.json_body())
    order = _execution_order(requests)
    statuses: dict[str, int] = {}
    answers: dict[str, dict[str, Any]] = {}
    for entry in order:
        failed = [d for d in _dependencies(entry) if statuses.get(d, 0) >= 400]
        if failed:
            error = GraphError(
                424,
                "FailedDependency",
                f"Request depends on failed request(s) {', '.join(failed)}.",
            )
            response = SimResponse(424, error_body(error, "", ""), {}, JSON_TYPE)
        else:
            inner = _inner_request(call, entry)
            try:
                if call.mailbox and not call.batch_slots and _names(service, call, inner):
                    # No slot of the mailbox was free for the batch: Graph answers each of
                    # its requests there as it would a request sent alone.
                    raise service._concurrency_error()
                response = service.handle_inner(inner, batch_mailbox=call.mailbox)
            except InjectedFault as fault:
                response = _injected_response(fault)
            except GraphError as error:
                response = SimResponse(
                    error.status, error_body(error, "", ""), dict(error.headers), JSON_TYPE
                )
        statuses[entry["id"]] = response.status
        answers[entry["id"]] = _inner_response(entry["id"], response)
    return json_response(200, {"responses": [answers[entry["id"]] for entry in requests]})


def _names(service: GraphService, call: Call, inner: SimRequest) -> bool:
    """Whether an inner request addresses the batch's own mailbox."""
    parts = [unquote(part) for part in inner.path.split("/") if part][1:]  # after "v1.0"
    try:
        if parts[:1] == ["me"] and call.principal.kind == "user":
            return service._resolve_user(call.principal.name) == call.mailbox
        if parts[:1] and parts[0].lower() == "users" and len(parts) > 1:
            return service._resolve_user(parts[1]) == call.mailbox
    except GraphError:
        return False
    return False
