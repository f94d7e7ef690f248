"""Graph's identifiers for the store's objects.

Event ids look like Exchange's REST ids (URL-safe base64 starting ``AAMkAD``) and decode back to
the store's internal id without a lookup table; occurrence ids are the store's own occurrence
ids (``ExchangeStore.occurrence_id``) encoded the same way. Users get a stable object id (a
GUID derived from the address) so ``users/{guid}`` works as well as ``users/{upn}``.
"""

from __future__ import annotations

import base64
import binascii
import uuid

# Six bytes whose base64 is "AAMkADk0": every id then starts like an Exchange item id.
_EVENT_PREFIX = base64.b64decode("AAMkADk0")
_USER_NAMESPACE = uuid.UUID("6f1c3e1a-4f7b-4a53-9a44-2f1d0c5b7e10")


class MalformedId(ValueError):
    """Not an id this service issued."""


def event_id(internal_id: str) -> str:
    """The Graph id of a store item (or occurrence)."""
    return base64.urlsafe_b64encode(_EVENT_PREFIX + internal_id.encode()).decode()


def internal_event_id(graph_id: str) -> str:
    """The store id behind a Graph event id; MalformedId for anything else."""
    text = graph_id.strip()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as error:
        raise MalformedId(f"Id is malformed: {graph_id!r}") from error
    if not raw.startswith(_EVENT_PREFIX) or len(raw) == len(_EVENT_PREFIX):
        raise MalformedId(f"Id is malformed: {graph_id!r}")
    try:
        return raw[len(_EVENT_PREFIX) :].decode()
    except UnicodeDecodeError as error:
        raise MalformedId(f"Id is malformed: {graph_id!r}") from error


def user_object_id(address: str) -> str:
    """The stable Graph object id (GUID) of a mailbox's user."""
    return str(uuid.uuid5(_USER_NAMESPACE, address.lower()))
