"""The simulator's configuration: which mailboxes exist, who may sign in, which OAuth clients
exist, and the booking platform's webhook secrets — parsed from the JSON shape the issue fixes,
plus ``demo_config()``, the organization ``make run`` starts with.

```json
{"mailboxes": [{"address": "ann@contoso.test", "name": "Ann Lee",
                "timeZone": "America/Toronto", "password": "..."}],
 "serviceAccounts": [{"username": "svc@contoso.test", "password": "...",
                      "impersonate": ["ann@contoso.test"], "delegateFor": ["bob@contoso.test"]}],
 "oauthClients": [{"tenantId": "...", "clientId": "...", "clientSecret": "...",
                   "certificates": ["-----BEGIN CERTIFICATE-----..."], "mailboxes": ["*"]}],
 "bookingPlatform": {"secrets": {"org-1": "..."}},
 "tokenLifetimeSeconds": 3600,
 "ntlmCompatibilityLevel": 3,
 "ntlmVersions": ["v1", "v2"]}
```

An OAuth client has a client secret, certificates (PEM, public part only: what an app
registration holds) or both. ``ntlmCompatibilityLevel`` is the EWS server's "LAN Manager
authentication level" (0 to 5, Windows' default 3): at 4 it refuses LM responses, at 5 LM and NTLMv1
too. ``ntlmVersions`` is the simulator's own (no Windows level refuses NTLMv2): the NTLM response
versions the server implements, ``["v1", "v2"]`` by default; ``["v1"]`` plays a server that
predates NTLMv2 and so demands v1. A response is accepted only if both allow it, so ``["v1"]``
at level 5 is refused as accepting no NTLM response at all (``sim.auth``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sim.store import ExchangeStore, Mailbox
from sim.wire import AuthScheme, Principal

DEFAULT_TOKEN_LIFETIME_S = 3600
# Windows' default "LAN Manager authentication level": send NTLMv2, accept LM, NTLM and NTLMv2.
DEFAULT_NTLM_COMPATIBILITY_LEVEL = 3
# The NTLM response versions a server implements (``ntlmVersions``): both, as Windows does.
NTLM_VERSIONS = frozenset({"v1", "v2"})


class ConfigError(ValueError):
    """The configuration is not usable; the message names the offending key."""


@dataclass(frozen=True)
class MailboxConfig:
    address: str
    name: str
    time_zone: str
    password: str | None


@dataclass(frozen=True)
class ServiceAccount:
    username: str
    password: str
    impersonate: frozenset[str]
    delegate_for: frozenset[str]

    def principal(self, scheme: AuthScheme) -> Principal:
        """The account signed in (by password or token) with its configured rights."""
        return Principal(
            kind="service",
            name=self.username,
            auth_scheme=scheme,
            impersonate=self.impersonate,
            delegate_for=self.delegate_for,
        )


@dataclass(frozen=True)
class OAuthClient:
    tenant_id: str
    client_id: str
    client_secret: str | None
    mailboxes: frozenset[str]
    # PEM certificates registered for the client (public part only).
    certificates: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimConfig:
    mailboxes: tuple[MailboxConfig, ...]
    service_accounts: tuple[ServiceAccount, ...] = ()
    oauth_clients: tuple[OAuthClient, ...] = ()
    booking_secrets: dict[str, str] = field(default_factory=dict)
    token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S
    ntlm_compatibility_level: int = DEFAULT_NTLM_COMPATIBILITY_LEVEL
    ntlm_versions: frozenset[str] = NTLM_VERSIONS
    raw: dict[str, Any] = field(default_factory=dict)

    def mailbox(self, address: str) -> MailboxConfig | None:
        address = address.lower()
        return next((m for m in self.mailboxes if m.address == address), None)

    def service_account(self, username: str) -> ServiceAccount | None:
        username = username.lower()
        return next((s for s in self.service_accounts if s.username == username), None)

    def oauth_client(self, client_id: str) -> OAuthClient | None:
        return next((c for c in self.oauth_clients if c.client_id == client_id), None)


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry or entry[key] in (None, ""):
        raise ConfigError(f"{where}: missing {key!r}")
    return entry[key]


def _addresses(values: Any, where: str) -> frozenset[str]:
    if values is None:
        return frozenset()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: expected a list of addresses")
    return frozenset(v.lower() for v in values)


def _entries(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    entries = raw.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{key}: expected a list of objects")
    return entries


def parse_config(raw: dict[str, Any]) -> SimConfig:
    """Validate and convert the JSON shape; ConfigError names what is wrong."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration must be a JSON object")
    mailboxes: list[MailboxConfig] = []
    for index, entry in enumerate(_entries(raw, "mailboxes")):
        where = f"mailboxes[{index}]"
        address = str(_require(entry, "address", where)).lower()
        if "@" not in address:
            raise ConfigError(f"{where}: {address!r} is not an SMTP address")
        time_zone = str(entry.get("timeZone") or "UTC")
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ConfigError(f"{where}: unknown timeZone {time_zone!r}") from error
        if any(m.address == address for m in mailboxes):
            raise ConfigError(f"{where}: duplicate address {address!r}")
        mailboxes.append(
            MailboxConfig(
                address=address,
                name=str(entry.get("name") or address.split("@")[0]),
                time_zone=time_zone,
                password=entry.get("password"),
            )
        )
    known = {m.address for m in mailboxes}

    def check_known(addresses: frozenset[str], where: str) -> frozenset[str]:
        unknown = sorted(addresses - known - {"*"})
        if unknown:
            raise ConfigError(f"{where}: unknown mailbox(es) {', '.join(unknown)}")
        return addresses

    accounts: list[ServiceAccount] = []
    for index, entry in enumerate(_entries(raw, "serviceAccounts")):
        where = f"serviceAccounts[{index}]"
        accounts.append(
            ServiceAccount(
                username=str(_require(entry, "username", where)).lower(),
                password=str(_require(entry, "password", where)),
                impersonate=check_known(
                    _addresses(entry.get("impersonate"), f"{where}.impersonate"),
                    f"{where}.impersonate",
                ),
                delegate_for=check_known(
                    _addresses(entry.get("delegateFor"), f"{where}.delegateFor"),
                    f"{where}.delegateFor",
                ),
            )
        )
    clients: list[OAuthClient] = []
    for index, entry in enumerate(_entries(raw, "oauthClients")):
        where = f"oauthClients[{index}]"
        certificates = entry.get("certificates", [])
        if not isinstance(certificates, list) or not all(
            isinstance(c, str) and "BEGIN CERTIFICATE" in c for c in certificates
        ):
            raise ConfigError(f"{where}.certificates: expected a list of PEM certificates")
        secret = entry.get("clientSecret")
        if not secret and not certificates:
            raise ConfigError(f"{where}: needs a clientSecret or certificates")
        clients.append(
            OAuthClient(
                tenant_id=str(_require(entry, "tenantId", where)),
                client_id=str(_require(entry, "clientId", where)),
                client_secret=str(secret) if secret else None,
                certificates=tuple(certificates),
                mailboxes=check_known(
                    _addresses(entry.get("mailboxes", ["*"]), f"{where}.mailboxes"),
                    f"{where}.mailboxes",
                ),
            )
        )
    booking = raw.get("bookingPlatform") or {}
    secrets = booking.get("secrets", {}) if isinstance(booking, dict) else None
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        raise ConfigError("bookingPlatform.secrets: expected an object of org → secret")
    lifetime = raw.get("tokenLifetimeSeconds", DEFAULT_TOKEN_LIFETIME_S)
    if not isinstance(lifetime, int) or lifetime < 1:
        raise ConfigError("tokenLifetimeSeconds: expected a positive integer")
    level = raw.get("ntlmCompatibilityLevel", DEFAULT_NTLM_COMPATIBILITY_LEVEL)
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 5:
        raise ConfigError("ntlmCompatibilityLevel: expected an integer from 0 to 5")
    versions = _ntlm_versions(raw.get("ntlmVersions", sorted(NTLM_VERSIONS)), level)
    return SimConfig(
        ntlm_compatibility_level=level,
        ntlm_versions=versions,
        mailboxes=tuple(mailboxes),
        service_accounts=tuple(accounts),
        oauth_clients=tuple(clients),
        booking_secrets=dict(secrets),
        token_lifetime_s=lifetime,
        raw=raw,
    )


def _ntlm_versions(value: Any, level: int) -> frozenset[str]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in NTLM_VERSIONS for v in value)
        or len(set(value)) != len(value)
    ):
        raise ConfigError('ntlmVersions: expected a non-empty list of "v1" and/or "v2"')
    versions = frozenset(value)
    if versions == {"v1"} and level >= 5:
        raise ConfigError(
            f"ntlmVersions: only v1 at ntlmCompatibilityLevel {level}, which refuses v1, "
            "accepts no NTLM response"
        )
    return versions


def load_config(source: str | Path | dict[str, Any]) -> SimConfig:
    """A config from a JSON file path or an already-parsed dict."""
    if isinstance(source, dict):
        return parse_config(source)
    path = Path(source)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error
    return parse_config(raw)


def build_store(config: SimConfig) -> ExchangeStore:
    """An empty store with the configured mailboxes."""
    store = ExchangeStore()
    for mailbox in config.mailboxes:
        store.add_mailbox(
            Mailbox(mailbox.address, mailbox.name, mailbox.time_zone, mailbox.password)
        )
    return store


DEMO_TENANT = "7d3c1a52-3f8e-4a53-9a55-c0b1a5e0d0a1"
DEMO_CLIENT = "5b0f6c8e-6f0c-4d1e-8f55-2a9b7d1e4c33"
# The application an administrator switches the on-premises connection to OAuth with.
DEMO_EWS_CLIENT = "8c2d4e6f-1a3b-4c5d-9e7f-0b1c2d3e4f5a"
DEMO_EWS_CLIENT_SECRET = "ews-demo-secret"
DEMO_EWS_MAILBOXES = 3  # the first mailboxes: the ones ``make run`` puts on EWS


def demo_config(*, ews_app_certificate: str | None = None) -> dict[str, Any]:
    """The demo organization ``make run`` starts: contoso.test with a few staff mailboxes in
    different time zones, an EWS service account with impersonation rights, an OAuth client
    for Graph, an OAuth client for EWS (the first three mailboxes; a client secret and, when
    given, the PEM certificate ``ews_app_certificate``), and a booking-platform secret for the
    demo org."""
    staff = [
        ("ann@contoso.test", "Ann Lee", "America/Toronto"),
        ("bob@contoso.test", "Bob Ray", "America/Toronto"),
        ("cara@contoso.test", "Cara Diaz", "Europe/London"),
        ("dev@contoso.test", "Dev Patel", "Asia/Kolkata"),
        ("eve@contoso.test", "Eve Moreau", "Europe/Paris"),
    ]
    return {
        "mailboxes": [
            {"address": address, "name": name, "timeZone": zone, "password": "Outlook!2026"}
            for address, name, zone in staff
        ],
        "serviceAccounts": [
            {
                "username": "svc-calbridge@contoso.test",
                "password": "Impersonate!2026",
                "impersonate": [address for address, _, _ in staff],
                "delegateFor": [],
            }
        ],
        "oauthClients": [
            {
                "tenantId": DEMO_TENANT,
                "clientId": DEMO_CLIENT,
                "clientSecret": "graph-demo-secret",
                "mailboxes": ["*"],
            },
            {
                "tenantId": DEMO_TENANT,
                "clientId": DEMO_EWS_CLIENT,
                "clientSecret": DEMO_EWS_CLIENT_SECRET,
                "certificates": [ews_app_certificate] if ews_app_certificate else [],
                "mailboxes": [address for address, _, _ in staff[:DEMO_EWS_MAILBOXES]],
            },
        ],
        "bookingPlatform": {"secrets": {"demo-org": "demo-webhook-secret"}},
        "tokenLifetimeSeconds": DEFAULT_TOKEN_LIFETIME_S,
    }
