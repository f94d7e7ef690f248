"""How an EWS session proves who it is, per connection: NTLM with a chosen response version, and
OAuth bearer tokens from azure-identity. (Basic is exchangelib's own.)

NTLM version. pyspnego, which requests_ntlm and so exchangelib use, picks the response it sends
from the process-wide ``LM_COMPAT_LEVEL`` environment variable (the "LAN Manager authentication
level" of Windows,
https://learn.microsoft.com/previous-versions/windows/it-pro/windows-10/security/threat-protection/security-policy-settings/network-security-lan-manager-authentication-level).
Setting it would change every connection of the process (and any NTLM acceptor in it), so
``NtlmAuth`` pins the version on each context it makes instead: v2 is level 3 ("Send NTLMv2
response only"), v1 is level 2 ("Send NTLM response only", no LM response). The handshake itself
is requests_ntlm's (negotiate, challenge, authenticate on one kept-alive connection, with channel
binding over HTTPS); only the making of the context differs.

OAuth. ``BearerTokenAuth`` asks azure-identity's credential for a token before each request (the
credential caches it and renews it before it expires) and sends it as ``Authorization: Bearer``.
A token failure is raised as azure-core's exception, which ``errors.calendar_error`` reads with
the rule both adapters share (``shared.exchange.oauth.token_error``).
"""

from __future__ import annotations

import base64
import typing as t
from urllib.parse import urlparse

import requests
import spnego
from requests.auth import AuthBase
from requests_ntlm import HttpNtlmAuth
from requests_ntlm.requests_ntlm import ShimSessionSecurity
from spnego._ntlm_raw.messages import NegotiateFlags

from shared.models import NtlmVersion

# The scope of EWS for an application token (Exchange's resource, ``full_access_as_app``).
EWS_SCOPE: t.Final = "https://outlook.office365.com/.default"
# What each version is in pyspnego's terms (``spnego._ntlm.NTLMProxy``: LM, NTLMv1, NTLMv2
# responses allowed), as LAN Manager authentication levels 2 and 3 set them.
_RESPONSES: t.Final[dict[str, tuple[bool, bool, bool]]] = {
    "v1": (False, True, False),
    "v2": (False, False, True),
}


def ntlm_context(username: str, password: str, version: NtlmVersion, **options: t.Any) -> t.Any:
    """A pyspnego NTLM initiator that sends ``version`` responses whatever ``LM_COMPAT_LEVEL``
    says. Raises ``RuntimeError`` if pyspnego no longer keeps these settings where this expects
    (a version it was not checked with), rather than sending something else silently."""
    context = spnego.client(username, password, protocol="ntlm", **options)
    settings = ("_lm", "_nt_v1", "_nt_v2", "_context_req")
    if not all(hasattr(context, name) for name in settings):
        raise RuntimeError("pyspnego's NTLM context does not expose its response settings")
    context._lm, context._nt_v1, context._nt_v2 = _RESPONSES[version]
    # No LM session key either (level 2 and above clear it).
    context._context_req &= ~NegotiateFlags.lm_key
    return context


class NtlmAuth(HttpNtlmAuth):
    """requests_ntlm's NTLM over HTTP, sending the connection's NTLM version."""

    def __init__(self, username: str, password: str, version: NtlmVersion = "v2") -> None:
        super().__init__(username, password)
        self.version: NtlmVersion = version

    def retry_using_http_NTLM_auth(
        self,
        auth_header_field: str,
        auth_header: str,
        response: requests.Response,
        auth_type: str,
        args: t.Any,
    ) -> requests.Response:
        # requests_ntlm 1.3's handshake, with the context from ``ntlm_context``.
        if auth_header in response.request.headers:
            return response
        server_certificate_hash = self._get_server_cert(response)
        bindings = None
        if server_certificate_hash:
            bindings = spnego.channel_bindings.GssChannelBindings(
                application_data=b"tls-server-end-point:" + server_certificate_hash
            )
        content_length = int(response.request.headers.get("Content-Length", "0"), base=10)
        body = response.request.body
        if body is not None and hasattr(body, "seek"):
            if content_length > 0:
                body.seek(-content_length, 1)
            else:
                body.seek(0, 0)
        # Read the answer and free the connection, so the next request goes on the same one.
        response.content  # noqa: B018
        response.raw.release_conn()
        request = response.request.copy()
        context = ntlm_context(
            self.username or "",
            self.password or "",
            self.version,
            channel_bindings=bindings,
            hostname=t.cast(str, urlparse(response.url).hostname),
            service="http",
            options=spnego.NegotiateOptions.use_ntlm,
        )
        negotiate = base64.b64encode(context.step() or b"").decode()
        request.headers[auth_header] = f"{auth_type} {negotiate}"
        # The challenge answer is short: never streamed, whatever the caller asked for.
        challenged = response.connection.send(request, **dict(args, stream=False))
        challenged.content  # noqa: B018
        challenged.raw.release_conn()
        request = challenged.request.copy()
        if challenged.headers.get("set-cookie"):
            request.headers["Cookie"] = challenged.headers["set-cookie"]
        prefix = auth_type + " "
        challenge = next(
            (
                value.strip()
                for value in (
                    part.lstrip()
                    for part in challenged.headers.get(auth_header_field, "").split(",")
                )
                if value.startswith(prefix)
            ),
            None,
        )
        if not challenge:
            raise PermissionError("Access denied: the server sent no NTLM challenge")
        authenticate = context.step(base64.b64decode(challenge[len(prefix) :].encode()))
        request.headers[auth_header] = (
            f"{auth_type} {base64.b64encode(authenticate or b'').decode()}"
        )
        final = challenged.connection.send(request, **args)
        final.history.append(response)
        final.history.append(challenged)
        self.session_security = ShimSessionSecurity(context)
        return final


class BearerTokenAuth(AuthBase):
    """``Authorization: Bearer <token>`` from the connection's azure-identity credential
    (``shared.exchange.oauth.IsolatedTokenCredential``, waited for on exchangelib's thread)."""

    def __init__(self, credential: t.Any, scope: str = EWS_SCOPE) -> None:
        self.credential = credential
        self.scope = scope

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.credential.get_token_blocking(self.scope)
        request.headers["Authorization"] = f"Bearer {token.token}"
        return request
