"""The pending mark: at most one ``mailbox-sync`` message waits for a mailbox.

Whoever wants a mailbox synced (the poll fan-out, the Graph sweep, the notification endpoint, the
subscription worker) claims the mark under the row's ETag before sending the message, and only
the one that set it sends; the sync clears it when it ends. The mark expires after
``PENDING_EXPIRY``, so a lost message never stalls a mailbox. A notification that finds the mark
set is still counted (``MailboxRecord.notices``): the sync then knows to run once more if it
came in while the sync was reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from shared.store import ConcurrencyConflict, Repositories, Versioned
from shared.store.records import MailboxRecord

PENDING_EXPIRY: Final = timedelta(minutes=10)
# Racing writers of one mailbox row settle within a few rounds.
_ATTEMPTS: Final = 5


def claim_sync(
    repositories: Repositories,
    org: str,
    staff_id: str,
    now: datetime,
    *,
    synced_within: timedelta | None = None,
    notice: bool = False,
    listed: Versioned[MailboxRecord] | None = None,
) -> bool:
    """Set the mailbox's pending mark; True when this caller set it (and must send the message),
    False when a sync is pending already, the mailbox was synced within ``synced_within``, there
    is no such mailbox, or another caller won the race. ``notice``: count one notification
    whatever the answer. ``listed``: the row as just listed, tried first without a read (a
    row changed since is another caller's claim or a sync's end)."""
    for _ in range(_ATTEMPTS):
        current = listed or repositories.mailboxes.get(org, staff_id)
        listed = None
        if current is None:
            return False
        mailbox = current.value
        claim = _claimable(mailbox, now, synced_within)
        if not claim and not notice:
            return False
        changes: dict[str, object] = {}
        if claim:
            changes["sync_pending_since"] = now
        if notice:
            changes["notices"] = mailbox.notices + 1
        try:
            repositories.mailboxes.put(
                org, staff_id, mailbox.model_copy(update=changes), current.etag
            )
        except ConcurrencyConflict:
            if not notice:
                return False  # another caller claimed it first
            continue  # the notice must be counted: read again
        return claim
    raise ConcurrencyConflict(f"mailbox {staff_id!r} kept changing")


def claim_many(
    repositories: Repositories,
    org: str,
    listed: Mapping[str, Versioned[MailboxRecord]],
    now: datetime,
    *,
    synced_within: timedelta | None = None,
) -> dict[str, Versioned[MailboxRecord]]:
    """``claim_sync`` for many mailboxes of one organization, each under the ETag it was
    listed with, in as few round trips as the table allows. Returns the rows claimed (whose
    messages the caller must send), each as written, under its new ETag."""
    claims = {
        staff_id: row.value.model_copy(update={"sync_pending_since": now})
        for staff_id, row in listed.items()
        if _claimable(row.value, now, synced_within)
    }
    written = repositories.mailboxes.put_many(
        org, [(staff_id, claim, listed[staff_id].etag) for staff_id, claim in claims.items()]
    )
    return {staff_id: Versioned(claims[staff_id], etag) for staff_id, etag in written.items()}


def _claimable(mailbox: MailboxRecord, now: datetime, synced_within: timedelta | None) -> bool:
    """No sync pending (or its mark expired), and not synced within ``synced_within``."""
    pending = (
        mailbox.sync_pending_since is not None and now - mailbox.sync_pending_since < PENDING_EXPIRY
    )
    recent = (
        synced_within is not None
        and mailbox.last_sync_at is not None
        and now - mailbox.last_sync_at < synced_within
    )
    return not pending and not recent


def release_claim(
    repositories: Repositories, org: str, staff_id: str, claimed_at: datetime
) -> None:
    """Undo a claim whose message could not be sent (only if the mark is still this claim's)."""
    for _ in range(_ATTEMPTS):
        current = repositories.mailboxes.get(org, staff_id)
        if current is None or current.value.sync_pending_since != claimed_at:
            return
        try:
            repositories.mailboxes.put(
                org,
                staff_id,
                current.value.model_copy(update={"sync_pending_since": None}),
                current.etag,
            )
            return
        except ConcurrencyConflict:
            continue
