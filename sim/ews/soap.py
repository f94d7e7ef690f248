"""SOAP 1.1 framing for the EWS simulator: namespaces, request envelope parsing (the three EWS
headers we honour), response envelopes with ``ServerVersionInfo``, SOAP faults the way Exchange
writes them, and small element builders used by every operation module.

Requests are parsed with lxml with entity resolution and network access off: the envelope comes
from an untrusted client.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from lxml import etree

from sim.ews.errors import EwsFault
from sim.ews.timezones import zone_for_ms_id

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

NSMAP = {"s": SOAP_NS, "m": M_NS, "t": T_NS}
RESPONSE_NSMAP = {"s": SOAP_NS, "m": M_NS, "t": T_NS, "xsi": XSI_NS}

# What an Exchange 2019 CU12 server reports; exchangelib maps 15.2 to API version Exchange2016 and
# treats the dated "V2017_07_11" string as "use the version you asked for".
SERVER_VERSION = {
    "MajorVersion": "15",
    "MinorVersion": "2",
    "MajorBuildNumber": "1118",
    "MinorBuildNumber": "7",
    "Version": "V2017_07_11",
}

# RequestServerVersion values the schema accepts (ExchangeVersionType).
KNOWN_VERSIONS = frozenset(
    {
        "Exchange2007",
        "Exchange2007_SP1",
        "Exchange2009",
        "Exchange2010",
        "Exchange2010_SP1",
        "Exchange2010_SP2",
        "Exchange2012",
        "Exchange2013",
        "Exchange2013_SP1",
        "Exchange2015",
        "Exchange2016",
        "V2015_10_05",
        "V2016_01_06",
        "V2016_04_13",
        "V2016_07_13",
        "V2016_10_10",
        "V2017_01_07",
        "V2017_04_14",
        "V2017_07_11",
        "V2017_10_09",
        "V2018_01_08",
    }
)

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=True
)


def m(name: str) -> str:
    return f"{{{M_NS}}}{name}"


def t(name: str) -> str:
    return f"{{{T_NS}}}{name}"


def add(parent: Any, tag: str, text: str | None = None, **attrs: str) -> Any:
    """Append a child element (``tag`` in Clark notation) with optional text and attributes."""
    child = etree.SubElement(parent, tag, attrs) if attrs else etree.SubElement(parent, tag)
    if text is not None:
        child.text = text
    return child


def text_of(parent: Any, tag: str) -> str | None:
    child = parent.find(tag)
    if child is None:
        return None
    return child.text or ""


def format_datetime(value: datetime) -> str:
    """xs:dateTime in UTC with a Z, as Exchange answers."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_bool(value: bool) -> str:
    return "true" if value else "false"


def parse_bool(raw: str | None, field: str) -> bool:
    if raw is None:
        raise EwsFault("ErrorSchemaValidation", f"{field} needs a boolean value.")
    value = raw.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise EwsFault("ErrorSchemaValidation", f"{field}: {raw!r} is not a valid xs:boolean.")


def parse_datetime(raw: str | None, field: str, default_zone: tzinfo) -> datetime:
    """An xs:dateTime from a request, as an aware UTC datetime. A value without an offset is in
    the request's TimeZoneContext (UTC without one), as Exchange reads it."""
    if not raw:
        raise EwsFault("ErrorSchemaValidation", f"{field} needs an xs:dateTime value.")
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError as error:
        raise EwsFault(
            "ErrorSchemaValidation", f"{field}: {raw!r} is not a valid xs:dateTime."
        ) from error
    if value.tzinfo is None:
        value = value.replace(tzinfo=default_zone)
    return value.astimezone(UTC)


@dataclass
class EwsEnvelope:
    """What a request says besides its operation element."""

    operation: Any  # the body's first element (e.g. m:GetFolder)
    operation_name: str  # its local name
    requested_version: str
    impersonated: str | None  # ConnectingSID address, lower-case
    time_zone: tzinfo  # TimeZoneContext, UTC when absent


def parse_envelope(body: bytes) -> EwsEnvelope:
    """Parse a SOAP request; anything that is not a well-formed EWS envelope is an EwsFault."""
    if not body:
        raise EwsFault("ErrorInvalidRequest", "The request body is empty.")
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise EwsFault(
            "ErrorSchemaValidation", f"The request is not well-formed XML: {error}"
        ) from error
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise EwsFault(
            "ErrorSchemaValidation",
            "The request is not a SOAP 1.1 envelope (expected soap:Envelope).",
        )
    body_elem = root.find(f"{{{SOAP_NS}}}Body")
    if body_elem is None or len(body_elem) == 0:
        raise EwsFault("ErrorSchemaValidation", "The SOAP envelope has no Body.")
    operation = body_elem[0]
    qname = etree.QName(operation)
    if qname.namespace != M_NS:
        raise EwsFault(
            "ErrorSchemaValidation",
            f"The body element {qname.localname!r} is not in the EWS messages namespace.",
        )

    requested_version = "Exchange2007_SP1"  # Exchange's default when the header is missing
    impersonated: str | None = None
    zone: tzinfo = UTC
    header = root.find(f"{{{SOAP_NS}}}Header")
    if header is not None:
        version_elem = header.find(t("RequestServerVersion"))
        if version_elem is not None:
            requested_version = version_elem.get("Version", "")
            if requested_version not in KNOWN_VERSIONS:
                raise EwsFault(
                    "ErrorInvalidServerVersion",
                    f"The specified server version {requested_version!r} is invalid.",
                )
        impersonation = header.find(t("ExchangeImpersonation"))
        if impersonation is not None:
            impersonated = _connecting_address(impersonation)
        context = header.find(t("TimeZoneContext"))
        if context is not None:
            definition = context.find(t("TimeZoneDefinition"))
            ms_id = definition.get("Id") if definition is not None else None
            if ms_id:
                found = zone_for_ms_id(ms_id)
                if found is None:
                    raise EwsFault(
                        "ErrorTimeZone", f"The time zone {ms_id!r} in TimeZoneContext is unknown."
                    )
                zone = found
    return EwsEnvelope(
        operation=operation,
        operation_name=qname.localname,
        requested_version=requested_version,
        impersonated=impersonated,
        time_zone=zone,
    )


def _connecting_address(impersonation: Any) -> str:
    sid = impersonation.find(t("ConnectingSID"))
    if sid is not None:
        for name in ("PrimarySmtpAddress", "SmtpAddress", "PrincipalName"):
            value = text_of(sid, t(name))
            if value:
                return value.strip().lower()
    raise EwsFault(
        "ErrorInvalidExchangeImpersonationHeaderData",
        "ExchangeImpersonation needs ConnectingSID with PrimarySmtpAddress, SmtpAddress or "
        "PrincipalName (SID impersonation is not supported here).",
    )


def new_envelope() -> tuple[Any, Any]:
    """A response envelope with the ServerVersionInfo header; returns (envelope, body)."""
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=RESPONSE_NSMAP)
    header = add(envelope, f"{{{SOAP_NS}}}Header")
    add(header, t("ServerVersionInfo"), **SERVER_VERSION)
    body = add(envelope, f"{{{SOAP_NS}}}Body")
    return envelope, body


def fault_envelope(fault: EwsFault) -> Any:
    """A SOAP fault as Exchange sends it: faultcode in the types namespace, the EWS response
    code and message in ``detail`` (errors namespace), MessageXml in the types namespace —
    exchangelib reads ErrorServerBusy's BackOffMilliseconds from there."""
    envelope = etree.Element(f"{{{SOAP_NS}}}Envelope", nsmap=RESPONSE_NSMAP)
    body = add(envelope, f"{{{SOAP_NS}}}Body")
    soap_fault = add(body, f"{{{SOAP_NS}}}Fault")
    code = "a:" + fault.code
    code_elem = etree.SubElement(soap_fault, "faultcode", nsmap={"a": T_NS})
    code_elem.text = code
    add(soap_fault, "faultstring", fault.message).set(
        "{http://www.w3.org/XML/1998/namespace}lang", "en-US"
    )
    detail = add(soap_fault, "detail")
    error_nsmap = {"e": E_NS}
    etree.SubElement(detail, f"{{{E_NS}}}ResponseCode", nsmap=error_nsmap).text = fault.code
    etree.SubElement(detail, f"{{{E_NS}}}Message", nsmap=error_nsmap).text = fault.message
    if fault.message_values:
        message_xml = add(detail, t("MessageXml"))
        for name, value in fault.message_values.items():
            add(message_xml, t("Value"), value, Name=name)
    return envelope


def serialize(envelope: Any) -> bytes:
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))
