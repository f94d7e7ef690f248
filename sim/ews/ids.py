"""EWS ids: ItemId, FolderId and ChangeKey strings that look like Exchange's (standard base64
with ``+`` and ``/``) and decode back to the store's ids without a lookup table.

Layout (before base64): a fixed binary prefix that makes every id start like Exchange's
(``AAMk...`` for items, ``AAEu...`` for folders) followed by three bytes that always encode as
``++//`` — so clients and calbridge meet the awkward characters in every id, as with the real
server — then a kind byte and the payload (internal item id, or folder name + mailbox).
"""

from __future__ import annotations

import base64
import binascii

from sim.ews.errors import EwsError

_AWKWARD = b"\xfb\xef\xff"  # base64 "++//"
_ITEM_PREFIX = b"\x00\x03\x24" + _AWKWARD + b"I"
_FOLDER_PREFIX = b"\x00\x01\x2e" + _AWKWARD + b"F"
_CHANGE_KEY_PREFIX = b"\x09\x00\x00\x00\x16\x00\x00\x00"  # base64 "CQAAABYAAAA"

# Distinguished folders that exist in every simulated mailbox. Only the calendar holds items;
# the mail folders exist because clients resolve them (exchangelib saves a meeting response's
# copy to "sentitems" and a trashed item's to "deleteditems").
FOLDER_NAMES = (
    "root",
    "msgfolderroot",
    "calendar",
    "inbox",
    "sentitems",
    "deleteditems",
    "drafts",
    "outbox",
)
FOLDER_CHANGE_KEY = base64.b64encode(_CHANGE_KEY_PREFIX + b"folder").decode("ascii")


def _decode(value: str, prefix: bytes) -> bytes | None:
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    if not raw.startswith(prefix):
        return None
    return raw[len(prefix) :]


def encode_item_id(internal_id: str) -> str:
    return base64.b64encode(_ITEM_PREFIX + internal_id.encode("utf-8")).decode("ascii")


def decode_item_id(ews_id: str | None) -> str:
    """The store id inside an EWS ItemId; ErrorInvalidIdMalformed for anything else."""
    payload = _decode(ews_id or "", _ITEM_PREFIX)
    if not payload:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.") from error


def encode_folder_id(mailbox: str, folder: str) -> str:
    payload = folder.encode("ascii") + b"\x00" + mailbox.lower().encode("utf-8")
    return base64.b64encode(_FOLDER_PREFIX + payload).decode("ascii")


def decode_folder_id(ews_id: str | None) -> tuple[str, str]:
    """(mailbox, folder name) of an EWS FolderId; ErrorInvalidIdMalformed otherwise."""
    payload = _decode(ews_id or "", _FOLDER_PREFIX)
    if payload is None or b"\x00" not in payload:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
    folder, _, mailbox = payload.partition(b"\x00")
    try:
        name, address = folder.decode("ascii"), mailbox.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.") from error
    if name not in FOLDER_NAMES or not address:
        raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
    return address, name


def encode_change_key(store_change_key: str) -> str:
    return base64.b64encode(_CHANGE_KEY_PREFIX + store_change_key.encode("utf-8")).decode("ascii")


def decode_change_key(ews_change_key: str) -> str:
    """The store change key inside an EWS ChangeKey; ErrorInvalidChangeKey otherwise."""
    payload = _decode(ews_change_key, _CHANGE_KEY_PREFIX)
    if payload is None:
        raise EwsError("ErrorInvalidChangeKey", "ChangeKey is invalid.")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise EwsError("ErrorInvalidChangeKey", "ChangeKey is invalid.") from error
