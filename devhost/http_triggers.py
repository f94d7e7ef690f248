"""HTTP triggers on a loopback port: routing, method and key checks, real ``func.HttpRequest``s.

What the Functions host does in front of an HTTP function, for local runs:
- only paths under the route prefix (host.json ``extensions.http.routePrefix``, ``api``) are
  routed; a function without a route template is served under its own name;
- no template matches → 404; a template matches but not the method → 405 with ``Allow``;
- FUNCTION and ADMIN functions need the local functions key (``x-functions-key`` header or
  ``code`` query parameter) → 401 without it; ANONYMOUS functions don't;
- the body is handed over as sent (the function enforces its own limit), but the runner reads
  at most ``max_body_bytes`` (4 MiB) → 413 beyond that.

Log lines carry the method, path (never the query string: it may hold the key) and status.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.indexing import RegisteredFunction
from devhost.invocation import InvocationTimer, Invoker
from devhost.routes import RouteTemplate
from shared.observability import failure_summary

log = logging.getLogger("devhost")

MAX_BODY_BYTES = 4 * 1024 * 1024
# A refused body up to this size is read and dropped before answering 413.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
KEY_HEADER = "x-functions-key"
KEY_QUERY_PARAMETER = "code"
_KEYED_LEVELS = ("FUNCTION", "ADMIN")
_TEXT_MIMETYPES = ("application/json", "application/xml", "application/javascript")


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP function as routed: template, allowed methods (None = any), auth level."""

    function: RegisteredFunction
    template: RouteTemplate
    methods: frozenset[str] | None
    auth_level: str

    @classmethod
    def of(cls, function: RegisteredFunction) -> HttpRoute:
        trigger = function.trigger
        methods = trigger.get("methods")
        return cls(
            function=function,
            template=RouteTemplate.parse(function.route),
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=str(trigger.get("authLevel") or "FUNCTION").upper(),
        )

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods


@dataclass(frozen=True)
class HttpAnswer:
    """What goes back on the wire."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _problem(status: HTTPStatus, code: str, message: str, **headers: str) -> HttpAnswer:
    body = json.dumps({"error": code, "message": message}).encode()
    return HttpAnswer(
        int(status),
        [("Content-Type", "application/json; charset=utf-8"), *headers.items()],
        body,
    )


def _content_type(response: func.HttpResponse) -> str:
    mimetype = str(response.mimetype)
    if mimetype.startswith("text/") or mimetype in _TEXT_MIMETYPES:
        return f"{mimetype}; charset={response.charset}"
    return mimetype


@dataclass(frozen=True)
class RoutedRequest:
    """A request the host hands to a function: which function, and its ``func.HttpRequest``."""

    function: RegisteredFunction
    request: func.HttpRequest


class HttpRouter:
    """What the host does before an HTTP function runs: picks the function by route template and
    method (404, 405 otherwise), checks the functions key where the auth level needs one (401),
    and builds the ``func.HttpRequest``.

    ``functions_key`` None checks no key: every call arrives as if it presented the right one
    (the test harness, which calls the app's functions the way the host does once past its key
    check). The runner always has a key (:class:`HttpDispatcher` requires one)."""

    def __init__(
        self,
        functions: Iterable[RegisteredFunction],
        route_prefix: str,
        functions_key: str | None,
    ) -> None:
        routes = [HttpRoute.of(function) for function in functions]
        # Most specific first: literal segments beat parameters (ASP.NET precedence).
        self.routes = sorted(routes, key=lambda route: route.template.precedence)
        self.prefix_segments = [s for s in route_prefix.strip("/").split("/") if s]
        self._key = functions_key

    def _path_segments(self, path: str) -> list[str] | None:
        """Decoded segments below the route prefix, or None outside it."""
        segments = [unquote(part) for part in path.strip("/").split("/")] if path.strip("/") else []
        prefix = self.prefix_segments
        if [s.lower() for s in segments[: len(prefix)]] != [p.lower() for p in prefix]:
            return None
        return segments[len(prefix) :]

    def _key_presented(self, headers: dict[str, str], params: dict[str, str]) -> bool:
        if self._key is None:
            return True
        presented = headers.get(KEY_HEADER) or params.get(KEY_QUERY_PARAMETER) or ""
        return hmac.compare_digest(presented.encode(), self._key.encode())

    def route(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> RoutedRequest | HttpAnswer:
        """The function and request for ``method`` (upper case) on ``url``, or the host's own
        answer when no function gets it."""
        parts = urlsplit(url)
        segments = self._path_segments(parts.path)
        if segments is None:
            return _problem(HTTPStatus.NOT_FOUND, "not_found", f"no function at {parts.path}")
        matches = [(route, route.template.match(segments)) for route in self.routes]
        matching = [(route, values) for route, values in matches if values is not None]
        if not matching:
            return _problem(HTTPStatus.NOT_FOUND, "not_found", f"no function at {parts.path}")
        allowed = [(route, values) for route, values in matching if route.allows(method)]
        if not allowed:
            methods = sorted({m for route, _ in matching for m in (route.methods or ())})
            return _problem(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "method_not_allowed",
                f"{method} is not allowed on {parts.path}; allowed: {', '.join(methods)}",
                Allow=", ".join(methods),
            )
        route, route_params = allowed[0]
        params = self._query_params(parts.query)
        if route.auth_level in _KEYED_LEVELS and not self._key_presented(headers, params):
            return _problem(
                HTTPStatus.UNAUTHORIZED,
                "unauthorized",
                f"this function needs the functions key (header {KEY_HEADER} "
                f"or query parameter {KEY_QUERY_PARAMETER})",
            )
        request = func.HttpRequest(
            method=method,
            url=url,
            headers=headers,
            params=params,
            route_params=route_params,
            body=body,
        )
        return RoutedRequest(route.function, request)

    @staticmethod
    def _query_params(query: str) -> dict[str, str]:
        # The host joins repeated query parameters with commas (ASP.NET StringValues).
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            params.setdefault(name, []).append(value)
        return {name: ",".join(values) for name, values in params.items()}


class HttpDispatcher:
    """Routes one request to a function (:class:`HttpRouter`) and turns its HttpResponse into
    an HttpAnswer."""

    def __init__(
        self,
        functions: Iterable[RegisteredFunction],
        route_prefix: str,
        functions_key: str,
        invoker: Invoker,
    ) -> None:
        self.router = HttpRouter(functions, route_prefix, functions_key)
        self.prefix_segments = self.router.prefix_segments
        self._invoker = invoker

    def dispatch(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[HttpAnswer, str | None]:
        """The answer, and the name of the function invoked (None when the runner answered)."""
        routed = self.router.route(method, url, headers, body)
        if isinstance(routed, HttpAnswer):
            return routed, None
        return self._invoke(routed.function, routed.request), routed.function.name

    def _invoke(self, function: RegisteredFunction, request: func.HttpRequest) -> HttpAnswer:
        timer = InvocationTimer(function.name, "http")
        try:
            result = self._invoker.call(function, request)
        except Exception as error:
            log.error("function %s raised %s", function.name, failure_summary(error))
            timer.finish("500 (exception)", logging.ERROR)
            return HttpAnswer(500, [("Content-Length", "0")], b"")
        answer = self._answer_from(function.name, result)
        timer.finish(str(answer.status), logging.INFO if answer.status < 500 else logging.WARNING)
        return answer

    @staticmethod
    def _answer_from(function_name: str, result: Any) -> HttpAnswer:
        if result is None:
            return HttpAnswer(204, [], b"")
        if isinstance(result, str | bytes):
            result = func.HttpResponse(result)
        if not isinstance(result, func.HttpResponse):
            log.error(
                "function %s returned %s, not an HttpResponse", function_name, type(result).__name__
            )
            return HttpAnswer(500, [], b"")
        headers = [
            (name, value)
            for name, value in result.headers.items()
            if name.lower() not in ("content-length", "transfer-encoding", "connection")
        ]
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", _content_type(result)))
        return HttpAnswer(int(result.status_code), headers, result.get_body())


class _BodyTooLarge(Exception):
    pass


class _BadFraming(Exception):
    pass


class _RequestHandler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the dispatcher, writes the answer."""

    protocol_version = "HTTP/1.1"
    # Buffered writes: headers and body leave in one segment at flush. Written apart, the body
    # waits on the client's delayed ACK (Nagle), ~40 ms per answer that the host does not add.
    wbufsize = 1 << 16
    server: _FunctionsHttpServer

    def _read_body(self) -> bytes:
        limit = self.server.max_body_bytes
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError as exc:
            raise _BadFraming(f"Content-Length {length_text!r} is not a number") from exc
        if length < 0:
            raise _BadFraming("Content-Length is negative")
        if length > limit:
            self._discard(length)
            raise _BodyTooLarge
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        """Read and drop a refused body, so the client can read the 413 instead of a reset."""
        if length > DRAIN_LIMIT_BYTES:
            return  # not worth reading: the connection is closed after the answer
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                return
            remaining -= len(chunk)

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError as exc:
                raise _BadFraming("bad chunk size") from exc
            if size == 0:
                while self.rfile.readline(1024).strip():
                    pass  # trailers
                return bytes(body)
            if len(body) + size > limit:
                raise _BodyTooLarge
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BodyTooLarge:
            self.close_connection = True  # the unread body would poison the connection
            limit = self.server.max_body_bytes
            self._write(
                _problem(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "request_too_large",
                    f"the local runner reads request bodies up to {limit} bytes",
                )
            )
            return
        except _BadFraming as exc:
            self.close_connection = True
            self._write(_problem(HTTPStatus.BAD_REQUEST, "bad_request", str(exc)))
            return
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
        url = f"http://{host}{self.path}"
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        answer, function_name = self.server.dispatcher.dispatch(self.command, url, headers, body)
        if function_name is None:
            log.info("http %s %s -> %d", self.command, urlsplit(self.path).path, answer.status)
        self._write(answer)

    def _write(self, answer: HttpAnswer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request line (with its query string) to stderr.
        pass


class _FunctionsHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    dispatcher: HttpDispatcher
    max_body_bytes: int


class HttpTriggerServer:
    """The HTTP front of the runner: a ThreadingHTTPServer on a loopback port."""

    def __init__(
        self,
        dispatcher: HttpDispatcher,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._server = _FunctionsHttpServer((host, port), _RequestHandler)
        self._server.dispatcher = dispatcher
        self._server.max_body_bytes = max_body_bytes
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devhost-http",
            daemon=True,
        )
        self.host = host
        self.route_prefix = "/".join(dispatcher.prefix_segments)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:7071/api`` (no trailing slash)."""
        root = f"http://{self.host}:{self.port}"
        return f"{root}/{self.route_prefix}" if self.route_prefix else root

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()
