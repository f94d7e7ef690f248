"""OAuth 2.0 client credentials, one rule for both adapters: which azure-identity credential a
connection gets, where it asks for tokens, and what a token failure means for the port.

A connection authenticates as an Entra ID application with either a client secret or a
certificate (``ConnectionConfig.credentialType``). For a certificate, the connection's Key Vault
secret holds the PEM certificate with its private key (Key Vault's own format for a certificate's
secret): azure-identity's ``CertificateCredential`` signs a client assertion with the key (RFC 7523,
the ``x5t`` header naming the certificate's thumbprint), as Microsoft documents in
https://learn.microsoft.com/entra/identity-platform/certificate-credentials.

Both adapters get the same credential, built here from ``ClientCredentials`` and
``TokenAuthority``: azure-identity's async one, run on one token loop of its own
(``IsolatedTokenCredential``); kiota awaits it (Graph), exchangelib's threads wait for it (EWS,
``get_token_blocking``). Certificate material is parsed here first, so a malformed secret is
refused with a message that names the connection and its secret reference, never the content.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar
from urllib.parse import urlsplit

from shared.exchange.port import (
    AuthenticationFailed,
    CalendarError,
    ExchangeUnavailable,
    RetryAfter,
)
from shared.models import CredentialType

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.models import ConnectionConfig

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
T = TypeVar("T")
# Token requests are rare (once per token lifetime per connection): a few threads serve them all.
TOKEN_THREADS: Final = 4
CONNECT_TIMEOUT_S: Final = 10.0
# azure-core's own default read timeout is 300 s, long enough for a hanging authority to hold a
# worker for five minutes.
READ_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True)
class TokenAuthority:
    """Where tokens come from: Microsoft's Entra ID unless settings say otherwise."""

    authority: str = "login.microsoftonline.com"
    ca_bundle: str | None = None  # PEM file to trust (the simulator's CA); None: system trust

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenAuthority:
        return cls(authority=settings.graph_authority, ca_bundle=settings.graph_ca_bundle)

    @property
    def host(self) -> str:
        """The authority as azure-identity takes it: host[:port], no scheme."""
        text = self.authority.strip().rstrip("/")
        return urlsplit(text).netloc if "://" in text else text

    @property
    def is_known(self) -> bool:
        return self.host.lower() in _KNOWN_AUTHORITIES


@dataclass(frozen=True)
class ClientCredentials:
    """An application's client credentials. ``secret`` is the client secret, or for ``kind``
    "certificate" the PEM certificate with its private key; ``repr`` never shows it.
    ``secret_reference`` and ``connection_id`` only name where it came from, for messages."""

    tenant_id: str
    client_id: str
    secret: str = field(repr=False)
    kind: CredentialType = "secret"
    connection_id: str = ""
    secret_reference: str = ""

    def __post_init__(self) -> None:
        if self.kind == "certificate":
            check_certificate(self)


def connection_credentials(
    connection: ConnectionConfig, secret: str, *, connection_id: str
) -> ClientCredentials:
    """The client credentials of an OAuth connection (EWS or Graph); ``secret`` is what its
    secret reference resolved to."""
    if not (connection.tenant_id and connection.client_id):
        raise ValueError("tenantId and clientId: an OAuth connection needs both")
    return ClientCredentials(
        connection.tenant_id,
        connection.client_id,
        secret,
        kind=connection.credential_type,
        connection_id=connection_id,
        secret_reference=connection.secret_reference or "",
    )


class CertificateInvalid(AuthenticationFailed):
    """A connection's certificate secret is not a PEM certificate with its RSA private key."""


def check_certificate(credentials: ClientCredentials) -> None:
    """Refuse certificate material azure-identity could not sign with. The message names the
    connection and the secret reference, never the content; cryptography's exception (whose
    message could quote it) is neither chained nor kept as the context."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    where = f"connection {credentials.connection_id!r}: the secret {credentials.secret_reference!r}"
    data = credentials.secret.encode()
    key: Any = _parsed(lambda: serialization.load_pem_private_key(data, password=None))
    if key is None:
        raise CertificateInvalid(
            f"{where} holds no unencrypted PEM private key (credentialType certificate needs "
            "the PEM certificate with its private key)"
        )
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateInvalid(f"{where}: the private key is not an RSA key")
    certificate: Any = _parsed(lambda: x509.load_pem_x509_certificate(data))
    if certificate is None:
        raise CertificateInvalid(f"{where} holds no PEM certificate beside its key")
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise CertificateInvalid(f"{where}: the certificate does not match the private key")


def _parsed(parse: Callable[[], T]) -> T | None:
    """What ``parse`` returns, None when it refuses the material (the error is dropped here)."""
    try:
        return parse()
    except (ValueError, TypeError):
        return None


def client_credential(credentials: ClientCredentials, authority: TokenAuthority) -> Any:
    """azure-identity's async ``ClientSecretCredential`` or ``CertificateCredential`` for
    ``credentials`` (run it on the token loop: ``IsolatedTokenCredential``).

    Both adapters use the async credential: its errors carry the token endpoint's answer (the
    sync ones, through MSAL, say only "Authentication failed"), so a throttled or failing
    authority is told from a refusal the same way for EWS and Graph. Its token requests go
    through ``requests`` on the token loop's threads instead of aiohttp: importing aiohttp costs
    ≈ 0.35 s of a cold start, and MSAL loads ``requests`` anyway. No retries: an unreachable
    authority comes back at once (``token_error`` makes it ``ExchangeUnavailable``) and the
    worker re-queues, instead of backing off in here.
    """
    from azure.core.pipeline.transport import AsyncioRequestsTransport
    from azure.identity.aio import CertificateCredential, ClientSecretCredential

    transport_options: dict[str, Any] = {
        "connection_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
    }
    if authority.ca_bundle:
        transport_options["connection_verify"] = authority.ca_bundle
    options: dict[str, Any] = {
        "authority": authority.host,
        "disable_instance_discovery": not authority.is_known,
        "retry_total": 0,
        "transport": AsyncioRequestsTransport(**transport_options),
    }
    if credentials.kind == "certificate":
        return CertificateCredential(
            credentials.tenant_id,
            credentials.client_id,
            certificate_data=credentials.secret.encode(),
            **options,
        )
    return ClientSecretCredential(
        credentials.tenant_id, credentials.client_id, credentials.secret, **options
    )


class _TokenLoop:
    """One event loop on a daemon thread where every OAuth connection's token credential runs,
    with a small thread pool of its own as that loop's default executor."""

    _running: ClassVar[_TokenLoop | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(
            ThreadPoolExecutor(max_workers=TOKEN_THREADS, thread_name_prefix="graph-token")
        )
        threading.Thread(target=self.loop.run_forever, name="graph-token", daemon=True).start()

    @classmethod
    def shared(cls) -> _TokenLoop:
        with cls._lock:
            if cls._running is None:
                cls._running = cls()
            return cls._running

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on the token loop from any other loop (cancellation included)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))


class IsolatedTokenCredential:
    """azure-identity's async credential, run on the token loop (``_TokenLoop``).

    Its requests transport runs ``requests`` on its loop's *default executor*. Left on the
    caller's loop, that executor is shared with anything else in the process, and a token
    request queued behind other work would stall every call; on the token loop, the
    executor is the tokens' own. The credential then also belongs to no caller's loop, so
    one credential, and its token cache, serves every loop. kiota awaits ``get_token``;
    exchangelib's threads call ``get_token_blocking``.

    ``make`` builds the azure-identity credential; it is called again when the service refuses
    a token (``token_refused``): azure-identity would otherwise keep offering its cached token
    until it expires, an hour in which every request draws 401 even after the app's credentials
    work again.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._credential = make()

    async def get_token(self, *scopes: str, **options: Any) -> Any:
        return await _TokenLoop.shared().run(self._credential.get_token(*scopes, **options))

    async def token_refused(self) -> None:
        """The service answered 401 to a token this credential handed out: the next
        ``get_token`` asks the authority afresh (a new credential, an empty token cache)."""
        refused, self._credential = self._credential, self._make()
        await _TokenLoop.shared().run(refused.close())

    def get_token_blocking(self, *scopes: str, timeout_s: float = READ_TIMEOUT_S * 2) -> Any:
        """``get_token`` from a thread that is not running an event loop."""
        future = asyncio.run_coroutine_threadsafe(
            self._credential.get_token(*scopes), _TokenLoop.shared().loop
        )
        return future.result(timeout_s)

    def close_blocking(self) -> None:
        asyncio.run_coroutine_threadsafe(self._credential.close(), _TokenLoop.shared().loop)

    async def close(self) -> None:
        await _TokenLoop.shared().run(self._credential.close())


def token_error(error: BaseException, *, where: str, mailbox: str) -> CalendarError | None:
    """The port error for a failure to get a token (None: not a token failure).

    A refusal by the token endpoint (an answer with a 4xx status) means the connection's
    credentials are wrong or revoked — except 429 (Entra ID throttling: ``RetryAfter``) and 408;
    no answer at all, or a 5xx, means it is unreachable. Messages name the status, never the
    endpoint's text.
    """
    from azure.core.exceptions import AzureError, ClientAuthenticationError

    from shared.exchange.common import DEFAULT_RETRY_AFTER_S, parse_retry_after

    if isinstance(error, ClientAuthenticationError):
        status = getattr(error.response, "status_code", None)
        if status == 429:
            headers = getattr(error.response, "headers", None) or {}
            seconds = parse_retry_after(headers.get("Retry-After"))
            return RetryAfter(
                DEFAULT_RETRY_AFTER_S if seconds is None else seconds,
                mailbox=mailbox,
                detail=f"{where}: the token endpoint is throttling (HTTP 429)",
            )
        if isinstance(status, int) and 400 <= status < 500 and status != 408:
            return AuthenticationFailed(
                f"{where}: the token endpoint refused the client credentials (HTTP {status})",
                mailbox=mailbox,
            )
        return ExchangeUnavailable(f"{where}: the token endpoint is unreachable", mailbox=mailbox)
    if isinstance(error, AzureError):
        # No usable answer from the token endpoint: not reached (ServiceRequestError), the
        # connection dropped or timed out after the request went (ServiceResponseError), or an
        # answer cut short (HttpResponseError / IncompleteReadError).
        return ExchangeUnavailable(f"{where}: the token endpoint is unreachable", mailbox=mailbox)
    return None
