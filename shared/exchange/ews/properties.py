"""The MAPI properties the EWS adapter reads and writes beyond exchangelib's built-in fields, and
the iCalendar UID ↔ global object id rules that go with them.

- ``CalbridgeMarker``: the marker (``shared.exchange.marker_property``), a named String property in
  calbridge's own property set. Registered on exchangelib's ``CalendarItem`` as
  ``MARKER_FIELD`` once, when this module is imported.
- ``CalbridgeWritten``: the times of calbridge's last write (``written_stamp``), beside the
  marker in the same property set, registered as ``WRITTEN_FIELD``.
- ``CleanGlobalObjectId``: PidLidCleanGlobalObjectId (Meeting property set, id 0x23, Binary),
  the identity Exchange gives a meeting in every attendee's calendar. EWS refuses restrictions
  on ``calendar:UID``, so an attendee's copy is found by this property instead (MS-OXOCAL
  2.2.1.27 / 2.2.1.28), computed from the UID by ``clean_global_object_id``.

UIDs calbridge sets on create (``calbridge_uid``) are global object ids in Exchange's own hex
form, so Exchange and Graph read them back unchanged and the clean global object id is just the
hex decoded — no "vCal-Uid" wrapping, which only foreign iCalendar UIDs need.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from typing import Final

from exchangelib import CalendarItem, ExtendedProperty

from shared.exchange.marker_property import (
    MARKER_PROPERTY_NAME,
    MARKER_PROPERTY_SET_ID,
    MARKER_PROPERTY_TYPE,
    WRITTEN_PROPERTY_NAME,
)

MARKER_FIELD: Final = "calbridge_marker"
WRITTEN_FIELD: Final = "calbridge_written"
CLEAN_GLOBAL_OBJECT_ID_FIELD: Final = "calbridge_clean_global_object_id"

# The class id every Exchange global object id starts with (MS-OXOCAL 2.2.1.27).
GLOBAL_OBJECT_ID_CLASS: Final = bytes.fromhex("040000008200E00074C5B7101A82E008")
_VCAL_UID_TAG: Final = b"vCal-Uid" + struct.pack("<I", 1)
# The namespace calbridge's deterministic UIDs are derived in (fixed forever: changing it would
# give a retried create a different UID than its first attempt).
_UID_NAMESPACE: Final = uuid.UUID("3b8f6f2e-1c1e-4f0b-9a57-6c2a8d7e51c4")


class CalbridgeMarker(ExtendedProperty):
    """The marker: ``ExtendedFieldURI PropertySetId=… PropertyName=CalbridgeAppointment``."""

    property_set_id = MARKER_PROPERTY_SET_ID
    property_name = MARKER_PROPERTY_NAME
    property_type = MARKER_PROPERTY_TYPE


class CalbridgeWritten(ExtendedProperty):
    """The times of calbridge's last write: ``PropertyName=CalbridgeWritten``, same set."""

    property_set_id = MARKER_PROPERTY_SET_ID
    property_name = WRITTEN_PROPERTY_NAME
    property_type = MARKER_PROPERTY_TYPE


class CleanGlobalObjectId(ExtendedProperty):
    """PidLidCleanGlobalObjectId: the meeting's global object id without an instance date."""

    distinguished_property_set_id = "Meeting"
    property_id = 0x23
    property_type = "Binary"


def _register(name: str, property_class: type[ExtendedProperty]) -> None:
    """Register ``property_class`` on CalendarItem as ``name``, once per process. Refuses a
    different class already registered under that name rather than silently using it."""
    try:
        existing = CalendarItem.get_field_by_fieldname(name)
    except Exception:  # exchangelib raises InvalidField: not registered yet
        CalendarItem.register(name, property_class)
        return
    if getattr(existing, "value_cls", None) is not property_class:
        raise RuntimeError(f"CalendarItem already has a different field named {name!r}")


_register(MARKER_FIELD, CalbridgeMarker)
_register(WRITTEN_FIELD, CalbridgeWritten)
_register(CLEAN_GLOBAL_OBJECT_ID_FIELD, CleanGlobalObjectId)


def clean_global_object_id(uid: str) -> bytes:
    """The PidLidCleanGlobalObjectId of the meeting whose iCalendar UID is ``uid``.

    An Exchange UID is the hex form of the global object id: decode it and clear the instance
    date (bytes 16 to 19). Any other UID came from iCalendar and is wrapped the way Exchange wraps
    it ("vCal-Uid", MS-OXCICAL 2.1.3.1.1.20.26)."""
    text = uid.strip()
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) > 20 and raw.startswith(GLOBAL_OBJECT_ID_CLASS):
        return raw[:16] + b"\x00\x00\x00\x00" + raw[20:]
    data = _VCAL_UID_TAG + text.encode("utf-8") + b"\x00"
    return GLOBAL_OBJECT_ID_CLASS + bytes(4 + 8 + 8) + struct.pack("<I", len(data)) + data


def calbridge_uid(mailbox: str, transaction_id: str) -> str:
    """The iCalendar UID of the event a create with ``transaction_id`` makes in ``mailbox``:
    deterministic, so a retried create carries the same UID as its first attempt and the
    CreateItem answer (ids only) is all calbridge needs — no GetItem to learn the UID.

    Shaped as Exchange's own: class id, no instance date, creation time 0, reserved, then 16
    bytes of data (a digest of mailbox and transaction in calbridge's UID namespace)."""
    name = f"{_UID_NAMESPACE}\n{mailbox.strip().lower()}\n{transaction_id}"
    data = hashlib.sha256(name.encode("utf-8")).digest()[:16]
    goid = GLOBAL_OBJECT_ID_CLASS + bytes(4 + 8 + 8) + struct.pack("<I", len(data)) + data
    return goid.hex().upper()
