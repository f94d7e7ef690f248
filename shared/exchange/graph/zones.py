"""Windows time-zone names for IANA zones: how Graph wants a zone named when calbridge writes an
event's ``dateTimeTimeZone``.

Graph's create and update accept Windows zone names ("W. Europe Standard Time") and only one
IANA name per Windows zone ("Europe/Berlin", not "Europe/Zurich"); an appointment booked in any
IANA zone is therefore written with its Windows name. The mapping is Unicode CLDR's
windowsZones table as the ``tzlocal`` package ships it (``tzlocal.windows_tz``: ``tz_win`` maps
IANA → Windows, ``win_tz`` Windows → canonical IANA), a pinned runtime dependency rather than a
copy kept here.
"""

from __future__ import annotations

from typing import Final

from tzlocal.windows_tz import tz_win, win_tz

_WINDOWS_NAME_OF: Final[dict[str, str]] = {
    iana.lower(): windows for iana, windows in tz_win.items()
}
_CANONICAL_OF: Final[dict[str, str]] = {windows.lower(): iana for windows, iana in win_tz.items()}


def windows_zone_name(iana: str) -> str | None:
    """The Windows name of an IANA zone ("America/Toronto" → "Eastern Standard Time"), None when
    CLDR does not map it."""
    return _WINDOWS_NAME_OF.get(iana.strip().lower())


def iana_zone_name(windows: str) -> str | None:
    """The canonical IANA zone of a Windows zone name, None when unknown."""
    return _CANONICAL_OF.get(windows.strip().lower())
