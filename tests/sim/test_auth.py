"""Authentication at the HTTP level: EWS Basic and a genuine NTLM handshake (pyspnego as the
client, over one keep-alive connection), Bearer tokens for Graph and EWS, and 401 challenges."""

from __future__ import annotations

import base64

import httpx
import pytest
import spnego

from sim.server import RunningSimulator
from tests.sim.conftest import (
    ANN,
    BOB,
    CLIENT_ID,
    EWS_SCOPE,
    GRAPH_SCOPE,
    PASSWORDS,
    SERVICE,
    SimTokenCredential,
    user_credential,
)

SOAP_BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages">
  <soap:Header><t:RequestServerVersion Version="Exchange2016"/></soap:Header>
  <soap:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>
  <m:FolderIds><t:DistinguishedFolderId Id="calendar"/></m:FolderIds></m:GetFolder></soap:Body>
</soap:Envelope>"""
SOAP_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def ntlm_handshake(
    client: httpx.Client, url: str, username: str, password: str, scheme: str = "NTLM"
) -> httpx.Response:
    context = spnego.client(username, password, protocol="ntlm")
    negotiate = context.step()
    assert negotiate is not None
    first = client.post(
        url,
        content=SOAP_BODY,
        headers={
            **SOAP_HEADERS,
            "Authorization": f"{scheme} {base64.b64encode(negotiate).decode()}",
        },
    )
    assert first.status_code == 401
    [challenge] = [
        value
        for value in first.headers.get_list("www-authenticate")
        if value.startswith(f"{scheme} ")
    ]
    authenticate = context.step(base64.b64decode(challenge.split(" ", 1)[1]))
    assert authenticate is not None
    return client.post(
        url,
        content=SOAP_BODY,
        headers={
            **SOAP_HEADERS,
            "Authorization": f"{scheme} {base64.b64encode(authenticate).decode()}",
        },
    )


def test_ews_without_credentials_offers_negotiate_ntlm_and_basic(
    simulator: RunningSimulator,
) -> None:
    response = httpx.post(simulator.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
    assert response.status_code == 401
    challenges = response.headers.get_list("www-authenticate")
    assert challenges[:2] == ["Negotiate", "NTLM"]
    assert challenges[2].startswith("Basic realm=")


@pytest.mark.parametrize("username", [ANN, "CONTOSO\\ann", SERVICE])
def test_basic_with_the_right_password_gets_through(
    simulator: RunningSimulator, username: str
) -> None:
    address = ANN if username != SERVICE else SERVICE
    response = httpx.post(
        simulator.urls["ews"],
        content=SOAP_BODY,
        headers={**SOAP_HEADERS, "Authorization": basic(username, PASSWORDS[address])},
    )
    assert response.status_code != 401


@pytest.mark.parametrize(
    "header",
    [
        basic(ANN, "wrong"),
        basic(ANN, PASSWORDS[BOB]),
        basic("nobody@contoso.test", "x"),
        "Basic !!notbase64!!",
        "Digest username=ann",
    ],
)
def test_bad_credentials_are_refused(simulator: RunningSimulator, header: str) -> None:
    response = httpx.post(
        simulator.urls["ews"], content=SOAP_BODY, headers={**SOAP_HEADERS, "Authorization": header}
    )
    assert response.status_code == 401
    assert "NTLM" in response.headers.get_list("www-authenticate")


@pytest.mark.parametrize("username", [ANN, "CONTOSO\\ann"])
def test_ntlm_handshake_authenticates_the_connection(
    simulator: RunningSimulator, username: str
) -> None:
    with httpx.Client() as client:
        response = ntlm_handshake(client, simulator.urls["ews"], username, PASSWORDS[ANN])
        assert response.status_code != 401
        # IIS-style connection-based auth: the same connection needs no new handshake.
        again = client.post(simulator.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
        assert again.status_code != 401
    # A new connection does.
    fresh = httpx.post(simulator.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
    assert fresh.status_code == 401


def test_ntlm_inside_negotiate(simulator: RunningSimulator) -> None:
    with httpx.Client() as client:
        response = ntlm_handshake(
            client, simulator.urls["ews"], ANN, PASSWORDS[ANN], scheme="Negotiate"
        )
        assert response.status_code != 401


@pytest.mark.parametrize(
    ("username", "password"),
    [(ANN, "wrong password"), (ANN, PASSWORDS[BOB]), ("mallory@contoso.test", "x")],
)
def test_ntlm_with_a_wrong_password_is_refused(
    simulator: RunningSimulator, username: str, password: str
) -> None:
    with httpx.Client() as client:
        response = ntlm_handshake(client, simulator.urls["ews"], username, password)
        assert response.status_code == 401
        # The failed connection is not authenticated afterwards either.
        again = client.post(simulator.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
        assert again.status_code == 401


def test_graph_takes_only_bearer_tokens(simulator: RunningSimulator) -> None:
    url = f"{simulator.urls['graph']}/users/{ANN}/events"
    for headers in (
        {},
        {"Authorization": basic(ANN, PASSWORDS[ANN])},
        {"Authorization": "Bearer x.y.z"},
    ):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert response.headers["www-authenticate"].startswith("Bearer ")


def test_bearer_tokens_are_checked_for_audience(simulator: RunningSimulator) -> None:
    credential = SimTokenCredential(simulator)
    graph_token = credential.get_token(GRAPH_SCOPE).token
    ews_token = credential.get_token(EWS_SCOPE).token
    graph_url = f"{simulator.urls['graph']}/users/{ANN}/events"
    assert (
        httpx.get(graph_url, headers={"Authorization": f"Bearer {graph_token}"}).status_code != 401
    )
    assert httpx.get(graph_url, headers={"Authorization": f"Bearer {ews_token}"}).status_code == 401
    ews = simulator.urls["ews"]
    for token, expected_refused in ((ews_token, False), (graph_token, True)):
        response = httpx.post(
            ews, content=SOAP_BODY, headers={**SOAP_HEADERS, "Authorization": f"Bearer {token}"}
        )
        assert (response.status_code == 401) is expected_refused


def test_user_tokens_and_revocation(simulator: RunningSimulator) -> None:
    url = f"{simulator.urls['graph']}/users/{BOB}/events"
    token = user_credential(simulator, BOB).get_token(GRAPH_SCOPE).token
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(url, headers=headers).status_code != 401
    assert simulator.issuer.verify(token) is not None
    revoke = httpx.post(f"{simulator.urls['control']}/tokens/revoke", json={"subject": BOB})
    assert revoke.status_code == 200
    assert httpx.get(url, headers=headers).status_code == 401
    with pytest.raises(httpx.HTTPStatusError):
        user_credential(simulator, BOB).get_token(GRAPH_SCOPE)
    httpx.post(f"{simulator.urls['control']}/tokens/restore", json={"subject": BOB})
    fresh = user_credential(simulator, BOB).get_token(GRAPH_SCOPE).token
    assert httpx.get(url, headers={"Authorization": f"Bearer {fresh}"}).status_code != 401
    assert httpx.get(url, headers=headers).status_code == 401  # the old one stays revoked


def test_client_token_revocation_hits_only_that_client(simulator: RunningSimulator) -> None:
    app_token = SimTokenCredential(simulator).get_token(GRAPH_SCOPE).token
    ann_token = user_credential(simulator, ANN).get_token(GRAPH_SCOPE).token
    simulator.issuer.revoke(CLIENT_ID, block=False)
    try:
        assert simulator.issuer.verify(app_token) is None
        assert simulator.issuer.verify(ann_token) is not None
        assert simulator.issuer.verify(SimTokenCredential(simulator).get_token(GRAPH_SCOPE).token)
    finally:
        simulator.issuer.restore(CLIENT_ID)
