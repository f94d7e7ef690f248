"""Testing a connection on one mailbox, through the calendar port only: can calbridge read the
calendar, can it write there, and if not, why — in words an administrator can act on.

The read probe is one calendar view over an hour. The write probe creates a test event (no
attendees, shown as free, two days in the past, marked ``calbridge/probe/...`` so no sync takes
it for an appointment) and deletes it at once for good (``PermanentDeletion``: EWS
``HardDelete``, Graph ``permanentDelete``), so not even Deleted Items keeps it; a create whose
answer was lost is looked for by its marker and deleted too. A probe whose removal fails says
so (``probe_not_removed``).

Every adapter raises the port's typed errors, so the reasons are the same for EWS, Graph and the
fake: refused credentials (a wrong password, a token refused), no right on the mailbox (no
impersonation or delegate right, no application access), an unknown mailbox, an unreachable
URL or a TLS failure (found in the error's cause chain), throttling, a timeout.
"""

from __future__ import annotations

import ssl
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from shared.exchange.port import (
    AccessDenied,
    AuthenticationFailed,
    CalendarError,
    CalendarGateway,
    EventDraft,
    ExchangeUnavailable,
    MailboxNotFound,
    PermanentDeletion,
    PortModel,
    RetryAfter,
    ShowAs,
)

PROBE_MARKER_PREFIX: Final = "calbridge/probe/"
PROBE_SUBJECT: Final = "calbridge connection test"
# The test event sits in the past, shown as free: it blocks nobody's time even for its instant.
_PROBE_OFFSET: Final = timedelta(days=2)


class ProbeProblem(StrEnum):
    """Why a mailbox cannot be read or written."""

    AUTH_REFUSED = "auth_refused"
    ACCESS_DENIED = "access_denied"
    MAILBOX_NOT_FOUND = "mailbox_not_found"
    UNREACHABLE = "unreachable"
    TLS_FAILURE = "tls_failure"
    THROTTLED = "throttled"
    TIMEOUT = "timeout"
    LEFTOVER = "probe_not_removed"
    FAILED = "failed"


class MailboxProbe(PortModel):
    """What one mailbox's test found. ``detail`` names the mailbox and the condition, never a
    secret or an event's content."""

    mailbox: str
    can_read: bool
    can_write: bool
    problem: ProbeProblem | None = None
    detail: str | None = None


def _tls_in_chain(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError | ssl.CertificateError):
            return True
        text = str(current)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text or "[SSL" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


def classify(error: BaseException, *, auth: str) -> tuple[ProbeProblem, str]:
    """The problem and an administrator's explanation of a failed call. ``auth``: how the
    connection signs in (``basic``, ``ntlm``, ``oauth``), which names what was refused."""
    if isinstance(error, TimeoutError):
        return ProbeProblem.TIMEOUT, "Exchange did not answer within the test's time limit"
    if isinstance(error, AuthenticationFailed):
        if auth == "oauth":
            why = "the token was refused (client id, secret or certificate, or tenant)"
        else:
            why = "Exchange refused the user name or password"
        return ProbeProblem.AUTH_REFUSED, f"{why}: {error}"
    if isinstance(error, AccessDenied):
        return ProbeProblem.ACCESS_DENIED, (
            f"the account has no right on this mailbox (impersonation, delegate or application "
            f"access): {error}"
        )
    if isinstance(error, MailboxNotFound):
        return ProbeProblem.MAILBOX_NOT_FOUND, f"no such mailbox on this connection: {error}"
    if isinstance(error, RetryAfter):
        return ProbeProblem.THROTTLED, f"Exchange is throttling; try again later: {error}"
    if _tls_in_chain(error):
        return ProbeProblem.TLS_FAILURE, (
            f"the TLS handshake failed (certificate not trusted or wrong name): {error}"
        )
    if isinstance(error, ExchangeUnavailable):
        return ProbeProblem.UNREACHABLE, f"the server could not be reached or failed: {error}"
    if isinstance(error, CalendarError):
        return ProbeProblem.FAILED, str(error)
    return ProbeProblem.FAILED, type(error).__name__


def probe_draft(now: datetime, time_zone: str = "UTC") -> EventDraft:
    start = (now - _PROBE_OFFSET).replace(microsecond=0)
    return EventDraft(
        subject=PROBE_SUBJECT,
        start=start,
        end=start + timedelta(minutes=1),
        time_zone=time_zone,
        show_as=ShowAs.FREE,
        marker=f"{PROBE_MARKER_PREFIX}{uuid.uuid4()}",
    )


async def _delete(gateway: CalendarGateway, mailbox: str, item_id: str) -> None:
    """For good where the connection can (nothing left in Deleted Items), else as Outlook
    deletes."""
    if isinstance(gateway, PermanentDeletion):
        await gateway.delete_permanently(mailbox, item_id)
    else:
        await gateway.cancel_event(mailbox, item_id)


async def remove_probe(gateway: CalendarGateway, mailbox: str, marker: str) -> None:
    """Remove every test event carrying ``marker`` (a create whose answer was lost included)."""
    for event in await gateway.find_by_marker(mailbox, marker):
        await _delete(gateway, mailbox, event.item_id)


async def probe_mailbox(
    gateway: CalendarGateway,
    mailbox: str,
    now: datetime,
    *,
    auth: str,
    write: bool = True,
) -> MailboxProbe:
    """Read the mailbox's calendar, then (``write``) create and remove a test event."""
    try:
        await gateway.list_events(mailbox, now, now + timedelta(hours=1))
    except (CalendarError, TimeoutError) as error:
        problem, detail = classify(error, auth=auth)
        return MailboxProbe(
            mailbox=mailbox, can_read=False, can_write=False, problem=problem, detail=detail
        )
    if not write:
        return MailboxProbe(mailbox=mailbox, can_read=True, can_write=False)
    draft = probe_draft(now)
    try:
        ref = await gateway.create_event(mailbox, draft, transaction_id=draft.marker)
    except (CalendarError, TimeoutError) as error:
        problem, detail = classify(error, auth=auth)
        # The create may have happened though its answer was lost: look for it.
        await _remove_quietly(gateway, mailbox, draft.marker)
        return MailboxProbe(
            mailbox=mailbox, can_read=True, can_write=False, problem=problem, detail=detail
        )
    try:
        await _delete(gateway, mailbox, ref.item_id)
    except (CalendarError, TimeoutError) as error:
        _, detail = classify(error, auth=auth)
        return MailboxProbe(
            mailbox=mailbox,
            can_read=True,
            can_write=True,
            problem=ProbeProblem.LEFTOVER,
            detail=f"the test event (free, in the past) could not be removed: {detail}",
        )
    return MailboxProbe(mailbox=mailbox, can_read=True, can_write=True)


async def _remove_quietly(gateway: CalendarGateway, mailbox: str, marker: str) -> None:
    try:
        await remove_probe(gateway, mailbox, marker)
    except (CalendarError, TimeoutError):
        return
