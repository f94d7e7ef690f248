"""Request and webhook signatures: signing, verification, and each way a signature is refused."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared.booking.signature import (
    SignatureExpired,
    SignatureHeader,
    SignatureMalformed,
    SignatureMismatch,
    SignatureMissing,
    parse_header,
    sign_request,
    sign_webhook,
    verify_request,
)

SECRET = "s3cret-for-tests"
NOW = 1_800_000_000
TARGET = "/api/orgs/acme/appointments/apt-1"


def sign(secret: str, body: bytes, timestamp: int, target: str = TARGET) -> str:
    return sign_request(secret, "PUT", target, body, timestamp)


def verify(
    secret: str | list[str], header: str | None, body: bytes, now: float, target: str = TARGET
) -> SignatureHeader:
    secrets = [secret] if isinstance(secret, str) else secret
    return verify_request(secrets, header, "PUT", target, body, now=now)


def test_a_request_header_is_the_hex_hmac_of_timestamp_method_target_and_body() -> None:
    body = b'{"version":1}'
    message = b"1800000000.PUT." + TARGET.encode() + b"." + body
    expected = hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    assert sign_request(SECRET, "put", TARGET, body, NOW) == f"t=1800000000,v2={expected}"


def test_a_webhook_header_is_the_hex_hmac_of_timestamp_and_body() -> None:
    body = b'{"id":"e1"}'
    expected = hmac.new(SECRET.encode(), b"1800000000." + body, hashlib.sha256).hexdigest()
    assert sign_webhook(SECRET, body, NOW) == f"t=1800000000,v1={expected}"


def test_a_correct_signature_verifies() -> None:
    body = b'{"a": 1}'
    parsed = verify(SECRET, sign(SECRET, body, NOW), body, now=NOW + 10)
    assert parsed.timestamp == NOW


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("PUT", "/api/orgs/acme/appointments/apt-2"),  # another appointment
        ("PUT", "/api/orgs/other/appointments/apt-1"),  # another organization
        ("DELETE", TARGET),  # another method
        ("PUT", TARGET + "?x=1"),  # another query
    ],
)
def test_a_signature_covers_the_method_and_the_target(method: str, target: str) -> None:
    header = sign(SECRET, b"{}", NOW)
    with pytest.raises(SignatureMismatch):
        verify_request([SECRET], header, method, target, b"{}", now=NOW)


def test_a_body_only_v1_signature_is_refused_for_requests_naming_v2() -> None:
    with pytest.raises(SignatureMalformed, match=r"v1 is not accepted here.*\(v2\)"):
        verify(SECRET, sign_webhook(SECRET, b"{}", NOW), b"{}", now=NOW)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_refused(header: str | None) -> None:
    with pytest.raises(SignatureMissing):
        verify(SECRET, header, b"", now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "t=abc,v2=" + "0" * 64,
        "t=1800000000",
        "v2=" + "0" * 64,
        "t=1800000000,v2=xyz",
        "t=1800000000,v2=" + "0" * 63,
        "t=1,t=2,v2=" + "0" * 64,
        "t=-5,v2=" + "0" * 64,
        "t=1800000000,v2=" + "0" * 64 + "," * 2000,
    ],
)
def test_malformed_header_is_refused(header: str) -> None:
    with pytest.raises(SignatureMalformed):
        verify(SECRET, header, b"", now=NOW)


@pytest.mark.parametrize("skew", [301, -301, 10_000])
def test_timestamp_outside_tolerance_is_refused_either_way(skew: int) -> None:
    header = sign(SECRET, b"x", NOW)
    with pytest.raises(SignatureExpired):
        verify(SECRET, header, b"x", now=NOW + skew)


def test_a_timestamp_too_large_for_a_float_is_refused_as_expired() -> None:
    # 400 digits: subtracting it from a float clock overflows; it must still be a 401, not a crash.
    header = f"t={'9' * 400},v2={'0' * 64}"
    with pytest.raises(SignatureExpired):
        verify(SECRET, header, b"", now=NOW + 0.5)  # the clock is a float (time.time())


@pytest.mark.parametrize("skew", [300, -300, 0])
def test_timestamp_at_the_tolerance_edge_is_accepted(skew: int) -> None:
    verify(SECRET, sign(SECRET, b"x", NOW), b"x", now=NOW + skew)


def test_other_body_or_secret_or_timestamp_is_a_mismatch() -> None:
    header = sign(SECRET, b"body", NOW)
    with pytest.raises(SignatureMismatch):
        verify(SECRET, header, b"body!", now=NOW)
    with pytest.raises(SignatureMismatch):
        verify("another-secret", header, b"body", now=NOW)
    forged = header.replace("t=1800000000", "t=1800000001")
    with pytest.raises(SignatureMismatch):
        verify(SECRET, forged, b"body", now=NOW)


def test_any_of_several_digests_may_match_and_any_of_several_secrets() -> None:
    new = sign("new-secret", b"b", NOW).split(",")[1]
    old = sign(SECRET, b"b", NOW)
    verify(SECRET, f"{old},{new}", b"b", now=NOW)
    verify("new-secret", f"{old},{new}", b"b", now=NOW)
    # calbridge holding the current and the previous secret during a rotation
    verify(["new-secret", SECRET], old, b"b", now=NOW)
    with pytest.raises(SignatureMismatch):
        verify(["new-secret", "older-still"], old, b"b", now=NOW)


def test_upper_case_hex_and_unknown_schemes_are_tolerated() -> None:
    header = sign(SECRET, b"b", NOW).upper().replace("T=", "t=").replace("V2=", "v2=")
    verify(SECRET, header + ",v0=whatever", b"b", now=NOW)


def test_errors_never_carry_the_secret_or_the_expected_digest() -> None:
    expected = sign(SECRET, b"b", NOW).split("v2=")[1]
    with pytest.raises(SignatureMismatch) as caught:
        verify(SECRET, f"t={NOW},v2={'0' * 64}", b"b", now=NOW)
    assert SECRET not in str(caught.value)
    assert expected not in str(caught.value)


@given(
    secret=st.text(min_size=1),
    body=st.binary(),
    target=st.text(min_size=1).map(lambda text: "/" + text),
    timestamp=st.integers(0, 2**40),
)
def test_property_every_signed_request_verifies(
    secret: str, body: bytes, target: str, timestamp: int
) -> None:
    parsed = verify(
        secret, sign(secret, body, timestamp, target), body, now=timestamp, target=target
    )
    assert parsed.timestamp == timestamp


@given(
    secret=st.text(min_size=1),
    body=st.binary(),
    other=st.binary(),
    timestamp=st.integers(0, 2**40),
)
def test_property_a_different_body_never_verifies(
    secret: str, body: bytes, other: bytes, timestamp: int
) -> None:
    assume(other != body)
    with pytest.raises(SignatureMismatch):
        verify(secret, sign(secret, body, timestamp), other, now=timestamp)


@given(st.text(max_size=200))
def test_property_any_header_text_parses_or_raises_a_typed_error(header: str) -> None:
    try:
        parsed = parse_header(header)
    except (SignatureMissing, SignatureMalformed):
        return
    assert parsed.timestamp >= 0
    assert parsed.digests
    assert all(len(d) == 64 and int(d, 16) >= 0 for d in parsed.digests)
