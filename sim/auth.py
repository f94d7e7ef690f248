"""Authentication as Exchange does it, before a protocol service sees a request.

EWS accepts Basic, NTLM (a genuine challenge/response handshake: pyspnego acts as the server
with the configured passwords) and Bearer tokens from the simulator's token endpoint; Graph
accepts only Bearer. Anything else gets 401 with the challenges the endpoint offers.

NTLM is connection-based as on IIS: once a connection completes the handshake, later requests
on that connection are the same principal without a new handshake (exchangelib relies on this
to avoid three round trips per call).

Which NTLM responses are accepted follows the server's "LAN Manager authentication level"
(``ntlmCompatibilityLevel`` in the config, the ``LmCompatibilityLevel`` registry value), as
https://learn.microsoft.com/previous-versions/windows/it-pro/windows-10/security/threat-protection/security-policy-settings/network-security-lan-manager-authentication-level
documents for the server side: levels 0 to 3 accept LM, NTLM (v1) and NTLMv2 responses, level 4
refuses LM, level 5 refuses LM and NTLM (accepts NTLMv2 only). No level refuses NTLMv2.

So demanding NTLM v1 is a setting of the simulator's own, not a Windows one: ``ntlmVersions``
(default ``["v1", "v2"]``) lists the NT response versions the server implements, and ``["v1"]``
refuses NTLMv2. It stands for a server that predates NTLMv2: Microsoft's description of the same
setting for Windows 2000 notes that "Windows NT 4.0 computers prior to SP4 do not support
NTLMv2" (https://technet.microsoft.com/en-us/library/cc938105.aspx); the page above lists the
client side of it, levels 0 to 2 ("Send LM & NTLM responses", "Send NTLM responses only"), which
send NTLM (v1) responses, with LM at 0 and 1, not NTLMv2 ones. A response is accepted only if
both the level and ``ntlmVersions`` allow it; LM responses follow the level alone. A refusal by
either looks the same to the client: the AUTHENTICATE is answered 401 with the usual
challenges, as a wrong password is, and the connection stays unauthenticated. Both are read
from the config at start.

The kind of response is read from the AUTHENTICATE message itself (MS-NLMP 2.2.1.3: an NT
response of 24 bytes is NTLM v1, a longer one NTLMv2, none at all LM only), before pyspnego
checks it, so the process-wide ``LM_COMPAT_LEVEL`` that pyspnego would read plays no part. Each
NTLM logon is counted as ``auth:ntlm-v1`` / ``auth:ntlm-v2`` and each refused kind as
``auth:ntlm-v1-refused`` / ``auth:ntlm-v2-refused`` / ``auth:ntlm-lm-refused`` (under the name
the client gave), at ``/control/counters``, so a test sees which handshake a client really made
and how often it tried.

pyspnego's NTLM acceptor reads credentials from the file named by the ``NTLM_USER_FILE``
environment variable, which is process-wide; every simulator running in the process registers
its users in one shared file (smbpasswd format with LM/NT hashes, so any password character is
safe).
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import spnego
from spnego._ntlm_raw.crypto import lmowfv1, ntowfv1
from spnego._ntlm_raw.messages import Authenticate

from sim.config import NTLM_VERSIONS, SimConfig
from sim.token import EWS_AUDIENCE, GRAPH_AUDIENCE, TokenIssuer
from sim.wire import AuthScheme, Principal

logger = logging.getLogger(__name__)

EWS_CHALLENGES = ("Negotiate", "NTLM", 'Basic realm="contoso.test"')
GRAPH_CHALLENGE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/'
    'authorize", client_id="00000003-0000-0000-c000-000000000000"'
)
NTLM_SIGNATURE = b"NTLMSSP\x00"


def netbios_domain(address: str) -> str:
    """The pre-Windows-2000 domain name a user types as DOMAIN\\user: the first label of the
    address's domain, upper-case (ann@contoso.test → CONTOSO)."""
    return address.partition("@")[2].split(".")[0].upper()


class NtlmUserFile:
    """The process-wide NTLM_USER_FILE shared by every simulator in this process."""

    _lock = threading.Lock()
    _owners: dict[int, list[str]] = {}
    _path: Path | None = None

    @classmethod
    def register(cls, owner: object, accounts: list[tuple[str, str]]) -> None:
        """Add (address, password) accounts in UPN and DOMAIN\\user form."""
        lines: list[str] = []
        for address, password in accounts:
            lm_hash = lmowfv1(password).hex().upper()
            nt_hash = ntowfv1(password).hex().upper()
            user = address.partition("@")[0]
            for name in (address, f"{netbios_domain(address)}\\{user}"):
                lines.append(f"{name}:1000:{lm_hash}:{nt_hash}:[U]:LCT-00000000")
        with cls._lock:
            cls._owners[id(owner)] = lines
            cls._write()

    @classmethod
    def unregister(cls, owner: object) -> None:
        with cls._lock:
            cls._owners.pop(id(owner), None)
            cls._write()

    @classmethod
    def _write(cls) -> None:
        if cls._path is None:
            directory = Path(tempfile.mkdtemp(prefix="sim-ntlm-"))
            cls._path = directory / "ntlm-users"
        text = "\n".join(line for lines in cls._owners.values() for line in lines) + "\n"
        staging = cls._path.with_suffix(".tmp")
        staging.write_text(text, encoding="utf-8")
        os.chmod(staging, 0o600)
        os.replace(staging, cls._path)  # readers never see a half-written file
        os.environ["NTLM_USER_FILE"] = str(cls._path)


def ntlm_response_kind(authenticate: bytes) -> str:
    """ "lm", "v1" or "v2": what an NTLM AUTHENTICATE message answers the challenge with
    (the length of its NtChallengeResponse, MS-NLMP 2.2.1.3); "" when it is too short to say."""
    if len(authenticate) < 28:
        return ""
    nt_length = int.from_bytes(authenticate[20:22], "little")
    if nt_length == 0:
        return "lm"
    return "v1" if nt_length == 24 else "v2"


def ntlm_user(authenticate: bytes) -> str:
    """The name an NTLM AUTHENTICATE message signs in as (DOMAIN\\user, or the UPN when it
    carries no domain); "" when the message cannot be read."""
    try:
        message = Authenticate.unpack(authenticate)
    except Exception:  # pyspnego raises its own hierarchy, and struct errors, on bad bytes
        return ""
    user, domain = message.user_name or "", message.domain_name or ""
    return f"{domain}\\{user}" if domain and user else user


def ntlm_refusal(level: int, kind: str, versions: frozenset[str] = NTLM_VERSIONS) -> str | None:
    """Why a server at LAN Manager authentication level ``level`` that implements the NTLM
    ``versions`` refuses a ``kind`` response (None: accepted)."""
    if kind == "lm" and level >= 4:
        return f"LM responses are refused at LAN Manager authentication level {level}"
    if kind == "v1" and level >= 5:
        return f"NTLM (v1) responses are refused at LAN Manager authentication level {level}"
    if kind in NTLM_VERSIONS and kind not in versions:
        accepted = " and ".join(sorted(versions))
        return f"NTLM {kind} responses are refused: this server implements NTLM {accepted} only"
    return None


@dataclass
class ConnectionAuth:
    """Authentication state of one TCP connection (one HTTP handler instance)."""

    ntlm_context: Any = None
    ntlm_scheme: str = "NTLM"
    principal: Principal | None = None


@dataclass
class AuthOutcome:
    principal: Principal | None
    # When principal is None: WWW-Authenticate values to answer 401 with.
    challenges: list[str] = field(default_factory=list)
    reason: str = ""


class Authenticator:
    """Turns an Authorization header (and the connection's NTLM state) into a Principal."""

    def __init__(
        self,
        config: SimConfig,
        issuer: TokenIssuer,
        *,
        on_logon: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.issuer = issuer
        self.ntlm_level = config.ntlm_compatibility_level
        self.ntlm_versions = config.ntlm_versions
        # Told (what, who) for each NTLM logon and refusal: ("auth:ntlm-v2", "svc@contoso.test").
        self._on_logon = on_logon
        accounts = [(m.address, m.password) for m in config.mailboxes if m.password is not None]
        accounts += [(s.username, s.password) for s in config.service_accounts]
        NtlmUserFile.register(self, accounts)
        # (DOMAIN, user) and UPN → configured address, for every way a user may type a name.
        self._names: dict[str, str] = {}
        for address, _ in accounts:
            user = address.partition("@")[0]
            self._names[address.lower()] = address.lower()
            self._names[f"{netbios_domain(address)}\\{user}".lower()] = address.lower()

    def close(self) -> None:
        NtlmUserFile.unregister(self)

    def resolve_username(self, name: str) -> str | None:
        """The configured address for ``ann@contoso.test`` or ``CONTOSO\\ann``."""
        return self._names.get(name.strip().lower())

    # --- EWS ------------------------------------------------------------------------------
    def authenticate_ews(self, header: str | None, connection: ConnectionAuth) -> AuthOutcome:
        if not header:
            if connection.principal is not None:
                return AuthOutcome(connection.principal)
            return self._ews_refusal("no credentials")
        scheme, _, value = header.strip().partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "basic":
            return self._basic(value)
        if scheme in ("ntlm", "negotiate"):
            return self._ntlm(scheme, value, connection)
        if scheme == "bearer":
            principal = self.issuer.verify(value, audience=EWS_AUDIENCE)
            if principal is None:
                return self._ews_refusal("invalid bearer token")
            return AuthOutcome(principal)
        return self._ews_refusal(f"unsupported scheme {scheme}")

    def _ews_refusal(self, reason: str) -> AuthOutcome:
        return AuthOutcome(None, list(EWS_CHALLENGES), reason)

    def _basic(self, value: str) -> AuthOutcome:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return self._ews_refusal("malformed Basic credentials")
        username, separator, password = decoded.partition(":")
        address = self.resolve_username(username)
        if not separator or address is None:
            return self._ews_refusal("unknown user")
        principal = self.issuer.check_password(address, password, scheme="basic")
        if principal is None:
            return self._ews_refusal("wrong password")
        return AuthOutcome(principal)

    def _ntlm(self, scheme: str, value: str, connection: ConnectionAuth) -> AuthOutcome:
        try:
            token = base64.b64decode(value, validate=True)
        except binascii.Error:
            return self._ews_refusal("malformed NTLM token")
        if not token.startswith(NTLM_SIGNATURE):
            # Kerberos inside Negotiate: not available here, the client falls back to NTLM.
            connection.ntlm_context = None
            return self._ews_refusal("only NTLM is supported inside Negotiate")
        message_type = int.from_bytes(token[8:12], "little") if len(token) >= 12 else 0
        label = "Negotiate" if scheme == "negotiate" else "NTLM"
        if message_type == 1:
            # A new handshake replaces whatever the connection had.
            connection.principal = None
            connection.ntlm_scheme = label
            connection.ntlm_context = spnego.server(protocol="ntlm")
            # The level is this server's own (checked above the context, ``ntlm_refusal``):
            # pyspnego's acceptor would otherwise apply the process's LM_COMPAT_LEVEL too.
            connection.ntlm_context._lm = connection.ntlm_context._nt_v1 = True
            try:
                challenge = connection.ntlm_context.step(token)
            except Exception as error:  # pyspnego raises its own hierarchy for bad tokens
                connection.ntlm_context = None
                return self._ews_refusal(f"NTLM negotiate refused: {type(error).__name__}")
            encoded = base64.b64encode(challenge).decode()
            return AuthOutcome(None, [f"{label} {encoded}"], "NTLM challenge")
        if message_type == 3 and connection.ntlm_context is not None:
            context, connection.ntlm_context = connection.ntlm_context, None
            kind = ntlm_response_kind(token)
            refused = ntlm_refusal(self.ntlm_level, kind, self.ntlm_versions)
            if refused is not None:
                logger.info("NTLM authentication refused: %s", refused)
                if self._on_logon is not None:
                    user = ntlm_user(token)
                    self._on_logon(f"auth:ntlm-{kind}-refused", self.resolve_username(user) or user)
                return self._ews_refusal(refused)
            try:
                context.step(token)
            except Exception as error:  # wrong password, unknown user, bad MIC
                logger.info("NTLM authentication failed: %s", type(error).__name__)
                return self._ews_refusal("NTLM authentication failed")
            address = self.resolve_username(context.client_principal or "")
            if not context.complete or address is None:
                return self._ews_refusal("NTLM user unknown")
            principal = self._principal_for(address, "ntlm")
            if principal is None:
                return self._ews_refusal("NTLM user unknown")
            connection.principal = principal
            if self._on_logon is not None:
                self._on_logon(f"auth:ntlm-{kind}", address)
            return AuthOutcome(principal)
        connection.ntlm_context = None
        return self._ews_refusal("unexpected NTLM message")

    def _principal_for(self, address: str, scheme: AuthScheme) -> Principal | None:
        if self.config.mailbox(address) is not None:
            return Principal(kind="user", name=address, auth_scheme=scheme)
        account = self.config.service_account(address)
        return None if account is None else account.principal(scheme)

    # --- Graph ----------------------------------------------------------------------------
    def authenticate_graph(self, header: str | None) -> AuthOutcome:
        scheme, _, value = (header or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return AuthOutcome(None, [GRAPH_CHALLENGE], "Access token is empty.")
        principal = self.issuer.verify(value.strip(), audience=GRAPH_AUDIENCE)
        if principal is None:
            return AuthOutcome(
                None,
                [GRAPH_CHALLENGE],
                "Access token validation failure. Invalid audience, expired or revoked token.",
            )
        return AuthOutcome(principal)
