"""The token endpoint's certificate credentials, as Microsoft identity platform documents them
(https://learn.microsoft.com/entra/identity-platform/certificate-credentials): client_credentials
with ``client_assertion_type`` ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a
``client_assertion`` JWT — header ``alg`` RS256 (or PS256) and ``x5t`` the base64url SHA-1
thumbprint of the certificate (or ``x5t#S256``); claims ``aud`` the token endpoint, ``iss`` and
``sub`` the client id, ``exp``, ``nbf``, ``jti`` — signed with the private key of a certificate
registered for the application."""

from __future__ import annotations

import base64
import json
import ssl
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from sim.server import RunningSimulator
from tests.certificates import SampleCertificate, self_signed
from tests.sim.conftest import ANN, EWS_SCOPE, GRAPH_SCOPE, TENANT_ID, sample_config

CERT_CLIENT = "3e1f0c2a-8b7d-4c6e-9f5a-1d2c3b4a5e6f"
REGISTERED = self_signed("registered")
STRANGER = self_signed("stranger")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def config_with_certificate_client() -> dict[str, Any]:
    config = sample_config()
    config["oauthClients"].append(
        {
            "tenantId": TENANT_ID,
            "clientId": CERT_CLIENT,
            "certificates": [REGISTERED.certificate_pem],
            "mailboxes": [ANN],
        }
    )
    return config


@pytest.fixture(scope="module")
def sim() -> Any:
    from sim.server import start_simulator

    with start_simulator(config_with_certificate_client()) as running:
        yield running


def token_url(sim: RunningSimulator) -> str:
    return f"{sim.urls['token']}/{TENANT_ID}/oauth2/v2.0/token"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def assertion(
    sim: RunningSimulator,
    certificate: SampleCertificate = REGISTERED,
    *,
    algorithm: str = "RS256",
    thumbprint_header: str = "x5t",
    claims: dict[str, Any] | None = None,
    tamper: bool = False,
) -> str:
    cert = x509.load_pem_x509_certificate(certificate.certificate_pem.encode())
    key: Any = serialization.load_pem_private_key(certificate.key_pem.encode(), password=None)
    digest = hashes.SHA1() if thumbprint_header == "x5t" else hashes.SHA256()  # noqa: S303
    header = {"alg": algorithm, "typ": "JWT", thumbprint_header: b64url(cert.fingerprint(digest))}
    now = int(time.time())
    body = {
        "aud": token_url(sim),
        "iss": CERT_CLIENT,
        "sub": CERT_CLIENT,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + 600,
        **(claims or {}),
    }
    signed = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(body).encode())}"
    chosen = (
        padding.PKCS1v15()
        if algorithm == "RS256"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    )
    signature = key.sign(signed.encode(), chosen, hashes.SHA256())
    if tamper:
        signature = bytes([signature[0] ^ 1]) + signature[1:]
    return f"{signed}.{b64url(signature)}"


def post_assertion(sim: RunningSimulator, client_assertion: str, **form: str) -> httpx.Response:
    data = {
        "grant_type": "client_credentials",
        "client_id": CERT_CLIENT,
        "scope": GRAPH_SCOPE,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion,
        **form,
    }
    trust = ssl.create_default_context(cafile=sim.ca_bundle)
    return httpx.post(token_url(sim), data=data, verify=trust, timeout=10)


def test_azure_identity_certificate_credential_gets_tokens_for_graph_and_ews(
    sim: RunningSimulator,
) -> None:
    from azure.identity import CertificateCredential

    credential = CertificateCredential(
        TENANT_ID,
        CERT_CLIENT,
        certificate_data=REGISTERED.secret.encode(),
        authority=sim.urls["token"].split("://", 1)[1],
        disable_instance_discovery=True,
        connection_verify=sim.ca_bundle,
    )
    for scope, audience in (
        (GRAPH_SCOPE, "https://graph.microsoft.com"),
        (EWS_SCOPE, "https://outlook.office365.com"),
    ):
        token = credential.get_token(scope)
        principal = sim.issuer.verify(token.token, audience=audience)
        assert principal is not None
        assert (principal.kind, principal.name) == ("app", CERT_CLIENT)
        assert principal.app_mailboxes == frozenset({ANN})
    assert sim.store.counter_snapshot()["token:client-certificate"] == {CERT_CLIENT.lower(): 2}


@pytest.mark.parametrize(
    ("algorithm", "thumbprint_header"), [("RS256", "x5t"), ("PS256", "x5t#S256")]
)
def test_rs256_with_x5t_and_ps256_with_x5t_s256_are_accepted(
    sim: RunningSimulator, algorithm: str, thumbprint_header: str
) -> None:
    response = post_assertion(
        sim, assertion(sim, algorithm=algorithm, thumbprint_header=thumbprint_header)
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_an_unregistered_certificate_is_refused_by_azure_identity_too(
    sim: RunningSimulator,
) -> None:
    from azure.identity import CertificateCredential

    credential = CertificateCredential(
        TENANT_ID,
        CERT_CLIENT,
        certificate_data=STRANGER.secret.encode(),
        authority=sim.urls["token"].split("://", 1)[1],
        disable_instance_discovery=True,
        connection_verify=sim.ca_bundle,
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS700027"):
        credential.get_token(GRAPH_SCOPE)


Broken = Callable[[RunningSimulator], str]


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda sim: assertion(sim, STRANGER), "AADSTS700027"),
        (lambda sim: assertion(sim, tamper=True), "AADSTS700027"),
        (lambda sim: assertion(sim, claims={"aud": "https://elsewhere/token"}), "AADSTS70002"),
        (lambda sim: assertion(sim, claims={"iss": "someone-else"}), "AADSTS700021"),
        (
            lambda sim: assertion(sim, claims={"exp": int(time.time()) - 3600}),
            "AADSTS700024",
        ),
        (
            lambda sim: assertion(sim, claims={"nbf": int(time.time()) + 3600}),
            "AADSTS700024",
        ),
        # (signed with the RSA key all the same: the header's algorithm is what is refused)
        (lambda sim: assertion(sim, algorithm="HS256"), "AADSTS5002738"),
        (lambda sim: "not.a.jwt", "AADSTS50027"),
    ],
)
def test_a_bad_assertion_is_refused_as_invalid_client(
    sim: RunningSimulator, make: Broken, code: str
) -> None:
    response = post_assertion(sim, make(sim))
    assert response.status_code == 401
    answer = response.json()
    assert answer["error"] == "invalid_client"
    assert answer["error_description"].startswith(code + ":")


def test_the_assertion_type_must_be_jwt_bearer(sim: RunningSimulator) -> None:
    response = post_assertion(sim, assertion(sim), client_assertion_type="urn:other")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_a_certificate_only_client_has_no_client_secret(sim: RunningSimulator) -> None:
    trust = ssl.create_default_context(cafile=sim.ca_bundle)
    response = httpx.post(
        token_url(sim),
        data={
            "grant_type": "client_credentials",
            "client_id": CERT_CLIENT,
            "client_secret": "",
            "scope": GRAPH_SCOPE,
        },
        verify=trust,
        timeout=10,
    )
    assert response.status_code == 401
    assert response.json()["error_description"].startswith("AADSTS7000215")


def test_a_client_needs_a_secret_or_a_certificate() -> None:
    from sim.config import ConfigError, parse_config

    config = sample_config()
    del config["oauthClients"][0]["clientSecret"]
    with pytest.raises(ConfigError, match="clientSecret or certificates"):
        parse_config(config)
    config["oauthClients"][0]["certificates"] = ["not a certificate"]
    with pytest.raises(ConfigError, match="certificates"):
        parse_config(config)
