"""HMAC request signatures between calbridge and the booking platform (both directions).

Header ``X-Calbridge-Signature: t=<unix seconds>,v1=<hex>`` where ``v1`` is the hex
HMAC-SHA256 of ``"{t}.{raw body}"`` under the organization's shared secret. Several ``v1``
values may be sent (a secret being rotated): one match is enough. Requests whose timestamp is
more than ``tolerance`` seconds from now, either way, are refused, which bounds replays to that
window (a replayed intake request is harmless: the intake is idempotent). Comparison is constant
time (:func:`hmac.compare_digest`).

Errors are typed (:class:`SignatureMissing`, :class:`SignatureMalformed`,
:class:`SignatureExpired`, :class:`SignatureMismatch`), each with a short ``code`` the HTTP layer
returns. They never carry the secret or the expected digest.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Calbridge-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
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


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value signing ``body`` at ``timestamp`` (unix seconds)."""
    return f"t={int(timestamp)},v1={_digest(secret, body, int(timestamp))}"


def parse_header(header: str | None) -> SignatureHeader:
    """Split a header value into its timestamp and ``v1`` digests (unknown schemes ignored)."""
    if header is None or not header.strip():
        raise SignatureMissing(f"the {SIGNATURE_HEADER} header is missing")
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureMalformed(f"the {SIGNATURE_HEADER} header is too long")
    timestamp: int | None = None
    digests: list[str] = []
    for item in header.split(","):
        name, separator, value = item.strip().partition("=")
        if not separator:
            raise SignatureMalformed(f"{SIGNATURE_HEADER} must look like t=<unix>,v1=<hex>")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureMalformed(f"{SIGNATURE_HEADER}: t must be one unix time in seconds")
            timestamp = int(value)
        elif name == "v1":
            if not _HEX_DIGEST.match(value):
                raise SignatureMalformed(
                    f"{SIGNATURE_HEADER}: v1 must be 64 hex digits (HMAC-SHA256)"
                )
            digests.append(value.lower())
    if timestamp is None or not digests:
        raise SignatureMalformed(f"{SIGNATURE_HEADER} must carry both t= and v1=")
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


def check_digest(secret: str, parsed: SignatureHeader, body: bytes) -> None:
    """Refuse unless one of the header's digests is the HMAC of this body (constant time)."""
    expected = _digest(secret, body, parsed.timestamp)
    # Compare against every digest (no early exit) so timing does not tell which one matched.
    matched = False
    for digest in parsed.digests:
        matched |= hmac.compare_digest(expected, digest)
    if not matched:
        raise SignatureMismatch("the signature does not match the request body")


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> SignatureHeader:
    """Check a signed request; returns the parsed header, raises a :class:`SignatureError`."""
    parsed = parse_header(header)
    check_freshness(parsed, now, tolerance)
    check_digest(secret, parsed, body)
    return parsed
