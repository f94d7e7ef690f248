"""Queue names and the prefix convention.

A queue's name is ``CALBRIDGE_QUEUE_PREFIX + base name`` (``appointment-changes``, ...). Senders
read the prefix from settings; queue-trigger decorators cannot (the host indexes the bindings
before any code runs), so they use the app-setting expression :func:`binding_queue_name`,
``%CALBRIDGE_QUEUE_PREFIX%appointment-changes``, which azure-functions writes to the binding as
is and the host resolves from the app settings. The local runner resolves ``%NAME%`` from the
environment the same way. One setting thus names the queue for both sides, and tests isolate
themselves with a unique prefix per test, through the real triggers too.

The host refuses a ``%NAME%`` that resolves to an empty value ("does not resolve to a value",
Azure/Azure-Functions#1189), so every deployment sets a non-empty prefix (e.g. ``calbridge-``;
``local.settings.json`` and the Bicep templates set it). Keep base names short: prefix + name +
the host's ``-poison`` suffix must fit in 63 characters.
"""

from __future__ import annotations

import re
from datetime import timedelta

APPOINTMENT_CHANGES = "appointment-changes"
MAILBOX_SYNC = "mailbox-sync"
MAILBOX_SUBSCRIPTIONS = "mailbox-subscriptions"
WEBHOOK_DELIVERIES = "webhook-deliveries"

QUEUE_PREFIX_SETTING = "CALBRIDGE_QUEUE_PREFIX"
# The app setting holding the storage connection string, as queue-trigger bindings name it.
STORAGE_CONNECTION_SETTING = "AzureWebJobsStorage"
POISON_SUFFIX = "-poison"
# The longest a queue can keep a message invisible.
MAX_VISIBILITY_DELAY = timedelta(days=7)

_QUEUE_NAME = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


def binding_queue_name(name: str) -> str:
    """The queue name for a queue-trigger decorator: resolved by the host from app settings."""
    return f"%{QUEUE_PREFIX_SETTING}%{name}"


def queue_name(prefix: str, name: str) -> str:
    """``prefix + name``, checked against Azure's rules (3-63 lower-case letters, digits and
    single hyphens, starting and ending with a letter or digit)."""
    full = prefix + name
    if not _QUEUE_NAME.match(full):
        raise ValueError(
            f"queue name {full!r} is invalid: 3-63 lower-case letters, digits and single "
            f"hyphens (check {QUEUE_PREFIX_SETTING})"
        )
    return full
