"""``EwsService``: the SOAP endpoint behind ``/EWS/Exchange.asmx``.

One request: parse the envelope (RequestServerVersion, ExchangeImpersonation,
TimeZoneContext), count it (``ews:<Operation>`` per mailbox), check impersonation rights, take
an injected fault if one is armed for the mailbox and operation, run the operation and answer
with a ``ServerVersionInfo`` header. Request-level failures are SOAP faults (HTTP 500, as
Exchange sends them); per-item failures are error response messages inside a 200.

Faults it answers itself: ``server_busy`` (ErrorServerBusy fault with BackOffMilliseconds in
MessageXml — exchangelib turns it into ``ErrorServerBusy.back_off``), ``throttle`` (the same,
from ``retry_after``), ``invalid_sync_state`` / ``expired_delta`` (ErrorInvalidSyncStateData for
SyncFolderItems), ``slow`` (sleeps, then answers). The rest (http_500, http_503, reset,
unauthorized) it raises as ``InjectedFault`` for the HTTP server to carry out.

**EWSMaxConcurrency** ("the number of concurrent open connections that a specific user can have
against an Exchange server that is using EWS at one time", 27 by default since Exchange 2013:
https://learn.microsoft.com/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange).
Each request holds one slot of a throttling budget from the moment its caller and mailbox are
known until it is answered. Whose budget: with ExchangeImpersonation the impersonated mailbox's
(a copy of the target mailbox's budget, shared by every account impersonating it:
https://learn.microsoft.com/archive/blogs/exchangedev/more-throttling-changes-for-exchange-online);
otherwise — the caller's own mailbox or delegate access — the caller's. A request over the limit
is refused at once with the ErrorServerBusy fault ("The server cannot service this request right
now. Try again later.", the ServerBusyException text), its MessageXml naming the MaxConcurrency
policy and its limit, with ``concurrency_back_off_ms`` as BackOffMilliseconds. The highest
number of requests each budget held at once is kept in ``peak_concurrency``; refusals are
counted in ``concurrency_refusals``; requests by caller and mailbox in ``callers``.

With ``validate_responses`` every response is checked against the EWS schema and each invalid
one is recorded in ``schema_failures``.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sim.ews import conversion, finding, folders, sync, writing
from sim.ews.context import EwsContext
from sim.ews.errors import EwsFault
from sim.ews.schema import load_schema, record_failure, response_problems
from sim.ews.soap import fault_envelope, new_envelope, parse_envelope, serialize
from sim.store import ExchangeStore, Fault, InjectedFault, carry_out_common_fault
from sim.wire import SimRequest, SimResponse

logger = logging.getLogger(__name__)

Operation = Callable[[EwsContext, Any, Any], None]

OPERATIONS: dict[str, Operation] = {
    "GetFolder": folders.get_folder,
    "FindItem": finding.find_item,
    "GetItem": finding.get_item,
    "SyncFolderItems": sync.sync_folder_items,
    "CreateItem": writing.create_item,
    "UpdateItem": writing.update_item,
    "DeleteItem": writing.delete_item,
    "ConvertId": conversion.convert_id,
}
# Operations that only read: they run under the store lock so a response is one consistent
# snapshot. Writes take the lock inside the store (its change listeners run after release).
READ_ONLY = frozenset({"GetFolder", "FindItem", "GetItem", "SyncFolderItems", "ConvertId"})

CONTENT_TYPE = "text/xml; charset=utf-8"
# Exchange 2013 and later (on premises and online): EWSMaxConcurrency's default.
EWS_MAX_CONCURRENCY = 27


@dataclass(frozen=True)
class SchemaFailure:
    """A response that broke the EWS schema: which operation, what was wrong, the XML."""

    operation: str
    problems: tuple[str, ...]
    response: bytes


class EwsService:
    def __init__(
        self,
        store: ExchangeStore,
        *,
        validate_responses: bool = False,
        max_concurrency: int = EWS_MAX_CONCURRENCY,
        concurrency_back_off_ms: int = 500,
    ) -> None:
        self.store = store
        self.validate_responses = validate_responses
        self.max_concurrency = max_concurrency
        self.concurrency_back_off_ms = concurrency_back_off_ms
        # Throttling budget ("impersonation:<mailbox>" or "user:<caller>") → requests in flight,
        # the most it has held at once, and how many requests were refused for it.
        self._in_flight: Counter[str] = Counter()
        self.peak_concurrency: Counter[str] = Counter()
        self.concurrency_refusals: Counter[str] = Counter()
        # (who signed in, the mailbox a request is about) → requests.
        self.callers: Counter[tuple[str, str]] = Counter()
        self._in_flight_lock = threading.Lock()
        self.schema_failures: list[SchemaFailure] = []
        self.validated_responses = 0
        self._failures_lock = threading.Lock()
        if validate_responses:
            load_schema()  # pay the few seconds once, at start, not inside the first request

    def close(self) -> None:
        """No background threads to stop."""

    def handle(self, request: SimRequest) -> SimResponse:
        if request.method.upper() != "POST":
            return SimResponse(
                status=405,
                body=b"EWS accepts SOAP requests by POST only.",
                headers={"Allow": "POST"},
                content_type="text/plain; charset=utf-8",
            )
        operation_name = "Unknown"
        try:
            envelope = parse_envelope(request.body)
            operation_name = envelope.operation_name
            response_xml = self._answer(request, envelope)
            status = 200
        except EwsFault as fault:
            response_xml = serialize(fault_envelope(fault))
            status = 500
        except InjectedFault:
            raise  # the HTTP server carries these out
        except Exception:
            # A simulator bug: answer as Exchange does when it breaks, so clients see EWS.
            logger.exception("EWS %s failed inside the simulator", operation_name)
            internal = EwsFault(
                "ErrorInternalServerError",
                "An internal server error occurred. The operation failed.",
            )
            response_xml = serialize(fault_envelope(internal))
            status = 500
        if self.validate_responses:
            self._validate(operation_name, response_xml)
        return SimResponse(status=status, body=response_xml, content_type=CONTENT_TYPE)

    def _answer(self, request: SimRequest, envelope: Any) -> bytes:
        principal = request.principal
        if principal is None:  # the server authenticates before dispatching
            raise EwsFault("ErrorAccessDenied", "The request is not authenticated.")
        ctx = EwsContext(store=self.store, principal=principal, envelope=envelope)
        name = envelope.operation_name
        operation = OPERATIONS.get(name)
        mailbox = ctx.request_mailbox(envelope.operation)
        self.store.count(f"ews:{name}", mailbox)
        if operation is None:
            raise EwsFault(
                "ErrorInvalidOperation",
                f"The operation {name!r} is not available on this calendar-only server.",
            )
        with self._in_flight_lock:
            self.callers[(principal.name.lower(), mailbox)] += 1
        ctx.check_impersonation()
        with self._budget_slot(self.budget_of(ctx)):
            fault = self.store.take_fault(mailbox, f"ews:{name}")
            if fault is not None:
                self._apply_fault(fault, ctx)
            response_envelope, body = new_envelope()
            if name in READ_ONLY:
                with self.store.lock:
                    operation(ctx, envelope.operation, body)
            else:
                operation(ctx, envelope.operation, body)
            return serialize(response_envelope)

    # --- EWSMaxConcurrency (see the module docstring) ---------------------------------------
    @staticmethod
    def budget_of(ctx: EwsContext) -> str:
        """The throttling budget a request is charged to."""
        if ctx.envelope.impersonated is not None:
            return f"impersonation:{ctx.envelope.impersonated.lower()}"
        return f"user:{ctx.principal.name.lower()}"

    @contextmanager
    def _budget_slot(self, budget: str) -> Iterator[None]:
        with self._in_flight_lock:
            running = self._in_flight[budget]
            if running >= self.max_concurrency:
                self.concurrency_refusals[budget] += 1
                refused = True
            else:
                refused = False
                self._in_flight[budget] = running + 1
                self.peak_concurrency[budget] = max(self.peak_concurrency[budget], running + 1)
        if refused:
            raise EwsFault(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                message_values={
                    "BackOffMilliseconds": str(self.concurrency_back_off_ms),
                    "Policy": "MaxConcurrency",
                    "MaxConcurrencyLimit": str(self.max_concurrency),
                },
            )
        try:
            yield
        finally:
            with self._in_flight_lock:
                self._in_flight[budget] -= 1
                if not self._in_flight[budget]:
                    del self._in_flight[budget]

    def reset_concurrency_records(self) -> None:
        """Forget the peaks, refusals and callers recorded so far (between measurements)."""
        with self._in_flight_lock:
            self.peak_concurrency.clear()
            self.concurrency_refusals.clear()
            self.callers.clear()

    @staticmethod
    def _apply_fault(fault: Fault, ctx: EwsContext) -> None:
        if fault.kind in ("server_busy", "throttle"):
            back_off_ms = (
                fault.back_off_ms if fault.kind == "server_busy" else fault.retry_after * 1000
            )
            raise EwsFault(
                "ErrorServerBusy",
                "The server cannot service this request right now. Try again later.",
                message_values={"BackOffMilliseconds": str(back_off_ms)},
            )
        if fault.kind in ("invalid_sync_state", "expired_delta"):
            ctx.forced_errors["SyncState"] = "ErrorInvalidSyncStateData"
            return
        carry_out_common_fault(fault)

    def _validate(self, operation: str, response_xml: bytes) -> None:
        problems = response_problems(response_xml)
        with self._failures_lock:
            self.validated_responses += 1
            if problems:
                # Only the count: a schema message can quote item content (subjects, bodies).
                logger.error("invalid EWS %s response (%d problems)", operation, len(problems))
                self.schema_failures.append(SchemaFailure(operation, tuple(problems), response_xml))
                record_failure(operation, tuple(problems))
