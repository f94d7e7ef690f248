"""The threads storage calls run on when an async caller makes them.

The Azure Tables and Queues clients are synchronous; async services (the workers) run each call
on this pool, never on the event loop's default executor or on an Exchange adapter's threads. A
throttled or hanging Exchange can then hold only its own adapter's threads: recording what
happened, re-queueing and every other invocation's storage work go on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, ParamSpec, TypeVar

from shared.observability import carried

P = ParamSpec("P")
T = TypeVar("T")

# Storage round trips take milliseconds: enough threads for a host's queue batch (16 messages,
# each reading a few rows in parallel) without letting one process open hundreds of sockets.
STORAGE_THREADS: Final = 32

_executor: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def storage_executor() -> ThreadPoolExecutor:
    """The process's storage thread pool (made on first use)."""
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(
                max_workers=STORAGE_THREADS, thread_name_prefix="storage"
            )
        return _executor


async def in_storage_thread(call: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``await`` a blocking storage call, run on the storage threads."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(storage_executor(), carried(call, *args, **kwargs))
