"""Domain models shared by the engine, the adapters, the store and the triggers (pydantic).

JSON on the wire is camelCase (``organizerStaffId``); Python attributes are snake_case.
Every model refuses unknown fields, so a typo in a request is an error, not silently dropped data.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.alias_generators import to_camel

from shared.timezones import writable_zone_problem

# Ids of organizations, appointments, staff and connections: what a URL path segment and a
# Table Storage key can both carry without surprises.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}$"
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
# Organization ids are stricter: they name Key Vault secrets (``org-{org}-signing-secret``),
# whose names allow only letters, digits and hyphens and ignore case; lower case keeps two
# organizations from ever sharing a secret name or an environment variable.
# No "--" in an organization id: it separates the organization from the name in the Key Vault
# names of its connections' secrets (``shared.config.connection_secret_name``).
ORG_ID_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
ORG_ID_MAX_LENGTH = 63
OrgId = Annotated[str, StringConstraints(pattern=ORG_ID_PATTERN, max_length=ORG_ID_MAX_LENGTH)]

MAX_APPOINTMENT_DURATION = timedelta(hours=24)
# No control character anywhere (NUL is not whitespace), no path separator in the domain: an
# address goes into Graph and EWS requests and into log lines.
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f/\\]+\.[^@\s\x00-\x1f\x7f/\\]+$")


def _writable_time_zone(name: str) -> str:
    problem = writable_zone_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


# RFC 3339 date-time with a numeric offset or Z ("+0000" and a missing offset are not RFC 3339).
RFC3339_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)
RFC3339_EXAMPLE = "2026-03-02T09:00:00+01:00"


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 date-time with its offset as an aware datetime; ``ValueError`` naming the
    rule otherwise. The one rule for every instant the booking platform sends."""
    if not RFC3339_DATE_TIME.fullmatch(text):
        raise ValueError(f"must be an RFC 3339 date-time with an offset, e.g. {RFC3339_EXAMPLE}")
    try:
        # Fractions beyond microseconds are cut (RFC 3339 leaves the precision open).
        return datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ValueError(f"is not a valid date-time ({exc})") from None


def _rfc3339_instant(value: object) -> object:
    """Booking-platform instants are RFC 3339 strings; a ``datetime`` passes (calbridge's own
    code and stored rows build models from Python values), anything else is refused."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(
            f"must be an RFC 3339 date-time string with an offset, e.g. {RFC3339_EXAMPLE}"
        )
    return parse_rfc3339(value)


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):  # `$` alone also matches before a final "\n"
        # Not repeated: a client's address is private data, and the field is named.
        raise ValueError("not an email address")
    return value.lower()


TimeZoneName = Annotated[str, StringConstraints(max_length=64), AfterValidator(_writable_time_zone)]
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_instant)]
EmailAddress = Annotated[str, StringConstraints(max_length=254), AfterValidator(_email)]
ShortText = Annotated[str, StringConstraints(max_length=255)]
LongText = Annotated[str, StringConstraints(max_length=4000)]


class CamelModel(BaseModel):
    """Base: camelCase JSON, unknown fields refused, immutable.

    Validators and serializers are built on a model's first use, not when its class is made
    (``defer_build``): importing the function app, which the host does to index the functions,
    then costs no schema building, and each invocation builds only the models it uses.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        defer_build=True,
    )


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"


class StaffRole(StrEnum):
    ORGANIZER = "organizer"
    SECONDARY = "secondary"


class StaffAssignment(CamelModel):
    staff_id: Identifier
    role: StaffRole


class Client(CamelModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email: EmailAddress | None = None
    phone: Annotated[str, StringConstraints(max_length=40)] | None = None


class AppointmentSnapshot(CamelModel):
    """The booking platform's full current state of one appointment (never a diff)."""

    version: Annotated[int, Field(ge=0, strict=True)]
    status: AppointmentStatus
    start: Instant
    end: Instant
    time_zone: TimeZoneName
    title: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    location: ShortText | None = None
    service_name: ShortText | None = None
    organizer_staff_id: Identifier
    staff: Annotated[list[StaffAssignment], Field(min_length=1, max_length=50)]
    clients: Annotated[list[Client], Field(max_length=50)] = []
    notes: LongText | None = None

    @model_validator(mode="after")
    def _consistent(self) -> AppointmentSnapshot:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > MAX_APPOINTMENT_DURATION:
            raise ValueError(
                f"an appointment may last at most {MAX_APPOINTMENT_DURATION}, "
                f"this one lasts {self.end - self.start}"
            )
        organizers = [s.staff_id for s in self.staff if s.role is StaffRole.ORGANIZER]
        if len(organizers) != 1:
            raise ValueError(f"staff must list exactly one organizer, found {len(organizers)}")
        if organizers[0] != self.organizer_staff_id:
            raise ValueError(
                f"organizerStaffId {self.organizer_staff_id!r} is not the staff member "
                f"with role organizer ({organizers[0]!r})"
            )
        ids = [s.staff_id for s in self.staff]
        if len(set(ids)) != len(ids):
            raise ValueError("a staff member is listed more than once")
        return self

    @property
    def secondary_staff_ids(self) -> list[str]:
        """Secondary staff in the order the booking platform lists them."""
        return [s.staff_id for s in self.staff if s.role is StaffRole.SECONDARY]


ConnectionKind = Literal["ews", "graph"]


class MailboxRef(CamelModel):
    """Where one staff member's calendar lives: a mailbox on a connection."""

    staff_id: Identifier
    connection_id: Identifier
    address: EmailAddress
    time_zone: TimeZoneName = "UTC"


class EventMapping(CamelModel):
    """What calbridge wrote to Exchange for one appointment (the EventMap table).

    ``item_id``/``change_key`` are the organizer's item as the organizer's connection names it;
    ``uid`` is the iCalendar UID shared by the attendees' copies. ``applied_version`` is the
    snapshot version last made true in Exchange; ``cancelled`` says the event was cancelled.
    ``item_id`` is None only for a cancellation recorded before any event was written (it keeps
    an older "booked" message from creating one). ``generation`` counts the events calbridge
    has created for the appointment (a handover or re-booking starts a new one); it is part of
    the create's transaction id, so a retried create is recognised and a new one is not.
    """

    organizer_staff_id: Identifier
    mailbox: EmailAddress
    connection_id: Identifier
    item_id: str | None
    change_key: str | None = None
    uid: str | None = None
    applied_version: int
    cancelled: bool = False
    attendee_staff_ids: list[str] = []
    last_error: str | None = None
    generation: int = 0
    # Where the organizer moved the event in Outlook, reported to the booking platform and not
    # answered yet: a snapshot that is not newer must not move it back meanwhile.
    outlook_start: AwareDatetime | None = None
    outlook_end: AwareDatetime | None = None
    # The booked times of the snapshot last applied: what an Outlook move is measured against
    # (a newer snapshot stored but not applied yet must not make the event look moved).
    booked_start: AwareDatetime | None = None
    booked_end: AwareDatetime | None = None
    # Secondary staff who declined in Outlook (reported once each), until the booking platform
    # answers by no longer naming them.
    declined_staff_ids: list[str] = []
    # Secondaries whose decline the platform answered (it no longer names them) and whom the
    # organizer's item still lists, declined: no write is made for them alone (it would reach
    # them); the next write the appointment needs anyway leaves them off.
    answered_declines: list[str] = []
    # An Outlook change the mailbox sync had not read when a newer snapshot met it (its change
    # key, or "gone" and the item id): that write waits for the sync to report the change.
    read_first: str | None = None
    # How many times a newer snapshot came back for that change (see ``READ_FIRST_WAITS``).
    read_first_waits: int = 0
    # A digest of the last draft written (``shared.engine.content.draft_digest``): a snapshot
    # whose draft is the same needs no write, whatever its version.
    draft_digest: str | None = None
    # Exchange may not hold what this row says: a write was refused as a conflict, its item was
    # missing, its answer was lost, or the booking platform refused an Outlook move (the item is
    # not where the draft says). The next pass looks by marker before it writes; otherwise the
    # row is trusted and a change costs one request.
    in_doubt: bool = False


def utc(value: datetime) -> datetime:
    """The same instant in UTC."""
    from datetime import UTC

    return value.astimezone(UTC)


AuthType = Literal["basic", "ntlm", "oauth"]
# What an OAuth connection's secret holds: a client secret, or a PEM certificate with its key.
CredentialType = Literal["secret", "certificate"]
# The NTLM response calbridge sends: v2 (NTLMv2, the default) or v1 for servers that accept
# nothing newer ("Send NTLM response only", LAN Manager authentication level 2).
NtlmVersion = Literal["v1", "v2"]
AccessMode = Literal["impersonation", "delegate"]
# Key Vault secret names: letters, digits and dashes.
# A connection's secret, named within its organization: stored in Key Vault as
# ``org-<org>--<reference>`` (see ``shared.config.connection_secret_name``), so an organization
# can only ever name its own secrets. 56 characters leave room for the longest org id within
# Key Vault's 127.
SecretReference = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,56}$")]
# An Entra ID tenant (a GUID or a domain such as contoso.onmicrosoft.com) or application (a
# GUID): they go into the token endpoint's URL, so no path separator or control character.
DirectoryId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?$")
]
# A service account (``svc@contoso.com``, ``CONTOSO\svc``): sent in an authentication header,
# so no control character (a line break would end the header).
AccountName = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,255}$")]


def _no_credentials_in_url(url: str) -> str:
    # Refused, never stored; the message does not repeat the URL, which holds a password.
    if "@" in urlsplit(url).netloc:
        raise ValueError(
            "must not carry a user name or password (use username and secretReference)"
        )
    return url


HttpsUrl = Annotated[
    str,
    StringConstraints(pattern=r"^https?://[^\s/]+\S*$", max_length=2048),
    AfterValidator(_no_credentials_in_url),
]


# How many service accounts one EWS connection may spread its mailboxes over.
MAX_SERVICE_ACCOUNTS = 16
# Exchange's default EWSMaxConcurrency (2013 and later): requests one throttling budget may have
# open at once. calbridge stays below it: a budget is shared with whatever else uses the account.
EWS_MAX_CONCURRENCY = 27
DEFAULT_MAX_CONCURRENT_CALLS = 12


class ServiceAccount(CamelModel):
    """One service account of an EWS connection: who signs in, and the secret reference of its
    password. Signs in with the connection's ``authType``."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    secret_reference: SecretReference


class ConnectionConfig(CamelModel):
    """How calbridge reaches one Exchange organization (the admin API's connection body).

    Holds a secret *reference* (a Key Vault secret name), never a secret. EWS connections use
    Basic, NTLM (v2, or v1 with ``ntlmVersion``) or OAuth; Graph connections are app-only OAuth.
    OAuth uses a client secret or a certificate (``credentialType``).
    """

    kind: ConnectionKind
    ews_url: HttpsUrl | None = None
    auth_type: AuthType
    username: AccountName | None = None
    secret_reference: SecretReference | None = None
    tenant_id: DirectoryId | None = None
    client_id: DirectoryId | None = None
    access_mode: AccessMode = "impersonation"
    enabled: bool = True
    # Several service accounts (EWS with basic or ntlm), instead of ``username`` and
    # ``secretReference``: each mailbox is read and written through one of them, always the same
    # while the list is unchanged (``shared.exchange.accounts``), so the accounts' throttling
    # budgets add up. A connection with ``username`` and ``secretReference`` has one account.
    service_accounts: (
        Annotated[list[ServiceAccount], Field(min_length=1, max_length=MAX_SERVICE_ACCOUNTS)] | None
    ) = None
    # Delegate access: EWS calls one service account may have open at once, across every
    # instance of the app (the account's EWSMaxConcurrency budget, 27 by default, is shared with
    # anything else that signs in as it). Impersonation charges each mailbox's own budget.
    max_concurrent_calls: Annotated[int, Field(ge=1, le=EWS_MAX_CONCURRENCY - 1, strict=True)] = (
        DEFAULT_MAX_CONCURRENT_CALLS
    )
    # OAuth only: what the secret reference names (a client secret, or for "certificate" the
    # PEM certificate with its private key, as Key Vault keeps a certificate's secret).
    credential_type: Annotated[
        CredentialType,
        Field(
            description="OAuth only: `secret` (the secret reference holds a client secret) or "
            "`certificate` (it holds the PEM certificate with its unencrypted RSA private key)."
        ),
    ] = "secret"
    # NTLM only: which NTLM response to send (None: v2).
    ntlm_version: Annotated[
        NtlmVersion | None,
        Field(
            description="NTLM only: `v2` (the default) or `v1`, for a server that accepts "
            "nothing newer."
        ),
    ] = None

    @model_validator(mode="after")
    def _complete(self) -> ConnectionConfig:
        # Messages start with the field they concern: the intake maps them onto that field.
        if self.kind == "ews" and self.ews_url is None:
            raise ValueError("ewsUrl is required for an EWS connection")
        if self.kind == "graph":
            if self.auth_type != "oauth":
                raise ValueError("authType must be oauth for a Graph connection")
            if self.ews_url is not None:
                raise ValueError("ewsUrl must be absent for a Graph connection")
        if self.service_accounts is not None:
            self._check_service_accounts()
        elif self.secret_reference is None:
            raise ValueError("secretReference is required (the Key Vault name of the secret)")
        elif self.auth_type in ("basic", "ntlm") and not self.username:
            raise ValueError(f"username is required for {self.auth_type} authentication")
        if self.auth_type == "oauth" and not (self.tenant_id and self.client_id):
            raise ValueError("tenantId and clientId are required for OAuth")
        if self.credential_type == "certificate" and self.auth_type != "oauth":
            raise ValueError(
                f"credentialType certificate needs authType oauth ({self.auth_type} takes a "
                "password)"
            )
        if self.ntlm_version is not None and self.auth_type != "ntlm":
            raise ValueError(f"ntlmVersion applies to authType ntlm only, not {self.auth_type}")
        return self

    def _check_service_accounts(self) -> None:
        accounts = self.service_accounts or []
        if self.kind != "ews" or self.auth_type not in ("basic", "ntlm"):
            raise ValueError(
                "serviceAccounts are for EWS connections that sign in with basic or ntlm "
                "(OAuth connects as one application)"
            )
        if self.username is not None or self.secret_reference is not None:
            raise ValueError(
                "serviceAccounts replace username and secretReference: give one or the other"
            )
        names = [account.username.strip().lower() for account in accounts]
        if len(set(names)) != len(names):
            raise ValueError("serviceAccounts lists a username more than once")

    def accounts(self) -> list[ServiceAccount]:
        """The service accounts the connection signs in as, in the order given (basic and ntlm;
        empty for OAuth, which signs in as its application)."""
        if self.service_accounts is not None:
            return list(self.service_accounts)
        if self.username and self.secret_reference:
            return [ServiceAccount(username=self.username, secret_reference=self.secret_reference)]
        return []

    def secret_references(self) -> list[str]:
        """Every secret the connection needs, in order (one per service account, or OAuth's)."""
        if self.service_accounts is not None:
            return [account.secret_reference for account in self.service_accounts]
        return [self.secret_reference] if self.secret_reference else []


class Health(StrEnum):
    """A connection's or mailbox's health, as the status API and ``connection.health_changed``
    report it."""

    OK = "ok"
    AUTH_FAILED = "auth_failed"
    THROTTLED = "throttled"
    UNREACHABLE = "unreachable"
    DISABLED = "disabled"
    # A mailbox the connection's service account may not open (no impersonation right, no
    # delegate permission) or that Exchange does not know: that mailbox only, with the reason
    # in ``last_error``; the connection's other mailboxes go on.
    ACCESS_DENIED = "access_denied"


class BusyBlock(CamelModel):
    """Time a staff member's Exchange calendar blocks (an event calbridge did not write).

    Private events block time but carry no subject: ``subject`` must be None when ``private``.
    ``occurrence_id`` names one occurrence of a recurring series (None for a single event).
    """

    start: AwareDatetime
    end: AwareDatetime
    all_day: bool = False
    private: bool = False
    subject: str | None = None
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    occurrence_id: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> BusyBlock:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.private and self.subject is not None:
            raise ValueError("subject must be null for a private event (it stays in Exchange)")
        return self


class OrgSettings(CamelModel):
    """An organization's settings (``PUT .../settings``): where its booking platform takes
    calbridge's webhooks, how far ahead recurring series are expanded, how often EWS mailboxes
    are polled, and the mass-cancellation guard."""

    webhook_url: HttpsUrl | None = None
    recurrence_horizon_days: Annotated[int, Field(ge=1, le=730, strict=True)] = 180
    poll_interval_seconds: Annotated[int, Field(ge=60, le=86_400, strict=True)] = 60
    # One sync reporting more than this share of a mailbox's appointments cancelled at once is
    # held and reported instead of acted on (one bad read must never cancel a day of bookings).
    mass_cancellation_share: Annotated[float, Field(gt=0, le=1, strict=True)] = 0.5
