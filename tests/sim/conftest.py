"""Fixtures and client helpers for the simulator's tests: a simulator started in-process on free
ports, and exchangelib / msgraph-sdk / token clients pointed at it.

Sample organization (``sample_config()``): mailboxes ann, bob, cara @contoso.test (password
``PASSWORDS[address]``); service account svc@contoso.test with impersonation rights on ann and
bob and delegate access to cara; OAuth client ``CLIENT_ID`` in ``TENANT_ID`` reaching all
mailboxes, and ``LIMITED_CLIENT_ID`` reaching only ann.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from sim.server import RunningSimulator, start_simulator

ANN = "ann@contoso.test"
BOB = "bob@contoso.test"
CARA = "cara@contoso.test"
SERVICE = "svc@contoso.test"
TENANT_ID = "0c4e9a7e-2a35-4c0e-9d6f-6a1c6f3b2d10"
CLIENT_ID = "9a3f1a40-7c8e-4b1b-a0f5-3e2d1c0b9a87"
CLIENT_SECRET = "s3cr3t~graph:client"
LIMITED_CLIENT_ID = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9"
LIMITED_CLIENT_SECRET = "limited~secret"
PASSWORDS = {
    ANN: "Ann:pass!1",
    BOB: "Bob-pass#2",
    CARA: "Cara pass 3",
    SERVICE: "Svc@Imp:4",
}
WEBHOOK_ORG = "org-test"
WEBHOOK_SECRET = "whsec-test-1"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EWS_SCOPE = "https://outlook.office365.com/.default"


def sample_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "mailboxes": [
            {"address": ANN, "name": "Ann Lee", "timeZone": "America/Toronto"},
            {"address": BOB, "name": "Bob Ray", "timeZone": "America/Toronto"},
            {"address": CARA, "name": "Cara Diaz", "timeZone": "Europe/London"},
        ],
        "serviceAccounts": [
            {
                "username": SERVICE,
                "password": PASSWORDS[SERVICE],
                "impersonate": [ANN, BOB],
                "delegateFor": [CARA],
            }
        ],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": ["*"],
            },
            {
                "tenantId": TENANT_ID,
                "clientId": LIMITED_CLIENT_ID,
                "clientSecret": LIMITED_CLIENT_SECRET,
                "mailboxes": [ANN],
            },
        ],
        "bookingPlatform": {"secrets": {WEBHOOK_ORG: WEBHOOK_SECRET}},
    }
    for mailbox in config["mailboxes"]:
        mailbox["password"] = PASSWORDS[mailbox["address"]]
    config.update(overrides)
    return config


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    """One simulator (sample organization) per test module; tests use distinct subjects or
    clean up what they arrange."""
    with start_simulator(sample_config()) as running:
        yield running


@pytest.fixture
def start_sim() -> Iterator[Callable[..., RunningSimulator]]:
    """Start a simulator with a custom configuration; stopped after the test."""
    started: list[RunningSimulator] = []

    def start(config: dict[str, Any] | None = None, **options: Any) -> RunningSimulator:
        running = start_simulator(config or sample_config(), **options)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def trust_simulator_ca(simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Make requests/azure-identity trust the simulator's token endpoint for this test only."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", simulator.ca_bundle)
    monkeypatch.setenv("SSL_CERT_FILE", simulator.ca_bundle)
    return simulator.ca_bundle


# --- tokens ---------------------------------------------------------------------------------


class SimTokenCredential:
    """An azure-core ``TokenCredential`` that gets tokens from the simulator's token endpoint
    over HTTPS: client credentials (client_id + client_secret) or a user's password (ROPC).
    Trusts the simulator's CA explicitly, so it needs no environment changes."""

    def __init__(
        self,
        sim: RunningSimulator,
        *,
        client_id: str = CLIENT_ID,
        client_secret: str | None = CLIENT_SECRET,
        tenant_id: str = TENANT_ID,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.sim = sim
        self.client_id = client_id
        self.client_secret = client_secret
        self.tenant_id = tenant_id
        self.username = username
        self.password = password
        self.requests = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        form = {"client_id": self.client_id, "scope": " ".join(scopes)}
        if self.username is not None:
            form.update(grant_type="password", username=self.username, password=self.password or "")
        else:
            form.update(grant_type="client_credentials", client_secret=self.client_secret or "")
        url = f"{self.sim.urls['token']}/{self.tenant_id}/oauth2/v2.0/token"
        trust = ssl.create_default_context(cafile=self.sim.ca_bundle)
        response = httpx.post(url, data=form, verify=trust, timeout=10)
        self.requests += 1
        response.raise_for_status()
        answer = response.json()
        return AccessToken(answer["access_token"], int(time.time()) + int(answer["expires_in"]))


def user_credential(sim: RunningSimulator, address: str) -> SimTokenCredential:
    """Tokens for a mailbox user signing in with their password."""
    return SimTokenCredential(sim, username=address, password=PASSWORDS[address])


# --- clients --------------------------------------------------------------------------------


def graph_client(sim: RunningSimulator, credential: Any) -> Any:
    """A msgraph-sdk ``GraphServiceClient`` talking to the simulator's Graph endpoint."""
    from msgraph import GraphServiceClient

    client = GraphServiceClient(credentials=credential, scopes=[GRAPH_SCOPE])
    client.request_adapter.base_url = sim.urls["graph"]
    return client


def run_async(coroutine: Any) -> Any:
    """Run one msgraph-sdk call from a synchronous test."""
    return asyncio.run(coroutine)


def exchangelib_account(
    sim: RunningSimulator,
    address: str,
    *,
    as_user: str | None = None,
    auth: str = "ntlm",
    password: str | None = None,
    access: str | None = None,
    retry_policy: Any = None,
    version: Any = None,
) -> Any:
    """An exchangelib ``Account`` for ``address`` on the simulator.

    ``as_user``: who signs in (default: the mailbox owner); ``auth``: "ntlm", "basic" or
    "oauth" (client credentials of ``CLIENT_ID`` with impersonation — then ``as_user`` is
    ignored); ``access``: exchangelib access type (default: delegate for the owner,
    impersonation for a service account or OAuth). ``version`` None skips the ConvertId probe
    with Exchange 2016's build; pass ``"probe"`` to let exchangelib probe the server.
    """
    from exchangelib import (
        BASIC,
        DELEGATE,
        IMPERSONATION,
        NTLM,
        OAUTH2,
        Account,
        Build,
        Configuration,
        Credentials,
        FailFast,
        Identity,
        OAuth2Credentials,
        Version,
    )

    signer = as_user or address
    if version is None:
        version = Version(build=Build(15, 1, 2507, 6))
    elif isinstance(version, str) and version == "probe":
        # (exchangelib's Version refuses comparison with a str, hence the isinstance.)
        version = None
    if auth == "oauth":

        class SimOAuth2Credentials(OAuth2Credentials):
            @property
            def token_url(self) -> str:
                return f"{sim.urls['token']}/{TENANT_ID}/oauth2/v2.0/token"

        credentials: Any = SimOAuth2Credentials(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            tenant_id=TENANT_ID,
            identity=Identity(primary_smtp_address=address),
        )
        auth_type = OAUTH2
        default_access = IMPERSONATION
    else:
        credentials = Credentials(signer, password if password is not None else PASSWORDS[signer])
        auth_type = NTLM if auth == "ntlm" else BASIC
        default_access = DELEGATE if signer == address else IMPERSONATION
    config = Configuration(
        service_endpoint=sim.urls["ews"],
        credentials=credentials,
        auth_type=auth_type,
        version=version,
        retry_policy=retry_policy or FailFast(),
    )
    return Account(
        primary_smtp_address=address,
        config=config,
        autodiscover=False,
        access_type=access or default_access,
    )


@pytest.fixture(scope="session", autouse=True)
def ews_responses_are_schema_valid() -> Iterator[None]:
    """At the end of the session (per test process): no EWS response any simulator produced
    broke Microsoft's schema (validating EWS services record each invalid one)."""
    yield
    from sim.ews.schema import recorded_failures

    failures = recorded_failures()
    assert not failures, f"{len(failures)} EWS responses broke the schema, first: {failures[0]}"
