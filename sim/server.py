"""The simulator's HTTP side: three listeners around one store.

- the Exchange port (plain HTTP/1.1, keep-alive, one handler per TCP connection):
  ``/EWS/Exchange.asmx`` → ``sim.ews.EwsService`` (Basic, NTLM or Bearer),
  ``/EWS/messages.xsd`` and ``/EWS/types.xsd`` (Microsoft's schema files), ``/v1.0/...`` →
  ``sim.graph.GraphService`` (Bearer only), ``/control/...`` → the control API (loopback only);
- the token port (HTTPS with a certificate made at start): the Entra ID endpoints;
- the booking port (plain HTTP): the booking platform stand-in.

Authentication happens here, before a protocol service is called; faults a service raises as
``InjectedFault`` (500, 503, reset, 401) are carried out here.

``start_simulator(config)`` runs everything in-process on free ports and returns a
``RunningSimulator`` (context manager) with the URLs the ``python -m sim`` JSON line prints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sim.auth import Authenticator, ConnectionAuth
from sim.booking import BookingPlatform
from sim.config import SimConfig, build_store, load_config
from sim.control import ControlApi
from sim.ews import EwsService
from sim.ews.schema import SCHEMA_DIR
from sim.ews.service import EWS_MAX_CONCURRENCY
from sim.graph import GraphService
from sim.people import Outlook
from sim.store import ExchangeStore, Fault, InjectedFault
from sim.token import TokenEndpoint, TokenIssuer
from sim.wire import SimRequest, SimResponse

logger = logging.getLogger(__name__)

SCHEMA_FILES = {"/ews/messages.xsd": "messages.xsd", "/ews/types.xsd": "types.xsd"}
# Idle keep-alive connections are closed after this long, so their threads end.
IDLE_CONNECTION_TIMEOUT_S = 120


@dataclass
class Answer:
    response: SimResponse
    challenges: list[str] = field(default_factory=list)  # WWW-Authenticate values


Router = Callable[[SimRequest, "SimRequestHandler"], Answer]


class SimHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server calling ``router`` for each request; optionally TLS."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], router: Router, tls: ssl.SSLContext | None = None
    ) -> None:
        self.router = router
        self.tls = tls
        super().__init__(address, SimRequestHandler)

    def get_request(self) -> tuple[Any, Any]:
        sock, client = self.socket.accept()
        if self.tls is not None:
            # The handshake runs in the connection's own thread (see the handler's setup).
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, client

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)


class SimRequestHandler(BaseHTTPRequestHandler):
    """One TCP connection; HTTP/1.1 keep-alive, so NTLM state can live here."""

    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""
    timeout = IDLE_CONNECTION_TIMEOUT_S
    # Buffered writes: headers and body leave in one segment at flush. Written apart, the body
    # waits on the client's delayed ACK (Nagle), ~40 ms per answer that a real server avoids.
    wbufsize = 1 << 16
    server: SimHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection_auth = ConnectionAuth()
        self._reset = False
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only: bodies and headers (credentials) are never logged.
        logger.debug("%s %s", self.address_string(), format % args)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._send(Answer(SimResponse(400, b"bad body framing", content_type="text/plain")))
            self.close_connection = True
            return
        split = urlsplit(self.path)
        request = SimRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
        )
        try:
            answer = self.server.router(request, self)
        except Exception:
            logger.exception("unhandled error serving %s %s", self.command, split.path)
            answer = Answer(
                SimResponse(500, b"internal simulator error", content_type="text/plain")
            )
        if answer.response.reset_connection:
            self.reset_connection()
            return
        self._send(answer)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _send(self, answer: Answer) -> None:
        response = answer.response
        self.send_response(response.status)
        body = b"" if self.command == "HEAD" else response.body
        if response.body or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        for challenge in answer.challenges:
            self.send_header("WWW-Authenticate", challenge)
        self.end_headers()
        if body:
            self.wfile.write(body)
        self.wfile.flush()

    def reset_connection(self) -> None:
        """Drop the TCP connection with a RST, without answering (an injected fault)."""
        self._reset = True
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        if self._reset:
            return
        with contextlib.suppress(OSError):
            super().finish()

    @property
    def client_is_loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.client_address[0]).is_loopback
        except ValueError:
            return False


# --- TLS for the token endpoint -------------------------------------------------------------


def make_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate (its own CA) for 127.0.0.1/localhost (and ``host``);
    returns (certificate path = CA bundle, key path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "calbridge simulator")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    try:
        extra: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        extra = x509.DNSName(host)
    if extra not in alt_names and host not in ("", "0.0.0.0", "::"):  # noqa: S104
        alt_names.append(extra)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "simulator-ca.pem"
    key_path = directory / "simulator-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


# --- the running simulator ---------------------------------------------------------------------


def _format_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@dataclass
class RunningSimulator:
    """A simulator serving in this process. ``urls`` has the keys ``python -m sim`` prints."""

    urls: dict[str, str]
    store: ExchangeStore
    config: SimConfig
    issuer: TokenIssuer
    booking: BookingPlatform
    ews: EwsService
    graph: GraphService
    ca_bundle: str
    _servers: list[SimHTTPServer] = field(default_factory=list, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, repr=False)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _temp_dir: Path | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    def person(self, address: str) -> Outlook:
        """Act as a member of staff in Outlook (``sim.people.Outlook``)."""
        return Outlook(self.store, address)

    def serve_graph_behind(self, public_url: str) -> None:
        """Graph is reached at ``public_url`` (a proxy in front of the listener): ``urls`` and
        every nextLink, deltaLink and ``@odata`` link from here on name it."""
        self.graph.serve_behind(public_url)
        self.urls["graph"] = self.graph.base_url

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for closer in self._closers:
            try:
                closer()
            except Exception:
                logger.exception("error while stopping the simulator")
        for thread in self._threads:
            thread.join(timeout=5)
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ExchangeRouter:
    """Routes the Exchange port: EWS, Graph, schema files and the control API."""

    def __init__(
        self,
        authenticator: Authenticator,
        control: ControlApi,
        ews: EwsService,
        graph: GraphService,
    ) -> None:
        self.authenticator = authenticator
        self.control = control
        self.ews = ews
        self.graph = graph

    def __call__(self, request: SimRequest, handler: SimRequestHandler) -> Answer:
        lower = request.path.lower()
        if lower == "/control" or lower.startswith("/control/"):
            if not handler.client_is_loopback:
                return Answer(_json(403, {"error": "the control API is loopback-only"}))
            return Answer(self.control.handle(request))
        if lower in SCHEMA_FILES:
            return Answer(self._schema_file(SCHEMA_FILES[lower]))
        started = time.perf_counter()
        try:
            if lower == "/ews/exchange.asmx":
                return self._ews(request, handler)
            if lower == "/v1.0" or lower.startswith("/v1.0/"):
                return self._graph(request)
        finally:
            # Benchmarks subtract the simulator's own time from what a client measured.
            self.control.store.add_service_time(time.perf_counter() - started)
        return Answer(_json(404, {"error": f"nothing at {request.path}"}))

    def _schema_file(self, name: str) -> SimResponse:
        path = SCHEMA_DIR / name
        if not path.is_file():
            return _json(404, {"error": f"schema file {name} is not available"})
        return SimResponse(200, path.read_bytes(), content_type="text/xml")

    def _ews(self, request: SimRequest, handler: SimRequestHandler) -> Answer:
        outcome = self.authenticator.authenticate_ews(
            request.header("authorization"), handler.connection_auth
        )
        if outcome.principal is None:
            return Answer(SimResponse(401, b"", content_type="text/html"), outcome.challenges)
        request.principal = outcome.principal
        try:
            return Answer(self.ews.handle(request))
        except InjectedFault as injected:
            if injected.fault.kind == "unauthorized":
                handler.connection_auth = ConnectionAuth()
            return carry_out(injected.fault, graph=False)

    def _graph(self, request: SimRequest) -> Answer:
        outcome = self.authenticator.authenticate_graph(request.header("authorization"))
        if outcome.principal is None:
            body = {
                "error": {
                    "code": "InvalidAuthenticationToken",
                    "message": outcome.reason,
                    "innerError": {"date": dt.datetime.now(dt.UTC).isoformat()},
                }
            }
            return Answer(_json(401, body), outcome.challenges)
        request.principal = outcome.principal
        try:
            return Answer(self.graph.handle(request))
        except InjectedFault as injected:
            return carry_out(injected.fault, graph=True)


def carry_out(fault: Fault, *, graph: bool) -> Answer:
    """The wire behaviour of a generic injected fault."""
    if fault.kind == "reset":
        return Answer(SimResponse(0, reset_connection=True))
    if fault.kind == "unauthorized":
        if graph:
            from sim.auth import GRAPH_CHALLENGE

            body = {
                "error": {
                    "code": "InvalidAuthenticationToken",
                    "message": "Access token has expired or is not yet valid.",
                }
            }
            return Answer(_json(401, body), [GRAPH_CHALLENGE])
        from sim.auth import EWS_CHALLENGES

        return Answer(SimResponse(401, b"", content_type="text/html"), list(EWS_CHALLENGES))
    status = 503 if fault.kind == "http_503" else 500
    headers = {"Retry-After": str(fault.retry_after)} if status == 503 else {}
    if graph:
        code = "serviceNotAvailable" if status == 503 else "generalException"
        body = {"error": {"code": code, "message": f"Injected fault: {fault.kind}"}}
        response = _json(status, body)
        response.headers.update(headers)
        return Answer(response)
    text = "Service Unavailable" if status == 503 else "Internal Server Error"
    return Answer(SimResponse(status, text.encode(), headers, content_type="text/html"))


def _json(status: int, payload: Any) -> SimResponse:
    return SimResponse(status, json.dumps(payload).encode())


def _serve(server: SimHTTPServer, name: str) -> threading.Thread:
    # A short poll interval keeps stop() quick (shutdown waits for the next poll).
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
    )
    thread.start()
    return thread


def start_simulator(
    config: dict[str, Any] | SimConfig | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token_port: int = 0,
    booking_port: int = 0,
    validate_ews: bool = True,
    ews_max_concurrency: int = EWS_MAX_CONCURRENCY,
) -> RunningSimulator:
    """Start the simulator in this process (all three listeners) and return once it serves.
    ``validate_ews`` makes the EWS service check each response against the schema;
    ``ews_max_concurrency`` is the EWSMaxConcurrency of every throttling budget."""
    sim_config = config if isinstance(config, SimConfig) else load_config(config)
    store = build_store(sim_config)
    issuer = TokenIssuer(sim_config, on_issue=store.count)
    authenticator = Authenticator(sim_config, issuer, on_logon=store.count)
    temp_dir = Path(tempfile.mkdtemp(prefix="sim-"))
    servers: list[SimHTTPServer] = []
    closers: list[Callable[[], None]] = []
    try:
        # Bind first so the URLs (which Graph puts into nextLinks) know their ports.
        placeholder: dict[str, ExchangeRouter] = {}

        def exchange_router(request: SimRequest, handler: SimRequestHandler) -> Answer:
            router: ExchangeRouter = placeholder["router"]
            return router(request, handler)

        exchange = SimHTTPServer((host, port), exchange_router)
        servers.append(exchange)
        base = f"http://{_format_host(host)}:{exchange.server_address[1]}"

        cert_path, key_path = make_certificate(temp_dir, host)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert_path, key_path)
        token_holder: dict[str, TokenEndpoint] = {}
        token_server = SimHTTPServer(
            (host, token_port),
            lambda request, handler: Answer(token_holder["endpoint"].handle(request)),
            tls,
        )
        servers.append(token_server)
        token_url = f"https://{_format_host(host)}:{token_server.server_address[1]}"
        token_holder["endpoint"] = TokenEndpoint(issuer, token_url)

        booking = BookingPlatform(sim_config.booking_secrets)
        booking_server = SimHTTPServer(
            (host, booking_port), lambda request, handler: Answer(booking.handle(request))
        )
        servers.append(booking_server)

        urls = {
            "ews": f"{base}/EWS/Exchange.asmx",
            "graph": f"{base}/v1.0",
            "token": token_url,
            "control": f"{base}/control",
            "booking": f"http://{_format_host(host)}:{booking_server.server_address[1]}",
            "caBundle": str(cert_path),
        }

        ews = EwsService(
            store, validate_responses=validate_ews, max_concurrency=ews_max_concurrency
        )
        closers.append(ews.close)
        graph = GraphService(
            store,
            public_url=urls["graph"],
            # Notifications carry the subscribing app's tenant id.
            client_tenants={c.client_id: c.tenant_id for c in sim_config.oauth_clients},
        )
        closers.append(graph.close)
        control = ControlApi(store, issuer, graph.send_lifecycle)
        placeholder["router"] = ExchangeRouter(authenticator, control, ews, graph)
        closers.append(authenticator.close)

        threads = [
            _serve(exchange, "sim-exchange"),
            _serve(token_server, "sim-token"),
            _serve(booking_server, "sim-booking"),
        ]
    except BaseException:
        for server in servers:
            server.server_close()
        for closer in closers:
            closer()
        authenticator.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return RunningSimulator(
        urls=urls,
        store=store,
        config=sim_config,
        issuer=issuer,
        booking=booking,
        ews=ews,
        graph=graph,
        ca_bundle=str(cert_path),
        _servers=servers,
        _threads=threads,
        _closers=closers,
        _temp_dir=temp_dir,
    )
