"""Time zones calbridge can write to Exchange, and their Windows names.

Exchange names zones the Windows way ("Eastern Standard Time"): Graph's create and update take
Windows zone names (and only one IANA name per Windows zone: "Europe/Berlin", not
"Europe/Zurich"), and EWS sends each time zone as a Windows definition. An appointment's IANA zone
is therefore usable only when it has a Windows name. The mapping is Unicode CLDR's windowsZones
table as the ``tzlocal`` package ships it (``tzlocal.windows_tz``: ``tz_win`` maps IANA → Windows,
``win_tz`` Windows → canonical IANA), a pinned runtime dependency rather than a copy kept here.

Which names are IANA zones at all is the ``tzdata`` package's list (the zones of the IANA
database as published, pinned): names that only a host's zoneinfo folder offers (``localtime``,
``posix/…``, ``right/…``) are not zones a booking platform may send.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Final

from tzlocal.windows_tz import tz_win, win_tz

_WINDOWS_NAME_OF: Final[dict[str, str]] = {
    iana.lower(): windows for iana, windows in tz_win.items()
}
_CANONICAL_OF: Final[dict[str, str]] = {windows.lower(): iana for windows, iana in win_tz.items()}


@lru_cache(maxsize=1)
def iana_zone_names() -> frozenset[str]:
    """Every zone name of the IANA database that ``tzdata`` ships (exact spelling)."""
    listing = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in listing.splitlines() if line.strip())


def writable_zone_problem(name: str) -> str | None:
    """Why ``name`` cannot be an appointment's time zone; None when it can (an IANA zone, spelt
    exactly, that Exchange knows by a Windows name)."""
    if name not in iana_zone_names():
        return f"unknown time zone {name!r} (expected an IANA name such as 'America/Toronto')"
    if windows_zone_name(name) is None:
        return f"time zone {name!r} has no Exchange (Windows) equivalent; use a city zone"
    return None


def windows_zone_names() -> dict[str, str]:
    """Every IANA zone CLDR maps, spelt exactly, with its Windows name."""
    return dict(tz_win)


def windows_zone_name(iana: str) -> str | None:
    """The Windows name of an IANA zone ("America/Toronto" → "Eastern Standard Time"), None when
    CLDR does not map it."""
    return _WINDOWS_NAME_OF.get(iana.strip().lower())


def iana_zone_name(windows: str) -> str | None:
    """The canonical IANA zone of a Windows zone name, None when unknown."""
    return _CANONICAL_OF.get(windows.strip().lower())
