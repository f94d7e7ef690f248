"""The log-privacy check of the end-to-end suite: every log record the suite causes, from every
logger at DEBUG, is scanned for what must never reach a log line.

- :class:`Sensitive` collects the strings as the suite makes them: each snapshot the booking
  platform sends (its clients' names, addresses and phone numbers, its notes: what an event's
  body is made of), every item the simulator's mailboxes hold at any time (its body, and the
  subject of a private one), the secrets of the end-to-end world (signing secret, operator
  key, connection passwords and client secret, mailbox passwords, the functions key) and every
  access token the simulator issues.
- :class:`LogCapture` is a root handler at DEBUG that keeps every record.
- :func:`leaks` scans a record's every text: its message and arguments, each extra attribute,
  its exception and stack text, case-insensitively.

Short strings are not collected (a two-letter phone extension would match anything), so the
check holds for what is at least :data:`SHORTEST` characters long.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sim.store import CalendarItem, Change, ExchangeStore, Sensitivity

SHORTEST: Final = 5
# The ``extra=`` key that marks a record a test planted on purpose, to show it would be caught;
# the suite-wide check leaves those out.
PLANTED: Final = "planted_leak"
# What a LogRecord has of its own; anything else on it was added (``extra=``, filters).
_RECORD_ATTRIBUTES: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))


@dataclass(frozen=True)
class Finding:
    kind: str
    value: str
    logger: str
    where: str  # which part of the record carried it


class Sensitive:
    """The strings no log record may carry, by kind (``body``, ``private subject``,
    ``client``, ``secret``), collected while the suite runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}  # folded value → kind

    def add(self, kind: str, value: object) -> None:
        if not isinstance(value, str):
            return
        candidates = [value, *value.splitlines()]
        with self._lock:
            for candidate in candidates:
                text = candidate.strip()
                if len(text) >= SHORTEST:
                    self._values.setdefault(text.casefold(), kind)

    def values(self) -> dict[str, str]:
        with self._lock:
            return dict(self._values)

    def kinds(self) -> set[str]:
        return set(self.values().values())

    def __contains__(self, value: str) -> bool:
        return value.casefold() in self.values()

    # --- where the strings come from ------------------------------------------------------------

    def snapshot(self, document: Mapping[str, Any]) -> None:
        """A snapshot the booking platform sends: its clients and notes."""
        for client in document.get("clients") or []:
            if isinstance(client, Mapping):
                for field in ("name", "email", "phone"):
                    self.add("client", client.get(field))
        self.add("body", document.get("notes"))

    def item(self, item: CalendarItem) -> None:
        """An item of a mailbox: its body, and its subject when it is private."""
        self.add("body", item.body)
        if item.sensitivity in (Sensitivity.PRIVATE, Sensitivity.CONFIDENTIAL):
            self.add("private subject", item.subject)

    def watch(self, store: ExchangeStore) -> None:
        """Collect every item of the simulator's mailboxes as it is now and whenever it
        changes (an item edited or deleted later is still remembered)."""

        def changed(mailbox: str, change: Change) -> None:
            with store.lock:
                found = store.items.get(change.item_id)
                related = [found] if found is not None else []
                if found is not None:
                    related += [i for i in store.items.values() if i.master_id == found.id]
            for item in related:
                self.item(item)

        with store.lock:
            for item in list(store.items.values()):
                self.item(item)
        store.add_listener(changed)

    def secrets(self, values: Iterable[str]) -> None:
        for value in values:
            self.add("secret", value)


class LogCapture(logging.Handler):
    """Keeps every record it is handed (attach to the root logger at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        # Rendered now: arguments may be mutable objects that change (or are withheld) later.
        record.__dict__.setdefault("_captured_texts", record_texts(record))
        with self._lock_records:
            self._records.append(record)

    def records(self) -> list[logging.LogRecord]:
        with self._lock_records:
            return list(self._records)


def record_texts(record: logging.LogRecord) -> dict[str, str]:
    """Every text a record carries, by where it is: what any handler could write out."""
    texts: dict[str, str] = {"msg": str(record.msg)}
    try:
        texts["message"] = record.getMessage()
    except Exception as failure:  # a record whose arguments do not fit its format
        texts["message"] = f"{record.msg!r} % {record.args!r} ({type(failure).__name__})"
    if record.args:
        texts["args"] = repr(record.args)
    if record.exc_info and record.exc_info[1] is not None:
        texts["exception"] = "".join(traceback.format_exception(*record.exc_info))
    if record.exc_text:
        texts["exc_text"] = record.exc_text
    if record.stack_info:
        texts["stack"] = record.stack_info
    for name, value in vars(record).items():
        if name not in _RECORD_ATTRIBUTES and name != "_captured_texts":
            texts[f"extra.{name}"] = value if isinstance(value, str) else repr(value)
    return texts


def unplanted(records: Iterable[logging.LogRecord]) -> list[logging.LogRecord]:
    """The records no test planted."""
    return [record for record in records if not getattr(record, PLANTED, False)]


def leaks(records: Iterable[logging.LogRecord], sensitive: Mapping[str, str]) -> list[Finding]:
    """Each sensitive value found in a record's texts."""
    found = []
    for record in records:
        texts = record.__dict__.get("_captured_texts") or record_texts(record)
        for where, text in texts.items():
            folded = text.casefold()
            for value, kind in sensitive.items():
                if value in folded:
                    found.append(Finding(kind, value, record.name, where))
    return found
