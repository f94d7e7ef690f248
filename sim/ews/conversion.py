"""ConvertId: between the id formats EWS knows (EwsId, EwsLegacyId, EntryId, HexEntryId,
StoreId, OwaId). exchangelib's version probe sends one with the id "DUMMY", which — as on a real
server — comes back as ErrorInvalidIdMalformed; the probe only needs the ServerVersionInfo header.

All formats wrap the same bytes (an EwsId's base64 payload); EntryId-style formats prefix the
four flag bytes a MAPI entry id starts with.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/convertid-operation
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import quote, unquote

from sim.ews.context import EwsContext
from sim.ews.errors import EwsError, EwsFault
from sim.ews.ids import decode_folder_id, decode_item_id
from sim.ews.responses import answer_each, messages_container
from sim.ews.soap import XSI_NS, add, m, t

FORMATS = frozenset({"EwsLegacyId", "EwsId", "EntryId", "HexEntryId", "StoreId", "OwaId"})
_ENTRY_FLAGS = b"\x00\x00\x00\x00"


def _raw_from(format_name: str, value: str) -> bytes:
    try:
        if format_name in ("EwsId", "EwsLegacyId"):
            raw = base64.b64decode(value, validate=True)
        elif format_name == "OwaId":
            raw = base64.b64decode(unquote(value), validate=True)
        elif format_name in ("EntryId", "StoreId"):
            raw = base64.b64decode(value, validate=True)[len(_ENTRY_FLAGS) :]
        else:
            raw = bytes.fromhex(value)[len(_ENTRY_FLAGS) :]
    except (binascii.Error, ValueError) as error:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.") from error
    as_ews = base64.b64encode(raw).decode("ascii")
    try:
        decode_item_id(as_ews)
    except EwsError:
        decode_folder_id(as_ews)  # raises ErrorInvalidIdMalformed when neither
    return raw


def _format_as(format_name: str, raw: bytes) -> str:
    if format_name in ("EwsId", "EwsLegacyId"):
        return base64.b64encode(raw).decode("ascii")
    if format_name == "OwaId":
        return quote(base64.b64encode(raw).decode("ascii"), safe="")
    if format_name in ("EntryId", "StoreId"):
        return base64.b64encode(_ENTRY_FLAGS + raw).decode("ascii")
    return (_ENTRY_FLAGS + raw).hex().upper()


def convert_id(ctx: EwsContext, operation: Any, body: Any) -> None:
    destination = operation.get("DestinationFormat", "")
    if destination not in FORMATS:
        raise EwsFault(
            "ErrorSchemaValidation", f"DestinationFormat {destination!r} is not an id format."
        )
    sources = operation.find(m("SourceIds"))
    messages = messages_container(body, "ConvertId")
    targets = list(sources) if sources is not None else []

    def answer(message: Any, element: Any) -> None:
        if element.tag != t("AlternateId"):
            raise EwsError(
                "ErrorInvalidRequest", "Only mailbox ids (AlternateId) can be converted here."
            )
        source_format = element.get("Format", "")
        if source_format not in FORMATS:
            raise EwsError("ErrorInvalidRequest", f"Format {source_format!r} is unknown.")
        raw = _raw_from(source_format, element.get("Id", ""))
        converted = add(
            message,
            m("AlternateId"),
            Format=destination,
            Id=_format_as(destination, raw),
            Mailbox=element.get("Mailbox", ""),
        )
        converted.set(f"{{{XSI_NS}}}type", "t:AlternateIdType")

    answer_each(messages, "ConvertId", targets, answer)
