"""Authentication at the HTTP level: EWS Basic and a genuine NTLM handshake (pyspnego as the
client, over one keep-alive connection), Bearer tokens for Graph and EWS, and 401 challenges."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
import spnego

from shared.exchange.ews.auth import ntlm_context
from sim.auth import ntlm_refusal, ntlm_response_kind
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
    sample_config,
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
    client: httpx.Client,
    url: str,
    username: str,
    password: str,
    scheme: str = "NTLM",
    version: str | None = None,
) -> httpx.Response:
    """A genuine NTLM handshake on one connection; ``version`` "v1" or "v2" pins the response
    the client sends (None: pyspnego's default, v2)."""
    if version is None:
        context = spnego.client(username, password, protocol="ntlm")
    else:
        context = ntlm_context(username, password, version)  # type: ignore[arg-type]
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


# --- LAN Manager authentication level ---------------------------------------------------------
# https://learn.microsoft.com/previous-versions/windows/it-pro/windows-10/security/threat-protection/security-policy-settings/network-security-lan-manager-authentication-level
# Server side: levels 0-3 accept LM, NTLM and NTLMv2 responses; 4 refuses LM; 5 refuses LM and
# NTLM (NTLMv2 only). No level refuses NTLMv2: ``ntlmVersions: ["v1"]`` is the simulator's own
# setting for a server that predates NTLMv2 ("Windows NT 4.0 computers prior to SP4 do not
# support NTLMv2", https://technet.microsoft.com/en-us/library/cc938105.aspx).


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_at_the_default_level_both_ntlm_versions_are_accepted_and_told_apart(
    simulator: RunningSimulator, version: str
) -> None:
    assert simulator.config.ntlm_compatibility_level == 3
    simulator.store.reset_counters()
    with httpx.Client() as client:
        response = ntlm_handshake(
            client, simulator.urls["ews"], SERVICE, PASSWORDS[SERVICE], version=version
        )
    assert response.status_code != 401
    counters = simulator.store.counter_snapshot()
    assert counters.get(f"auth:ntlm-{version}") == {SERVICE: 1}
    other = "v2" if version == "v1" else "v1"
    assert f"auth:ntlm-{other}" not in counters


def test_level_5_refuses_ntlm_v1_and_accepts_ntlm_v2(start_sim: Any) -> None:
    strict = start_sim(sample_config(ntlmCompatibilityLevel=5))
    with httpx.Client() as client:
        refused = ntlm_handshake(
            client, strict.urls["ews"], SERVICE, PASSWORDS[SERVICE], version="v1"
        )
        assert refused.status_code == 401
        # The refused connection stays unauthenticated.
        again = client.post(strict.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
        assert again.status_code == 401
    with httpx.Client() as client:
        accepted = ntlm_handshake(
            client, strict.urls["ews"], SERVICE, PASSWORDS[SERVICE], version="v2"
        )
        assert accepted.status_code != 401
    assert "auth:ntlm-v1" not in strict.store.counter_snapshot()


def test_a_v1_only_server_refuses_ntlm_v2_and_accepts_ntlm_v1(start_sim: Any) -> None:
    v1_only = start_sim(sample_config(ntlmVersions=["v1"]))
    assert v1_only.config.ntlm_versions == {"v1"}
    assert v1_only.config.ntlm_compatibility_level == 3
    with httpx.Client() as client:
        refused = ntlm_handshake(
            client, v1_only.urls["ews"], SERVICE, PASSWORDS[SERVICE], version="v2"
        )
        assert refused.status_code == 401
        again = client.post(v1_only.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
        assert again.status_code == 401
    with httpx.Client() as client:
        # pyspnego's own default is v2 as well.
        assert ntlm_handshake(client, v1_only.urls["ews"], ANN, PASSWORDS[ANN]).status_code == 401
    with httpx.Client() as client:
        accepted = ntlm_handshake(
            client, v1_only.urls["ews"], "CONTOSO\\svc", PASSWORDS[SERVICE], version="v1"
        )
        assert accepted.status_code != 401
        # The connection is authenticated from then on, as after any NTLM logon.
        again = client.post(v1_only.urls["ews"], content=SOAP_BODY, headers=SOAP_HEADERS)
        assert again.status_code != 401
    counters = v1_only.store.counter_snapshot()
    assert counters["auth:ntlm-v1"] == {SERVICE: 1}
    assert counters["auth:ntlm-v2-refused"] == {SERVICE: 1, ANN: 1}
    assert "auth:ntlm-v2" not in counters


def test_refusing_v2_looks_to_the_client_as_refusing_v1_at_level_5_does(start_sim: Any) -> None:
    """The same 401 with the same challenges, as for a wrong password: a client cannot tell
    which rule refused it."""

    def refusal(config: dict[str, Any], version: str, password: str) -> tuple[int, list[str]]:
        running = start_sim(config)
        with httpx.Client() as client:
            answer = ntlm_handshake(client, running.urls["ews"], SERVICE, password, version=version)
        return answer.status_code, answer.headers.get_list("www-authenticate")

    v1_only = refusal(sample_config(ntlmVersions=["v1"]), "v2", PASSWORDS[SERVICE])
    level_5 = refusal(sample_config(ntlmCompatibilityLevel=5), "v1", PASSWORDS[SERVICE])
    wrong_password = refusal(sample_config(), "v2", "not the password")
    assert v1_only == level_5 == wrong_password
    assert v1_only[0] == 401
    assert v1_only[1][:2] == ["Negotiate", "NTLM"]


@pytest.mark.parametrize("versions", [["v2"], ["v1", "v2"]])
def test_a_server_that_implements_ntlm_v2_takes_it(start_sim: Any, versions: list[str]) -> None:
    running = start_sim(sample_config(ntlmVersions=versions))
    with httpx.Client() as client:
        response = ntlm_handshake(
            client, running.urls["ews"], SERVICE, PASSWORDS[SERVICE], version="v2"
        )
    assert response.status_code != 401
    assert running.store.counter_snapshot()["auth:ntlm-v2"] == {SERVICE: 1}


@pytest.mark.parametrize(
    ("level", "kind", "refused"),
    [
        (0, "lm", False),
        (3, "lm", False),
        (3, "v1", False),
        (4, "lm", True),
        (4, "v1", False),
        (5, "lm", True),
        (5, "v1", True),
        *[(level, "v2", False) for level in range(6)],
    ],
)
def test_which_responses_each_level_refuses(level: int, kind: str, refused: bool) -> None:
    assert (ntlm_refusal(level, kind) is not None) is refused


@pytest.mark.parametrize(
    ("level", "versions", "kind", "refused"),
    [
        (3, {"v1"}, "v2", True),
        (3, {"v1"}, "v1", False),
        (3, {"v1"}, "lm", False),  # LM follows the level alone
        (4, {"v1"}, "lm", True),
        (4, {"v1"}, "v1", False),
        (3, {"v2"}, "v1", True),
        (3, {"v2"}, "v2", False),
        (5, {"v2"}, "v1", True),
        (5, {"v1", "v2"}, "v2", False),
        (0, {"v1", "v2"}, "v1", False),
    ],
)
def test_a_response_needs_both_the_level_and_the_versions(
    level: int, versions: set[str], kind: str, refused: bool
) -> None:
    assert (ntlm_refusal(level, kind, frozenset(versions)) is not None) is refused


def test_the_default_is_both_versions() -> None:
    from sim.config import parse_config

    assert parse_config(sample_config()).ntlm_versions == {"v1", "v2"}
    assert parse_config(sample_config(ntlmVersions=["v2", "v1"])).ntlm_versions == {"v1", "v2"}


@pytest.mark.parametrize(
    "versions", [[], ["v3"], "v1", ["V1"], ["v1", "v1"], [1], None, {"v1": True}]
)
def test_bad_ntlm_versions_are_a_config_error(versions: Any) -> None:
    from sim.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="ntlmVersions"):
        parse_config(sample_config(ntlmVersions=versions))


def test_v1_only_at_level_5_accepts_nothing_and_is_a_config_error() -> None:
    from sim.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"ntlmVersions.*ntlmCompatibilityLevel 5"):
        parse_config(sample_config(ntlmVersions=["v1"], ntlmCompatibilityLevel=5))


def test_the_response_kind_is_read_from_the_nt_response_length() -> None:
    def authenticate(nt_length: int) -> bytes:
        header = b"NTLMSSP\x00" + (3).to_bytes(4, "little") + bytes(8)
        return header + nt_length.to_bytes(2, "little") + bytes(6) + bytes(40)

    assert ntlm_response_kind(authenticate(0)) == "lm"
    assert ntlm_response_kind(authenticate(24)) == "v1"
    assert ntlm_response_kind(authenticate(130)) == "v2"
    assert ntlm_response_kind(b"NTLMSSP\x00") == ""


@pytest.mark.parametrize("level", [-1, 6, "5", True])
def test_an_out_of_range_level_is_a_config_error(level: Any) -> None:
    from sim.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="ntlmCompatibilityLevel"):
        parse_config(sample_config(ntlmCompatibilityLevel=level))
