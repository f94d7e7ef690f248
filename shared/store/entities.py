"""Pydantic models ↔ Table Storage properties.

One property per model field, named by the field's JSON alias (camelCase, as on the wire):
scalars stay scalars (``int`` is stored as Int64 by the Azure backend, so versions beyond 2^31
survive), datetimes become fixed-width UTC strings (``2026-01-05T09:00:00.000000Z``) so that
string comparison in a ``$filter`` is time order and no offset or precision is lost to Edm.DateTime
conversions, and lists, dicts and nested models become compact JSON text. ``None`` is stored as an
absent property (Table Storage has no null).

Limits are enforced here, before anything is sent: a string property over 32K UTF-16 characters
or an entity over 1 MiB raises :class:`~shared.store.errors.UnstorableEntity` naming the table and
property instead of being truncated.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, TypeAdapter

from shared.store.errors import UnstorableEntity
from shared.store.tables import Properties, Scalar

MAX_STRING_PROPERTY_CHARS = 32 * 1024
MAX_ENTITY_BYTES = 1024 * 1024
# Integers are stored as Edm.Int64.
MIN_INT64 = -(2**63)
MAX_INT64 = 2**63 - 1

M = TypeVar("M", bound=BaseModel)

_CONTAINERS = (list, tuple, set, frozenset, dict)


def canonical_datetime(value: datetime) -> str:
    """The fixed-width UTC form stored for every datetime (sorts as time does)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise UnstorableEntity(f"refusing to store a datetime without a UTC offset ({value!r})")
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise UnstorableEntity(
            f"refusing to store a datetime with no UTC form in years 1 to 9999 ({value!r})"
        ) from exc
    return in_utc.isoformat(timespec="microseconds").replace("+00:00", "Z")


def utf16_length(text: str) -> int:
    """Length as Table Storage counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _is_structured(annotation: Any) -> bool:
    """Whether a field's values are containers or models (stored as JSON text)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_structured(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(_is_structured(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        return isinstance(origin, type) and issubclass(origin, _CONTAINERS)
    return isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or issubclass(annotation, _CONTAINERS)
    )


def _is_nullable(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_nullable(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return any(arg is type(None) for arg in typing.get_args(annotation))
    return annotation is None or annotation is type(None)


class EntityCodec(Generic[M]):
    """Converts one model class to and from the properties of one table's rows."""

    def __init__(self, model: type[M], table_name: str) -> None:
        self.model = model
        self.table_name = table_name

    @cached_property
    def _fields(self) -> list[tuple[str, bool, bool]]:
        """(property name, stored as JSON, absent means None) per model field."""
        return [
            (
                field.serialization_alias or field.alias or name,
                _is_structured(field.annotation),
                _is_nullable(field.annotation),
            )
            for name, field in self.model.model_fields.items()
        ]

    def property_names(self, fields: Sequence[str]) -> list[str]:
        """The property names of the model fields named (``sync_state`` → ``syncState``)."""
        names = dict(
            zip(self.model.model_fields, (name for name, _, _ in self._fields), strict=True)
        )
        return [names[field] for field in fields]

    def to_properties(self, value: M) -> dict[str, Scalar]:
        python_values = value.model_dump(by_alias=True)
        json_values = value.model_dump(mode="json", by_alias=True)
        properties: dict[str, Scalar] = {}
        for name, structured, _ in self._fields:
            native = python_values.get(name)
            if native is None:
                continue
            stored: Any
            if structured:
                stored = json.dumps(json_values[name], ensure_ascii=False, separators=(",", ":"))
            elif isinstance(native, datetime):
                stored = canonical_datetime(native)
            else:
                stored = json_values[name]
                if not isinstance(stored, str | int | float | bool):
                    raise TypeError(
                        f"{self.table_name}.{name}: {type(native).__name__} is not a scalar; "
                        "declare the field as a list, dict or model to store it as JSON"
                    )
            if (
                isinstance(stored, int)
                and not isinstance(stored, bool)
                and not MIN_INT64 <= stored <= MAX_INT64
            ):
                raise UnstorableEntity(
                    f"{self.table_name} property {name!r} is outside the Int64 range Table "
                    "Storage holds"
                )
            if isinstance(stored, str) and utf16_length(stored) > MAX_STRING_PROPERTY_CHARS:
                raise UnstorableEntity(
                    f"{self.table_name} property {name!r} is {utf16_length(stored)} characters "
                    f"long; Table Storage holds at most {MAX_STRING_PROPERTY_CHARS} per property"
                )
            properties[name] = stored
        return properties

    def from_properties(self, properties: Mapping[str, Scalar]) -> M:
        # JSON mode, like the wire: strict fields accept what model_dump(mode="json") produced.
        return self.model.model_validate_json(json.dumps(self._document(properties)))

    def from_many(self, rows: Sequence[Mapping[str, Scalar]]) -> list[M]:
        """``from_properties`` for many rows, validated in one call (one JSON document for the
        validator instead of one per row: a third less work for a page of rows)."""
        return self._many.validate_json(json.dumps([self._document(row) for row in rows]))

    @cached_property
    def _many(self) -> TypeAdapter[list[M]]:
        # A list of this codec's model class, made at run time (not a static type).
        return TypeAdapter(list[self.model])  # type: ignore[name-defined]

    def _document(self, properties: Mapping[str, Scalar]) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for name, structured, nullable in self._fields:
            if name not in properties:
                # Absent means None where None is allowed; otherwise the field's default applies
                # (a field added after the row was written).
                if nullable:
                    document[name] = None
                continue
            stored = properties[name]
            document[name] = (
                json.loads(stored) if structured and isinstance(stored, str) else stored
            )
        return document


def check_entity_size(table_name: str, partition_key: str, row_key: str, props: Properties) -> None:
    """Refuse an entity Table Storage would reject as larger than 1 MiB (its size formula)."""
    size = 4 + 2 * (len(partition_key) + len(row_key))
    for name, value in props.items():
        size += 8 + 2 * len(name)
        if isinstance(value, str):
            size += 4 + 2 * utf16_length(value)
        elif isinstance(value, bool):
            size += 1
        else:
            size += 8
    if size > MAX_ENTITY_BYTES:
        raise UnstorableEntity(
            f"{table_name} entity is about {size} bytes; Table Storage holds at most "
            f"{MAX_ENTITY_BYTES} bytes per entity"
        )
