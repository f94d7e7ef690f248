"""EWS contract: injected faults as exchangelib meets them — ErrorServerBusy with its back-off
surfaced by FailFast and waited out by FaultTolerance, slow answers, revoked credentials and
server errors carried out by the HTTP layer — and malformed requests answered with SOAP faults.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import pytest
import requests
from exchangelib import FaultTolerance
from exchangelib.errors import ErrorServerBusy, UnauthorizedError
from exchangelib.protocol import close_connections
from lxml import etree

from sim.server import RunningSimulator
from sim.store import Fault
from tests.sim.conftest import ANN, BOB, CARA, PASSWORDS, exchangelib_account

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
ERRORS_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"


@pytest.fixture(autouse=True)
def fresh_exchangelib_protocols(simulator: RunningSimulator) -> Iterator[None]:
    yield
    close_connections()
    simulator.store.clear_faults()


@pytest.fixture(scope="module", autouse=True)
def responses_are_schema_valid(simulator: RunningSimulator) -> Iterator[None]:
    yield
    assert simulator.ews.schema_failures == []


def find_requests(sim: RunningSimulator, mailbox: str) -> int:
    return sim.store.counter_snapshot().get("ews:FindItem", {}).get(mailbox, 0)


def test_server_busy_surfaces_with_its_back_off_under_fail_fast(
    simulator: RunningSimulator,
) -> None:
    account = exchangelib_account(simulator, ANN, auth="basic")
    account.calendar  # noqa: B018 - resolve the folder before arming the fault
    simulator.store.add_fault(
        Fault(kind="server_busy", operation="ews:FindItem", mailbox=ANN, back_off_ms=2500)
    )

    with pytest.raises(ErrorServerBusy) as raised:
        list(account.calendar.all())

    assert raised.value.back_off == 2.5
    assert list(account.calendar.all()) == []  # the fault hit once


def test_fault_tolerance_waits_out_server_busy(simulator: RunningSimulator) -> None:
    account = exchangelib_account(
        simulator, BOB, auth="basic", retry_policy=FaultTolerance(max_wait=30)
    )
    account.calendar  # noqa: B018
    simulator.store.add_fault(
        Fault(kind="server_busy", operation="FindItem", mailbox=BOB, back_off_ms=400)
    )
    before = find_requests(simulator, BOB)
    started = time.monotonic()

    assert list(account.calendar.all()) == []

    assert time.monotonic() - started >= 0.4
    assert find_requests(simulator, BOB) - before == 2


def test_slow_fault_delays_the_answer(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, CARA, auth="basic")
    account.calendar  # noqa: B018
    simulator.store.add_fault(Fault(kind="slow", operation="ews:FindItem", delay_s=0.5))
    started = time.monotonic()

    assert list(account.calendar.all()) == []

    assert time.monotonic() - started >= 0.5


def test_revoked_credentials_answer_401(simulator: RunningSimulator) -> None:
    account = exchangelib_account(simulator, ANN, auth="basic")
    account.calendar  # noqa: B018
    simulator.store.add_fault(Fault(kind="unauthorized", operation="ews:FindItem", mailbox=ANN))

    with pytest.raises(UnauthorizedError):
        list(account.calendar.all())


# --- malformed requests (raw HTTP: exchangelib never sends these) ------------------------------


def post(sim: RunningSimulator, body: bytes, method: str = "POST") -> requests.Response:
    token = base64.b64encode(f"{ANN}:{PASSWORDS[ANN]}".encode()).decode()
    return requests.request(
        method,
        sim.urls["ews"],
        data=body,
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )


def fault_code(response: requests.Response) -> str:
    root = etree.fromstring(response.content)
    detail = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault/detail")
    assert detail is not None
    return str(detail.findtext(f"{{{ERRORS_NS}}}ResponseCode"))


def envelope(body: str, header: str = '<t:RequestServerVersion Version="Exchange2016"/>') -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
        'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
        f"<s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def test_malformed_xml_is_a_soap_fault(simulator: RunningSimulator) -> None:
    response = post(simulator, b"<s:Envelope><unclosed>")

    assert response.status_code == 500
    assert fault_code(response) == "ErrorSchemaValidation"


def test_unknown_server_version_is_a_soap_fault(simulator: RunningSimulator) -> None:
    response = post(
        simulator,
        envelope("<m:GetFolder/>", header='<t:RequestServerVersion Version="Exchange1999"/>'),
    )

    assert response.status_code == 500
    assert fault_code(response) == "ErrorInvalidServerVersion"


def test_unsupported_operation_is_a_soap_fault(simulator: RunningSimulator) -> None:
    response = post(simulator, envelope("<m:GetUserOofSettingsRequest/>"))

    assert response.status_code == 500
    assert fault_code(response) == "ErrorInvalidOperation"
    assert b"GetUserOofSettingsRequest" in response.content


def test_out_of_range_max_changes_is_a_schema_fault(simulator: RunningSimulator) -> None:
    body = (
        "<m:SyncFolderItems><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>"
        '<m:SyncFolderId><t:DistinguishedFolderId Id="calendar"/></m:SyncFolderId>'
        "<m:MaxChangesReturned>513</m:MaxChangesReturned></m:SyncFolderItems>"
    )

    response = post(simulator, envelope(body))

    assert response.status_code == 500
    assert fault_code(response) == "ErrorSchemaValidation"
    assert b"513" in response.content


def test_get_is_not_allowed(simulator: RunningSimulator) -> None:
    response = post(simulator, b"", method="GET")

    assert response.status_code == 405
