"""Windows time zone ids (what EWS speaks: "Eastern Standard Time") to IANA zones (what the
store keeps: "America/Toronto") and back.

The mapping is the CLDR windowsZones table; exchangelib ships it as plain data
(``exchangelib.winzone``), so the simulator reads it from there rather than keeping a copy.
"""

from __future__ import annotations

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP, MS_TIMEZONE_TO_IANA_MAP


@lru_cache(maxsize=512)
def zone_for_ms_id(ms_id: str) -> ZoneInfo | None:
    """The zone for a Windows id (or an IANA name, which some clients send); None if unknown."""
    name = MS_TIMEZONE_TO_IANA_MAP.get(ms_id, ms_id)
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
    found = IANA_TO_MS_TIMEZONE_MAP.get(name)
    if found is not None:
        return str(found[0])
    return "UTC"
