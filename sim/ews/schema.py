"""Validation of the simulator's EWS responses against Microsoft's schema
(``sim/ews/xsd/messages.xsd``, which imports ``types.xsd``).

Parsing the schema takes 3-10 seconds, so it happens once per process (``load_schema``, with the
time it took in ``schema_load_seconds``), and the parsed schema is kept as a pickle under the
repository's ``.calbridge/cache/`` keyed by a hash of the .xsd files and the xmlschema version
(loading that takes under a second). The cache lives in the working tree, not a shared temp
directory, because unpickling runs code: only files this checkout wrote are trusted.

``response_problems`` checks a whole response envelope: the ``ServerVersionInfo`` header and
every element of the SOAP body in the EWS namespaces. SOAP faults are not EWS schema types;
their shape is checked by hand.

Every invalid response any validating service meets is also recorded process-wide
(``recorded_failures``), so a test suite can assert at the end that none of its EWS responses
broke the schema, whichever simulator produced them.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree

from sim.ews.soap import E_NS, M_NS, SOAP_NS, T_NS

# Microsoft's schema files, unmodified (see xsd/README.md for where they come from).
SCHEMA_DIR = Path(__file__).resolve().parent / "xsd"
MESSAGES_XSD = SCHEMA_DIR / "messages.xsd"
CACHE_DIR = Path(__file__).resolve().parents[2] / ".calbridge" / "cache"

_lock = threading.Lock()
_schema: Any = None
schema_load_seconds: float | None = None
_recorded: list[tuple[str, tuple[str, ...]]] = []  # (operation, problems), process-wide


def load_schema() -> Any:
    """The EWS messages schema (xmlschema.XMLSchema), loaded once per process."""
    global _schema, schema_load_seconds
    with _lock:
        if _schema is None:
            if not MESSAGES_XSD.is_file():
                raise FileNotFoundError(f"EWS schema not found at {MESSAGES_XSD}")
            started = time.perf_counter()
            _schema = _cached_schema()
            schema_load_seconds = time.perf_counter() - started
        return _schema


def _cache_file() -> Path:
    digest = hashlib.sha256(xmlschema.__version__.encode())
    for name in ("messages.xsd", "types.xsd"):
        digest.update((SCHEMA_DIR / name).read_bytes())
    return CACHE_DIR / f"ews-schema-{digest.hexdigest()[:16]}.pickle"


def _cached_schema() -> Any:
    cache = _cache_file()
    if cache.is_file():
        try:
            with cache.open("rb") as stream:
                return pickle.load(stream)  # noqa: S301 - written by this checkout, keyed by hash
        except Exception:  # a stale or truncated cache is rebuilt below
            cache.unlink(missing_ok=True)
    schema = xmlschema.XMLSchema(str(MESSAGES_XSD))
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        partial = cache.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(pickle.dumps(schema))
        partial.replace(cache)  # atomic: parallel test workers never read half a file
    except OSError:
        pass  # a read-only checkout still validates, just without the cache
    return schema


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
    name = etree.QName(element).localname
    try:
        # xsi:type values ("t:AlternateIdType") name prefixes declared on the envelope, above
        # the element being validated.
        errors = list(schema.iter_errors(element, namespaces={"m": M_NS, "t": T_NS}))
    except Exception as error:  # the validator itself failing counts as a problem, not a crash
        return [f"{name}: could not be validated ({type(error).__name__}: {error})"]
    return [f"{name}: {error.reason} at {error.path}" for error in errors]


def _fault_problems(fault: Any) -> list[str]:
    problems = []
    for name in ("faultcode", "faultstring"):
        if fault.find(name) is None or not (fault.find(name).text or "").strip():
            problems.append(f"SOAP fault without {name}")
    detail = fault.find("detail")
    if detail is None or detail.find(f"{{{E_NS}}}ResponseCode") is None:
        problems.append("SOAP fault without detail/ResponseCode")
    return problems


def record_failure(operation: str, problems: tuple[str, ...]) -> None:
    with _lock:
        _recorded.append((operation, problems))


def recorded_failures() -> list[tuple[str, tuple[str, ...]]]:
    """Every (operation, problems) an invalid response produced in this process so far."""
    with _lock:
        return list(_recorded)


def forget_failure(operation: str, problems: tuple[str, ...]) -> None:
    """Drop one recorded failure (a test that produces an invalid response on purpose)."""
    with _lock:
        if (operation, problems) in _recorded:
            _recorded.remove((operation, problems))
