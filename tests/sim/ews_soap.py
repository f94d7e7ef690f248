"""Hand-written EWS requests for what exchangelib never sends (a Contains on a list property, a
restriction on a property exchangelib calls unsearchable, a SetItemField on a read-only one):
one SOAP envelope posted with Basic auth, its answer parsed."""

from __future__ import annotations

import base64
from typing import Any

import requests
from lxml import etree

from sim.server import RunningSimulator
from tests.sim.conftest import PASSWORDS

T = "{http://schemas.microsoft.com/exchange/services/2006/types}"
M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"


def post_soap(sim: RunningSimulator, user: str, operation: str) -> Any:
    """POST ``operation`` (an m:* element, as text) as ``user``; the parsed response envelope."""
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>
  <s:Body>{operation}</s:Body>
</s:Envelope>"""
    token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
    response = requests.post(
        sim.urls["ews"],
        data=body.encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return etree.fromstring(response.content)


def find_subjects(sim: RunningSimulator, user: str, restriction: str) -> tuple[str, list[str]]:
    """A FindItem in the user's calendar with ``restriction`` (the m:Restriction's child):
    (ResponseCode, the subjects found, sorted)."""
    root = post_soap(
        sim,
        user,
        f"""<m:FindItem Traversal="Shallow">
    <m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>
      <t:FieldURI FieldURI="item:Subject"/></t:AdditionalProperties></m:ItemShape>
    <m:Restriction>{restriction}</m:Restriction>
    <m:ParentFolderIds><t:DistinguishedFolderId Id="calendar"/></m:ParentFolderIds>
  </m:FindItem>""",
    )
    code = root.findtext(f".//{M}ResponseCode") or ""
    return code, sorted(element.text or "" for element in root.iter(f"{T}Subject"))
