"""Errors raised by the Table Storage repositories (both the Azure and the in-memory backend).

Callers catch these, never an Azure SDK exception: the backends translate. Messages name the
table, the key and the property concerned, never a property's value (values may be private).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class StoreError(Exception):
    """Base class of every storage error."""


class ConcurrencyConflict(StoreError):
    """A write lost a race: the row changed since it was read (stale ETag), the row an
    insert-only write expected to be absent is there, or the row a conditional write expected
    is gone. The caller re-reads and re-decides."""


class UnstorableEntity(StoreError):
    """A value Table Storage cannot hold as it is (a property over 32K characters, an entity over
    1 MiB, a key over 1 KiB). Raised before anything is sent, so nothing is silently truncated."""


class StoreUnavailable(StoreError):
    """The storage service could not be reached or answered with a server error."""


def decided_afresh(attempt: Callable[[], T], attempts: int = 5) -> T:
    """Run ``attempt`` — read a row, decide, write it back under the ETag read — again while it
    loses a race (``ConcurrencyConflict``): for a write whose outcome does not depend on what
    the row held when the caller looked (an administrator's ``PUT`` names the whole assignment;
    a worker merely changed the row's sync fields meanwhile). The last conflict propagates."""
    for _ in range(attempts - 1):
        try:
            return attempt()
        except ConcurrencyConflict:
            continue
    return attempt()
