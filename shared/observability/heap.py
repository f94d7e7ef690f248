"""Long-lived objects out of the garbage collector's way.

A full collection (generation 2) walks every object the collector tracks. A worker that has
imported exchangelib, msgraph-sdk and the Azure SDKs and built their clients holds hundreds of
thousands of them, nearly all for its whole life: one such collection took 60 ms here, in the
middle of whichever invocation set it off — the single outliers of the apply latency's p99
(``docs/benchmarks.md``). Once the process has settled (its SDKs imported and clients built by
its first invocations), what it holds is moved to the permanent generation (``gc.freeze``),
after one collection so that no garbage is kept for good: later full collections walk only
what came after. That happens at the end of the process's 1st, 16th and 256th invocation
(modules some invocations import only later are frozen at the next).
"""

from __future__ import annotations

import gc
import threading
from typing import Final

SETTLE_AFTER: Final = frozenset({1, 16, 256})

_lock = threading.Lock()
_ended = 0


def invocation_ended() -> None:
    """Count one invocation of this process; settle the heap after the ones named above."""
    global _ended
    with _lock:
        _ended += 1
        settle = _ended in SETTLE_AFTER
    if settle:
        gc.collect()
        gc.freeze()
