"""Where an event keeps calbridge's marker (``shared.engine.marker``): one named MAPI property,
the same through EWS and Graph, so a marker written through one protocol is found through the
other and survives a mailbox moving between connections (item ids change with the protocol;
named properties do not).

Beside it, ``CalbridgeWritten`` (same property set, String) holds the start and end calbridge's
last write gave the item (``written_stamp``), written in the same request as the rest. Outlook
moves leave it as it was, so an item whose times equal it shows calbridge's own write, whatever
the mapping has recorded yet (``ExchangeEvent.shows_written``).

Property set ``MARKER_PROPERTY_SET_ID`` (a GUID made up for calbridge, fixed forever), name
``CalbridgeAppointment``, type String. EWS addresses it by its parts (``ExtendedFieldURI
PropertySetId= PropertyName= PropertyType=``); Graph by the id string ``MARKER_GRAPH_ID``
(``singleValueExtendedProperties``). Attendee copies do not carry it (Exchange does not send
named properties to attendees).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

MARKER_PROPERTY_SET_ID: Final = "8f0d4c1e-6b2a-4e57-9a3c-2d71c5e0b9a4"
MARKER_PROPERTY_NAME: Final = "CalbridgeAppointment"
MARKER_PROPERTY_TYPE: Final = "String"
# Graph's single-value extended property id (the GUID in braces, as Graph spells it).
MARKER_GRAPH_ID: Final = (
    f"{MARKER_PROPERTY_TYPE} {{{MARKER_PROPERTY_SET_ID}}} Name {MARKER_PROPERTY_NAME}"
)

WRITTEN_PROPERTY_NAME: Final = "CalbridgeWritten"
WRITTEN_GRAPH_ID: Final = (
    f"{MARKER_PROPERTY_TYPE} {{{MARKER_PROPERTY_SET_ID}}} Name {WRITTEN_PROPERTY_NAME}"
)

# Marker values are built from ids (``ID_PATTERN``) and "/": no quote can occur in them.
_MARKER_VALUE = re.compile(r"^[A-Za-z0-9._~:@/-]{1,300}$")


def graph_marker_filter(marker: str) -> str:
    """The Graph ``$filter`` that selects events carrying this marker value. A value with any
    other character is refused rather than escaped wrongly."""
    if not _MARKER_VALUE.fullmatch(marker):
        raise ValueError("not a calbridge marker value")
    return (
        "singleValueExtendedProperties/Any(ep: "
        f"ep/id eq '{MARKER_GRAPH_ID}' and ep/value eq '{marker}')"
    )


def written_stamp(start: datetime, end: datetime) -> str:
    """The ``CalbridgeWritten`` value of a write that gives an item these times: both in UTC, to
    the second (what EWS and Graph read back), so a read item is compared as text."""
    return "/".join(f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" for moment in (start, end))
