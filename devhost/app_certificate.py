"""The dev EWS application's certificate for ``make run``: a self-signed RSA certificate with
its key, made on the first run and kept in ``.calbridge/`` (owner-only) beside the simulator's
config. The simulator registers the certificate for the demo EWS application
(``sim.config.DEMO_EWS_CLIENT``); the app gets the PEM certificate with its key as the secret
``dev-ews-app-certificate``, as Key Vault keeps a certificate's secret, so an administrator can
switch the ``onprem`` connection to OAuth with ``credentialType`` certificate."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

FILE_NAME = "dev-ews-app.pem"


def app_certificate_path(config_path: Path) -> Path:
    """Where the certificate lives for a simulator config file written by ``make run``."""
    return config_path.with_name(FILE_NAME)


def self_signed_pem(
    common_name: str, *, valid_from: datetime.timedelta, valid_for: datetime.timedelta
) -> tuple[str, str]:
    """A new RSA-2048 self-signed certificate: (PEM private key, PEM certificate), valid from
    ``valid_from`` ago for ``valid_for``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - valid_from)
        .not_valid_after(now + valid_for)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode()


def load_or_create(path: Path) -> str:
    """The PEM private key followed by its certificate (made and stored on first use)."""
    if path.is_file():
        return path.read_text(encoding="utf-8")
    key_pem, certificate_pem = self_signed_pem(
        "calbridge dev EWS application",
        valid_from=datetime.timedelta(minutes=5),
        valid_for=datetime.timedelta(days=730),
    )
    text = key_pem + certificate_pem
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)
    return text


def certificate_part(pem: str) -> str:
    """The certificate alone (what the app registration, here the simulator, holds)."""
    start = pem.index("-----BEGIN CERTIFICATE-----")
    return pem[start:]
