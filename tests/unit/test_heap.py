"""The heap a settled process holds is moved out of the garbage collector's way after its first
invocations (shared.observability.heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from shared.observability import heap


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(heap, "_ended", 0)
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _collected(thing: object) -> bool:
    """Whether the collector still walks ``thing`` (frozen objects are in no generation)."""
    return any(o is thing for o in gc.get_objects())


@pytest.mark.usefixtures("fresh_process")
def test_what_the_process_holds_is_frozen_after_its_first_and_sixteenth_invocations() -> None:
    held = [object()]  # long-lived, as a module's objects
    assert _collected(held)
    heap.invocation_ended()
    assert not _collected(held)
    later = [[n] for n in range(3)]  # made by later invocations (imports, clients)
    for _ in range(14):
        heap.invocation_ended()
    assert _collected(later)  # the 2nd to 15th freeze nothing
    heap.invocation_ended()  # the 16th
    assert not _collected(later)


@pytest.mark.usefixtures("fresh_process")
def test_no_garbage_is_frozen_for_good() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    garbage = weakref.ref(Cycle())  # held only by its own cycle
    assert garbage() is not None
    heap.invocation_ended()
    assert garbage() is None  # collected before the freeze, not kept for good
