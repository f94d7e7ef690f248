"""Keeps exchangelib's logging from carrying event content.

exchangelib logs the XML of every request and response at DEBUG (event bodies and subjects
included), and on an unexpected transport failure logs the request XML at ERROR. Calbridge's
rule is that no body and no private subject reaches a log line, whatever level the application
runs at. So, once, when the adapter is imported:
- the ``exchangelib`` logger tree is capped at INFO (the XML dumps are DEBUG);
- every exchangelib logger gets ``WithheldArguments``: a record still says what happened (its
  format string, e.g. "%s: %s\\n%s\\n%s"), but its arguments — where exchangelib puts XML,
  values and server text — are replaced by a placeholder.
"""

from __future__ import annotations

import logging
from typing import Final

WITHHELD: Final = "<withheld>"


class WithheldArguments(logging.Filter):
    """Replaces a record's arguments by a placeholder (the record is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            count = len(record.args) if isinstance(record.args, tuple) else 1
            try:
                record.msg = str(record.msg) % ((WITHHELD,) * count)
            except (TypeError, ValueError):
                record.msg = f"{record.msg} [{WITHHELD}]"
            record.args = None
        return True


_FILTER: Final = WithheldArguments()


def quieten_exchangelib() -> None:
    """Apply the cap and the filter to exchangelib's loggers (safe to call repeatedly)."""
    logging.getLogger("exchangelib").setLevel(logging.INFO)
    names = [name for name in logging.root.manager.loggerDict if name.startswith("exchangelib")]
    for name in ["exchangelib", *names]:
        found = logging.getLogger(name)
        if _FILTER not in found.filters:
            found.addFilter(_FILTER)
