"""What the HTTP layer hands a protocol service and what it gets back.

The server (sim/server.py) authenticates the caller (Basic, NTLM, Bearer) before a protocol sees
the request; a protocol service (EWS, Graph, control) is ``handle(SimRequest) -> SimResponse``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

AuthScheme = Literal["basic", "ntlm", "bearer"]


@dataclass(frozen=True)
class Principal:
    """Who is calling, and which mailboxes they may reach.

    kind "user": a mailbox owner signed in as themselves (reaches only their own mailbox).
    kind "service": a service account; ``impersonate`` lists mailboxes it may reach through
    ExchangeImpersonation, ``delegate_for`` mailboxes it may open with delegate access.
    kind "app": an OAuth client (client credentials); ``app_mailboxes`` lists the mailboxes its
    application access reaches ("*" = all).
    """

    kind: Literal["user", "service", "app"]
    name: str  # user/service address or client id
    auth_scheme: AuthScheme
    impersonate: frozenset[str] = frozenset()
    delegate_for: frozenset[str] = frozenset()
    app_mailboxes: frozenset[str] = frozenset()

    def may_impersonate(self, address: str) -> bool:
        address = address.lower()
        if self.kind == "app":
            return "*" in self.app_mailboxes or address in self.app_mailboxes
        return self.kind == "service" and ("*" in self.impersonate or address in self.impersonate)

    def may_open(self, address: str) -> bool:
        """Direct (non-impersonated) access to a mailbox: own mailbox, delegate, or app access."""
        address = address.lower()
        if self.kind == "user":
            return address == self.name.lower()
        if self.kind == "app":
            return "*" in self.app_mailboxes or address in self.app_mailboxes
        return address == self.name.lower() or address in self.delegate_for


@dataclass
class SimRequest:
    method: str
    path: str  # without query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    principal: Principal | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class SimResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    # For injected faults: drop the connection without answering.
    reset_connection: bool = False
