"""The simulator as a whole: configuration, ``python -m sim``, the token endpoint with
azure-identity, the control API over HTTP, and faults the server carries out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sim.config import ConfigError, demo_config, load_config
from sim.server import RunningSimulator, start_simulator
from sim.store import Fault
from tests.sim.conftest import (
    ANN,
    BOB,
    CARA,
    CLIENT_ID,
    CLIENT_SECRET,
    GRAPH_SCOPE,
    LIMITED_CLIENT_ID,
    PASSWORDS,
    TENANT_ID,
    SimTokenCredential,
    graph_client,
    run_async,
    sample_config,
)
from tests.sim.test_auth import ntlm_handshake

REPO = Path(__file__).resolve().parents[2]
URL_KEYS = {"ews", "graph", "token", "control", "booking", "caBundle"}


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mailboxes": [{"name": "no address"}]}, "mailboxes[0]: missing 'address'"),
        ({"mailboxes": [{"address": "ann"}]}, "not an SMTP address"),
        (
            {"mailboxes": [{"address": ANN, "timeZone": "Mars/Olympus"}]},
            "unknown timeZone 'Mars/Olympus'",
        ),
        (
            {"mailboxes": [{"address": ANN}, {"address": "ANN@contoso.test"}]},
            "duplicate address",
        ),
        (
            {
                "serviceAccounts": [
                    {"username": "s@contoso.test", "password": "p", "impersonate": ["x@y.z"]}
                ]
            },
            "serviceAccounts[0].impersonate: unknown mailbox(es) x@y.z",
        ),
        ({"oauthClients": [{"clientId": "c", "clientSecret": "s"}]}, "missing 'tenantId'"),
        ({"tokenLifetimeSeconds": 0}, "tokenLifetimeSeconds"),
        ({"bookingPlatform": {"secrets": ["x"]}}, "bookingPlatform.secrets"),
    ],
)
def test_bad_configuration_is_refused_with_the_key_named(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(sample_config(**change))
    assert message in str(refused.value)


def test_demo_config_is_valid_and_file_loading_works(tmp_path: Path) -> None:
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(demo_config()))
    config = load_config(path)
    assert len(config.mailboxes) >= 3
    assert config.service_accounts[0].impersonate == {m.address for m in config.mailboxes}
    assert config.oauth_clients[0].mailboxes == {"*"}
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "broken.json")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.json")


# --- python -m sim ------------------------------------------------------------------------------


def test_module_prints_one_json_line_serves_and_stops_on_sigint(tmp_path: Path) -> None:
    config = tmp_path / "sim.json"
    config.write_text(json.dumps(sample_config()))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sim",
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        urls = json.loads(line)
        assert set(urls) == URL_KEYS
        assert urls["ews"].endswith("/EWS/Exchange.asmx")
        assert urls["graph"].endswith("/v1.0")
        assert urls["token"].startswith("https://127.0.0.1:")
        assert Path(urls["caBundle"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        mailboxes = httpx.get(f"{urls['control']}/mailboxes").json()
        assert [m["address"] for m in mailboxes] == [ANN, BOB, CARA]
        assert httpx.get(f"{urls['booking']}/received").json() == []
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert process.stdout.read() == ""  # exactly one line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{urls['control']}/mailboxes")


def test_module_writes_the_demo_config_and_refuses_a_bad_one(tmp_path: Path) -> None:
    target = tmp_path / "demo.json"
    run = [sys.executable, "-m", "sim"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*run, "--write-demo-config", str(target)], cwd=REPO, env=env, timeout=60, check=False
    )
    assert done.returncode == 0
    assert json.loads(target.read_text()) == demo_config()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mailboxes": [{"address": "nope"}]}))
    refused = subprocess.run(
        [*run, "--config", str(bad)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 2
    assert "not an SMTP address" in refused.stderr
    assert refused.stdout == ""


# --- token endpoint -----------------------------------------------------------------------------


def test_azure_identity_client_secret_credential_gets_a_working_token(
    simulator: RunningSimulator, trust_simulator_ca: str
) -> None:
    from azure.identity import ClientSecretCredential

    authority = simulator.urls["token"].removeprefix("https://")
    credential = ClientSecretCredential(
        TENANT_ID, CLIENT_ID, CLIENT_SECRET, authority=authority, disable_instance_discovery=True
    )
    token = credential.get_token(GRAPH_SCOPE)
    assert token.expires_on > time.time() + 3000
    principal = simulator.issuer.verify(token.token)
    assert principal is not None
    assert principal.kind == "app"
    assert principal.may_open(CARA)
    response = httpx.get(
        f"{simulator.urls['graph']}/users/{ANN}/events",
        headers={"Authorization": f"Bearer {token.token}"},
    )
    assert response.status_code == 200


def test_msgraph_sdk_with_azure_identity_reads_events(
    simulator: RunningSimulator, trust_simulator_ca: str
) -> None:
    from azure.identity import ClientSecretCredential

    simulator.person(BOB).create_event(
        "Seen through Graph", datetime(2026, 8, 3, 9), datetime(2026, 8, 3, 10)
    )
    authority = simulator.urls["token"].removeprefix("https://")
    credential = ClientSecretCredential(
        TENANT_ID, CLIENT_ID, CLIENT_SECRET, authority=authority, disable_instance_discovery=True
    )
    client = graph_client(simulator, credential)
    events = run_async(client.users.by_user_id(BOB).events.get())
    assert "Seen through Graph" in [event.subject for event in events.value]


def test_azure_identity_wrong_secret_is_refused(
    simulator: RunningSimulator, trust_simulator_ca: str
) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    authority = simulator.urls["token"].removeprefix("https://")
    credential = ClientSecretCredential(
        TENANT_ID, CLIENT_ID, "wrong", authority=authority, disable_instance_discovery=True
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        credential.get_token(GRAPH_SCOPE)


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "nope"}, 400, "unauthorized_client"),
        (
            {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": "x"},
            401,
            "invalid_client",
        ),
        (
            {
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": "https://example.com/.default",
            },
            400,
            "invalid_scope",
        ),
        ({"grant_type": "password", "username": ANN, "password": "x"}, 400, "invalid_grant"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
    ],
)
def test_token_endpoint_refusals(
    simulator: RunningSimulator, form: dict[str, str], status: int, error: str
) -> None:
    import ssl

    trust = ssl.create_default_context(cafile=simulator.ca_bundle)
    response = httpx.post(
        f"{simulator.urls['token']}/{TENANT_ID}/oauth2/v2.0/token",
        data={"scope": GRAPH_SCOPE, **form},
        verify=trust,
    )
    assert response.status_code == status
    assert response.json()["error"] == error


def test_tokens_expire(start_sim: Any) -> None:
    sim = start_sim(sample_config(tokenLifetimeSeconds=120))
    token = SimTokenCredential(sim).get_token(GRAPH_SCOPE)
    assert 100 < token.expires_on - time.time() <= 120
    url = f"{sim.urls['graph']}/users/{ANN}/events"
    headers = {"Authorization": f"Bearer {token.token}"}
    assert httpx.get(url, headers=headers).status_code == 200
    # Two minutes later (the issuer's clock moves; no sleeping).
    sim.issuer.clock = lambda: time.time() + 121
    assert httpx.get(url, headers=headers).status_code == 401


def test_app_access_is_limited_to_its_mailboxes(simulator: RunningSimulator) -> None:
    token = SimTokenCredential(
        simulator, client_id=LIMITED_CLIENT_ID, client_secret="limited~secret"
    ).get_token(GRAPH_SCOPE)
    principal = simulator.issuer.verify(token.token)
    assert principal is not None
    assert principal.may_open(ANN)
    assert not principal.may_open(BOB)


# --- control API --------------------------------------------------------------------------------


def control(sim: RunningSimulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{sim.urls['control']}{path}", **kwargs)


def test_people_through_the_control_api(simulator: RunningSimulator) -> None:
    created = control(
        simulator,
        "POST",
        f"/people/{ANN}/createEvent",
        json={
            "subject": "Control meeting",
            "start": "2026-05-04T10:00:00",
            "end": "2026-05-04T11:00:00",
            "attendees": [BOB],
            "body": "private notes",
        },
    )
    assert created.status_code == 200, created.text
    meeting = created.json()
    assert meeting["start"] == "2026-05-04T14:00:00+00:00"  # Ann is in Toronto (EDT)
    bob_items = control(simulator, "GET", f"/mailboxes/{BOB}/items").json()
    [copy] = [item for item in bob_items if item["uid"] == meeting["uid"]]
    assert copy["responseType"] == "NoResponseReceived"
    accepted = control(simulator, "POST", f"/people/{BOB}/accept", json={"itemId": copy["id"]})
    assert accepted.json()["responseType"] == "Accept"
    [ann_item] = [
        item
        for item in control(simulator, "GET", f"/mailboxes/{ANN}/items").json()
        if item["id"] == meeting["id"]
    ]
    assert ann_item["requiredAttendees"][0]["response"] == "Accept"
    assert ann_item["body"] == "private notes"
    moved = control(
        simulator,
        "POST",
        f"/people/{ANN}/move",
        json={
            "itemId": meeting["id"],
            "start": "2026-05-05T10:00:00-04:00",
            "end": "2026-05-05T11:00:00-04:00",
        },
    )
    assert moved.json()["start"] == "2026-05-05T14:00:00+00:00"
    private = control(
        simulator, "POST", f"/people/{ANN}/markPrivate", json={"itemId": meeting["id"]}
    )
    assert private.json()["sensitivity"] == "Private"
    assert (
        control(
            simulator, "POST", f"/people/{ANN}/cancel", json={"itemId": meeting["id"]}
        ).status_code
        == 204
    )
    [cancelled] = [
        item
        for item in control(simulator, "GET", f"/mailboxes/{BOB}/items").json()
        if item["uid"] == meeting["uid"]
    ]
    assert cancelled["isCancelled"]


def test_series_through_the_control_api(simulator: RunningSimulator) -> None:
    series = control(
        simulator,
        "POST",
        f"/people/{CARA}/createEvent",
        json={
            "subject": "Weekly sync",
            "start": "2026-06-01T09:00:00",
            "end": "2026-06-01T09:30:00",
            "recurrence": {"pattern": "weekly", "daysOfWeek": ["Monday"], "count": 4},
        },
    ).json()
    assert series["itemType"] == "RecurringMaster"
    edited = control(
        simulator,
        "POST",
        f"/people/{CARA}/editOccurrence",
        json={"itemId": series["id"], "index": 2, "subject": "Weekly sync (moved)"},
    )
    assert edited.json()["itemType"] == "Exception"
    control(
        simulator,
        "POST",
        f"/people/{CARA}/deleteOccurrence",
        json={"itemId": series["id"], "index": 3},
    )
    view = control(
        simulator,
        "GET",
        f"/mailboxes/{CARA}/items",
        params={"start": "2026-06-01T00:00:00Z", "end": "2026-07-01T00:00:00Z"},
    ).json()
    assert [item["subject"] for item in view if item["masterId"] == series["id"]] == [
        "Weekly sync",
        "Weekly sync (moved)",
        "Weekly sync",
    ]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"/people/{ANN}/createEvent", {"subject": "x"}, 400),
        (f"/people/{ANN}/createEvent", {"subject": "x", "start": "soon", "end": "later"}, 400),
        (
            f"/people/{ANN}/createEvent",
            {"subject": "x", "start": "2026-01-01T10:00", "end": "2026-01-01T09:00"},
            400,
        ),
        (f"/people/{ANN}/accept", {}, 400),
        (f"/people/{ANN}/accept", {"itemId": "does-not-exist"}, 404),
        (f"/people/{ANN}/teleport", {}, 404),
        ("/people/nobody@contoso.test/createEvent", {}, 404),
        ("/faults", {"kind": "meteor"}, 400),
        ("/lifecycle", {"subscriptionId": "s", "event": "bored"}, 400),
        ("/tokens/revoke", {}, 400),
    ],
)
def test_control_api_bad_input_is_a_4xx_and_changes_nothing(
    simulator: RunningSimulator, path: str, body: dict[str, Any], status: int
) -> None:
    before = {address: simulator.store.current_seq(address) for address in (ANN, BOB, CARA)}
    faults_before = len(simulator.store.faults)
    response = control(simulator, "POST", path, json=body)
    assert response.status_code == status
    assert response.json()["error"]
    assert {a: simulator.store.current_seq(a) for a in before} == before
    assert len(simulator.store.faults) == faults_before


def test_faults_and_counters_through_the_control_api(simulator: RunningSimulator) -> None:
    added = control(
        simulator,
        "POST",
        "/faults",
        json={"kind": "http_503", "operation": "graph:getEvent", "mailbox": ANN, "remaining": 2},
    )
    assert added.status_code == 200
    assert [f["kind"] for f in control(simulator, "GET", "/faults").json()] == ["http_503"]
    assert control(simulator, "DELETE", "/faults").status_code == 204
    assert control(simulator, "GET", "/faults").json() == []

    assert control(simulator, "DELETE", "/counters").status_code == 204
    token = SimTokenCredential(simulator).get_token(GRAPH_SCOPE).token
    httpx.get(
        f"{simulator.urls['graph']}/users/{BOB}/events",
        headers={"Authorization": f"Bearer {token}"},
    )
    counters = control(simulator, "GET", "/counters").json()
    assert sum(counters.get(op, {}).get(BOB, 0) for op in counters) == 1
    control(simulator, "DELETE", "/counters")
    assert control(simulator, "GET", "/counters").json() == {}


def test_lifecycle_for_an_unknown_subscription_is_a_404(simulator: RunningSimulator) -> None:
    response = control(
        simulator, "POST", "/lifecycle", json={"subscriptionId": "nope", "event": "missed"}
    )
    assert response.status_code == 404


def test_invalidate_sync_state_through_the_control_api(simulator: RunningSimulator) -> None:
    token = simulator.store.encode_sync_state(BOB, 0)
    response = control(simulator, "POST", f"/mailboxes/{BOB}/invalidate-sync-state")
    assert response.status_code == 200
    with pytest.raises(Exception, match="invalid"):
        simulator.store.decode_sync_state(BOB, token)


# --- faults carried out by the server -----------------------------------------------------------


def graph_get(sim: RunningSimulator, path: str) -> httpx.Response:
    token = SimTokenCredential(sim).get_token(GRAPH_SCOPE).token
    return httpx.get(f"{sim.urls['graph']}{path}", headers={"Authorization": f"Bearer {token}"})


@pytest.mark.parametrize(
    ("kind", "status"), [("http_500", 500), ("http_503", 503), ("unauthorized", 401)]
)
def test_generic_faults_become_http_answers(
    simulator: RunningSimulator, kind: str, status: int
) -> None:
    simulator.store.add_fault(Fault(kind, operation="*", mailbox=CARA, retry_after=7))
    try:
        response = graph_get(simulator, f"/users/{CARA}/events")
        assert response.status_code == status
        if status == 503:
            assert response.headers["retry-after"] == "7"
        assert graph_get(simulator, f"/users/{CARA}/events").status_code == 200
    finally:
        simulator.store.clear_faults()


def test_reset_fault_drops_the_connection(simulator: RunningSimulator) -> None:
    simulator.store.add_fault(Fault("reset", operation="*", mailbox=CARA))
    try:
        with pytest.raises(httpx.TransportError):
            graph_get(simulator, f"/users/{CARA}/events")
        assert graph_get(simulator, f"/users/{CARA}/events").status_code == 200
    finally:
        simulator.store.clear_faults()


def test_unknown_paths_and_schema_files(simulator: RunningSimulator) -> None:
    base = simulator.urls["ews"].removesuffix("/EWS/Exchange.asmx")
    assert httpx.get(f"{base}/nothing-here").status_code == 404
    schema = httpx.get(f"{base}/EWS/types.xsd")
    assert schema.status_code == 200
    assert b"schema" in schema.content[:2000]


def test_two_simulators_in_one_process_keep_their_own_users(start_sim: Any) -> None:
    other = sample_config(
        mailboxes=[{"address": "zoe@fabrikam.test", "name": "Zoe", "password": "zoe-pw"}],
        serviceAccounts=[],
        oauthClients=[],
    )
    first = start_sim()
    second = start_simulator(other)
    try:
        assert second.store.mailbox("zoe@fabrikam.test").name == "Zoe"
        assert first.issuer.check_password("zoe@fabrikam.test", "zoe-pw", scheme="basic") is None
        for sim, expected in ((second, True), (first, False)):
            with httpx.Client() as client:
                answer = ntlm_handshake(client, sim.urls["ews"], "zoe@fabrikam.test", "zoe-pw")
                assert (answer.status_code != 401) is expected
        with httpx.Client() as client:
            answer = ntlm_handshake(client, first.urls["ews"], ANN, PASSWORDS[ANN])
            assert answer.status_code != 401
    finally:
        second.stop()
    # Zoe's NTLM credentials left the shared user file with her simulator.
    user_file = Path(os.environ["NTLM_USER_FILE"]).read_text()
    assert "zoe@fabrikam.test" not in user_file
    assert ANN in user_file
