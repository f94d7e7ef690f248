"""Time zones and date-times as Microsoft Graph writes them.

Graph speaks Windows zone names ("Eastern Standard Time") in ``originalStartTimeZone`` and
accepts either Windows or IANA names in ``dateTimeTimeZone`` input and in
``Prefer: outlook.timezone``. The store keeps UTC instants and IANA zones, so this module is the
edge: resolving any zone name, naming an IANA zone the Windows way, and formatting/parsing
Graph's date-time strings ("2026-01-05T10:00:00.0000000", seven fractional digits, no offset).

Windows names are matched in any case, by the CLDR table in :mod:`sim.timezones`; an IANA zone
without a Windows name keeps its IANA name.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sim.timezones import iana_for_windows, windows_for_iana

_UTC_NAMES = {"utc", "tzone://microsoft/utc", "etc/utc", "z", "gmt", "coordinated universal time"}

# "2026-01-05T10:00:00", optional fraction of any length, optional Z or ±hh:mm offset.
_DATE_TIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


class UnknownTimeZone(ValueError):
    """A zone name that is neither IANA nor a Windows zone name Graph knows."""


@functools.lru_cache(maxsize=512)
def resolve_zone(name: str) -> ZoneInfo:
    """The zone for a Graph time zone name: IANA ("Europe/Paris"), Windows ("Romance Standard
    Time") or UTC spellings. Raises UnknownTimeZone otherwise."""
    cleaned = name.strip()
    if cleaned.lower() in _UTC_NAMES:
        return ZoneInfo("UTC")
    if "/" in cleaned and not cleaned.lower().startswith("tzone:"):
        try:
            return ZoneInfo(cleaned)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    iana = iana_for_windows(cleaned, any_case=True)
    if iana is None:
        raise UnknownTimeZone(f"time zone {name!r} is not a known Windows or IANA time zone")
    return ZoneInfo(iana)


def iana_name(name: str) -> str:
    """The IANA name of any zone name resolve_zone accepts."""
    return str(resolve_zone(name).key)


@functools.lru_cache(maxsize=512)
def windows_name(iana: str) -> str:
    """How Graph names an IANA zone in ``originalStartTimeZone`` (Windows name; "UTC" for UTC)."""
    if iana.lower() in _UTC_NAMES:
        return "UTC"
    return windows_for_iana(iana) or iana


def format_local(instant: datetime, zone_name: str) -> str:
    """An aware instant as Graph's ``dateTime`` string in the named zone."""
    local = instant.astimezone(resolve_zone(zone_name))
    return local.strftime("%Y-%m-%dT%H:%M:%S") + f".{local.microsecond:06d}0"


def format_utc(instant: datetime | None) -> str | None:
    """A DateTimeOffset property (createdDateTime, ...) as Graph writes it, in UTC with Z."""
    if instant is None:
        return None
    value = instant.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S") + f".{value.microsecond:06d}0Z"


def parse_date_time(text: str, zone_name: str | None) -> datetime:
    """Parse Graph's dateTime string: wall-clock time in ``zone_name`` unless the string carries
    its own offset or Z. Returns an aware datetime in UTC. Raises ValueError naming the value."""
    match = _DATE_TIME.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a date-time like 2026-01-05T10:00:00")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    naive = datetime(
        int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro
    )
    if offset:
        if offset.upper() == "Z":
            return naive.replace(tzinfo=UTC)
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        return (naive - sign * delta).replace(tzinfo=UTC)
    zone = resolve_zone(zone_name or "UTC")
    return naive.replace(tzinfo=zone).astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """A query-string instant (calendarView startDateTime): an offset or Z is honoured; without
    one the value is UTC, as Graph documents."""
    return parse_date_time(text.replace(" ", "+"), "UTC")


def local_midnight(day: date, zone_name: str) -> datetime:
    """Midnight of a calendar day in a zone, as a UTC instant (all-day events)."""
    return datetime.combine(day, time(0), tzinfo=resolve_zone(zone_name)).astimezone(UTC)
