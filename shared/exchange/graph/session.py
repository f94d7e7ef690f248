"""One Graph connection's HTTP machinery: credential, httpx client, msgraph-sdk request adapter.

``GraphSession`` is built from ``GraphCredentials`` + ``GraphEndpoints`` and sends
``RequestInformation`` objects made by the SDK's request builders, reading raw bytes back
(``send_primitive_async(info, "bytes", ...)`` with a native response handler): the SDK's model
modules (≈ 1,200 of them, ≈ 1.5 s on first use) are never loaded. The answer is a ``GraphReply``
(status, headers, parsed JSON) that the gateway classifies itself.

The SDK's retry handler is switched off: a throttled request must come back to the worker as
``RetryAfter`` (re-queue with the server's delay), never sleep inside the adapter.

Event loops: an ``httpx.AsyncClient`` and azure-identity's async credential (aiohttp) belong to
the loop they were first used on. ``GraphClientPool`` therefore keeps one session per gateway and
rebuilds it when called from a different running loop (the old loop's clients are abandoned,
not closed: that loop may be gone). Use one gateway per loop — the worker's loop — and
``aclose()`` it on that loop; a new loop per call works but costs a token request each time.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from kiota_abstractions.request_information import RequestInformation

    from shared.config import Settings

GRAPH_SCOPE: Final = "https://graph.microsoft.com/.default"
# Authorities whose instance metadata Microsoft publishes; any other (the simulator) is used as
# given, without the instance discovery call that would go to the internet.
_KNOWN_AUTHORITIES: Final = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
    }
)
_CONNECT_TIMEOUT_S: Final = 10.0
DEFAULT_TIMEOUT_S: Final = 60.0


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
    def authority_host(self) -> str:
        """The authority as azure-identity takes it: host[:port], no scheme."""
        text = self.authority.strip().rstrip("/")
        return urlsplit(text).netloc if "://" in text else text

    @property
    def is_known_authority(self) -> bool:
        return self.authority_host.lower() in _KNOWN_AUTHORITIES


@dataclass(frozen=True)
class GraphCredentials:
    """App-only OAuth client credentials of one Graph connection. ``repr`` hides the secret."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)


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


class GraphSession:
    """Credential, HTTP client and request adapter for one connection on one event loop."""

    def __init__(
        self,
        credentials: GraphCredentials,
        endpoints: GraphEndpoints,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        # Imported here, not at module level: importing this package must stay cheap.
        import httpx
        from azure.identity.aio import ClientSecretCredential
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph.generated.users.users_request_builder import UsersRequestBuilder
        from msgraph.graph_request_adapter import GraphRequestAdapter, options
        from msgraph_core import GraphClientFactory

        self.loop = asyncio.get_running_loop()
        # No retries of the token request either: an unreachable authority comes back at once as
        # ExchangeUnavailable and the worker re-queues, instead of backing off in here.
        identity_options: dict[str, Any] = {"retry_total": 0}
        if endpoints.ca_bundle:
            identity_options["connection_verify"] = endpoints.ca_bundle
        self.credential = ClientSecretCredential(
            credentials.tenant_id,
            credentials.client_id,
            credentials.client_secret,
            authority=endpoints.authority_host,
            disable_instance_discovery=not endpoints.is_known_authority,
            **identity_options,
        )
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
        provider = AzureIdentityAuthenticationProvider(self.credential, scopes=[GRAPH_SCOPE])
        self.adapter = GraphRequestAdapter(provider, client=self.http)
        self.adapter.base_url = endpoints.graph_url.rstrip("/")
        self.users = UsersRequestBuilder(self.adapter, {"baseurl": self.adapter.base_url})

    async def send(self, info: RequestInformation) -> GraphReply:
        """Send one request; raises the transport's and the credential's own exceptions."""
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_http.middleware.options import ResponseHandlerOption

        info.add_request_options([ResponseHandlerOption(NativeResponseHandler())])
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
        await self.credential.close()


class GraphClientPool:
    """The connection's session for the running loop, built on first use (see module notes)."""

    def __init__(
        self,
        credentials: GraphCredentials,
        endpoints: GraphEndpoints,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.credentials = credentials
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self._session: GraphSession | None = None

    def session(self) -> GraphSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.loop is not loop:
            self._session = GraphSession(self.credentials, self.endpoints, timeout_s=self.timeout_s)
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None and session.loop is asyncio.get_running_loop():
            await session.close()
