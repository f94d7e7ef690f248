"""Windows time zone names ("Eastern Standard Time", what EWS and Graph speak) and IANA zones
("America/Toronto", what the store keeps): the CLDR windowsZones table, for both protocols.

exchangelib ships the table as plain data (``exchangelib.winzone``), so the simulator reads it
from there rather than keeping a copy. It is imported on first use: importing exchangelib costs
most of a second, and many requests never need it. What a protocol does with a name the table
lacks is up to that protocol's own ``timezones`` module.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class _Tables:
    to_iana: dict[str, str]  # Windows name → IANA
    to_iana_any_case: dict[str, str]  # lower-case Windows name → IANA
    to_windows: dict[str, str]  # IANA → Windows name


@functools.cache
def _tables() -> _Tables:
    from exchangelib.winzone import IANA_TO_MS_TIMEZONE_MAP, MS_TIMEZONE_TO_IANA_MAP

    to_iana = {str(name): str(iana) for name, iana in MS_TIMEZONE_TO_IANA_MAP.items()}
    return _Tables(
        to_iana=to_iana,
        to_iana_any_case={name.lower(): iana for name, iana in to_iana.items()},
        to_windows={str(iana): str(pair[0]) for iana, pair in IANA_TO_MS_TIMEZONE_MAP.items()},
    )


def iana_for_windows(name: str, *, any_case: bool = False) -> str | None:
    """The IANA zone for a Windows zone name, None if the table has none. EWS matches names
    exactly; Graph (``any_case``) ignores case."""
    tables = _tables()
    return tables.to_iana_any_case.get(name.lower()) if any_case else tables.to_iana.get(name)


def windows_for_iana(iana: str) -> str | None:
    """The Windows name for an IANA zone, None if the table has none."""
    return _tables().to_windows.get(iana)
