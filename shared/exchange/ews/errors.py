"""exchangelib's exceptions as the port's typed errors.

EWS says no in three ways, and exchangelib raises each as an exception:
- a response code (``ErrorServerBusy``, ``ErrorItemNotFound``…: one exception class per code,
  all ``ResponseMessageError``), per item or as a SOAP fault for the whole request;
- an HTTP-level refusal: ``UnauthorizedError`` (401 after the auth handshake),
  ``TransportError`` / ``CASError`` (5xx without a SOAP answer, redirects to error pages);
- no answer at all: ``requests`` connection errors and timeouts.

The table below maps codes to port errors; a code not named is a request Exchange refused
(``CalendarError``, not retried) unless it is one of the transient server states, which are
``ExchangeUnavailable``. With exchangelib's ``FailFast`` policy nothing here has slept:
``ErrorServerBusy`` carries Exchange's BackOffMilliseconds (as ``back_off`` seconds) and becomes
``RetryAfter`` for the worker to re-queue with.

Messages name the operation, the mailbox and the EWS code — never exchangelib's message text,
which can quote server text or request XML (event content) — and the original exception is not
chained, so a logged traceback cannot carry it either.
"""

from __future__ import annotations

from typing import Final

import requests
from exchangelib.errors import (
    CASError,
    ErrorServerBusy,
    EWSError,
    RateLimitError,
    ResponseMessageError,
    TransportError,
    UnauthorizedError,
)

from shared.exchange.oauth import token_error
from shared.exchange.port import (
    AccessDenied,
    AuthenticationFailed,
    CalendarError,
    ChangeKeyConflict,
    EventNotFound,
    ExchangeUnavailable,
    MailboxNotFound,
    RetryAfter,
    SyncStateInvalid,
)

_BY_CODE: Final[dict[str, type[CalendarError]]] = {
    "ErrorIrresolvableConflict": ChangeKeyConflict,
    "ErrorChangeKeyRequiredForWriteOperations": ChangeKeyConflict,
    "ErrorItemNotFound": EventNotFound,
    "ErrorCalendarCannotUpdateDeletedItem": EventNotFound,
    "ErrorNonExistentMailbox": MailboxNotFound,
    "ErrorInvalidSmtpAddress": MailboxNotFound,
    "ErrorImpersonateUserDenied": AccessDenied,
    "ErrorImpersonationDenied": AccessDenied,
    "ErrorAccessDenied": AccessDenied,
    # A delegate without rights on the calendar folder is told it does not exist.
    "ErrorFolderNotFound": AccessDenied,
    "ErrorAccountDisabled": AuthenticationFailed,
    "ErrorPasswordExpired": AuthenticationFailed,
    "ErrorInvalidLicense": AuthenticationFailed,
    "ErrorInvalidSyncStateData": SyncStateInvalid,
}
# Server states that pass: retried with the worker's backoff.
_TRANSIENT: Final = frozenset(
    {
        "ErrorInternalServerError",
        "ErrorInternalServerTransientError",
        "ErrorMailboxStoreUnavailable",
        "ErrorMailboxMoveInProgress",
        "ErrorADUnavailable",
        "ErrorConnectionFailed",
        "ErrorTimeoutExpired",
        "ErrorBatchProcessingStopped",
        "ErrorNoRespondingCASInDestinationSite",
        "ErrorProxyRequestProcessingFailed",
        "ErrorExceededConnectionCount",
    }
)


def throttled_by_exchange(error: ErrorServerBusy) -> bool:
    """Exchange itself said ErrorServerBusy, with its BackOffMilliseconds.

    exchangelib also raises ErrorServerBusy for HTTP failures it deems worth retrying (a 503, a
    connection closed mid-answer, "Reraised from …"/"Caused by …") and fills in its own default
    back-off of 10 s. Those are outages, not throttling: the worker's backoff applies."""
    text = str(error.value) if hasattr(error, "value") else str(error)
    return error.back_off is not None and not text.startswith(("Reraised from", "Caused by"))


def ews_code(error: BaseException) -> str:
    """The EWS response code an exchangelib exception stands for (its class name)."""
    return type(error).__name__


def calendar_error(error: BaseException, *, operation: str, mailbox: str) -> CalendarError | None:
    """The port error for an exception raised by an exchangelib call; None when it is not an
    Exchange failure (a bug of ours: let it propagate as it is)."""
    where = f"EWS {operation} for {mailbox}"
    if isinstance(error, CalendarError):
        return error
    refused_token = token_error(error, where=where, mailbox=mailbox)
    if refused_token is not None:
        return refused_token
    if isinstance(error, ErrorServerBusy):
        if not throttled_by_exchange(error):
            return ExchangeUnavailable(f"{where}: the server failed (HTTP)", mailbox=mailbox)
        seconds = float(error.back_off)
        return RetryAfter(seconds, mailbox=mailbox, detail=f"{where}: ErrorServerBusy")
    if isinstance(error, RateLimitError):
        return RetryAfter(float(error.wait), mailbox=mailbox, detail=f"{where}: throttled")
    if isinstance(error, ResponseMessageError):
        code = ews_code(error)
        error_class = _BY_CODE.get(code)
        if error_class is not None:
            return error_class(f"{where}: {code}", mailbox=mailbox)
        if code in _TRANSIENT:
            return ExchangeUnavailable(f"{where}: {code}", mailbox=mailbox)
        return CalendarError(f"{where}: refused with {code}", mailbox=mailbox)
    if isinstance(error, UnauthorizedError):
        return AuthenticationFailed(f"{where}: the credentials were refused", mailbox=mailbox)
    if isinstance(error, CASError):
        return ExchangeUnavailable(f"{where}: CAS error {error.cas_error}", mailbox=mailbox)
    if isinstance(error, TransportError):
        return ExchangeUnavailable(f"{where}: {ews_code(error)}", mailbox=mailbox)
    if isinstance(error, requests.exceptions.Timeout):
        return ExchangeUnavailable(f"{where}: timed out", mailbox=mailbox)
    if isinstance(error, requests.exceptions.RequestException | ConnectionError):
        return ExchangeUnavailable(f"{where}: {ews_code(error)}", mailbox=mailbox)
    if isinstance(error, EWSError):
        return CalendarError(f"{where}: {ews_code(error)}", mailbox=mailbox)
    return None
