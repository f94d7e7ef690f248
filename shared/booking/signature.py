"""HMAC request signatures between calbridge and the booking platform (both directions).

Header ``X-Calbridge-Signature: t=<unix seconds>,<scheme>=<hex>``, the hex HMAC-SHA256 under the
organization's shared secret of:

- ``v2`` (the booking platform's requests to calbridge): ``"{t}.{METHOD}.{target}.{raw body}"``
  — METHOD upper case, target the request target as sent (path and query string, e.g.
  ``/api/orgs/dev/staff/ann/busy?start=…&end=…``), raw body empty for a GET. The ids live in the
  URL, so signing only the body would let a captured request be replayed against another
  appointment or another staff member's busy time. ``v1`` is not accepted on requests.
- ``v1`` (calbridge's webhooks to the platform, which carry every id in the body):
  ``"{t}.{raw body}"``.

Several digests may be sent (the platform signing with both secrets during a rotation), and
several secrets may verify (calbridge holding the current and the previous one): one match is
enough. Requests whose timestamp is more than ``tolerance`` seconds from now, either way, are
refused, which bounds replays of the very same request to that window (harmless: the intake is
idempotent). Comparison is constant time (:func:`hmac.compare_digest`) against every candidate.

Errors are typed (:class:`SignatureMissing`, :class:`SignatureMalformed`,
:class:`SignatureExpired`, :class:`SignatureMismatch`), each with a short ``code`` the HTTP layer
returns. They never carry a secret or the expected digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from shared.http.contract import SIGNATURE_HEADER

DEFAULT_TOLERANCE_SECONDS = 300
REQUEST_SCHEME: Final = "v2"
WEBHOOK_SCHEME: Final = "v1"
Scheme = Literal["v1", "v2"]
_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")
_MAX_HEADER_LENGTH = 1024


class SignatureError(Exception):
    """A request whose signature cannot be accepted."""

    code = "signature_invalid"


class SignatureMissing(SignatureError):
    code = "signature_missing"


class SignatureMalformed(SignatureError):
    code = "signature_malformed"


class SignatureExpired(SignatureError):
    code = "signature_expired"


class SignatureMismatch(SignatureError):
    code = "signature_mismatch"


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    digests: tuple[str, ...]


def request_message(timestamp: int, method: str, target: str, body: bytes) -> bytes:
    """What a ``v2`` signature covers."""
    return f"{int(timestamp)}.{method.upper()}.{target}.".encode() + body


def webhook_message(timestamp: int, body: bytes) -> bytes:
    """What a ``v1`` signature covers."""
    return str(int(timestamp)).encode("ascii") + b"." + body


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign_request(secret: str, method: str, target: str, body: bytes, timestamp: int) -> str:
    """The header value the booking platform sends with a request (``v2``)."""
    digest = _hex_hmac(secret, request_message(timestamp, method, target, body))
    return f"t={int(timestamp)},{REQUEST_SCHEME}={digest}"


def sign_webhook(secret: str, body: bytes, timestamp: int) -> str:
    """The header value calbridge sends with a webhook (``v1``)."""
    return (
        f"t={int(timestamp)},{WEBHOOK_SCHEME}={_hex_hmac(secret, webhook_message(timestamp, body))}"
    )


def parse_header(header: str | None, scheme: Scheme = REQUEST_SCHEME) -> SignatureHeader:
    """Split a header value into its timestamp and its ``scheme`` digests (other schemes are
    ignored; a request signed only with another one is refused naming the expected scheme)."""
    if header is None or not header.strip():
        raise SignatureMissing(f"the {SIGNATURE_HEADER} header is missing")
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureMalformed(f"the {SIGNATURE_HEADER} header is too long")
    shape = f"t=<unix>,{scheme}=<hex>"
    timestamp: int | None = None
    digests: list[str] = []
    others: set[str] = set()
    for item in header.split(","):
        name, separator, value = item.strip().partition("=")
        if not separator:
            raise SignatureMalformed(f"{SIGNATURE_HEADER} must look like {shape}")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureMalformed(f"{SIGNATURE_HEADER}: t must be one unix time in seconds")
            timestamp = int(value)
        elif name == scheme:
            if not _HEX_DIGEST.match(value):
                raise SignatureMalformed(
                    f"{SIGNATURE_HEADER}: {scheme} must be 64 hex digits (HMAC-SHA256)"
                )
            digests.append(value.lower())
        else:
            others.add(name)
    if timestamp is not None and not digests and others & {REQUEST_SCHEME, WEBHOOK_SCHEME}:
        raise SignatureMalformed(
            f"{SIGNATURE_HEADER}: {'/'.join(sorted(others))} is not accepted here; sign "
            + (
                "timestamp, method, path and body (v2)"
                if scheme == REQUEST_SCHEME
                else "timestamp and body (v1)"
            )
        )
    if timestamp is None or not digests:
        raise SignatureMalformed(f"{SIGNATURE_HEADER} must carry both t= and {scheme}=")
    return SignatureHeader(timestamp, tuple(digests))


def check_freshness(
    parsed: SignatureHeader, now: float, tolerance: int = DEFAULT_TOLERANCE_SECONDS
) -> None:
    """Refuse timestamps more than ``tolerance`` seconds away from ``now``."""
    # Compared, not subtracted: ``now`` is a float, and a float minus a huge integer (a header
    # may carry hundreds of digits) raises OverflowError instead of refusing.
    if not now - tolerance <= parsed.timestamp <= now + tolerance:
        raise SignatureExpired(
            f"the signature's timestamp is more than {tolerance} s from the server's clock "
            "(expired or replayed request)"
        )


def check_digest(secrets: Sequence[str], parsed: SignatureHeader, message: bytes) -> None:
    """Refuse unless one of the header's digests is the HMAC of ``message`` under one of
    ``secrets`` (constant time: every pair is compared, no early exit, so timing tells neither
    which digest nor which secret matched)."""
    matched = False
    for secret in secrets:
        expected = _hex_hmac(secret, message)
        for digest in parsed.digests:
            matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise SignatureMismatch("the signature does not match the request")


def verify_request(
    secrets: Sequence[str],
    header: str | None,
    method: str,
    target: str,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> SignatureHeader:
    """Check a booking platform request (``v2``); raises a :class:`SignatureError`."""
    parsed = parse_header(header, REQUEST_SCHEME)
    check_freshness(parsed, now, tolerance)
    check_digest(secrets, parsed, request_message(parsed.timestamp, method, target, body))
    return parsed
