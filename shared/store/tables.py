"""The table port: what a repository needs from a table, implemented by the Azure backend
(:mod:`shared.store.azure_tables`) and the in-memory backend (:mod:`shared.store.memory`).

Rows are flat property dicts of scalars (``str``, ``int``, ``float``, ``bool``) under a
PartitionKey and RowKey that are already encoded (:mod:`shared.store.keys`). Every write
returns the row's new ETag; conditional writes raise
:class:`~shared.store.errors.ConcurrencyConflict` exactly as Table Storage answers 409/412/404.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from shared.store.errors import StoreError

Scalar = str | int | float | bool
Properties = Mapping[str, Scalar]
Comparison = Literal["eq", "ne", "lt", "le", "gt", "ge"]


@dataclass(frozen=True)
class StoredRow:
    """One row as read from a table."""

    partition_key: str
    row_key: str
    properties: dict[str, Scalar]
    etag: str


@dataclass(frozen=True)
class Condition:
    """``property <comparison> value``, evaluated by the table service (OData ``$filter``).

    A row without the property does not match, as in Table Storage; values of different types
    never match each other.
    """

    property: str
    comparison: Comparison
    value: Scalar


# An entity group transaction holds at most 100 operations, all of one partition.
TRANSACTION_LIMIT: Final = 100


def check_transaction(rows: Sequence[tuple[str, object, str]]) -> None:
    """Refuse what one transaction cannot hold: more than ``TRANSACTION_LIMIT`` rows, or a row
    key twice."""
    if len(rows) > TRANSACTION_LIMIT:
        raise StoreError(f"a transaction holds at most {TRANSACTION_LIMIT} rows, not {len(rows)}")
    if len({row_key for row_key, _, _ in rows}) != len(rows):
        raise StoreError("a transaction names a row twice")


class EntityTable(Protocol):
    """One table. Keys are encoded; properties are scalars."""

    @property
    def name(self) -> str: ...

    def get(self, partition_key: str, row_key: str) -> StoredRow | None: ...

    def insert(self, partition_key: str, row_key: str, properties: Properties) -> str:
        """Add a row that must not exist yet (else ConcurrencyConflict); returns its ETag."""
        ...

    def replace(self, partition_key: str, row_key: str, properties: Properties, etag: str) -> str:
        """Replace a row whose ETag is still ``etag`` (else ConcurrencyConflict)."""
        ...

    def upsert(self, partition_key: str, row_key: str, properties: Properties) -> str:
        """Insert or replace unconditionally (for rows that only one writer owns)."""
        ...

    def delete(self, partition_key: str, row_key: str, etag: str | None) -> None:
        """Delete a row; with an ETag only if unchanged (else ConcurrencyConflict). A missing
        row is not an error without an ETag."""
        ...

    def upsert_many(self, partition_key: str, rows: Sequence[tuple[str, Properties]]) -> None:
        """``upsert`` every (row key, properties) of one partition, in as few round trips as
        the service allows (a row key given twice: the last wins)."""
        ...

    def replace_many(
        self, partition_key: str, rows: Sequence[tuple[str, Properties, str]]
    ) -> list[str]:
        """``replace`` every (row key, properties, ETag) of one partition in one round trip, all
        or nothing: if any row changed or vanished, none is written (ConcurrencyConflict). At
        most ``TRANSACTION_LIMIT`` rows, each row key once. Returns the rows' new ETags, in
        order."""
        ...

    def delete_many(self, partition_key: str, row_keys: Sequence[str]) -> None:
        """``delete`` (without an ETag) every row key of one partition, in as few round trips
        as the service allows; missing rows are not an error."""
        ...

    def query(
        self,
        partition_key: str,
        conditions: Sequence[Condition] = (),
        select: Sequence[str] = (),
    ) -> list[StoredRow]:
        """Rows of one partition matching every condition, in RowKey order; with ``select``,
        only those properties of each row (OData ``$select``: less to send and decode)."""
        ...

    def scan(self, conditions: Sequence[Condition] = ()) -> list[StoredRow]:
        """Rows of every partition matching every condition, in key order (a whole-table read:
        only for small tables, such as the organizations' connections)."""
        ...


class TableService(Protocol):
    """Hands out the tables of one storage account, names prefixed for isolation."""

    def table(self, name: str) -> EntityTable: ...
