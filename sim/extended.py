"""Extended (MAPI) property values, one set of rules for EWS and Graph.

Both protocols name a property's type with the same MapiPropertyType names (types.xsd's
``MapiPropertyTypeType``; Graph's ids start with them: ``"StringArray {guid} Name X"``), and
both carry values as text: EWS in ``Value`` / ``Values/Value``, Graph in ``value`` (a string, or
an array of strings for ``multiValueExtendedProperties``). The store keeps a single-valued
property as one canonical string and a multi-valued one (the ``...Array`` types) as a tuple of
them, so a value written through one protocol reads back the same through the other.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/extendedproperty
https://learn.microsoft.com/graph/api/resources/extended-properties-overview
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

# A single value as stored, or the values of a multi-valued (array) property in order.
ExtendedValue = str | tuple[str, ...]

# Types that carry values (types.xsd: Error, Null, Object and ObjectArray "can not be used in
# restrictions, or for setting/getting values").
SINGLE_TYPES = (
    "ApplicationTime",
    "Binary",
    "Boolean",
    "CLSID",
    "Currency",
    "Double",
    "Float",
    "Integer",
    "Long",
    "Short",
    "SystemTime",
    "String",
)
ARRAY_TYPES = tuple(
    f"{name}Array"
    for name in SINGLE_TYPES
    if name != "Boolean"  # the schema has no BooleanArray
)
_CANONICAL = {name.lower(): name for name in (*SINGLE_TYPES, *ARRAY_TYPES)}
_INTEGER_BITS = {"Short": 16, "Integer": 32, "Long": 64, "Currency": 64}


class ExtendedValueError(ValueError):
    """A type name or value the extended property rules refuse (the message says which)."""


def canonical_type(name: str) -> str:
    """The MapiPropertyType spelling of ``name`` (case-insensitive); ExtendedValueError for a
    type that carries no values."""
    found = _CANONICAL.get(name.strip().lower())
    if found is None:
        raise ExtendedValueError(f"{name!r} is not a property type that holds values")
    return found


def is_array(property_type: str) -> bool:
    return canonical_type(property_type) in ARRAY_TYPES


def element_type(property_type: str) -> str:
    """The type of one value: ``IntegerArray`` → ``Integer``."""
    canonical = canonical_type(property_type)
    return canonical.removesuffix("Array") if canonical in ARRAY_TYPES else canonical


def _one(kind: str, raw: str) -> str:
    text = raw.strip()
    try:
        if kind in _INTEGER_BITS:
            number = int(text)
            limit = 1 << (_INTEGER_BITS[kind] - 1)
            if not -limit <= number < limit:
                raise ExtendedValueError(f"{text!r} does not fit a {kind}")
            return str(number)
        if kind in ("Double", "Float"):
            float(text)
            return text
        if kind == "Boolean":
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ExtendedValueError(f"{text!r} is not a Boolean")
            return "true" if lowered in ("true", "1") else "false"
        if kind in ("SystemTime", "ApplicationTime"):
            instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=UTC)
            return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if kind == "Binary":
            return base64.b64encode(base64.b64decode(text, validate=True)).decode("ascii")
        if kind == "CLSID":
            return str(uuid.UUID(text))
    except (ValueError, binascii.Error) as error:
        if isinstance(error, ExtendedValueError):
            raise
        raise ExtendedValueError(f"{raw!r} is not a valid {kind} value") from None
    return raw  # String: kept exactly as written


def normalize(property_type: str, value: str | Sequence[str]) -> ExtendedValue:
    """A value as the store keeps it: a single type takes one string, an array type a non-empty
    sequence of them (EWS's ``Values`` is a NonEmptyArrayOfPropertyValuesType). Numbers,
    Booleans, times, binaries and GUIDs are checked and written one way (times in UTC with a
    ``Z``, binaries as standard base64), so both protocols read back the same text."""
    kind = element_type(property_type)
    if is_array(property_type):
        if isinstance(value, str) or not value:
            raise ExtendedValueError(f"a {canonical_type(property_type)} takes a list of values")
        return tuple(_one(kind, str(entry)) for entry in value)
    if not isinstance(value, str):
        raise ExtendedValueError(f"a {kind} takes a single value, not a list")
    return _one(kind, value)
