"""Where an event keeps calbridge's marker (``shared.engine.marker``): one named MAPI property,
the same through EWS and Graph, so a marker written through one protocol is found through the
other and survives a mailbox moving between connections (item ids change with the protocol;
named properties do not).

Property set ``MARKER_PROPERTY_SET_ID`` (a GUID made up for calbridge, fixed forever), name
``CalbridgeAppointment``, type String. EWS addresses it by its parts (``ExtendedFieldURI
PropertySetId= PropertyName= PropertyType=``); Graph by the id string ``MARKER_GRAPH_ID``
(``singleValueExtendedProperties``). Attendee copies do not carry it (Exchange does not send
named properties to attendees).
"""

from __future__ import annotations

import re
from typing import Final

MARKER_PROPERTY_SET_ID: Final = "8f0d4c1e-6b2a-4e57-9a3c-2d71c5e0b9a4"
MARKER_PROPERTY_NAME: Final = "CalbridgeAppointment"
MARKER_PROPERTY_TYPE: Final = "String"
# Graph's single-value extended property id (the GUID in braces, as Graph spells it).
MARKER_GRAPH_ID: Final = (
    f"{MARKER_PROPERTY_TYPE} {{{MARKER_PROPERTY_SET_ID}}} Name {MARKER_PROPERTY_NAME}"
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
