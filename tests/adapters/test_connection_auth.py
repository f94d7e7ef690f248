"""Each way a connection authenticates, through the composition root and the simulator for
real: EWS with Basic, NTLM v2 and v1 (each also against a server that demands the other) and
OAuth (client secret or certificate through azure-identity), Graph with a client secret or a
certificate. Refusals come back as the port's ``AuthenticationFailed``; certificate material
never appears in a message."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.bootstrap import calendar_gateway
from shared.config import Settings
from shared.engine.marker import marker_for
from shared.exchange.oauth import CertificateInvalid
from shared.exchange.port import AuthenticationFailed, CalendarGateway, EventDraft
from shared.models import ConnectionConfig
from sim.server import RunningSimulator, start_simulator
from tests.adapters.test_ews_adapter import CONTRACT_TESTS
from tests.certificates import self_signed
from tests.contract.ews_world import ews_oauth_world
from tests.sim.conftest import (
    ANN,
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORDS,
    SERVICE,
    TENANT_ID,
    sample_config,
)

CERT_CLIENT = "6f5e4d3c-2b1a-4098-8776-655443322110"
CERTIFICATE = self_signed("calbridge-connection")
UNREGISTERED = self_signed("calbridge-unregistered")
_appointments = itertools.count(1)


def config(**overrides: Any) -> dict[str, Any]:
    made = sample_config(**overrides)
    made["oauthClients"].append(
        {
            "tenantId": TENANT_ID,
            "clientId": CERT_CLIENT,
            "certificates": [CERTIFICATE.certificate_pem],
            "mailboxes": ["*"],
        }
    )
    return made


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with start_simulator(config(), validate_ews=False) as running:
        yield running


@pytest.fixture
def simulator(sim: RunningSimulator) -> RunningSimulator:
    sim.store.reset_counters()
    return sim


def settings_for(sim: RunningSimulator) -> Settings:
    return Settings(
        graph_url=sim.urls["graph"],
        graph_authority=sim.urls["token"],
        graph_ca_bundle=sim.ca_bundle,
    )


def ews(sim: RunningSimulator, **fields: Any) -> ConnectionConfig:
    values: dict[str, Any] = {
        "kind": "ews",
        "ews_url": sim.urls["ews"],
        "auth_type": "ntlm",
        "username": SERVICE,
        "secret_reference": "onprem-secret",
    }
    values.update(fields)
    return ConnectionConfig(**values)


def oauth(kind: str, credential_type: str, client_id: str, sim: RunningSimulator) -> Any:
    fields: dict[str, Any] = {
        "kind": kind,
        "auth_type": "oauth",
        "tenant_id": TENANT_ID,
        "client_id": client_id,
        "credential_type": credential_type,
        "secret_reference": "app-credential",
    }
    if kind == "ews":
        fields["ews_url"] = sim.urls["ews"]
    return ConnectionConfig(**fields)


def draft(marker: str) -> EventDraft:
    start = datetime(2027, 3, 1, 9, 0, tzinfo=UTC) + timedelta(hours=next(_appointments))
    return EventDraft(
        subject="Account review",
        start=start,
        end=start + timedelta(minutes=30),
        time_zone="Europe/Berlin",
        location="Branch 1",
        body_text="Client: Jane Roe, +1 555 0100",
        marker=marker,
    )


def write_and_find(gateway: CalendarGateway) -> None:
    """One create in ann's calendar, then the event found by its marker."""

    async def scenario() -> None:
        marker = marker_for("auth-tests", f"appt-{next(_appointments)}")
        made = await gateway.create_event(ANN, draft(marker), f"tx-{marker}")
        found = await gateway.find_by_marker(ANN, marker)
        assert [event.item_id for event in found] == [made.item_id]

    async def run() -> None:
        try:
            await scenario()
        finally:
            closing = getattr(gateway, "aclose", None)
            if closing is not None:
                await closing()
            else:
                gateway.close()  # type: ignore[attr-defined]

    asyncio.run(run())


def build(sim: RunningSimulator, connection: ConnectionConfig, secret: str) -> CalendarGateway:
    return calendar_gateway(connection, secret, settings_for(sim), "conn-under-test")


# --- EWS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth_type", "ntlm_version", "logon"),
    [
        ("basic", None, None),
        ("ntlm", None, "auth:ntlm-v2"),
        ("ntlm", "v2", "auth:ntlm-v2"),
        ("ntlm", "v1", "auth:ntlm-v1"),
    ],
)
def test_ews_with_a_service_account_password(
    simulator: RunningSimulator, auth_type: str, ntlm_version: str | None, logon: str | None
) -> None:
    connection = ews(simulator, auth_type=auth_type, ntlm_version=ntlm_version)
    write_and_find(build(simulator, connection, PASSWORDS[SERVICE]))
    counters = simulator.store.counter_snapshot()
    logons = {name for name in counters if name.startswith("auth:")}
    assert logons == ({logon} if logon else set())


def test_ntlm_versions_do_not_leak_between_connections_of_one_process(
    simulator: RunningSimulator,
) -> None:
    """A v1 connection and a v2 connection side by side each send their own version."""
    v1 = build(simulator, ews(simulator, ntlm_version="v1"), PASSWORDS[SERVICE])
    v2 = calendar_gateway(
        ews(simulator, ntlm_version="v2"), PASSWORDS[SERVICE], settings_for(simulator), "other"
    )
    write_and_find(v1)
    write_and_find(v2)
    counters = simulator.store.counter_snapshot()
    assert counters["auth:ntlm-v1"] == {SERVICE: 1}
    assert counters["auth:ntlm-v2"] == {SERVICE: 1}


@pytest.mark.parametrize("process_level", ["0", "5"])
def test_the_process_lm_compat_level_does_not_change_a_connections_version(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch, process_level: str
) -> None:
    """pyspnego reads LM_COMPAT_LEVEL from the environment; a connection's version wins."""
    monkeypatch.setenv("LM_COMPAT_LEVEL", process_level)
    write_and_find(build(simulator, ews(simulator, ntlm_version="v1"), PASSWORDS[SERVICE]))
    write_and_find(build(simulator, ews(simulator, ntlm_version="v2"), PASSWORDS[SERVICE]))
    counters = simulator.store.counter_snapshot()
    assert counters["auth:ntlm-v1"] == {SERVICE: 1}
    assert counters["auth:ntlm-v2"] == {SERVICE: 1}


def test_a_server_that_demands_ntlm_v2_refuses_a_v1_connection_and_takes_a_v2_one() -> None:
    with start_simulator(config(ntlmCompatibilityLevel=5), validate_ews=False) as strict:
        v1 = build(strict, ews(strict, ntlm_version="v1"), PASSWORDS[SERVICE])
        with pytest.raises(AuthenticationFailed) as refused:
            write_and_find(v1)
        assert PASSWORDS[SERVICE] not in str(refused.value)
        # One refused handshake, given up at once: no retry, no request past authentication.
        assert strict.store.counter_snapshot() == {"auth:ntlm-v1-refused": {SERVICE: 1}}
        write_and_find(build(strict, ews(strict, ntlm_version="v2"), PASSWORDS[SERVICE]))
        assert "auth:ntlm-v1" not in strict.store.counter_snapshot()
        assert strict.store.counter_snapshot()["auth:ntlm-v2"] == {SERVICE: 1}


@pytest.mark.parametrize("refused_version", ["v2", None])
def test_a_server_that_demands_ntlm_v1_takes_a_v1_connection_and_refuses_a_v2_one(
    refused_version: str | None,
) -> None:
    """``ntlmVersions: ["v1"]``: the simulator's stand-in for a server without NTLMv2. A v2
    connection (v2 is also what a connection without ``ntlmVersion`` sends) is refused."""
    with start_simulator(config(ntlmVersions=["v1"]), validate_ews=False) as v1_only:
        v2 = build(v1_only, ews(v1_only, ntlm_version=refused_version), PASSWORDS[SERVICE])
        with pytest.raises(AuthenticationFailed) as refused:
            write_and_find(v2)
        assert PASSWORDS[SERVICE] not in str(refused.value)
        # One refused handshake, given up at once: no retry, no request past authentication.
        assert v1_only.store.counter_snapshot() == {"auth:ntlm-v2-refused": {SERVICE: 1}}
        v1_only.store.reset_counters()
        write_and_find(build(v1_only, ews(v1_only, ntlm_version="v1"), PASSWORDS[SERVICE]))
        counters = v1_only.store.counter_snapshot()
        assert counters["auth:ntlm-v1"] == {SERVICE: 1}
        assert {name for name in counters if name.startswith("auth:")} == {"auth:ntlm-v1"}
        assert counters["ews:CreateItem"] == {ANN: 1}


@pytest.mark.parametrize(
    ("credential_type", "client_id", "secret"),
    [
        ("secret", CLIENT_ID, CLIENT_SECRET),
        ("certificate", CERT_CLIENT, CERTIFICATE.secret),
    ],
)
@pytest.mark.parametrize("kind", ["ews", "graph"])
def test_oauth_with_a_client_secret_or_a_certificate(
    simulator: RunningSimulator, kind: str, credential_type: str, client_id: str, secret: str
) -> None:
    write_and_find(build(simulator, oauth(kind, credential_type, client_id, simulator), secret))
    counters = simulator.store.counter_snapshot()
    assert not [name for name in counters if name.startswith("auth:")]  # no NTLM, no Basic
    assert counters[f"token:client-{credential_type}"] == {client_id.lower(): 1}


@pytest.mark.parametrize("kind", ["ews", "graph"])
def test_an_unregistered_certificate_is_an_authentication_failure(
    simulator: RunningSimulator, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = build(
        simulator, oauth(kind, "certificate", CERT_CLIENT, simulator), UNREGISTERED.secret
    )
    with pytest.raises(AuthenticationFailed) as refused:
        write_and_find(gateway)
    assert "token endpoint refused" in str(refused.value)
    for text in (str(refused.value), caplog.text):
        assert "PRIVATE KEY" not in text
        assert UNREGISTERED.key_pem.splitlines()[1] not in text


@pytest.mark.parametrize("kind", ["ews", "graph"])
def test_a_wrong_client_secret_is_an_authentication_failure(
    simulator: RunningSimulator, kind: str
) -> None:
    gateway = build(simulator, oauth(kind, "secret", CLIENT_ID, simulator), "not-the-secret")
    with pytest.raises(AuthenticationFailed) as refused:
        write_and_find(gateway)
    assert "not-the-secret" not in str(refused.value)


BROKEN_PEMS = {
    "not PEM at all": "just-a-client-secret",
    "certificate without its key": CERTIFICATE.certificate_pem,
    "key without its certificate": CERTIFICATE.key_pem,
    "key of another certificate": UNREGISTERED.key_pem + CERTIFICATE.certificate_pem,
    "truncated key": CERTIFICATE.key_pem[:200] + CERTIFICATE.certificate_pem,
}


@pytest.mark.parametrize("kind", ["ews", "graph"])
@pytest.mark.parametrize("broken", sorted(BROKEN_PEMS))
def test_invalid_certificate_material_is_refused_naming_the_connection_and_reference_only(
    simulator: RunningSimulator, kind: str, broken: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = BROKEN_PEMS[broken]
    with pytest.raises(CertificateInvalid) as refused:
        build(simulator, oauth(kind, "certificate", CERT_CLIENT, simulator), secret)
    message = str(refused.value)
    assert "connection 'conn-under-test'" in message
    assert "'app-credential'" in message
    assert isinstance(refused.value, AuthenticationFailed)
    assert refused.value.__cause__ is None
    assert refused.value.__context__ is None
    for line in secret.splitlines():
        if len(line) > 8 and "-----" not in line:
            assert line not in message
            assert line not in caplog.text


@pytest.mark.parametrize("name", sorted(CONTRACT_TESTS))
def test_the_port_contract_holds_over_ews_with_oauth_and_a_certificate(
    name: str, request: pytest.FixtureRequest
) -> None:
    with ews_oauth_world(request) as world:
        CONTRACT_TESTS[name](world)
