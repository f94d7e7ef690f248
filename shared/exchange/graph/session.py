"""One Graph connection's HTTP machinery: credential, httpx client, msgraph-sdk request adapter.

``GraphSession`` is built from ``GraphCredentials`` + ``GraphEndpoints`` and sends
``RequestInformation`` objects made by the SDK's request builders, reading raw bytes back
(``send_primitive_async(info, "bytes", ...)`` with a native response handler): the SDK's model
modules (≈ 1,200 of them, ≈ 1.5 s on first use) are never loaded. The answer is a ``GraphReply``
(status, headers, parsed JSON) that the gateway classifies itself.

The SDK's retry handler is switched off: a throttled request must come back to the worker as
``RetryAfter`` (re-queue with the server's delay), never sleep inside the adapter.

Event loops: an ``httpx.AsyncClient`` belongs to the loop it was first used on (its pooled
connections do). ``GraphClientPool`` therefore keeps one ``GraphSession`` per gateway and
rebuilds it when called from a different running loop; the old loop's client is abandoned, not
closed, since that loop may be gone (its sockets are freed by the garbage collector, with a
ResourceWarning). The credential is not loop-bound: it runs on a loop of its own
(``shared.exchange.oauth.IsolatedTokenCredential``) and is kept, so tokens survive. Intended
use: one gateway per process, used from one loop — the Functions worker's — and ``aclose()``-d
there; a new loop per call works, at the price of new connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from shared.exchange.oauth import (
    CONNECT_TIMEOUT_S,
    ClientCredentials,
    IsolatedTokenCredential,
    TokenAuthority,
    client_credential,
)

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

    from shared.config import Settings

GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
_CONNECT_TIMEOUT_S: Final = CONNECT_TIMEOUT_S
DEFAULT_TIMEOUT_S: Final = 60.0
# Graph app-only credentials: the rule both adapters share (a client secret or a certificate).
GraphCredentials = ClientCredentials


@dataclass(frozen=True)
class GraphEndpoints:
    """Where Graph and its token endpoint are: the real cloud unless settings say otherwise."""

    graph_url: str = "https://graph.microsoft.com/v1.0"
    authority: str = "login.microsoftonline.com"
    ca_bundle: str | None = None  # PEM file to trust (the simulator's CA); None: system trust

    @classmethod
    def from_settings(cls, settings: Settings) -> GraphEndpoints:
        return cls(
            graph_url=settings.graph_url,
            authority=settings.graph_authority,
            ca_bundle=settings.graph_ca_bundle,
        )

    @property
    def token_authority(self) -> TokenAuthority:
        return TokenAuthority(self.authority, self.ca_bundle)

    @property
    def authority_host(self) -> str:
        """The authority as azure-identity takes it: host[:port], no scheme."""
        return self.token_authority.host

    @property
    def is_known_authority(self) -> bool:
        return self.token_authority.is_known


@dataclass(frozen=True)
class GraphReply:
    """One Graph answer, as calbridge reads it."""

    status: int
    headers: dict[str, str]  # lower-case names
    document: Any  # parsed JSON body, None when empty or not JSON

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error_code(self) -> str:
        """Graph's ``error.code`` ("ErrorItemNotFound", ...), "" when there is none."""
        if isinstance(self.document, dict):
            error = self.document.get("error")
            if isinstance(error, dict) and isinstance(error.get("code"), str):
                return str(error["code"])
        return ""


def token_credential(
    credentials: ClientCredentials, endpoints: GraphEndpoints
) -> IsolatedTokenCredential:
    """azure-identity's async credential for the connection (client secret or certificate, by
    ``shared.exchange.oauth.client_credential``), on the token loop."""
    return IsolatedTokenCredential(
        lambda: client_credential(credentials, endpoints.token_authority)
    )


# Graph lets one app have at most four requests in flight per mailbox ("MailboxConcurrency",
# https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits); a fifth is a 429.
MAILBOX_CONCURRENCY: Final = 4


class MailboxSlots:
    """At most ``MAILBOX_CONCURRENCY`` requests of this process in flight per mailbox: a request
    waits for a free slot instead of drawing a 429. One per session (per event loop). Other
    processes are not seen: their excess comes back as 429 → ``RetryAfter``."""

    def __init__(self, limit: int = MAILBOX_CONCURRENCY) -> None:
        self.limit = limit
        self._in_use: dict[str, int] = {}
        self._freed = asyncio.Condition()

    def in_use(self, mailbox: str) -> int:
        return self._in_use.get(mailbox.lower(), 0)

    @contextlib.asynccontextmanager
    async def hold(self, mailbox: str, count: int = 1) -> AsyncIterator[None]:
        """Hold ``count`` slots (1 to ``limit``) of the mailbox while the body runs."""
        key = mailbox.lower()
        count = min(max(count, 1), self.limit)
        async with self._freed:
            await self._freed.wait_for(lambda: self._in_use.get(key, 0) + count <= self.limit)
            self._in_use[key] = self._in_use.get(key, 0) + count
        try:
            yield
        finally:
            async with self._freed:
                left = self._in_use.get(key, 0) - count
                if left > 0:
                    self._in_use[key] = left
                else:
                    self._in_use.pop(key, None)
                self._freed.notify_all()


class GraphSession:
    """HTTP client and msgraph-sdk request adapter of one connection on one event loop."""

    def __init__(
        self,
        credential: Any,
        endpoints: GraphEndpoints,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        # Imported here, not at module level: importing this package must stay cheap.
        import httpx
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder
        from msgraph.graph_request_adapter import GraphRequestAdapter, options
        from msgraph_core import GraphClientFactory

        self.loop = asyncio.get_running_loop()
        verify: ssl.SSLContext | bool = True
        if endpoints.ca_bundle:
            verify = ssl.create_default_context(cafile=endpoints.ca_bundle)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, _CONNECT_TIMEOUT_S)),
            verify=verify,
            http2=True,
        )
        middleware_options = dict(options)
        middleware_options[RetryHandlerOption.get_key()] = RetryHandlerOption(
            delay=0, max_retries=0, should_retry=False
        )
        self.http = GraphClientFactory.create_with_default_middleware(
            client=http, options=middleware_options
        )
        self.credential = credential
        provider = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE])
        self.adapter = GraphRequestAdapter(provider, client=self.http)
        self.adapter.base_url = endpoints.graph_url.rstrip("/")
        self.users = UsersRequestBuilder(self.adapter, {"baseurl": self.adapter.base_url})
        self.slots = MailboxSlots()

    async def send_for(
        self, mailbox: str, info: RequestInformation, *, slots: int = 1
    ) -> GraphReply:
        """``send`` holding ``slots`` of the mailbox's concurrency slots (none for a request that
        names no mailbox, ``mailbox`` "")."""
        if not mailbox:
            return await self.send(info)
        async with self.slots.hold(mailbox, slots):
            return await self.send(info)

    async def send(self, info: RequestInformation) -> GraphReply:
        """Send one request; raises the transport's and the credential's own exceptions."""
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_http.middleware.options import ResponseHandlerOption

        info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
        # Expand the URI template once: kiota expands it again on every read of ``url`` (three
        # per request), quoting character by character — a few ms for a long $filter.
        info.url = info.url
        response = await self.adapter.send_primitive_async(info, "bytes", {})
        if response.status_code == 401 and isinstance(self.credential, IsolatedTokenCredential):
            # The token was refused: revoked since it was cached, or the app's rights changed.
            # It is never offered again, and the request (not carried out: 401) goes once more
            # with a fresh token; a second 401 means the credentials themselves are refused.
            await self.credential.token_refused()
            info.headers.remove("Authorization")  # kiota keeps a header it finds in place
            response = await self.adapter.send_primitive_async(info, "bytes", {})
        document: Any = None
        if response.content:
            try:
                document = json.loads(response.content)
            except ValueError:
                document = None  # an HTML gateway page or similar: the status says enough
        headers = {name.lower(): value for name, value in response.headers.items()}
        return GraphReply(response.status_code, headers, document)

    async def close(self) -> None:
        await self.http.aclose()


class GraphClientPool:
    """The connection's credential (one) and HTTP session (one per running loop), built on first
    use (see the module notes on event loops)."""

    def __init__(
        self,
        credentials: ClientCredentials,
        endpoints: GraphEndpoints,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.credentials = credentials
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self._credential: Any = None
        self._session: GraphSession | None = None

    def session(self) -> GraphSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.loop is not loop:
            if self._credential is None:
                self._credential = token_credential(self.credentials, self.endpoints)
            self._session = GraphSession(self._credential, self.endpoints, timeout_s=self.timeout_s)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        credential, self._credential = self._credential, None
        if session is not None and session.loop is asyncio.get_running_loop():
            await session.close()
        if credential is not None:
            await credential.close()
