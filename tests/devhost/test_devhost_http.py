"""The local runner's HTTP triggers: routing, methods, keys, request/response mapping.

A small synthetic app is driven through a real runner on a free loopback port and called over
HTTP with http.client.
"""

from __future__ import annotations

import http.client
import json
import logging
import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import azure.functions as func
import pytest

from devhost.hostconfig import HostConfig
from devhost.routes import RouteTemplate, RouteTemplateError
from devhost.runner import FunctionsRunner

KEY = "test-functions-key"


def echo(req: func.HttpRequest, name: str) -> func.HttpResponse:
    """Reports what the function received, so tests can check the request mapping."""
    document = {
        "function": name,
        "method": req.method,
        "url": req.url,
        "params": dict(req.params),
        "route": dict(req.route_params),
        "headers": {k: req.headers.get(k) for k in ("x-probe", "content-type")},
        "body": req.get_body().decode("utf-8", "replace"),
        "bodyLength": len(req.get_body()),
    }
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


def synthetic_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="items/{id:int}", methods=["GET", "PUT"])
    def item_by_number(req: func.HttpRequest) -> func.HttpResponse:
        return echo(req, "item_by_number")

    @app.route(route="items/new", methods=["GET"])
    def new_item(req: func.HttpRequest) -> func.HttpResponse:
        return echo(req, "new_item")

    @app.route(route="items/{slug}", methods=["GET"])
    def item_by_slug(req: func.HttpRequest) -> func.HttpResponse:
        return echo(req, "item_by_slug")

    @app.route(route="pages/{section}/{page?}", auth_level=func.AuthLevel.ANONYMOUS)
    def page(req: func.HttpRequest) -> func.HttpResponse:
        return echo(req, "page")

    @app.route(route="public", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    async def public(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(
            b"\x00\x01raw",
            status_code=201,
            headers={"X-Answer": "42", "Location": "/api/public/1"},
            mimetype="application/octet-stream",
        )

    @app.route(route="admin/thing", auth_level=func.AuthLevel.ADMIN)
    def admin_thing(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("admin ok")

    @app.route(route="broken", auth_level=func.AuthLevel.ANONYMOUS)
    def broken(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("this function always fails")

    @app.route(route="leaky", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
    def leaky(req: func.HttpRequest) -> func.HttpResponse:
        raise ValueError(f"cannot use {req.get_body().decode()}")

    @app.route(auth_level=func.AuthLevel.ANONYMOUS)
    def unrouted(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("served under its own name")

    return app


@pytest.fixture(scope="module")
def runner() -> Iterator[FunctionsRunner]:
    with FunctionsRunner(
        synthetic_app(), HostConfig(route_prefix="api"), environ={}, functions_key=KEY
    ) as running:
        yield running


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> dict[str, object]:
        document = json.loads(self.body)
        assert isinstance(document, dict)
        return document


def call(
    runner: FunctionsRunner,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    address = urlsplit(runner.base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        return Answer(connection.getresponse())
    finally:
        connection.close()


def keyed(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"x-functions-key": KEY, **(extra or {})}


def test_typed_route_parameter_reaches_the_function_with_query_headers_and_body(
    runner: FunctionsRunner,
) -> None:
    answer = call(
        runner,
        "PUT",
        "/api/items/42?colour=red&tag=a&tag=b",
        body=b'{"x": 1}',
        headers=keyed({"X-Probe": "yes", "Content-Type": "application/json"}),
    )
    assert answer.status == 200
    document = answer.json()
    assert document["function"] == "item_by_number"
    assert document["method"] == "PUT"
    assert document["route"] == {"id": "42"}
    assert document["params"] == {"colour": "red", "tag": "a,b"}
    assert document["headers"] == {"x-probe": "yes", "content-type": "application/json"}
    assert document["body"] == '{"x": 1}'
    assert str(document["url"]).endswith("/api/items/42?colour=red&tag=a&tag=b")
    assert answer.headers["Content-Type"] == "application/json; charset=utf-8"


def test_literal_segment_wins_over_a_parameter_and_constraints_pick_the_route(
    runner: FunctionsRunner,
) -> None:
    assert call(runner, "GET", "/api/items/new", headers=keyed()).json()["function"] == "new_item"
    slug = call(runner, "GET", "/api/items/blue-chair", headers=keyed()).json()
    assert slug["function"] == "item_by_slug"
    assert slug["route"] == {"slug": "blue-chair"}
    assert call(runner, "GET", "/api/items/7", headers=keyed()).json()["function"] == (
        "item_by_number"
    )


def test_percent_encoded_segments_are_decoded_into_route_params(runner: FunctionsRunner) -> None:
    document = call(runner, "GET", "/api/items/a%20b%2Fc", headers=keyed()).json()
    assert document["route"] == {"slug": "a b/c"}


def test_optional_parameter_may_be_left_out(runner: FunctionsRunner) -> None:
    assert call(runner, "GET", "/api/pages/help/intro").json()["route"] == {
        "section": "help",
        "page": "intro",
    }
    assert call(runner, "GET", "/api/pages/help").json()["route"] == {"section": "help"}


def test_method_not_registered_for_a_route_is_405_with_allow(runner: FunctionsRunner) -> None:
    answer = call(runner, "DELETE", "/api/items/42", headers=keyed())
    assert answer.status == 405
    assert answer.headers["Allow"] == "GET, PUT"
    assert "DELETE" in str(answer.json()["message"])
    assert call(runner, "GET", "/api/public").status == 405


def test_unknown_path_and_path_outside_the_prefix_are_404(runner: FunctionsRunner) -> None:
    assert call(runner, "GET", "/api/nothing/here", headers=keyed()).status == 404
    assert call(runner, "GET", "/items/42", headers=keyed()).status == 404
    assert call(runner, "GET", "/api/items/42/extra", headers=keyed()).status == 404


def test_function_level_route_needs_the_key(runner: FunctionsRunner) -> None:
    missing = call(runner, "GET", "/api/items/42")
    assert missing.status == 401
    assert "x-functions-key" in str(missing.json()["message"])
    assert call(runner, "GET", "/api/items/42", headers={"x-functions-key": "wrong"}).status == 401
    assert call(runner, "GET", f"/api/items/42?code={KEY}").status == 200
    assert call(runner, "GET", "/api/items/42", headers=keyed()).status == 200


def test_admin_level_route_needs_the_key(runner: FunctionsRunner) -> None:
    assert call(runner, "GET", "/api/admin/thing").status == 401
    assert call(runner, "GET", "/api/admin/thing", headers=keyed()).body == b"admin ok"


def test_anonymous_async_function_sets_status_headers_mimetype_and_binary_body(
    runner: FunctionsRunner,
) -> None:
    answer = call(runner, "POST", "/api/public", body=b"ignored")
    assert answer.status == 201
    assert answer.headers["X-Answer"] == "42"
    assert answer.headers["Location"] == "/api/public/1"
    assert answer.headers["Content-Type"] == "application/octet-stream"
    assert answer.body == b"\x00\x01raw"


def test_function_without_route_is_served_under_its_name(runner: FunctionsRunner) -> None:
    assert call(runner, "GET", "/api/unrouted").body == b"served under its own name"


def test_function_that_raises_gives_500_and_the_server_keeps_serving(
    runner: FunctionsRunner,
) -> None:
    assert call(runner, "GET", "/api/broken").status == 500
    assert call(runner, "GET", "/api/unrouted").status == 200


def test_body_passes_through_unchanged_up_to_the_cap_and_413_beyond(
    runner: FunctionsRunner,
) -> None:
    big = b"x" * (1024 * 1024)
    answer = call(runner, "GET", "/api/pages/upload", body=big)
    assert answer.status == 200
    assert answer.json()["bodyLength"] == len(big)
    too_big = b"x" * (4 * 1024 * 1024 + 1)
    refused = call(runner, "GET", "/api/pages/upload", body=too_big)
    assert refused.status == 413
    assert refused.json()["error"] == "request_too_large"


def test_chunked_request_body_is_reassembled(runner: FunctionsRunner) -> None:
    chunks = iter([b"hello ", b"chunked ", b"world"])
    address = urlsplit(runner.base_url)
    connection = http.client.HTTPConnection(address.hostname or "", address.port, timeout=10)
    try:
        connection.request("GET", "/api/pages/chunked", body=chunks, encode_chunked=True)
        document = json.loads(connection.getresponse().read())
    finally:
        connection.close()
    assert document["body"] == "hello chunked world"


def test_runner_generates_a_key_when_none_is_given() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    with FunctionsRunner(app, HostConfig(route_prefix=""), environ={}) as running:
        assert len(running.functions_key) >= 40
        assert running.base_url.count("/") == 2  # empty prefix: http://host:port
        assert call(running, "GET", "/ping").status == 401
        answer = call(running, "GET", "/ping", headers={"x-functions-key": running.functions_key})
        assert answer.body == b"pong"


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("a/{x:int}", "a/12", {"x": "12"}),
        ("a/{x:int}", "a/1x", None),
        ("a/{x:int}", "a/99999999999", None),
        ("A/b", "a/B", {}),
        ("a/{x?}", "a", {}),
        ("a/{x?}", "a/1", {"x": "1"}),
        ("files/{*rest}", "files/x/y/z", {"rest": "x/y/z"}),
        ("files/{*rest}", "files", {}),
        ("a/{x}", "a", None),
        ("a/{x}", "a/1/2", None),
    ],
)
def test_route_template_matching(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate.parse(template).match(path.split("/")) == expected


@pytest.mark.parametrize(
    "template",
    [
        "a/{x:unknown}",
        "{*rest}/a",
        "a/{x",
        "a/b{x?}",
        "a/{x:int(}",
        # ASP.NET reads these; no route here needs them, so the runner refuses them.
        "a/{x:guid}",
        "a/{x:int:min(1)}",
        "a/{x:regex(^a$)}",
        "v/{n=7}",
        "v/{name}.{ext}",
    ],
)
def test_unreadable_or_unsupported_route_templates_are_refused(template: str) -> None:
    with pytest.raises(RouteTemplateError, match=re.escape(repr(template))):
        RouteTemplate.parse(template)


def test_an_app_with_an_unsupported_constraint_is_refused_when_indexed() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="items/{id:guid}")
    def item_by_guid(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("never served")

    with pytest.raises(RouteTemplateError) as refused:
        FunctionsRunner(app, HostConfig(route_prefix="api"), environ={})
    message = str(refused.value)
    assert "function item_by_guid" in message
    assert "'items/{id:guid}'" in message
    assert "constraint 'guid'" in message


def test_log_has_one_line_per_invocation_and_never_the_body_or_exception_text(
    runner: FunctionsRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="devhost")
    secret_body = b"private-subject-and-secret-42"
    assert call(runner, "POST", "/api/leaky", body=secret_body).status == 500
    assert call(runner, "PUT", "/api/items/5", body=secret_body, headers=keyed()).status == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "devhost"]
    invocations = [line for line in lines if line.startswith("invocation ")]
    assert len(invocations) == 2
    assert invocations[0].startswith("invocation function=leaky trigger=http outcome=500")
    assert "duration_ms=" in invocations[0]
    assert invocations[1].startswith("invocation function=item_by_number trigger=http outcome=200")
    assert any("ValueError at " in line and "in leaky" in line for line in lines)
    assert not any("private-subject" in line for line in lines)
