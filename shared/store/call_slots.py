"""CallSlots (budget / slot number): leases on the slots of a shared call budget — how the
instances of the app agree that no more than N EWS calls run at once as one service account
(``shared.exchange.budget`` holds the rules; this module only reads and writes the rows).

A budget's partition holds at most N rows, one per slot (``"00"`` … ``"25"``): who holds the
slot (``holder``, empty when free) and until when (``leasedUntil``, Unix seconds). A slot is
taken by writing it under the ETag it was read with, so two instances never hold the same one;
a lease that ran out is free for anyone. Rows are made on first use.
"""

from __future__ import annotations

import random
from datetime import datetime

from shared.store.errors import ConcurrencyConflict
from shared.store.keys import compose_key
from shared.store.tables import EntityTable, Properties, TableService

# How often a claim reads the slots again after losing every free one to other instances.
CLAIM_ROUNDS = 3


class CallSlotLeases:
    """The ``SlotLeases`` of ``shared.exchange.budget`` over a table."""

    table_name = "CallSlots"

    def __init__(self, tables: TableService) -> None:
        self._tables = tables

    @property
    def _table(self) -> EntityTable:
        return self._tables.table(self.table_name)

    def claim(
        self, budget: str, slots: int, holder: str, until: datetime, now: datetime
    ) -> tuple[str, str] | None:
        """Take one free (or run-out) slot of the first ``slots``: (slot, ETag), None when all
        are held. One query, then one conditional write per slot tried; read again when other
        instances took the free slots first (at most ``CLAIM_ROUNDS`` reads)."""
        partition = compose_key(budget)
        lease: Properties = {"holder": holder, "leasedUntil": until.timestamp()}
        for _ in range(CLAIM_ROUNDS):
            rows = {row.row_key: row for row in self._table.query(partition)}
            numbers = list(range(slots))
            # Instances start at different slots, so they rarely race for the same row.
            random.shuffle(numbers)
            raced = False
            for number in numbers:
                slot = f"{number:02d}"
                row = rows.get(slot)
                try:
                    if row is None:
                        return slot, self._table.insert(partition, slot, lease)
                    free = not row.properties.get("holder")
                    ran_out = float(row.properties.get("leasedUntil", 0.0)) <= now.timestamp()
                    if free or ran_out:
                        return slot, self._table.replace(partition, slot, lease, row.etag)
                except ConcurrencyConflict:
                    raced = True  # another instance took it first
            if not raced:
                return None
        return None

    def renew(self, budget: str, slot: str, etag: str, holder: str, until: datetime) -> str | None:
        """Extend a lease this holder still has (its row unchanged since ``etag``): the new
        ETag, or None when the slot is no longer this holder's."""
        lease: Properties = {"holder": holder, "leasedUntil": until.timestamp()}
        try:
            return self._table.replace(compose_key(budget), slot, lease, etag)
        except ConcurrencyConflict:
            return None

    def release(self, budget: str, slot: str, etag: str) -> None:
        """Free a slot this holder still has; nothing when it is no longer its."""
        free: Properties = {"holder": "", "leasedUntil": 0.0}
        try:
            self._table.replace(compose_key(budget), slot, free, etag)
        except ConcurrencyConflict:
            return
