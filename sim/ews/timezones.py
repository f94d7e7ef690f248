"""Windows time zone ids (what EWS speaks: "Eastern Standard Time") to IANA zones (what the
store keeps: "America/Toronto") and back, by the CLDR table in :mod:`sim.timezones`.

Ids are matched exactly; an unknown id is tried as an IANA name (some clients send those), and
an IANA zone without a Windows id is named "UTC".
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sim.timezones import iana_for_windows, windows_for_iana


@lru_cache(maxsize=512)
def zone_for_ms_id(ms_id: str) -> ZoneInfo | None:
    """The zone for a Windows id (or an IANA name, which some clients send); None if unknown."""
    name = iana_for_windows(ms_id) or ms_id
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def iana_for_ms_id(ms_id: str) -> str | None:
    zone = zone_for_ms_id(ms_id)
    return zone.key if zone is not None else None


@lru_cache(maxsize=512)
def ms_id_for_iana(name: str) -> str:
    """The Windows id for an IANA zone ("UTC" when there is none)."""
    return windows_for_iana(name) or "UTC"
