"""FindItem restrictions (``m:Restriction``) and sort orders, evaluated against store items.

Supported: And, Or, Not, IsEqualTo, IsNotEqualTo, IsGreaterThan(OrEqualTo), IsLessThan(OrEqualTo),
Exists, Contains — on the calendar FieldURIs below and on ExtendedFieldURI properties. String
comparisons ignore case, as Exchange's do. A property the item does not have never matches a
comparison (and fails Exists). An unsupported path is ``ErrorUnsupportedPathForQuery``.

Multi-valued properties (item:Categories, the ...Array extended property types) match when one
of their values does, and IsNotEqualTo when none of them equals the constant — Exchange's
search on multi-valued strings, where "=" "behaves similar to a LIKE or CONTAINS query":
https://learn.microsoft.com/archive/blogs/mstehle/dav-how-to-search-mv-string-properties

item:ReminderDueBy is accepted and compared with the due time Exchange keeps (the start).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from sim.ews.calendar_items import reminder_due_by
from sim.ews.errors import EwsError
from sim.ews.properties import extended_value, read_extended_uri, typed_value
from sim.ews.soap import parse_bool, parse_datetime, t
from sim.store import CalendarItem

Scalar = str | bytes | datetime | bool | int | float
Value = Scalar | list[Scalar] | None  # a list: the values of a multi-valued property
Getter = Callable[[CalendarItem], Value]
Predicate = Callable[[CalendarItem], bool]

FIELD_GETTERS: dict[str, Getter] = {
    "item:Subject": lambda i: i.subject,
    "item:Body": lambda i: i.body,
    "item:Sensitivity": lambda i: i.sensitivity.value,
    "item:ItemClass": lambda i: "IPM.Appointment",
    "item:DateTimeCreated": lambda i: i.created,
    "item:DateTimeReceived": lambda i: i.created,
    "item:LastModifiedTime": lambda i: i.last_modified,
    "item:HasAttachments": lambda i: False,
    "item:Categories": lambda i: list(i.categories) or None,
    "item:Importance": lambda i: i.importance.value,
    "item:ReminderIsSet": lambda i: i.reminder_is_set,
    "item:ReminderMinutesBeforeStart": lambda i: i.reminder_minutes_before_start,
    "item:ReminderDueBy": lambda i: reminder_due_by(i) if i.start is not None else None,
    "calendar:Start": lambda i: i.start,
    "calendar:End": lambda i: i.end,
    "calendar:UID": lambda i: i.uid or None,
    "calendar:IsAllDayEvent": lambda i: i.is_all_day,
    "calendar:Location": lambda i: i.location,
    "calendar:LegacyFreeBusyStatus": lambda i: i.free_busy.value,
    "calendar:IsCancelled": lambda i: i.is_cancelled,
    "calendar:IsMeeting": lambda i: i.is_meeting,
    "calendar:IsRecurring": lambda i: i.master_id is not None,
    "calendar:CalendarItemType": lambda i: i.item_type.value,
    "calendar:MyResponseType": lambda i: i.response_type.value,
    "calendar:Organizer": lambda i: i.organizer.address if i.organizer else None,
}

_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "IsEqualTo": lambda a, b: a == b,
    "IsNotEqualTo": lambda a, b: a != b,
    "IsGreaterThan": lambda a, b: a > b,
    "IsGreaterThanOrEqualTo": lambda a, b: a >= b,
    "IsLessThan": lambda a, b: a < b,
    "IsLessThanOrEqualTo": lambda a, b: a <= b,
}


def _getter(path: Any) -> Getter:
    if path.tag == t("FieldURI"):
        uri = path.get("FieldURI", "")
        getter = FIELD_GETTERS.get(uri)
        if getter is None:
            raise EwsError(
                "ErrorUnsupportedPathForQuery", f"The property {uri!r} can't be used in a query."
            )
        return getter
    if path.tag == t("ExtendedFieldURI"):
        key = read_extended_uri(path).key

        def typed(raw: str) -> Scalar:
            try:
                return typed_value(raw, key.type)
            except ValueError:
                return raw

        def extended(item: CalendarItem) -> Value:
            raw = extended_value(item, key)
            if raw is None:
                return None
            if isinstance(raw, tuple):
                return [typed(entry) for entry in raw]
            return typed(raw)

        return extended
    raise EwsError(
        "ErrorUnsupportedPathForQuery",
        f"The path {path.tag.split('}')[-1]} can't be used in a query on a calendar.",
    )


def _coerce(constant: str, sample: Scalar, zone: tzinfo) -> Scalar:
    """The constant in the type of the item's value (EWS constants are all strings)."""
    if isinstance(sample, bool):
        return parse_bool(constant, "Constant")
    if isinstance(sample, bytes):
        return base64.b64decode(constant)
    if isinstance(sample, float):
        return float(constant)
    if isinstance(sample, datetime):
        return parse_datetime(constant, "Constant", zone)
    if isinstance(sample, int):
        return int(constant)
    return constant.casefold()


def _normalize(value: Scalar) -> Scalar:
    return value.casefold() if isinstance(value, str) else value


def _values(value: Value) -> list[Scalar]:
    """A property's value(s): one for a single-valued property, each of a multi-valued one's."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _comparison(
    element: Any, operator: Callable[[Any, Any], bool], zone: tzinfo, *, negated: bool = False
) -> Predicate:
    if len(element) != 2 or element[1].tag != t("FieldURIOrConstant"):
        raise EwsError(
            "ErrorInvalidRestriction",
            f"{element.tag.split('}')[-1]} needs a property path and a FieldURIOrConstant.",
        )
    getter = _getter(element[0])
    operand = element[1][0] if len(element[1]) else None
    if operand is not None and operand.tag == t("Constant"):
        constant = operand.get("Value", "")

        def holds(relation: Callable[[Any, Any], bool], value: Scalar) -> bool:
            try:
                return bool(relation(_normalize(value), _coerce(constant, value, zone)))
            except (ValueError, TypeError, binascii.Error):
                return False

        def compare_constant(item: CalendarItem) -> bool:
            values = _values(getter(item))
            if not values:
                return False
            if negated:
                # Not equal: none of a multi-valued property's values equals the constant.
                return not any(holds(_COMPARISONS["IsEqualTo"], value) for value in values)
            return any(holds(operator, value) for value in values)

        return compare_constant
    if operand is not None:
        other = _getter(operand)

        def compare_fields(item: CalendarItem) -> bool:
            lefts, rights = _values(getter(item)), _values(other(item))
            try:
                return any(
                    operator(_normalize(left), _normalize(right))
                    for left in lefts
                    for right in rights
                )
            except TypeError:
                return False

        return compare_fields
    raise EwsError("ErrorInvalidRestriction", "FieldURIOrConstant is empty.")


def _contains(element: Any) -> Predicate:
    getter = _getter(element[0])
    constant_elem = element.find(t("Constant"))
    if constant_elem is None:
        raise EwsError("ErrorInvalidRestriction", "Contains needs a Constant.")
    needle = constant_elem.get("Value", "")
    mode = element.get("ContainmentMode", "Substring")
    ignore_case = element.get("ContainmentComparison", "Exact") != "Exact"

    def contains_in(value: str) -> bool:
        hay, probe = (value.casefold(), needle.casefold()) if ignore_case else (value, needle)
        if mode == "FullString":
            return hay == probe
        if mode == "Prefixed":
            return hay.startswith(probe)
        if mode == "PrefixOnWords":
            return any(word.startswith(probe) for word in hay.split())
        return probe in hay

    def contains(item: CalendarItem) -> bool:
        return any(isinstance(value, str) and contains_in(value) for value in _values(getter(item)))

    return contains


def compile_restriction(element: Any, zone: tzinfo) -> Predicate:
    """A predicate for one search expression element (the child of m:Restriction)."""
    name = element.tag.split("}")[-1]
    if name == "And":
        parts = [compile_restriction(child, zone) for child in element]
        return lambda item: all(part(item) for part in parts)
    if name == "Or":
        parts = [compile_restriction(child, zone) for child in element]
        return lambda item: any(part(item) for part in parts)
    if name == "Not":
        if len(element) != 1:
            raise EwsError("ErrorInvalidRestriction", "Not takes exactly one expression.")
        inner = compile_restriction(element[0], zone)
        return lambda item: not inner(item)
    if name in _COMPARISONS:
        return _comparison(element, _COMPARISONS[name], zone, negated=name == "IsNotEqualTo")
    if name == "Exists":
        getter = _getter(element[0])
        return lambda item: any(value != "" for value in _values(getter(item)))
    if name == "Contains":
        return _contains(element)
    raise EwsError("ErrorInvalidRestriction", f"The search expression {name!r} is not supported.")


def sort_key_functions(sort_order: Any) -> list[tuple[Getter, bool]]:
    """(getter, descending) per FieldOrder, most significant first."""
    orders = []
    for field_order in sort_order.findall(t("FieldOrder")):
        if len(field_order) != 1:
            raise EwsError("ErrorInvalidRequest", "FieldOrder needs one property path.")
        orders.append((_getter(field_order[0]), field_order.get("Order") == "Descending"))
    return orders


def sort_items(items: list[CalendarItem], orders: list[tuple[Getter, bool]]) -> list[CalendarItem]:
    result = list(items)
    # Stable sorts from the least significant key up; items missing the value sort first.
    for getter, descending in reversed(orders):

        def key(item: CalendarItem, getter: Getter = getter) -> tuple[int, Any]:
            values = _values(getter(item))
            return (0, ()) if not values else (1, tuple(_normalize(v) for v in values))

        result.sort(key=key, reverse=descending)
    return result
