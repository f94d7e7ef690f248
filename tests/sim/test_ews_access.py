"""EWS contract: who may reach which mailbox, and how clients sign in — impersonation allowed
and denied, delegate access allowed and denied, unknown mailboxes, an OAuth app, NTLM and Basic
with good and wrong passwords, and exchangelib's version probe (ConvertId) versus an explicit
version. Only exchangelib talks to the simulator.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest
from exchangelib import DELEGATE, IMPERSONATION, CalendarItem, EWSDateTime, EWSTimeZone
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorImpersonateUserDenied,
    ErrorNonExistentMailbox,
    UnauthorizedError,
)
from exchangelib.protocol import close_connections

from sim.server import RunningSimulator
from tests.sim.conftest import ANN, BOB, CARA, SERVICE, exchangelib_account

TZ = EWSTimeZone("Europe/London")


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols() -> Iterator[None]:
    yield
    close_connections()


@pytest.fixture(scope="module", autouse=True)
def responses_are_schema_valid(simulator: RunningSimulator) -> Iterator[None]:
    yield
    assert simulator.ews.schema_failures == []


def requests(sim: RunningSimulator, operation: str, mailbox: str) -> int:
    return sim.store.counter_snapshot().get(f"ews:{operation}", {}).get(mailbox, 0)


def new_item(account: Any, subject: str) -> Any:
    item = CalendarItem(
        account=account,
        folder=account.calendar,
        subject=subject,
        start=EWSDateTime(2027, 5, 3, 9, tzinfo=TZ),
        end=EWSDateTime(2027, 5, 3, 10, tzinfo=TZ),
    )
    item.save()
    return item


def test_impersonation_reaches_the_granted_mailbox(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, ANN, as_user=SERVICE)
    assert account.access_type == IMPERSONATION

    new_item(account, "Booked by the service")

    [stored] = simulator.person(ANN).find(subject="Booked by the service")
    assert stored.mailbox == ANN
    assert stored.organizer is not None
    assert stored.organizer.address == ANN  # created as Ann, not as the service account


def test_impersonation_outside_the_grant_is_denied(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, CARA, as_user=SERVICE, access=IMPERSONATION)

    with pytest.raises(ErrorImpersonateUserDenied):
        list(account.calendar.all())


def test_a_user_cannot_impersonate(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, BOB, as_user=ANN, access=IMPERSONATION)

    with pytest.raises(ErrorImpersonateUserDenied):
        account.calendar  # noqa: B018 - resolving the folder is the request


def test_impersonating_an_unknown_mailbox(simulator: RunningSimulator) -> None:
    account = exchangelib_account(
        simulator, "nobody@contoso.test", as_user=SERVICE, access=IMPERSONATION
    )

    with pytest.raises(ErrorNonExistentMailbox):
        account.calendar  # noqa: B018


def test_delegate_access_reaches_the_delegated_mailbox(simulator: RunningSimulator) -> None:
    simulator.person(CARA).create_event(
        "Cara's review",
        datetime.datetime(2027, 5, 4, 14, 0),
        datetime.datetime(2027, 5, 4, 15, 0),
    )
    account = exchangelib_account(simulator, CARA, as_user=SERVICE, access=DELEGATE)

    view = account.calendar.view(
        start=EWSDateTime(2027, 5, 4, tzinfo=TZ), end=EWSDateTime(2027, 5, 5, tzinfo=TZ)
    )

    assert [item.subject for item in view] == ["Cara's review"]
    assert requests(simulator, "FindItem", CARA) >= 1


def test_delegate_access_without_a_grant_is_denied(simulator: RunningSimulator) -> None:
    ann_opens_bob = exchangelib_account(simulator, BOB, as_user=ANN, access=DELEGATE)
    service_opens_ann = exchangelib_account(simulator, ANN, as_user=SERVICE, access=DELEGATE)

    with pytest.raises(ErrorAccessDenied):
        ann_opens_bob.calendar  # noqa: B018
    with pytest.raises(ErrorAccessDenied):
        service_opens_ann.calendar  # noqa: B018 - impersonation rights are not delegate rights


def test_oauth_app_impersonates_any_mailbox(
    simulator: RunningSimulator, trust_simulator_ca: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # requests-oauthlib refuses http resource URLs unless told this is a local test server.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    account = exchangelib_account(simulator, BOB, auth="oauth")

    new_item(account, "Booked by the app")

    assert [i.mailbox for i in simulator.person(BOB).find(subject="Booked by the app")] == [BOB]


def test_ntlm_with_good_and_wrong_password(simulator: RunningSimulator) -> None:
    good = exchangelib_account(simulator, ANN, auth="ntlm")
    assert good.calendar.name == "Calendar"
    close_connections()

    wrong = exchangelib_account(simulator, ANN, auth="ntlm", password="not-the-password")
    with pytest.raises(UnauthorizedError):
        wrong.calendar  # noqa: B018


def test_basic_with_good_and_wrong_password(simulator: RunningSimulator) -> None:
    good = exchangelib_account(simulator, BOB, auth="basic")
    assert good.calendar.name == "Calendar"
    close_connections()

    wrong = exchangelib_account(simulator, BOB, auth="basic", password="nope")
    with pytest.raises(UnauthorizedError):
        wrong.calendar  # noqa: B018


def test_explicit_version_skips_the_probe(simulator: RunningSimulator) -> None:
    before = requests(simulator, "ConvertId", BOB)

    account = exchangelib_account(simulator, BOB, auth="basic")
    list(account.calendar.all())

    assert requests(simulator, "ConvertId", BOB) == before
    assert account.version.api_version == "Exchange2016"


def test_version_probe_reads_the_server_version(simulator: RunningSimulator) -> None:
    before = requests(simulator, "ConvertId", CARA)

    account = exchangelib_account(simulator, CARA, auth="basic", version="probe")
    list(account.calendar.all())

    assert requests(simulator, "ConvertId", CARA) == before + 1
    build = account.version.build
    assert (build.major_version, build.minor_version) == (15, 2)
    assert account.version.api_version == "Exchange2016"
