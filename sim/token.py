"""The simulator's OAuth side: an access-token issuer and the Entra-ID-shaped token endpoint
(served over HTTPS by the server) that azure-identity's credential classes talk to.

Tokens are JWT-shaped (header.claims.signature, HMAC-SHA256 with a per-process key) so clients
that peek at ``exp`` work; only this process can verify them. Grants:
- client_credentials for configured OAuth clients, with the client secret or a certificate
  credential (a JWT client assertion signed with a registered certificate's key,
  ``verify_client_assertion``) → an "app" principal reaching the client's mailboxes;
- password (ROPC) for mailbox users → "user", and for service accounts → "service".
Each client-credentials token issued is counted (``token:client-secret`` or
``token:client-certificate`` per client id, ``/control/counters``). Scopes pick the audience:
``https://graph.microsoft.com/.default`` (Graph) or ``https://outlook.office365.com/.default``
(EWS). Revoking a client or user makes every token it
holds answer 401 at the protocols (and refuses new ones until restored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sim.config import OAuthClient, SimConfig
from sim.wire import Principal, SimRequest, SimResponse

GRAPH_AUDIENCE = "https://graph.microsoft.com"
EWS_AUDIENCE = "https://outlook.office365.com"
AUDIENCES = (GRAPH_AUDIENCE, EWS_AUDIENCE)
OPENID_PATH = ["v2.0", ".well-known", "openid-configuration"]


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    """A refused token request, in the OAuth error shape Entra ID uses."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    principal: Principal
    audience: str


class TokenIssuer:
    """Issues and verifies access tokens for the configured clients and users."""

    def __init__(
        self,
        config: SimConfig,
        *,
        lifetime_s: int | None = None,
        clock: Callable[[], float] = time.time,
        on_issue: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        # Told (how, to whom) for each token issued: ("token:client-certificate", client id).
        self._on_issue = on_issue
        self.lifetime_s = lifetime_s or config.token_lifetime_s
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        # subject → generation; a token carries the generation it was issued in.
        self._generations: dict[str, int] = {}
        self._blocked: set[str] = set()

    # --- issuing ------------------------------------------------------------------------
    def _audience(self, scope: str | None) -> str:
        scopes = (scope or "").split()
        for candidate in scopes:
            for audience in AUDIENCES:
                if candidate.rstrip("/").lower() in (
                    f"{audience}/.default".lower(),
                    audience.lower(),
                ):
                    return audience
        raise TokenError(
            400,
            "invalid_scope",
            f"AADSTS70011: The provided value for the input parameter 'scope' is not valid. "
            f"Use {GRAPH_AUDIENCE}/.default or {EWS_AUDIENCE}/.default.",
        )

    def _client(self, tenant: str, client_id: str) -> OAuthClient:
        client = self.config.oauth_client(client_id)
        if client is None or client.tenant_id.lower() != tenant.lower():
            raise TokenError(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant}'.",
            )
        return client

    def issue_client_credentials(
        self, tenant: str, client_id: str, client_secret: str, scope: str | None
    ) -> IssuedToken:
        client = self._client(tenant, client_id)
        if client.client_secret is None or not hmac.compare_digest(
            client.client_secret.encode(), client_secret.encode()
        ):
            raise TokenError(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided.",
            )
        return self._issue_app(client, tenant, scope, how="token:client-secret")

    def issue_client_assertion(
        self,
        tenant: str,
        client_id: str,
        assertion: str,
        scope: str | None,
        *,
        token_endpoint: str,
    ) -> IssuedToken:
        """client_credentials with a certificate: ``assertion`` is the JWT the client signed
        with its certificate's key (see ``verify_client_assertion``)."""
        claimed = client_id or _unverified_claims(assertion).get("iss", "")
        client = self._client(tenant, str(claimed))
        verify_client_assertion(assertion, client, token_endpoint=token_endpoint, now=self.clock())
        return self._issue_app(client, tenant, scope, how="token:client-certificate")

    def _issue_app(
        self, client: OAuthClient, tenant: str, scope: str | None, *, how: str
    ) -> IssuedToken:
        client_id = client.client_id
        audience = self._audience(scope)
        principal = Principal(
            kind="app", name=client_id, auth_scheme="bearer", app_mailboxes=client.mailboxes
        )
        issued = self._issue(principal, audience, tenant)
        if self._on_issue is not None:
            self._on_issue(how, client_id)
        return issued

    def issue_password(
        self, tenant: str, username: str, password: str, scope: str | None
    ) -> IssuedToken:
        principal = self.check_password(username, password, scheme="bearer")
        if principal is None:
            raise TokenError(
                400,
                "invalid_grant",
                "AADSTS50126: Error validating credentials due to invalid username or password.",
            )
        audience = self._audience(scope)
        return self._issue(principal, audience, tenant)

    def check_password(self, username: str, password: str, *, scheme: str) -> Principal | None:
        """The principal for a mailbox user's or service account's username and password."""
        username = username.lower()
        mailbox = self.config.mailbox(username)
        if mailbox is not None and mailbox.password is not None:
            if hmac.compare_digest(mailbox.password.encode(), password.encode()):
                return Principal(kind="user", name=mailbox.address, auth_scheme=scheme)  # type: ignore[arg-type]
            return None
        account = self.config.service_account(username)
        if account is not None and hmac.compare_digest(
            account.password.encode(), password.encode()
        ):
            return Principal(
                kind="service",
                name=account.username,
                auth_scheme=scheme,  # type: ignore[arg-type]
                impersonate=account.impersonate,
                delegate_for=account.delegate_for,
            )
        return None

    def _issue(self, principal: Principal, audience: str, tenant: str) -> IssuedToken:
        with self._lock:
            if principal.name.lower() in self._blocked:
                raise TokenError(
                    401,
                    "invalid_client",
                    "AADSTS7000222: The provided client credentials are revoked.",
                )
            generation = self._generations.get(principal.name.lower(), 0)
        now = int(self.clock())
        claims = {
            "aud": audience,
            "iss": f"https://sts.windows.net/{tenant}/",
            "tid": tenant,
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime_s,
            "sub": principal.name,
            "kind": principal.kind,
            "gen": generation,
            "jti": uuid.uuid4().hex,
        }
        if principal.kind == "app":
            claims["appid"] = principal.name
            claims["roles"] = ["Calendars.ReadWrite", "full_access_as_app"]
        else:
            claims["upn"] = principal.name
            claims["scp"] = "Calendars.ReadWrite EWS.AccessAsUser.All"
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = _b64url(
            hmac.new(self._key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        )
        return IssuedToken(f"{header}.{body}.{signature}", self.lifetime_s, principal, audience)

    # --- verifying ----------------------------------------------------------------------
    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed, still valid; None otherwise."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        header, body, signature = parts
        expected = hmac.new(self._key, f"{header}.{body}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64url(signature), expected):
                return None
            claims = json.loads(_unb64url(body))
        except ValueError:
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) <= self.clock():
            return None
        subject = str(claims.get("sub", "")).lower()
        with self._lock:
            if claims.get("gen") != self._generations.get(subject, 0):
                return None
        return claims

    def verify(self, token: str, *, audience: str | None = None) -> Principal | None:
        """The caller a bearer token stands for (None: forged, expired, revoked, or meant for
        another audience)."""
        claims = self.claims(token)
        if claims is None or (audience is not None and claims.get("aud") != audience):
            return None
        name = str(claims["sub"])
        if claims.get("kind") == "app":
            client = self.config.oauth_client(name)
            if client is None:
                return None
            return Principal(
                kind="app", name=name, auth_scheme="bearer", app_mailboxes=client.mailboxes
            )
        if claims.get("kind") == "service":
            account = self.config.service_account(name)
            return None if account is None else account.principal("bearer")
        if self.config.mailbox(name) is None:
            return None
        return Principal(kind="user", name=name.lower(), auth_scheme="bearer")

    # --- revocation ---------------------------------------------------------------------
    def revoke(self, subject: str, *, block: bool = True) -> None:
        """Every token issued so far to ``subject`` (client id or user address) stops working;
        with ``block`` new ones are refused too until ``restore``."""
        subject = subject.lower()
        with self._lock:
            self._generations[subject] = self._generations.get(subject, 0) + 1
            if block:
                self._blocked.add(subject)

    def restore(self, subject: str) -> None:
        with self._lock:
            self._blocked.discard(subject.lower())


class TokenEndpoint:
    """The Entra ID endpoints azure-identity (MSAL) calls: tenant discovery and the token
    endpoint. ``base_url`` is the HTTPS authority base (``https://127.0.0.1:PORT``)."""

    def __init__(self, issuer: TokenIssuer, base_url: str) -> None:
        self.issuer = issuer
        self.base_url = base_url.rstrip("/")

    def handle(self, request: SimRequest) -> SimResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts[-3:] == [
            "v2.0",
            ".well-known",
            "openid-configuration",
        ]:
            return self._openid_configuration(parts[0] if len(parts) == 4 else "common")
        if request.method == "GET" and parts[-2:] == ["discovery", "instance"]:
            return self._instance_discovery(request)
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            if request.method != "POST":
                return _oauth_error(405, "invalid_request", "The token endpoint takes POST.")
            return self._token(parts[0], request)
        return _oauth_error(404, "invalid_request", f"No such endpoint: {request.path}")

    def _openid_configuration(self, tenant: str) -> SimResponse:
        base = f"{self.base_url}/{tenant}"
        document = {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "issuer": f"{base}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "client_secret_basic",
                "private_key_jwt",
            ],
            "grant_types_supported": ["client_credentials", "password"],
            "tenant_region_scope": "NA",
        }
        return SimResponse(200, json.dumps(document).encode())

    def _instance_discovery(self, request: SimRequest) -> SimResponse:
        host = self.base_url.split("://", 1)[-1]
        discovery = f"{self.base_url}/common/{'/'.join(OPENID_PATH)}"
        document = {
            "tenant_discovery_endpoint": discovery,
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        }
        return SimResponse(200, json.dumps(document).encode())

    def _token(self, tenant: str, request: SimRequest) -> SimResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        client_id = form.get("client_id", "")
        client_secret = form.get("client_secret", "")
        basic = request.header("authorization") or ""
        if basic.lower().startswith("basic "):
            # client_secret_basic: the client authenticates in the header instead of the form.
            try:
                decoded = base64.b64decode(basic[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
            except ValueError:
                return _oauth_error(401, "invalid_client", "Malformed client authentication.")
        grant = form.get("grant_type")
        try:
            if grant == "client_credentials" and "client_assertion" in form:
                if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
                    raise TokenError(
                        400,
                        "invalid_request",
                        f"AADSTS50012: client_assertion_type must be {CLIENT_ASSERTION_TYPE}.",
                    )
                issued = self.issuer.issue_client_assertion(
                    tenant,
                    client_id,
                    form["client_assertion"],
                    form.get("scope"),
                    token_endpoint=f"{self.base_url}/{tenant}/oauth2/v2.0/token",
                )
            elif grant == "client_credentials":
                issued = self.issuer.issue_client_credentials(
                    tenant, client_id, client_secret, form.get("scope")
                )
            elif grant == "password":
                issued = self.issuer.issue_password(
                    tenant, form.get("username", ""), form.get("password", ""), form.get("scope")
                )
            else:
                raise TokenError(
                    400,
                    "unsupported_grant_type",
                    f"AADSTS70003: The grant type {grant!r} is not supported.",
                )
        except TokenError as error:
            return _oauth_error(error.status, error.error, error.description)
        answer = {
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "ext_expires_in": issued.expires_in,
            "access_token": issued.access_token,
        }
        return SimResponse(200, json.dumps(answer).encode(), headers={"Cache-Control": "no-store"})


CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Clock skew Entra ID allows around an assertion's nbf and exp.
ASSERTION_SKEW_S = 300


def _invalid_assertion(code: str, text: str) -> TokenError:
    return TokenError(401, "invalid_client", f"AADSTS{code}: {text}")


def _unverified_claims(assertion: str) -> dict[str, Any]:
    try:
        claims = json.loads(_unb64url(assertion.split(".")[1]))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _thumbprints(pem: str) -> dict[bytes, Any]:
    """The SHA-1 (``x5t``) and SHA-256 (``x5t#S256``) thumbprints of a registered certificate's
    DER form, each naming its public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certificate = x509.load_pem_x509_certificate(pem.encode())
    key = certificate.public_key()
    return {
        certificate.fingerprint(hashes.SHA1()): key,  # noqa: S303 (the x5t header)
        certificate.fingerprint(hashes.SHA256()): key,
    }


def _thumbprint_bytes(value: Any) -> bytes | None:
    """A thumbprint header's bytes. The documentation says base64url; MSAL sends standard
    base64 with padding, which Entra ID accepts as well: both are read."""
    if not isinstance(value, str) or not value:
        return None
    text = value.rstrip("=").replace("+", "-").replace("/", "_")
    try:
        return _unb64url(text)
    except ValueError:
        return None


def verify_client_assertion(
    assertion: str, client: OAuthClient, *, token_endpoint: str, now: float
) -> None:
    """Check a certificate credential as Microsoft identity platform does
    (https://learn.microsoft.com/entra/identity-platform/certificate-credentials): a JWT whose
    header has ``alg`` RS256 or PS256 and names the certificate by ``x5t`` (base64url SHA-1
    thumbprint) or ``x5t#S256`` (SHA-256); claims ``aud`` = the token endpoint, ``iss`` = ``sub``
    = the client id, ``exp`` and ``nbf`` around now, a ``jti``; signed with the private key of a
    certificate registered for the client. Raises ``TokenError`` naming what failed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    parts = assertion.split(".")
    try:
        if len(parts) != 3:
            raise ValueError("not three parts")
        header = json.loads(_unb64url(parts[0]))
        claims = json.loads(_unb64url(parts[1]))
        signature = _unb64url(parts[2])
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("not JSON objects")
    except ValueError:
        raise _invalid_assertion("50027", "JWT token is invalid or malformed.") from None
    algorithm = header.get("alg")
    if algorithm not in ("RS256", "PS256"):
        raise _invalid_assertion(
            "5002738", f"Invalid JWT token. '{algorithm}' is not a supported signature algorithm."
        )
    thumbprint = header.get("x5t#S256") or header.get("x5t")
    registered: dict[bytes, Any] = {}
    for pem in client.certificates:
        registered.update(_thumbprints(pem))
    named = _thumbprint_bytes(thumbprint)
    key = registered.get(named) if named else None
    if key is None or not isinstance(key, rsa.RSAPublicKey):
        raise _invalid_assertion(
            "700027",
            f"The certificate with identifier used to sign the client assertion is not "
            f"registered on application. [Reason - The key was not found., Thumbprint of key "
            f"used by client: '{thumbprint}']",
        )
    signed = f"{parts[0]}.{parts[1]}".encode()
    chosen = (
        padding.PKCS1v15()
        if algorithm == "RS256"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    )
    try:
        key.verify(signature, signed, chosen, hashes.SHA256())
    except InvalidSignature:
        raise _invalid_assertion(
            "700027", "Client assertion failed signature validation."
        ) from None
    if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
        raise _invalid_assertion(
            "700021",
            "Client assertion application identifier doesn't match 'client_id' parameter.",
        )
    if str(claims.get("aud", "")).rstrip("/").lower() != token_endpoint.rstrip("/").lower():
        raise _invalid_assertion(
            "70002",
            f"Client assertion audience claim does not match the token endpoint {token_endpoint}.",
        )
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", now))
    if (
        not isinstance(exp, int | float)
        or not isinstance(nbf, int | float)
        or exp + ASSERTION_SKEW_S < now
        or nbf - ASSERTION_SKEW_S > now
    ):
        raise _invalid_assertion("700024", "Client assertion is not within its valid time range.")
    if not claims.get("jti"):
        raise _invalid_assertion("50027", "JWT token is invalid or malformed (no jti).")


def _oauth_error(status: int, error: str, description: str) -> SimResponse:
    body = {
        "error": error,
        "error_description": description,
        "error_codes": [int(code) for code in re.findall(r"^AADSTS(\d+)", description)],
        "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }
    return SimResponse(status, json.dumps(body).encode())
