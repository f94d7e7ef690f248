"""Validation of the simulator's EWS responses against Microsoft's schema
(``../shared/ews-schema/messages.xsd``, which imports ``types.xsd``).

Loading the schema takes a few seconds, so it happens once per process (``load_schema``, cached,
with the time it took in ``schema_load_seconds``). ``response_problems`` checks a whole response
envelope: the ``ServerVersionInfo`` header and every element of the SOAP body in the EWS
namespaces. SOAP faults are not EWS schema types; their shape is checked by hand.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree

from sim.ews.soap import E_NS, M_NS, SOAP_NS, T_NS

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared" / "ews-schema"
MESSAGES_XSD = SCHEMA_DIR / "messages.xsd"

_lock = threading.Lock()
_schema: Any = None
schema_load_seconds: float | None = None


def load_schema() -> Any:
    """The EWS messages schema (xmlschema.XMLSchema), loaded once per process."""
    global _schema, schema_load_seconds
    with _lock:
        if _schema is None:
            if not MESSAGES_XSD.is_file():
                raise FileNotFoundError(f"EWS schema not found at {MESSAGES_XSD}")
            started = time.perf_counter()
            _schema = xmlschema.XMLSchema(str(MESSAGES_XSD))
            schema_load_seconds = time.perf_counter() - started
        return _schema


def response_problems(envelope_xml: bytes) -> list[str]:
    """Every way a response envelope breaks the EWS schema; empty when it is valid."""
    schema = load_schema()
    try:
        envelope = etree.fromstring(envelope_xml)
    except etree.XMLSyntaxError as error:
        return [f"not well-formed XML: {error}"]
    if envelope.tag != f"{{{SOAP_NS}}}Envelope":
        return [f"root element is {envelope.tag}, not soap:Envelope"]
    problems: list[str] = []
    header = envelope.find(f"{{{SOAP_NS}}}Header")
    if header is not None:
        for element in header:
            problems.extend(_element_problems(schema, element))
    body = envelope.find(f"{{{SOAP_NS}}}Body")
    if body is None:
        return [*problems, "no soap:Body"]
    if len(body) != 1:
        problems.append(f"soap:Body has {len(body)} children, expected 1")
    for element in body:
        if element.tag == f"{{{SOAP_NS}}}Fault":
            problems.extend(_fault_problems(element))
        else:
            problems.extend(_element_problems(schema, element))
    return problems


def _element_problems(schema: Any, element: Any) -> list[str]:
    namespace = etree.QName(element).namespace
    if namespace not in (M_NS, T_NS):
        return [f"unexpected element {element.tag}"]
    return [
        f"{etree.QName(element).localname}: {error.reason} at {error.path}"
        for error in schema.iter_errors(element)
    ]


def _fault_problems(fault: Any) -> list[str]:
    problems = []
    for name in ("faultcode", "faultstring"):
        if fault.find(name) is None or not (fault.find(name).text or "").strip():
            problems.append(f"SOAP fault without {name}")
    detail = fault.find("detail")
    if detail is None or detail.find(f"{{{E_NS}}}ResponseCode") is None:
        problems.append("SOAP fault without detail/ResponseCode")
    return problems
