"""Property paths in EWS requests: ``FieldURI``, ``ExtendedFieldURI`` and the ``ItemShape`` /
``FolderShape`` that lists them.

An ``ExtendedFieldURI`` (PropertySetId or DistinguishedPropertySetId + PropertyName/PropertyId,
or PropertyTag) maps to the store's ``ExtendedPropertyKey``; the property set id is lower-cased
there so Graph's ``"String {guid} Name X"`` finds the same property. Responses echo the URI
exactly as the client wrote it, because exchangelib matches returned properties to its
registered classes attribute by attribute.

Two named properties are not stored but computed from the item's UID, as Exchange maintains
them on every meeting (MS-OXOCAL 2.2.1.27/28): PidLidGlobalObjectId (Meeting, 0x3) and
PidLidCleanGlobalObjectId (Meeting, 0x23), the binary meeting ids clients search by because
``calendar:UID`` cannot be used in a restriction. Writes to them are ignored.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sim import extended
from sim.ews.errors import EwsError
from sim.ews.soap import t, text_of
from sim.extended import ExtendedValue
from sim.store import CalendarItem, ExtendedPropertyKey, ItemType

# The GUIDs behind DistinguishedPropertySetId names (MS-OXPROPS), so a property set through EWS
# with a distinguished set name is the same property Graph names by GUID.
DISTINGUISHED_PROPERTY_SETS = {
    "Meeting": "6ed8da90-450b-101b-98da-00aa003f1305",
    "Appointment": "00062002-0000-0000-c000-000000000046",
    "Common": "00062008-0000-0000-c000-000000000046",
    "PublicStrings": "00020329-0000-0000-c000-000000000046",
    "Address": "00062004-0000-0000-c000-000000000046",
    "InternetHeaders": "00020386-0000-0000-c000-000000000046",
    "CalendarAssistant": "11000e07-b51b-40d6-af21-caa85edab1d0",
    "UnifiedMessaging": "4442858e-a9e3-4e80-b900-317a210cc15b",
    "Task": "00062003-0000-0000-c000-000000000046",
    "Sharing": "00062040-0000-0000-c000-000000000046",
}

MEETING_SET = DISTINGUISHED_PROPERTY_SETS["Meeting"]
GLOBAL_OBJECT_ID = ExtendedPropertyKey(MEETING_SET, "0x0003", "Binary")
CLEAN_GLOBAL_OBJECT_ID = ExtendedPropertyKey(MEETING_SET, "0x0023", "Binary")
COMPUTED_PROPERTIES = frozenset({GLOBAL_OBJECT_ID, CLEAN_GLOBAL_OBJECT_ID})
# The class id every global object id starts with, and the wrapper for UIDs that are not
# Exchange's own hex ids (MS-OXCICAL 2.1.3.1.1.20.26).
_GOID_CLASS = bytes.fromhex("040000008200E00074C5B7101A82E008")
_VCAL_UID_TAG = b"vCal-Uid" + struct.pack("<I", 1)

_URI_ATTRIBUTES = (
    "DistinguishedPropertySetId",
    "PropertySetId",
    "PropertyTag",
    "PropertyName",
    "PropertyId",
    "PropertyType",
)


@dataclass(frozen=True)
class ExtendedUri:
    """One ExtendedFieldURI as the client wrote it, and the store key it names."""

    key: ExtendedPropertyKey
    attributes: tuple[tuple[str, str], ...]  # to echo back, in schema attribute order


def read_extended_uri(element: Any) -> ExtendedUri:
    attributes = {name: element.get(name) for name in _URI_ATTRIBUTES if element.get(name)}
    property_type = attributes.get("PropertyType")
    if not property_type:
        raise EwsError("ErrorInvalidExtendedProperty", "ExtendedFieldURI needs a PropertyType.")
    if "PropertyTag" in attributes:
        tag = attributes["PropertyTag"].strip().lower()
        try:
            number = int(tag, 16) if tag.startswith("0x") else int(tag)
        except ValueError:
            raise EwsError(
                "ErrorInvalidExtendedProperty", f"PropertyTag {tag!r} is not a number."
            ) from None
        # One spelling for every tag, so Graph's "{type} 0x0037001F" names the same property.
        key = ExtendedPropertyKey("", f"{number:#06x}", property_type)
    else:
        set_id = attributes.get("PropertySetId")
        distinguished = attributes.get("DistinguishedPropertySetId")
        if distinguished:
            if distinguished not in DISTINGUISHED_PROPERTY_SETS:
                raise EwsError(
                    "ErrorInvalidExtendedProperty",
                    f"DistinguishedPropertySetId {distinguished!r} is unknown.",
                )
            set_id = DISTINGUISHED_PROPERTY_SETS[distinguished]
        if not set_id:
            raise EwsError(
                "ErrorInvalidExtendedProperty",
                "ExtendedFieldURI needs PropertySetId, DistinguishedPropertySetId or PropertyTag.",
            )
        if "PropertyName" in attributes:
            name = attributes["PropertyName"]
        elif "PropertyId" in attributes:
            name = "0x%04x" % int(attributes["PropertyId"])  # noqa: UP031 - MAPI id spelling
        else:
            raise EwsError(
                "ErrorInvalidExtendedProperty", "ExtendedFieldURI needs PropertyName or PropertyId."
            )
        key = ExtendedPropertyKey(set_id.strip("{}").lower(), name, property_type)
    return ExtendedUri(key=key, attributes=tuple(attributes.items()))


def global_object_id(item: CalendarItem, *, clean: bool) -> bytes:
    """The meeting's global object id from its UID; the non-clean id of an occurrence or
    exception carries the original start date (year big-endian, month, day)."""
    text = item.uid.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if not (len(raw) > 20 and raw.startswith(_GOID_CLASS)):
        data = _VCAL_UID_TAG + text.encode("utf-8") + b"\x00"
        raw = _GOID_CLASS + bytes(4 + 8 + 8) + struct.pack("<I", len(data)) + data
    instance = b"\x00\x00\x00\x00"
    if (
        not clean
        and item.item_type in (ItemType.OCCURRENCE, ItemType.EXCEPTION)
        and item.original_start is not None
    ):
        day = item.original_start.astimezone(ZoneInfo(item.time_zone)).date()
        instance = struct.pack(">HBB", day.year, day.month, day.day)
    return raw[:16] + instance + raw[20:]


def extended_value(item: CalendarItem, key: ExtendedPropertyKey) -> ExtendedValue | None:
    """An extended property's value as EWS writes it (Binary as base64; the values of a
    multi-valued property as a tuple), stored or computed."""
    if key in COMPUTED_PROPERTIES:
        if not item.uid:
            return None
        raw = global_object_id(item, clean=key == CLEAN_GLOBAL_OBJECT_ID)
        return base64.b64encode(raw).decode("ascii")
    return item.extended_properties.get(key)


def typed_value(raw: str, property_type: str) -> str | bytes | int | float | bool | datetime:
    """One value's text as the value its PropertyType means (for comparisons; an array type's
    values are each of its element type)."""
    try:
        kind = extended.element_type(property_type).lower()
    except extended.ExtendedValueError:
        return raw
    if kind == "binary":
        return base64.b64decode(raw)
    if kind in ("integer", "long", "short"):
        return int(raw)
    if kind in ("double", "float", "currency"):
        return float(raw)
    if kind == "boolean":
        return raw.strip().lower() in ("true", "1")
    if kind in ("systemtime", "applicationtime"):
        return datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    return raw


@dataclass
class Shape:
    """What an ItemShape asks for: base shape, body type, and the extra property paths."""

    base: str = "IdOnly"  # IdOnly | Default | AllProperties
    body_type: str = "Best"  # Best | HTML | Text
    field_uris: set[str] = field(default_factory=set)
    extended: list[ExtendedUri] = field(default_factory=list)

    def wants(self, field_uri: str, *, in_default: bool = False) -> bool:
        if field_uri in self.field_uris:
            return True
        if self.base == "AllProperties":
            return True
        return self.base == "Default" and in_default


def read_shape(element: Any | None) -> Shape:
    """An ItemShape/FolderShape element; absent means IdOnly."""
    if element is None:
        return Shape()
    base = text_of(element, t("BaseShape")) or "IdOnly"
    if base not in ("IdOnly", "Default", "AllProperties"):
        raise EwsError("ErrorInvalidRequest", f"BaseShape {base!r} is not supported.")
    body_type = text_of(element, t("BodyType")) or "Best"
    shape = Shape(base=base, body_type=body_type)
    additional = element.find(t("AdditionalProperties"))
    if additional is not None:
        for path in additional:
            if path.tag == t("FieldURI"):
                shape.field_uris.add(path.get("FieldURI", ""))
            elif path.tag == t("ExtendedFieldURI"):
                shape.extended.append(read_extended_uri(path))
            # IndexedFieldURI paths name contact/message fields a calendar item does not have.
    return shape
