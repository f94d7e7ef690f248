"""A service account's shared call budget: at most N EWS calls at once as that account, across
every instance of the app (delegate access; see docs/operations.md, "EWS concurrency").

Exchange counts the requests one throttling budget has open (EWSMaxConcurrency, 27 by default)
and refuses the one over with ErrorServerBusy. With delegate access every mailbox a service
account opens is charged to the account's own budget; the Functions host runs up to
``maximumInstanceCount`` instances (40 at least on Flex Consumption), so a limit per process
cannot hold. The budget is a table of N slots instead (``SlotLeases``, ``CallSlots`` in Table
Storage), leased by the instances:

- A call runs only while this instance holds a slot for it, one call per slot. Slots are taken
  with a conditional write (ETag), so two instances never hold the same one, and at most N calls
  run at once whatever the number of instances.
- A lease lasts ``lease`` (120 s) and is used only while more than ``call_allowance`` of it is
  left (100 s: the call deadline of 90 s and a margin for clock skew), so a call always ends
  before its lease can pass to another instance; it is renewed (one write) when less is left.
- Slots are kept between calls: a call finishing hands its slot to a call of this instance that
  waits, otherwise the slot stays idle for ``idle_release`` (2 s) for the next call and is then
  given back. A burst costs one claim (a query and a write) and one release (a write) per slot,
  not per call.
- No slot free anywhere: the call waits up to ``wait`` for one of this instance's slots, or, when
  this instance holds none, is refused at once with ``RetryAfter`` — the worker re-queues its
  message, as after Exchange's own ErrorServerBusy. A crashed instance's slots come free when
  their leases run out.

Impersonation needs none of this: each mailbox is charged to its own budget.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar

from shared.exchange.common import DEFAULT_CALL_DEADLINE_S
from shared.exchange.port import RetryAfter

log = logging.getLogger(__name__)

T = TypeVar("T")
Run = Callable[[Callable[[], T]], Awaitable[T]]

DEFAULT_LEASE: Final = timedelta(seconds=120)
# A call never runs longer than its deadline; the rest allows for clocks that differ.
CLOCK_SKEW: Final = timedelta(seconds=10)
DEFAULT_CALL_ALLOWANCE: Final = timedelta(seconds=DEFAULT_CALL_DEADLINE_S) + CLOCK_SKEW
DEFAULT_IDLE_RELEASE: Final = timedelta(seconds=2)
DEFAULT_WAIT: Final = timedelta(seconds=5)
# When every slot is held elsewhere: how soon the message comes back.
BUSY_RETRY_AFTER_S: Final = 2.0


class SlotLeases(Protocol):
    """The slot table (``shared.store.call_slots.CallSlotLeases``); blocking calls."""

    def claim(
        self, budget: str, slots: int, holder: str, until: datetime, now: datetime
    ) -> tuple[str, str] | None: ...

    def renew(
        self, budget: str, slot: str, etag: str, holder: str, until: datetime
    ) -> str | None: ...

    def release(self, budget: str, slot: str, etag: str) -> None: ...


class CallSlot(Protocol):
    def release(self) -> None:
        """Give the slot back (thread-safe, once; from any thread)."""
        ...


class CallBudget(Protocol):
    async def acquire(self) -> CallSlot:
        """A slot to make one call in; ``RetryAfter`` when none comes free in time."""
        ...


BudgetFor = Callable[[str, int], CallBudget]
"""A connection's budget of one service account: (username, the most slots one instance may
hold, i.e. its EWS threads for the account) → budget."""


def process_holder() -> str:
    """This process's name in the slot table: the instance and a random part (never a secret)."""
    instance = os.environ.get("WEBSITE_INSTANCE_ID", "")[:12] or socket.gethostname()[:32]
    return f"{instance}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _asyncio_to_thread(call: Callable[[], T]) -> Awaitable[T]:
    return asyncio.to_thread(call)


@dataclass
class _Lease:
    slot: str
    etag: str
    until: datetime
    busy: bool = True
    idle_since: float = 0.0


class _Grant:
    def __init__(self, budget: SharedCallBudget, lease: _Lease) -> None:
        self._budget = budget
        self._lease: _Lease | None = lease
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            self._budget._give_back(lease)


class SharedCallBudget:
    """One service account's budget of ``slots`` concurrent calls, shared through the slot
    table; this instance holds at most ``local_limit`` slots (its EWS threads)."""

    def __init__(
        self,
        leases: SlotLeases,
        budget: str,
        slots: int,
        *,
        holder: str,
        local_limit: int,
        lease: timedelta = DEFAULT_LEASE,
        call_allowance: timedelta = DEFAULT_CALL_ALLOWANCE,
        idle_release: timedelta = DEFAULT_IDLE_RELEASE,
        wait: timedelta = DEFAULT_WAIT,
        run: Run[object] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if lease <= call_allowance:
            raise ValueError("a lease must outlast the time a call may take")
        self.budget = budget
        self.slots = slots
        self.holder = holder
        self.local_limit = max(1, min(local_limit, slots))
        self._leases = leases
        self._lease = lease
        self._allowance = call_allowance
        self._idle_release = idle_release.total_seconds()
        self._wait = wait.total_seconds()
        self._run: Run[object] = run or _asyncio_to_thread
        self._clock = clock
        self._lock = threading.Lock()
        self._held: dict[str, _Lease] = {}
        self._claiming = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[_Lease]]] = []
        self._reaper: threading.Timer | None = None

    @property
    def held(self) -> int:
        """Slots this instance holds now (busy or idle)."""
        with self._lock:
            return len(self._held)

    async def acquire(self) -> CallSlot:
        deadline = time.monotonic() + self._wait
        while True:
            lease = self._take_idle()
            if lease is None:
                lease = await self._claim()
            if lease is None:
                lease = await self._wait_for_one(deadline)
            if await self._fresh(lease):
                return _Grant(self, lease)

    # --- the steps ------------------------------------------------------------------------------
    def _take_idle(self) -> _Lease | None:
        with self._lock:
            for lease in self._held.values():
                if not lease.busy:
                    lease.busy = True
                    return lease
            return None

    async def _claim(self) -> _Lease | None:
        with self._lock:
            if len(self._held) + self._claiming >= self.local_limit:
                return None
            self._claiming += 1
            holds_any = bool(self._held)
        try:
            now = self._clock()
            until = now + self._lease
            claimed = await self._call(
                lambda: self._leases.claim(self.budget, self.slots, self.holder, until, now)
            )
        finally:
            with self._lock:
                self._claiming -= 1
        if claimed is None:
            if not holds_any and not self.held:
                # Nothing of this instance's will come free: neither this call nor those
                # waiting behind the claim should wait for one.
                busy = RetryAfter(
                    BUSY_RETRY_AFTER_S,
                    detail=(
                        f"all {self.slots} concurrent EWS calls of the service account are in "
                        "use by other instances"
                    ),
                )
                self._refuse_waiters(busy)
                raise busy
            return None
        slot, etag = claimed
        lease = _Lease(slot=slot, etag=etag, until=until)
        with self._lock:
            self._held[slot] = lease
        return lease

    def _refuse_waiters(self, error: RetryAfter) -> None:
        with self._lock:
            if self._held or self._claiming:
                return  # a slot may still come (held, or being claimed by another call)
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_refuse, future, error)

    async def _wait_for_one(self, deadline: float) -> _Lease:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Lease] = loop.create_future()
        with self._lock:
            # A slot given back since this call last looked: take it rather than wait.
            for lease in self._held.values():
                if not lease.busy:
                    lease.busy = True
                    return lease
            self._waiters.append((loop, future))
        try:
            return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed a slot just as the wait ended: give it back rather than lose it.
                self._give_back(future.result())
            raise RetryAfter(
                BUSY_RETRY_AFTER_S,
                detail=f"all {self.slots} concurrent EWS calls of the service account are in use",
            ) from None

    async def _fresh(self, lease: _Lease) -> bool:
        """Whether the lease outlasts a call, renewing it when needed; a slot lost meanwhile
        (its lease ran out and another instance took it) is dropped."""
        now = self._clock()
        if lease.until - now > self._allowance:
            return True
        until = now + self._lease
        etag = await self._call(
            lambda: self._leases.renew(self.budget, lease.slot, lease.etag, self.holder, until)
        )
        if etag is None:
            with self._lock:
                self._held.pop(lease.slot, None)
            return False
        lease.etag, lease.until = etag, until
        return True

    def _give_back(self, lease: _Lease) -> None:
        """A call ended (on whichever thread): hand the slot to a waiter, or keep it idle for a
        moment and then release it."""
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.pop(0)
                if future.done():
                    continue
                loop.call_soon_threadsafe(_hand_over, future, lease, self)
                return
            lease.busy = False
            lease.idle_since = time.monotonic()
            if self._reaper is None:
                self._reaper = self._start_reaper(self._idle_release)

    def _start_reaper(self, delay: float) -> threading.Timer:
        reaper = threading.Timer(delay, self._reap)
        reaper.daemon = True
        reaper.start()
        return reaper

    def _reap(self) -> None:
        """Release the slots idle for ``idle_release``; come back for those idle less long (one
        timer per budget, whatever the number of calls)."""
        now = time.monotonic()
        with self._lock:
            idle = [lease for lease in self._held.values() if not lease.busy]
            done = [lease for lease in idle if now - lease.idle_since >= self._idle_release]
            for lease in done:
                del self._held[lease.slot]
            later = [lease.idle_since for lease in idle if lease not in done]
            self._reaper = (
                self._start_reaper(min(later) + self._idle_release - now) if later else None
            )
        for lease in done:
            self._release_quietly(lease)

    def _release_quietly(self, lease: _Lease) -> None:
        try:
            self._leases.release(self.budget, lease.slot, lease.etag)
        except Exception as error:
            # Storage unreachable: the lease runs out on its own.
            log.warning("could not give back an EWS call slot: %s", type(error).__name__)

    async def _call(self, work: Callable[[], T]) -> T:
        result = await self._run(work)
        return result  # type: ignore[return-value]

    def release_all(self) -> None:
        """Give back every idle slot now (shutting down)."""
        with self._lock:
            idle = [lease for lease in self._held.values() if not lease.busy]
            for lease in idle:
                del self._held[lease.slot]
        for lease in idle:
            self._release_quietly(lease)


def _refuse(future: asyncio.Future[_Lease], error: RetryAfter) -> None:
    if not future.done():
        future.set_exception(error)


def _hand_over(future: asyncio.Future[_Lease], lease: _Lease, budget: SharedCallBudget) -> None:
    if future.done():
        # The waiter gave up meanwhile: the slot goes back.
        budget._give_back(lease)
    else:
        future.set_result(lease)


class CallBudgets:
    """Every service account's budget in this process, one per (organization, connection,
    account, size), kept across gateway rebuilds so held slots are not forgotten."""

    def __init__(
        self,
        leases: SlotLeases,
        *,
        holder: str | None = None,
        run: Run[object] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        idle_release: timedelta = DEFAULT_IDLE_RELEASE,
        wait: timedelta = DEFAULT_WAIT,
    ) -> None:
        self._leases = leases
        self._holder = holder or process_holder()
        self._run = run
        self._lease = lease
        self._idle_release = idle_release
        self._wait = wait
        self._budgets: dict[tuple[str, str, str, int], SharedCallBudget] = {}
        self._lock = threading.Lock()

    def budget(
        self, org: str, connection_id: str, username: str, slots: int, local_limit: int
    ) -> SharedCallBudget:
        key = (org, connection_id, username.strip().lower(), slots)
        with self._lock:
            found = self._budgets.get(key)
            if found is None:
                found = SharedCallBudget(
                    self._leases,
                    budget_key(org, connection_id, username),
                    slots,
                    holder=self._holder,
                    local_limit=local_limit,
                    run=self._run,
                    lease=self._lease,
                    idle_release=self._idle_release,
                    wait=self._wait,
                )
                self._budgets[key] = found
            return found


def budget_key(org: str, connection_id: str, username: str) -> str:
    """The slot table's partition of a service account: the same for every instance."""
    return f"{org}|{connection_id}|{username.strip().lower()}"
