"""OAuth 2.0 client credentials, one rule for both adapters: which azure-identity credential a
connection gets, where it asks for tokens, and what a token failure means for the port.

A connection authenticates as an Entra ID application with either a client secret or a
certificate (``ConnectionConfig.credentialType``). For a certificate, the connection's Key Vault
secret holds the PEM certificate with its private key (Key Vault's own format for a certificate's
secret): azure-identity's ``CertificateCredential`` signs a client assertion with the key (RFC 7523,
the ``x5t`` header naming the certificate's thumbprint), as Microsoft documents in
https://learn.microsoft.com/entra/identity-platform/certificate-credentials.

The EWS adapter needs the synchronous credential (exchangelib sends from worker threads), the
Graph adapter the asynchronous one (kiota awaits ``get_token``): both are built here from the same
``ClientCredentials`` and ``TokenAuthority``, with the same options. Certificate material is
parsed here first, so a malformed secret is refused with a message that names the connection and
its secret reference, never the content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

from shared.exchange.port import (
    AuthenticationFailed,
    CalendarError,
    ExchangeUnavailable,
    RetryAfter,
)

if TYPE_CHECKING:
    from shared.config import Settings
    from shared.models import ConnectionConfig

CredentialKind = Literal["secret", "certificate"]
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
    kind: CredentialKind = "secret"
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
    connection and the secret reference, never the content (nor cryptography's message, which
    could quote it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    where = f"connection {credentials.connection_id!r}: the secret {credentials.secret_reference!r}"
    data = credentials.secret.encode()
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise CertificateInvalid(
            f"{where} holds no unencrypted PEM private key (credentialType certificate needs "
            "the PEM certificate with its private key)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateInvalid(f"{where}: the private key is not an RSA key") from None
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateInvalid(f"{where} holds no PEM certificate beside its key") from None
    public = certificate.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != (
        key.public_key().public_numbers()
    ):
        raise CertificateInvalid(f"{where}: the certificate does not match the private key")


def client_credential(
    credentials: ClientCredentials, authority: TokenAuthority, *, asynchronous: bool
) -> Any:
    """azure-identity's ``ClientSecretCredential`` or ``CertificateCredential`` for
    ``credentials``: from ``azure.identity.aio`` (async) or ``azure.identity`` (sync).

    No retries: an unreachable authority comes back at once (``token_error`` makes it
    ``ExchangeUnavailable``) and the worker re-queues, instead of backing off in here. The async
    one sends with ``requests`` on a worker thread instead of aiohttp: importing aiohttp costs
    ≈ 0.35 s of a cold start, and MSAL loads ``requests`` anyway.
    """
    transport_options: dict[str, Any] = {
        "connection_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
    }
    if authority.ca_bundle:
        transport_options["connection_verify"] = authority.ca_bundle
    if asynchronous:
        from azure.core.pipeline.transport import AsyncioRequestsTransport
        from azure.identity import aio as identity

        transport: Any = AsyncioRequestsTransport(**transport_options)
    else:
        import azure.identity as identity  # type: ignore[no-redef]
        from azure.core.pipeline.transport import RequestsTransport

        transport = RequestsTransport(**transport_options)
    options: dict[str, Any] = {
        "authority": authority.host,
        "disable_instance_discovery": not authority.is_known,
        "retry_total": 0,
        "transport": transport,
    }
    if credentials.kind == "certificate":
        return identity.CertificateCredential(
            credentials.tenant_id,
            credentials.client_id,
            certificate_data=credentials.secret.encode(),
            **options,
        )
    return identity.ClientSecretCredential(
        credentials.tenant_id, credentials.client_id, credentials.secret, **options
    )


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
