"""Self-signed certificates for OAuth certificate credentials in tests: the PEM certificate an
app registration (the simulator's ``oauthClients[].certificates``) holds, and the PEM
certificate + private key that calbridge's Key Vault secret holds."""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field

from devhost.app_certificate import self_signed_pem


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
    key_pem, certificate_pem = self_signed_pem(
        common_name, valid_from=datetime.timedelta(days=1), valid_for=datetime.timedelta(days=365)
    )
    return SampleCertificate(certificate_pem=certificate_pem, key_pem=key_pem)
