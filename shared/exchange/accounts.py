"""Which of a connection's service accounts reads and writes a mailbox: rendezvous (highest
random weight) hashing of the mailbox address over the accounts' usernames.

Each mailbox goes to the account whose hash of (username, mailbox) is highest. The choice needs
no state, is the same in every instance, and stays the same while the list of accounts does (so
each account's exchangelib session and Account objects are reused); adding an account moves only
the mailboxes that now hash highest to it (about 1 in n+1), removing one moves only its own.
Nothing stored depends on it: item ids, change keys and sync states are the mailbox's, whichever
account asked for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _weight(username: str, mailbox: str) -> int:
    digest = hashlib.sha256(f"{username.strip().lower()}\0{mailbox.strip().lower()}".encode())
    return int.from_bytes(digest.digest()[:8], "big")


def account_for(mailbox: str, usernames: Sequence[str]) -> str:
    """The username (as given) of the account that serves ``mailbox``."""
    if not usernames:
        raise ValueError("a connection needs at least one service account")
    return max(usernames, key=lambda username: (_weight(username, mailbox), username))
