"""The EWS schema check itself: a valid response passes, broken ones are caught (wrong element
order, unknown response code, missing required attribute, a fault without detail), and a
validating service records every invalid response it produces. The suite-wide assertion that
no EWS response broke the schema is the session fixture in ``tests/sim/conftest.py``.
"""

from __future__ import annotations

import pytest
from lxml import etree

from sim.ews import EwsService, soap
from sim.ews import schema as ews_schema
from sim.server import RunningSimulator
from sim.wire import Principal, SimRequest
from tests.sim.conftest import ANN

GET_FOLDER = b"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body><m:GetFolder><m:FolderShape><t:BaseShape>AllProperties</t:BaseShape></m:FolderShape>
  <m:FolderIds><t:DistinguishedFolderId Id="calendar"/><t:DistinguishedFolderId Id="junk"/>
  </m:FolderIds></m:GetFolder></s:Body>
</s:Envelope>"""
T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"


def ann_request(body: bytes) -> SimRequest:
    return SimRequest(
        method="POST",
        path="/EWS/Exchange.asmx",
        query={},
        headers={"content-type": "text/xml"},
        body=body,
        principal=Principal(kind="user", name=ANN, auth_scheme="basic"),
    )


@pytest.fixture
def valid_response(simulator: RunningSimulator) -> bytes:
    response = simulator.ews.handle(ann_request(GET_FOLDER))
    assert response.status == 200
    return response.body


def test_a_real_response_is_valid(valid_response: bytes) -> None:
    root = etree.fromstring(valid_response)
    assert root.find(f".//{T}CalendarFolder") is not None
    assert root.find(f".//{M}GetFolderResponseMessage[@ResponseClass='Error']") is not None
    assert ews_schema.response_problems(valid_response) == []


def test_wrong_element_order_is_caught(valid_response: bytes) -> None:
    root = etree.fromstring(valid_response)
    folder = root.find(f".//{T}CalendarFolder")
    display_name = folder.find(f"{T}DisplayName")
    folder.remove(display_name)
    folder.insert(0, display_name)  # DisplayName before FolderId

    problems = ews_schema.response_problems(etree.tostring(root))

    assert problems
    assert any("CalendarFolder" in problem or "DisplayName" in problem for problem in problems)


def test_unknown_response_code_is_caught(valid_response: bytes) -> None:
    broken = valid_response.replace(b"ErrorFolderNotFound", b"ErrorSomethingMadeUp")

    assert ews_schema.response_problems(broken)


def test_missing_required_attribute_is_caught(valid_response: bytes) -> None:
    root = etree.fromstring(valid_response)
    for message in root.iter(f"{M}GetFolderResponseMessage"):
        del message.attrib["ResponseClass"]

    assert ews_schema.response_problems(etree.tostring(root))


def test_fault_without_detail_is_caught() -> None:
    fault = (
        b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>'
        b"<faultcode>a:ErrorServerBusy</faultcode><faultstring>busy</faultstring>"
        b"</s:Fault></s:Body></s:Envelope>"
    )

    assert ews_schema.response_problems(fault) == ["SOAP fault without detail/ResponseCode"]


def test_validating_service_records_invalid_responses(
    simulator: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = EwsService(simulator.store, validate_responses=True)
    assert service.handle(ann_request(GET_FOLDER)).status == 200
    assert service.schema_failures == []

    # A header attribute ServerVersionInfo does not have: every response is now invalid.
    monkeypatch.setitem(soap.SERVER_VERSION, "Edition", "Simulated")
    service.handle(ann_request(GET_FOLDER))

    [failure] = service.schema_failures
    assert failure.operation == "GetFolder"
    assert any("Edition" in problem for problem in failure.problems)
    assert (failure.operation, failure.problems) in ews_schema.recorded_failures()
    ews_schema.forget_failure(failure.operation, failure.problems)  # produced on purpose
    assert service.validated_responses == 2


def test_schema_loads_once_per_process(simulator: RunningSimulator) -> None:
    first = ews_schema.load_schema()

    assert ews_schema.load_schema() is first
    assert ews_schema.schema_load_seconds is not None
