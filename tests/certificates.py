"""Self-signed certificates for OAuth certificate credentials in tests: the PEM certificate an
app registration (the simulator's ``oauthClients[].certificates``) holds, and the PEM
certificate + private key that calbridge's Key Vault secret holds."""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class SampleCertificate:
    certificate_pem: str
    key_pem: str = field(repr=False)

    @property
    def secret(self) -> str:
        """What Key Vault keeps as a certificate's secret (PEM): the key and the certificate."""
        return self.key_pem + self.certificate_pem


@functools.cache
def self_signed(common_name: str = "calbridge-test") -> SampleCertificate:
    """One RSA-2048 self-signed certificate per name (cached: key generation takes a while)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return SampleCertificate(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    )
