"""The generic repository: one table of one pydantic model, read and written with ETags.

A read returns :class:`Versioned` (the value and the row's ETag). A write takes the ETag that
was read, or ``None`` to insert a row that must not exist yet; losing a race raises
:class:`~shared.store.errors.ConcurrencyConflict`, and the caller re-reads and re-decides. Keys
are given as raw parts (``("acme", "apt-1")``) and encoded here (:mod:`shared.store.keys`); the
first partition part is always the organization.

Concrete repositories (:mod:`shared.store.repositories`) only add the key shape and domain
methods: :class:`OrgScopedRepository` covers every table keyed ``org / id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

from pydantic import BaseModel

from shared.store.entities import EntityCodec, check_entity_size
from shared.store.errors import ConcurrencyConflict, UnstorableEntity
from shared.store.keys import MAX_KEY_LENGTH, compose_key, split_key
from shared.store.tables import (
    TRANSACTION_LIMIT,
    Condition,
    EntityTable,
    Properties,
    StoredRow,
    TableService,
)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Versioned(Generic[M]):
    """A stored value and the ETag to hand back when writing it again."""

    value: M
    etag: str


@dataclass(frozen=True)
class EntityKey:
    """An encoded PartitionKey/RowKey pair."""

    partition_key: str
    row_key: str

    @classmethod
    def of(cls, partition: Sequence[str], row: Sequence[str]) -> EntityKey:
        key = cls(compose_key(*partition), compose_key(*row))
        for encoded in (key.partition_key, key.row_key):
            if len(encoded) > MAX_KEY_LENGTH:
                raise UnstorableEntity(
                    f"a key encodes to {len(encoded)} characters; Table Storage allows "
                    f"{MAX_KEY_LENGTH}"
                )
        return key


class EntityRepository(Generic[M]):
    """Rows of one table, each holding one ``model``."""

    table_name: ClassVar[str]
    model: type[M]

    def __init__(self, tables: TableService) -> None:
        self._table: EntityTable = tables.table(self.table_name)
        self._codec = EntityCodec(self.model, self.table_name)

    def read(self, key: EntityKey) -> Versioned[M] | None:
        row = self._table.get(key.partition_key, key.row_key)
        return None if row is None else self._versioned(row)

    def write(self, key: EntityKey, value: M, etag: str | None) -> str:
        """Insert (``etag=None``: the row must not exist) or replace the row last read with
        ``etag``. Returns the new ETag; raises ConcurrencyConflict when the race is lost."""
        properties = self._properties(key, value)
        if etag is None:
            return self._table.insert(key.partition_key, key.row_key, properties)
        return self._table.replace(key.partition_key, key.row_key, properties, etag)

    def upsert(self, key: EntityKey, value: M) -> str:
        """Write regardless of what is stored (rows with a single writer, e.g. busy blocks)."""
        return self._table.upsert(key.partition_key, key.row_key, self._properties(key, value))

    def upsert_many(self, rows: Sequence[tuple[EntityKey, M]]) -> None:
        """``upsert`` every row, a partition's rows together in as few round trips as the table
        allows (batches of one partition; each batch all or nothing)."""
        by_partition: dict[str, list[tuple[str, Properties]]] = {}
        for key, value in rows:
            by_partition.setdefault(key.partition_key, []).append(
                (key.row_key, self._properties(key, value))
            )
        for partition_key, properties in by_partition.items():
            if len(properties) == 1:
                # One row: a plain write costs less than a batch of one.
                [(row_key, only)] = properties
                self._table.upsert(partition_key, row_key, only)
            else:
                self._table.upsert_many(partition_key, properties)

    def remove_many(self, keys: Sequence[EntityKey]) -> None:
        """``remove`` every row (no ETag), a partition's rows together."""
        by_partition: dict[str, list[str]] = {}
        for key in keys:
            by_partition.setdefault(key.partition_key, []).append(key.row_key)
        for partition_key, row_keys in by_partition.items():
            if len(row_keys) == 1:
                self._table.delete(partition_key, row_keys[0], None)
            else:
                self._table.delete_many(partition_key, row_keys)

    def remove(self, key: EntityKey, etag: str | None = None) -> None:
        """Delete the row (only if unchanged when an ETag is given); a missing row is fine."""
        self._table.delete(key.partition_key, key.row_key, etag)

    def read_partition(
        self,
        partition: Sequence[str],
        conditions: Sequence[Condition] = (),
        *,
        fields: Sequence[str] = (),
    ) -> list[tuple[list[str], Versioned[M]]]:
        """Rows of one partition matching ``conditions``: (raw row-key parts, value) pairs in
        row-key order. With ``fields`` (model field names), only those are read: the others
        read as None or their defaults, so leave out only fields that may be None."""
        select = self._codec.property_names(fields) if fields else ()
        rows = self._table.query(compose_key(*partition), conditions, select)
        return [(split_key(row.row_key), self._versioned(row)) for row in rows]

    def read_values(
        self,
        partition: Sequence[str],
        conditions: Sequence[Condition] = (),
        *,
        order_by: Sequence[str] = (),
    ) -> list[M]:
        """The values of one partition's rows matching ``conditions``, without keys or ETags
        (for reads that answer, not write back). With ``order_by`` (model fields every row
        holds, stored as scalars), sorted on their stored values before they are decoded: a
        datetime is stored as a fixed-width UTC string, so its string order is time order, and
        strings compare far faster than aware datetimes. The rows are decoded together."""
        rows = self._table.query(compose_key(*partition), conditions)
        if order_by:
            names = self._codec.property_names(order_by)
            rows.sort(key=lambda row: [row.properties[name] for name in names])
        return self._codec.from_many([row.properties for row in rows])

    def read_all(
        self, conditions: Sequence[Condition] = ()
    ) -> list[tuple[list[str], list[str], Versioned[M]]]:
        """Rows of every partition matching ``conditions``: (partition parts, row-key parts,
        value), in key order. A whole-table read: for small tables only."""
        rows = self._table.scan(conditions)
        return [
            (split_key(row.partition_key), split_key(row.row_key), self._versioned(row))
            for row in rows
        ]

    def _properties(self, key: EntityKey, value: M) -> dict[str, str | int | float | bool]:
        properties = self._codec.to_properties(value)
        check_entity_size(self.table_name, key.partition_key, key.row_key, properties)
        return properties

    def _versioned(self, row: StoredRow) -> Versioned[M]:
        return Versioned(self._codec.from_properties(row.properties), row.etag)


class OrgScopedRepository(EntityRepository[M]):
    """A table keyed ``PartitionKey = org``, ``RowKey = id``.

    ``id_field`` names the model field that repeats the row id (if any); a write whose value
    disagrees with its key is refused rather than stored under the wrong id.
    """

    id_field: ClassVar[str | None] = None

    def get(self, org: str, row_id: str) -> Versioned[M] | None:
        return self.read(EntityKey.of((org,), (row_id,)))

    def put(self, org: str, row_id: str, value: M, etag: str | None) -> str:
        self._check_id(row_id, value)
        return self.write(EntityKey.of((org,), (row_id,)), value, etag)

    def put_many(self, org: str, rows: Sequence[tuple[str, M, str]]) -> dict[str, str]:
        """Replace each (id, value, ETag) row last read with that ETag, up to
        ``TRANSACTION_LIMIT`` rows a round trip. Returns the ids written, each with its new
        ETag: a row changed or gone since it was read is not, and the rest of its batch is then
        written row by row."""
        written: dict[str, str] = {}
        for start in range(0, len(rows), TRANSACTION_LIMIT):
            batch = rows[start : start + TRANSACTION_LIMIT]
            encoded = []
            partition_key = ""
            for row_id, value, etag in batch:
                self._check_id(row_id, value)
                key = EntityKey.of((org,), (row_id,))
                partition_key = key.partition_key
                encoded.append((key.row_key, self._properties(key, value), etag))
            try:
                etags = self._table.replace_many(partition_key, encoded)
                written.update(zip((row_id for row_id, _, _ in batch), etags, strict=True))
                continue
            except ConcurrencyConflict:
                pass
            for row_id, value, etag in batch:
                with suppress(ConcurrencyConflict):
                    written[row_id] = self.put(org, row_id, value, etag)
        return written

    def _check_id(self, row_id: str, value: M) -> None:
        if self.id_field is not None and getattr(value, self.id_field) != row_id:
            raise ValueError(
                f"{self.table_name}: {self.id_field} {getattr(value, self.id_field)!r} "
                f"does not match the row id {row_id!r}"
            )

    def delete(self, org: str, row_id: str, etag: str | None = None) -> None:
        self.remove(EntityKey.of((org,), (row_id,)), etag)

    def list_by_org(self, org: str) -> dict[str, Versioned[M]]:
        """Every row of the organization, by id, in id order."""
        return {parts[0]: value for parts, value in self.read_partition((org,))}
