"""Authentication through exchangelib itself: NTLM (genuine handshake) and Basic with right and
wrong passwords, service-account impersonation, and OAuth client credentials from the
simulator's token endpoint."""

from __future__ import annotations

import pytest
from exchangelib.errors import UnauthorizedError

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, SERVICE, exchangelib_account


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_owner_signs_in_with_the_right_password(simulator: RunningSimulator, auth: str) -> None:
    simulator.store.reset_counters()
    account = exchangelib_account(simulator, ANN, auth=auth)
    assert account.calendar.name == "Calendar"
    assert simulator.store.counter_snapshot()["ews:GetFolder"][ANN] >= 1


@pytest.mark.parametrize("auth", ["ntlm", "basic"])
def test_wrong_password_is_refused(simulator: RunningSimulator, auth: str) -> None:
    account = exchangelib_account(simulator, BOB, auth=auth, password=PASSWORDS[ANN])
    with pytest.raises(UnauthorizedError):
        _ = account.calendar


def test_service_account_impersonates_over_ntlm(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, BOB, as_user=SERVICE)
    assert account.calendar.name == "Calendar"


def test_ntlm_as_domain_user(simulator: RunningSimulator) -> None:
    from exchangelib import (
        DELEGATE,
        NTLM,
        Account,
        Build,
        Configuration,
        Credentials,
        FailFast,
        Version,
    )

    config = Configuration(
        service_endpoint=simulator.urls["ews"],
        credentials=Credentials("CONTOSO\\cara", PASSWORDS[CARA]),
        auth_type=NTLM,
        version=Version(build=Build(15, 1, 2507, 6)),
        retry_policy=FailFast(),
    )
    account = Account(CARA, config=config, autodiscover=False, access_type=DELEGATE)
    assert account.calendar.name == "Calendar"


def test_oauth_client_credentials_through_the_token_endpoint(
    simulator: RunningSimulator, trust_simulator_ca: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulator's EWS port is plain HTTP; oauthlib only sends bearer tokens over http
    # when told to (the token itself comes from the HTTPS token endpoint).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    account = exchangelib_account(simulator, CARA, auth="oauth")
    assert account.calendar.name == "Calendar"
