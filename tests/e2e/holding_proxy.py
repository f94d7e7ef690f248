"""A point in the network where a test can stop one HTTP request: a relay in front of an HTTP
server (the simulator's EWS or Graph endpoint, Azurite's tables or queues) that passes every
request through unchanged until it is armed with a :class:`HoldRule`; the first request the
rule matches is then held, either

- **before** it reaches the server (the server never sees it), or
- **after** the server has answered it (the request was carried out, and its answer is kept
  from the client; a 401 challenge of NTLM's handshake is passed on, and the request sent
  again with credentials is the one held),

and the client waits for an answer that never comes, as a worker does whose process is about to
die. :meth:`Network.wait_held` tells the test that the hold happened (so it can kill the worker
at exactly that point); :meth:`Network.release` then closes the held connections.

The relay understands HTTP/1.1 framing on the way in only (a request's head, then a
``Content-Length`` or chunked body), enough to see each request whole before it is forwarded;
answers are relayed byte for byte. One client connection is one server connection, so a
kept-alive connection (NTLM's handshake included) stays one connection end to end.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote

_HEAD_LIMIT = 64 * 1024
# The answer to a request that was not carried out but challenged (NTLM's handshake).
_CHALLENGE = b"HTTP/1.1 401"


@dataclass(frozen=True)
class Request:
    """One request as the relay saw it: which server it was for (the relay's ``name``)."""

    service: str
    method: str
    target: str  # the request target: path and query string, percent-decoded
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass(frozen=True)
class HoldRule:
    """Which request to hold, and where: ``after`` the server answered it, or before it is
    forwarded. ``label`` names the point for the test's report."""

    label: str
    matches: Callable[[Request], bool]
    after: bool = False


@dataclass
class _Hold:
    rule: HoldRule
    request: Request | None = None
    happened: threading.Event = field(default_factory=threading.Event)


class Network:
    """The relays of one test world, armed together: at most one request is held at a time,
    whichever relay it passes through."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: _Hold | None = None
        self._released = threading.Event()
        self.relays: list[HoldingProxy] = []
        self._held_sockets: list[socket.socket] = []

    def relay(self, name: str, upstream_port: int, host: str = "127.0.0.1") -> HoldingProxy:
        """A new relay in front of ``host:upstream_port``, named ``name`` in its requests."""
        proxy = HoldingProxy(self, name, (host, upstream_port))
        self.relays.append(proxy)
        return proxy

    def arm(self, rule: HoldRule) -> None:
        with self._lock:
            self._armed = _Hold(rule)
            self._released.clear()

    def wait_held(self, timeout: float) -> Request | None:
        """The request held once the armed rule matched one (within ``timeout``), else None."""
        with self._lock:
            hold = self._armed
        if hold is None or not hold.happened.wait(timeout):
            return None
        return hold.request

    def held(self) -> bool:
        with self._lock:
            return self._armed is not None and self._armed.happened.is_set()

    def release(self) -> None:
        """Disarm, and close every held connection (both sides)."""
        with self._lock:
            self._armed = None
            sockets, self._held_sockets = self._held_sockets, []
        self._released.set()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self.release()
        for relay in self.relays:
            relay.close()

    # --- used by the relays ---------------------------------------------------------------------

    def _take(self, request: Request) -> HoldRule | None:
        """The armed rule when it matches ``request`` and has not held one yet."""
        with self._lock:
            hold = self._armed
            if hold is None or hold.request is not None or not hold.rule.matches(request):
                return None
            hold.request = request
            return hold.rule

    def _untake(self) -> None:
        """The request taken was not carried out after all (a 401 challenge of NTLM's
        handshake): the next matching one is taken instead."""
        with self._lock:
            if self._armed is not None and not self._armed.happened.is_set():
                self._armed.request = None

    def _hold(self, *sockets: socket.socket) -> None:
        """Keep these connections open, unanswered, until released."""
        with self._lock:
            hold = self._armed
            self._held_sockets.extend(sockets)
        if hold is not None:
            hold.happened.set()
        self._released.wait()
        for sock in sockets:
            _close(sock)


class HoldingProxy:
    """One relay: listens on a free loopback port (``port``, ``url``) and forwards to the
    server."""

    def __init__(self, network: Network, name: str, upstream: tuple[str, int]) -> None:
        self.network = network
        self.name = name
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name=f"relay-{name}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed.set()
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(client,), name=f"relay-{self.name}-conn", daemon=True
            ).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream)
        except OSError:
            _close(client)
            return
        answers = _Answers(client, server, self.network)
        threading.Thread(target=answers.relay, name=f"relay-{self.name}-back", daemon=True).start()
        reader = client.makefile("rb")
        try:
            while True:
                parsed = _read_request(reader, self.name)
                if parsed is None:
                    break
                request, raw = parsed
                rule = self.network._take(request)
                if rule is not None and not rule.after:
                    self.network._hold(client, server)
                    return
                if rule is not None:
                    answers.withhold_next()
                server.sendall(raw)
        except OSError:
            pass
        finally:
            reader.close()
            if not answers.holding:
                _close(client)
                _close(server)


class _Answers:
    """Relays the server's answers to the client, or keeps one (and what follows) back."""

    def __init__(self, client: socket.socket, server: socket.socket, network: Network) -> None:
        self.client = client
        self.server = server
        self.network = network
        self._withhold = False
        self.holding = False

    def withhold_next(self) -> None:
        self._withhold = True

    def relay(self) -> None:
        try:
            while True:
                data = self.server.recv(65536)
                if not data:
                    break
                if self._withhold and data.startswith(_CHALLENGE):
                    # Not carried out: the client authenticates and sends it again.
                    self._withhold = False
                    self.network._untake()
                elif self._withhold:
                    # The server answered: what was asked is done. The client never hears.
                    self.holding = True
                    self.network._hold(self.client, self.server)
                    return
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            if not self.holding:
                _close(self.client)
                _close(self.server)


def _read_request(reader: BinaryIO, service: str) -> tuple[Request, bytes] | None:
    """One request from the client: (what it is, its bytes as sent); None at the end."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline(_HEAD_LIMIT)
        if not line:
            return None
        if head == b"" and line in (b"\r\n", b"\n"):
            continue  # a stray line between requests
        head += line
        if len(head) > _HEAD_LIMIT:
            raise OSError("request head too long")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for header in lines[1:]:
        if ":" in header:
            name, value = header.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = b""
    raw = head
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size_line = reader.readline(_HEAD_LIMIT)
            raw += size_line
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then the empty line
                    trailer = reader.readline(_HEAD_LIMIT)
                    raw += trailer
                    if trailer in (b"\r\n", b"\n", b""):
                        break
                break
            chunk = reader.read(size + 2)
            raw += chunk
            body += chunk[:size]
    elif (length := int(headers.get("content-length", "0") or 0)) > 0:
        body = reader.read(length)
        raw += body
    request = Request(service, method.upper(), unquote(target), headers, body)
    return request, raw


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
