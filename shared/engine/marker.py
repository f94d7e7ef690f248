"""The marker: a named extended property that tags each event calbridge creates.

The organizer's copy of every calbridge-made event carries one named MAPI property, so calbridge
recognises its events in any mailbox, through EWS and Graph alike, and after a mailbox moves from
one connection to another (item ids change with the protocol; named properties do not).
Attendee copies do NOT carry it (Exchange does not send named properties to attendees): they are
matched by the iCalendar UID instead.

The property is the same everywhere: property set ``MARKER_PROPERTY_SET_ID`` (a GUID made up for
calbridge, fixed forever), name ``CalbridgeAppointment``, type String. EWS addresses it by its parts
(``ExtendedFieldURI PropertySetId= PropertyName= PropertyType=``); Graph by the id string
``MARKER_GRAPH_ID`` (``singleValueExtendedProperties``). The value names the appointment:
``calbridge/1/{org}/{appointmentId}``; ``/`` cannot occur in either id (see ``ID_PATTERN``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from shared.models import ID_PATTERN

MARKER_PROPERTY_SET_ID: Final = "8f0d4c1e-6b2a-4e57-9a3c-2d71c5e0b9a4"
MARKER_PROPERTY_NAME: Final = "CalbridgeAppointment"
MARKER_PROPERTY_TYPE: Final = "String"
# Graph's single-value extended property id (the GUID in braces, as Graph spells it).
MARKER_GRAPH_ID: Final = (
    f"{MARKER_PROPERTY_TYPE} {{{MARKER_PROPERTY_SET_ID}}} Name {MARKER_PROPERTY_NAME}"
)

_PREFIX: Final = "calbridge/1/"
_IDENTIFIER = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class AppointmentMarker:
    """What a marker value names: one appointment of one organization."""

    org: str
    appointment_id: str

    @property
    def value(self) -> str:
        return marker_for(self.org, self.appointment_id)


def marker_for(org: str, appointment_id: str) -> str:
    """The marker value for an appointment. Refuses ids that could not be parsed back."""
    for label, value in (("org", org), ("appointment id", appointment_id)):
        if not _IDENTIFIER.match(value):
            raise ValueError(f"{label} {value!r} does not match {ID_PATTERN}")
    return f"{_PREFIX}{org}/{appointment_id}"


def parse_marker(value: str | None) -> AppointmentMarker | None:
    """The appointment a marker value names; None for anything calbridge did not write."""
    if not value or not value.startswith(_PREFIX):
        return None
    parts = value[len(_PREFIX) :].split("/")
    if len(parts) != 2 or not all(_IDENTIFIER.match(part) for part in parts):
        return None
    return AppointmentMarker(org=parts[0], appointment_id=parts[1])


def graph_marker_filter(marker: str) -> str:
    """The Graph ``$filter`` that selects events carrying this marker value.

    Marker values are built from ``ID_PATTERN`` ids, which contain no quote, so no escaping is
    needed; anything else is refused rather than escaped wrongly.
    """
    if parse_marker(marker) is None:
        raise ValueError("not a calbridge marker value")
    return (
        "singleValueExtendedProperties/Any(ep: "
        f"ep/id eq '{MARKER_GRAPH_ID}' and ep/value eq '{marker}')"
    )
