"""Table Storage keys: a reversible escaping that makes any string a legal key part.

Table Storage refuses ``/ \\ # ?`` and control characters in PartitionKey and RowKey (Azurite
answers ``/`` with HTTP 500, the others with 400), and EWS ItemIds are base64 with ``/`` and
``+``. Every key part therefore goes through :func:`encode_key_part`: the characters an
identifier may carry (``shared.models.ID_PATTERN``: letters, digits, ``. _ ~ : @ -``) stay as they
are, so ordinary ids remain readable in a storage browser; every other UTF-8 byte becomes
``!XX`` (upper-case hex). ``!`` itself is escaped, so decoding is unambiguous.

Composite keys (``org|staffId``) join escaped parts with ``|``, which an escaped part never
contains, so :func:`split_key` recovers the parts exactly and two different part lists never
give the same key. The organization is always the first part of a PartitionKey: that is what
scopes every row to one organization.
"""

from __future__ import annotations

import re

ESCAPE = "!"
SEPARATOR = "|"
# Table Storage allows keys of up to 1 KiB (UTF-16): 512 characters.
MAX_KEY_LENGTH = 512

_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~:@-")
_ESCAPED = re.compile(r"!([0-9A-F]{2})")
_ENCODED_PART = re.compile(r"^(?:[A-Za-z0-9._~:@-]|![0-9A-F]{2})*$")


class InvalidKey(ValueError):
    """A string that is not an encoded key (it was not produced by this module)."""


def encode_key_part(raw: str) -> str:
    """Escape one key part (any string, including lone surrogates) into legal key characters."""
    out: list[str] = []
    for byte in raw.encode("utf-8", "surrogatepass"):
        char = chr(byte)
        out.append(char if char in _KEPT else f"{ESCAPE}{byte:02X}")
    return "".join(out)


def decode_key_part(encoded: str) -> str:
    """The inverse of :func:`encode_key_part`."""
    if not _ENCODED_PART.match(encoded):
        raise InvalidKey(f"{encoded!r} is not an encoded key part")
    raw = bytearray()
    position = 0
    for match in _ESCAPED.finditer(encoded):
        raw.extend(encoded[position : match.start()].encode("ascii"))
        raw.append(int(match.group(1), 16))
        position = match.end()
    raw.extend(encoded[position:].encode("ascii"))
    return raw.decode("utf-8", "surrogatepass")


def compose_key(*parts: str) -> str:
    """One key from one or more raw parts: each escaped, joined by ``|``."""
    if not parts:
        raise ValueError("a key needs at least one part")
    return SEPARATOR.join(encode_key_part(part) for part in parts)


def split_key(key: str) -> list[str]:
    """The raw parts of a key made by :func:`compose_key`."""
    return [decode_key_part(part) for part in key.split(SEPARATOR)]
