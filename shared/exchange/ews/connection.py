"""One EWS connection's exchangelib objects, built once and reused: the ``Protocol`` (HTTP session
pool, credentials, retry policy, server version), one ``Account`` per mailbox and each mailbox's
calendar folder.

Why each choice (measured with exchangelib 5.6 against the simulator):
- The server version is given (``Version(build=…)``), so exchangelib never probes the server
  with ConvertId before the first real request.
- Retry policy ``FailFast``: throttling comes back at once as ``ErrorServerBusy`` with the
  server's back-off, which the gateway turns into ``RetryAfter``; the worker re-queues instead of
  sleeping.
- exchangelib caches protocols per (endpoint, credentials): a second ``Configuration`` with the
  same pair silently reuses the first one's retry policy, version and auth type. The protocol
  built here is pinned on every account, and if the cache handed back someone else's, it is
  replaced by one built from this connection's own configuration.
- The calendar is addressed as the distinguished folder ``calendar`` of the mailbox
  (``DistinguishedFolderId`` with a ``Mailbox``), built locally: no GetFolder round trips at all
  — ``account.calendar`` would cost two (root, then calendar) for every new Account.
- Access: impersonation sends ``ExchangeImpersonation`` (each mailbox's own throttling budget);
  delegate access names the mailbox in the folder id and relies on the service account's
  folder permissions (its own, shared budget: the gateway keeps the account's calls within it
  across instances, ``shared.exchange.budget``). One ``EwsConnection`` per service account: a
  connection with several has one each (``EwsCalendarGateway.connection_for``).
- The session pool never shrinks (``SteadyPoolProtocol``). exchangelib answers ErrorServerBusy
  by dropping a session: ``decrease_poolsize`` takes the pool lock and then waits for a free
  session, whose ``get_session`` may try to grow the pool under that same lock — a thread that
  waits on itself, then every thread behind it. calbridge re-queues a throttled change instead of
  retrying in place, so a smaller pool would buy nothing.
- Calls run on the connection's own threads (``executor``), as many as the pool has sessions: a
  stuck or throttled Exchange holds only its own connection's threads, never the storage calls
  or another connection, and no thread ever waits inside exchangelib for a session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    UTC,
    Account,
    Build,
    Configuration,
    Credentials,
    FailFast,
    Mailbox,
    Version,
)
from exchangelib.errors import SessionPoolMinSizeReached
from exchangelib.folders import Calendar, Root
from exchangelib.properties import DistinguishedFolderId
from exchangelib.protocol import Protocol
from exchangelib.transport import NOAUTH

from shared.exchange.common import DEFAULT_CALL_DEADLINE_S
from shared.exchange.ews.auth import BearerTokenAuth, NtlmAuth
from shared.exchange.oauth import (
    ClientCredentials,
    IsolatedTokenCredential,
    TokenAuthority,
    client_credential,
)
from shared.models import NtlmVersion

# Exchange Server 2016 CU23. Its EWS schema (Exchange2016) is what 2016, 2019 and Subscription
# Edition all serve, so one build fits every supported on-premises server.
DEFAULT_SERVER_BUILD: Final = (15, 1, 2507, 6)
DEFAULT_MAX_CONNECTIONS: Final = 4
# exchangelib waits 120 s for an answer by default; a queue worker should give up sooner and let
# the message come back (ExchangeUnavailable) rather than hold its slot.
DEFAULT_TIMEOUT_S: Final = 30.0

AuthKind = Literal["basic", "ntlm", "oauth"]
AccessKind = Literal["impersonation", "delegate"]
# OAuth: exchangelib sends no credentials of its own; the session carries ``BearerTokenAuth``.
_AUTH_TYPES: Final = {"basic": BASIC, "ntlm": NTLM, "oauth": NOAUTH}
_ACCESS_TYPES: Final = {"impersonation": IMPERSONATION, "delegate": DELEGATE}


@dataclass(frozen=True)
class EwsEndpoint:
    """How to reach one EWS service as one service account (Basic, NTLM) or application
    (OAuth). ``password`` is the resolved secret: kept out of ``repr`` so a logged endpoint never
    shows it. OAuth takes ``oauth`` (the application's credentials) and ``authority`` instead."""

    url: str
    username: str
    password: str = field(repr=False)
    auth: AuthKind = "ntlm"
    access: AccessKind = "impersonation"
    ntlm_version: NtlmVersion = "v2"
    oauth: ClientCredentials | None = None
    authority: TokenAuthority = field(default_factory=TokenAuthority)
    server_build: tuple[int, ...] = DEFAULT_SERVER_BUILD
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    timeout_s: float = DEFAULT_TIMEOUT_S
    call_deadline_s: float = DEFAULT_CALL_DEADLINE_S

    def __post_init__(self) -> None:
        if self.auth not in _AUTH_TYPES:
            raise ValueError(f"unsupported EWS authentication {self.auth!r}")
        if (self.auth == "oauth") != (self.oauth is not None):
            raise ValueError("oauth credentials go with auth 'oauth', and only with it")
        if self.access not in _ACCESS_TYPES:
            raise ValueError(f"unsupported EWS access mode {self.access!r}")
        if not 2 <= len(self.server_build) <= 4:
            raise ValueError("server_build needs 2 to 4 numbers (major, minor, build, revision)")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if self.timeout_s <= 0 or self.call_deadline_s <= 0:
            raise ValueError("timeouts must be positive")


class SteadyPoolProtocol(Protocol):
    """exchangelib's ``Protocol`` whose session pool never shrinks (see the module notes).

    Both callers of ``decrease_poolsize`` (ErrorServerBusy, ErrorExceededConnectionCount) treat
    ``SessionPoolMinSizeReached`` as "cannot shrink further": throttling is then raised to the
    gateway at once, and a connection-count refusal surfaces as an error instead of looping.
    """

    # Turns the auth exchangelib made for a new session into the connection's own (NTLM with
    # its version, a bearer token); None keeps exchangelib's (Basic).
    session_auth: Callable[[Any], Any] | None = None

    def decrease_poolsize(self) -> None:
        raise SessionPoolMinSizeReached("calbridge keeps its session pool at its size")

    def create_session(self) -> Any:
        session = super().create_session()
        if self.session_auth is not None:
            session.auth = self.session_auth(session.auth)
        return session


def session_auth(
    endpoint: EwsEndpoint, credential: IsolatedTokenCredential | None
) -> Callable[[Any], Any] | None:
    """What each new session of the endpoint authenticates with (see ``ews.auth``)."""
    if endpoint.auth == "ntlm":
        version = endpoint.ntlm_version
        # exchangelib's HttpNtlmAuth carries the user name as exchangelib spells it for NTLM.
        return lambda made: NtlmAuth(made.username, made.password, version)
    if credential is not None:
        return lambda _made: BearerTokenAuth(credential)
    return None


class EwsConnection:
    """exchangelib's objects for one ``EwsEndpoint``; thread-safe (calls run in worker threads)."""

    def __init__(self, endpoint: EwsEndpoint) -> None:
        self.endpoint = endpoint
        self._lock = threading.Lock()
        self._accounts: dict[str, Account] = {}
        self._calendars: dict[str, Calendar] = {}
        self._config = Configuration(
            service_endpoint=endpoint.url,
            credentials=(
                None
                if endpoint.auth == "oauth"
                else Credentials(endpoint.username, endpoint.password)
            ),
            auth_type=_AUTH_TYPES[endpoint.auth],
            version=Version(build=Build(*endpoint.server_build)),
            retry_policy=FailFast(),
            max_connections=endpoint.max_connections,
        )
        self.protocol = self._own_protocol()
        # OAuth: one credential per connection, its token cache serving every session.
        oauth = endpoint.oauth
        self._credential = (
            IsolatedTokenCredential(lambda: client_credential(oauth, endpoint.authority))
            if oauth is not None
            else None
        )
        self.protocol.session_auth = session_auth(endpoint, self._credential)
        self.protocol.TIMEOUT = endpoint.timeout_s
        self.executor = ThreadPoolExecutor(
            max_workers=endpoint.max_connections, thread_name_prefix="ews"
        )

    def _own_protocol(self) -> Any:
        protocol = SteadyPoolProtocol(config=self._config)
        if protocol.config is not self._config or not isinstance(protocol, SteadyPoolProtocol):
            # A protocol for the same endpoint and credentials was cached earlier in this process,
            # with that caller's retry policy and version: replace it with ours.
            del Protocol[self._config]
            protocol = SteadyPoolProtocol(config=self._config)
        return protocol

    def account(self, mailbox: str) -> Account:
        """The mailbox's Account (made once; building it sends nothing)."""
        address = mailbox.strip().lower()
        with self._lock:
            account = self._accounts.get(address)
            if account is None:
                account = Account(
                    primary_smtp_address=address,
                    config=self._config,
                    autodiscover=False,
                    access_type=_ACCESS_TYPES[self.endpoint.access],
                    default_timezone=UTC,
                )
                account.protocol = self.protocol
                self._accounts[address] = account
            return account

    def calendar(self, mailbox: str) -> Calendar:
        """The mailbox's calendar folder, addressed by distinguished id (no GetFolder)."""
        address = mailbox.strip().lower()
        account = self.account(address)
        with self._lock:
            calendar = self._calendars.get(address)
            if calendar is None:
                calendar = Calendar(
                    root=Root(account=account),
                    _distinguished_id=DistinguishedFolderId(
                        id=Calendar.DISTINGUISHED_FOLDER_ID,
                        mailbox=Mailbox(email_address=address),
                    ),
                )
                self._calendars[address] = calendar
            return calendar

    def close(self) -> None:
        """Close the HTTP sessions and forget the cached protocol (if it is still ours). Calls
        still queued for a thread are dropped; running ones end with their HTTP timeout."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._accounts.clear()
            self._calendars.clear()
        try:
            cached = Protocol[self._config]
        except KeyError:
            cached = None
        if cached is not None and cached[0] is self.protocol:
            del Protocol[self._config]
        self.protocol.close()
        if self._credential is not None:
            self._credential.close_blocking()
