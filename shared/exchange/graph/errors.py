"""Graph failures as the port's typed errors.

Two sources: an answer with an error status (``GraphReply``), classified by HTTP status through
``shared.exchange.common.error_for_http_status`` and, for 404, by Graph's error code (a missing
user and a missing item share the status); and exceptions raised before any answer (the token
endpoint refusing the client, connection resets, timeouts). Messages carry the operation, the
mailbox, the HTTP status and Graph's error code — never Graph's error text, which can quote
request content, and never a secret.
"""

from __future__ import annotations

from typing import Final

from shared.exchange.common import error_for_http_status, parse_retry_after
from shared.exchange.graph.session import GraphReply
from shared.exchange.oauth import token_error
from shared.exchange.port import CalendarError, ExchangeUnavailable

# 404 codes that mean the user (mailbox) is unknown rather than the item.
_MAILBOX_MISSING: Final = frozenset(
    {
        "resourcenotfound",
        "request_resourcenotfound",
        "errorinvaliduser",
        "errornonexistentmailbox",
        "mailboxnotenabledforrestapi",
        "mailboxnotfound",
    }
)
# 400 codes that mean "no such item here" (an id from another protocol or mailbox, e.g. an EWS id
# kept from before a mailbox moved to Graph): treated like 404 on the item.
_ITEM_ID_UNUSABLE: Final = frozenset({"errorinvalididmalformed", "errorinvalidid"})


def is_missing_item(reply: GraphReply) -> bool:
    """The answer says the item (not the mailbox) does not exist."""
    code = reply.error_code.lower()
    if reply.status == 404:
        return code not in _MAILBOX_MISSING
    return reply.status == 400 and code in _ITEM_ID_UNUSABLE


def reply_error(reply: GraphReply, *, operation: str, mailbox: str) -> CalendarError:
    """The port error for an answer with an error status."""
    code = reply.error_code
    detail = f"Graph {operation} for {mailbox}: HTTP {reply.status}" + (f" {code}" if code else "")
    if is_missing_item(reply):
        return error_for_http_status(404, detail, mailbox=mailbox, missing="item")
    retry_after = parse_retry_after(reply.headers.get("retry-after"))
    return error_for_http_status(
        reply.status, detail, mailbox=mailbox, missing="mailbox", retry_after=retry_after
    )


def exception_error(error: BaseException, *, operation: str, mailbox: str) -> CalendarError | None:
    """The port error for an exception raised while sending (None: not ours to translate).

    Token failures are read by the rule both adapters share (``shared.exchange.oauth.token_error``);
    no answer from Graph itself, or a timeout, means it is unreachable.
    """
    import httpx

    where = f"Graph {operation} for {mailbox}"
    translated = token_error(error, where=where, mailbox=mailbox)
    if translated is not None:
        return translated
    if isinstance(error, httpx.TimeoutException):
        return ExchangeUnavailable(f"{where}: timed out", mailbox=mailbox)
    if isinstance(error, httpx.TransportError):
        return ExchangeUnavailable(
            f"{where}: connection failed ({type(error).__name__})", mailbox=mailbox
        )
    return None
