"""The one way tests wait: poll for a positive signal until it comes or a deadline passes.

Never "sleep, then assert nothing happened": wait for evidence that the thing which could have
happened had its chance (a poll cycle counted, a delivery log entry), then assert.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T | None], timeout: float = 30.0, what: str = "the condition"
) -> T:
    """Poll ``probe`` until it returns something truthy, and return that; fail naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
