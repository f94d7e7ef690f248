"""The marker: the value that tags each event calbridge creates with the appointment it shows.

The organizer's copy of every calbridge-made event carries one named MAPI property, so calbridge
recognises its events in any mailbox, through EWS and Graph alike, and after a mailbox moves from
one connection to another (item ids change with the protocol; named properties do not).
Attendee copies do NOT carry it (Exchange does not send named properties to attendees): they are
matched by the iCalendar UID instead.

The value names the appointment: ``calbridge/1/{org}/{appointmentId}``; ``/`` cannot occur in
either id (see ``ID_PATTERN``). Where it is kept on an event — one named MAPI property, the same
through EWS and Graph — is the adapters' business: ``shared.exchange.marker_property``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from shared.models import ID_PATTERN

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
