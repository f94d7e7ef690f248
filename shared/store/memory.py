"""The in-memory backend of the table port, for unit tests and fakes.

Same semantics as Table Storage as the repositories see them: every write gets a new ETag,
insert-only writes and stale ETags raise :class:`ConcurrencyConflict`, keys with characters
Table Storage refuses are refused, rows come back in RowKey order, ``$filter`` conditions only
match properties of the same type. The repositories on top are the very same classes as on
Azure (:func:`memory_repositories`), so the one contract suite in
``tests/integration/test_store_contract.py`` holds for both.
"""

from __future__ import annotations

import itertools
import operator
import re
import threading
from collections.abc import Callable, Sequence

from shared.store.errors import ConcurrencyConflict, StoreError
from shared.store.repositories import Repositories, build_repositories
from shared.store.tables import Condition, Properties, Scalar, StoredRow, check_transaction

# What Table Storage refuses in PartitionKey and RowKey.
_FORBIDDEN_KEY_CHARACTERS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_COMPARISONS: dict[str, Callable[[Scalar, Scalar], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def _same_type(a: Scalar, b: Scalar) -> bool:
    def kind(value: Scalar) -> type:
        return bool if isinstance(value, bool) else int if isinstance(value, int) else type(value)

    return kind(a) is kind(b)


class MemoryTable:
    """One table held in a dict; thread-safe."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._rows: dict[tuple[str, str], StoredRow] = {}
        self._lock = threading.Lock()
        self._etags = itertools.count(1)

    @property
    def name(self) -> str:
        return self._name

    def _stored(self, partition_key: str, row_key: str, properties: Properties) -> StoredRow:
        for key in (partition_key, row_key):
            if _FORBIDDEN_KEY_CHARACTERS.search(key):
                raise StoreError(f"table {self._name}: key {key!r} has a forbidden character")
        return StoredRow(partition_key, row_key, dict(properties), f'W/"{next(self._etags)}"')

    def get(self, partition_key: str, row_key: str) -> StoredRow | None:
        with self._lock:
            row = self._rows.get((partition_key, row_key))
            return None if row is None else _copy(row)

    def insert(self, partition_key: str, row_key: str, properties: Properties) -> str:
        with self._lock:
            if (partition_key, row_key) in self._rows:
                raise ConcurrencyConflict(f"table {self._name}: the row already exists")
            row = self._stored(partition_key, row_key, properties)
            self._rows[(partition_key, row_key)] = row
            return row.etag

    def replace(self, partition_key: str, row_key: str, properties: Properties, etag: str) -> str:
        with self._lock:
            current = self._rows.get((partition_key, row_key))
            if current is None or current.etag != etag:
                raise ConcurrencyConflict(
                    f"table {self._name}: the row changed or vanished since it was read"
                )
            row = self._stored(partition_key, row_key, properties)
            self._rows[(partition_key, row_key)] = row
            return row.etag

    def upsert(self, partition_key: str, row_key: str, properties: Properties) -> str:
        with self._lock:
            row = self._stored(partition_key, row_key, properties)
            self._rows[(partition_key, row_key)] = row
            return row.etag

    def delete(self, partition_key: str, row_key: str, etag: str | None) -> None:
        with self._lock:
            current = self._rows.get((partition_key, row_key))
            if current is None:
                return
            if etag is not None and current.etag != etag:
                raise ConcurrencyConflict(f"table {self._name}: the row changed since it was read")
            del self._rows[(partition_key, row_key)]

    def upsert_many(self, partition_key: str, rows: Sequence[tuple[str, Properties]]) -> None:
        stored = [self._stored(partition_key, row_key, properties) for row_key, properties in rows]
        with self._lock:  # all or nothing, as one transaction
            for row in stored:
                self._rows[(partition_key, row.row_key)] = row

    def replace_many(
        self, partition_key: str, rows: Sequence[tuple[str, Properties, str]]
    ) -> list[str]:
        check_transaction(rows)
        with self._lock:  # all or nothing, as one transaction
            for row_key, _, etag in rows:
                current = self._rows.get((partition_key, row_key))
                if current is None or current.etag != etag:
                    raise ConcurrencyConflict(
                        f"table {self._name}: a row changed or vanished since it was read"
                    )
            etags = []
            for row_key, properties, _ in rows:
                stored = self._stored(partition_key, row_key, properties)
                self._rows[(partition_key, row_key)] = stored
                etags.append(stored.etag)
            return etags

    def delete_many(self, partition_key: str, row_keys: Sequence[str]) -> None:
        with self._lock:
            for row_key in row_keys:
                self._rows.pop((partition_key, row_key), None)

    def query(
        self,
        partition_key: str,
        conditions: Sequence[Condition] = (),
        select: Sequence[str] = (),
    ) -> list[StoredRow]:
        with self._lock:
            rows = [
                _copy(row)
                for (partition, _), row in self._rows.items()
                if partition == partition_key and _matches(row, conditions)
            ]
        if select:
            kept = set(select)
            rows = [
                StoredRow(
                    row.partition_key,
                    row.row_key,
                    {name: value for name, value in row.properties.items() if name in kept},
                    row.etag,
                )
                for row in rows
            ]
        return sorted(rows, key=lambda row: row.row_key)

    def scan(self, conditions: Sequence[Condition] = ()) -> list[StoredRow]:
        with self._lock:
            rows = [_copy(row) for row in self._rows.values() if _matches(row, conditions)]
        return sorted(rows, key=lambda row: (row.partition_key, row.row_key))


def _matches(row: StoredRow, conditions: Sequence[Condition]) -> bool:
    for condition in conditions:
        value = row.properties.get(condition.property)
        if value is None or not _same_type(value, condition.value):
            return False
        if not _COMPARISONS[condition.comparison](value, condition.value):
            return False
    return True


def _copy(row: StoredRow) -> StoredRow:
    return StoredRow(row.partition_key, row.row_key, dict(row.properties), row.etag)


class MemoryTableService:
    """Tables by name, created on first use."""

    def __init__(self) -> None:
        self._tables: dict[str, MemoryTable] = {}
        self._lock = threading.Lock()

    def table(self, name: str) -> MemoryTable:
        with self._lock:
            return self._tables.setdefault(name, MemoryTable(name))


def memory_repositories() -> Repositories:
    """Every repository over fresh in-memory tables."""
    return build_repositories(MemoryTableService())
