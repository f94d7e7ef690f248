"""The OData query language the Graph service understands: ``Prefer`` preferences, ``$select``,
``$expand=singleValueExtendedProperties($filter=...)`` and ``multiValueExtendedProperties(...)``,
extended property ids, and ``$filter`` expressions.

``$filter`` is parsed into a small expression tree evaluated against an event's JSON (with all
its single-value extended properties present, whether or not they are expanded in the output):
comparisons (``eq ne gt ge lt le``) of property paths (``start/dateTime``) with literals,
``and``/``or``/``not``, parentheses, and the ``any`` lambda over a collection — of objects
(``singleValueExtendedProperties/any(ep: ep/id eq 'String {guid} Name X' and ep/value eq 'v')``)
or of strings (``categories/any(c: c eq 'Red')``). Anything else is a 400 naming the clause.

Extended property ids take the three forms Graph documents — ``"{type} {guid} Name {name}"``,
``"{type} {guid} Id {id}"`` and ``"{type} {proptag}"`` — and name the same store key as the EWS
ExtendedFieldURI with that property set and name, PropertyId or PropertyTag:
https://learn.microsoft.com/graph/api/resources/extended-properties-overview
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sim import extended
from sim.graph.errors import GraphError, bad_request
from sim.store import ExtendedPropertyKey

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_EXTENDED_ID = re.compile(
    rf"^\s*(?P<type>[A-Za-z]+)\s+(?:\{{(?P<guid>{_GUID})\}}\s+"
    r"(?:Name\s+(?P<name>\S.*?)|Id\s+(?P<id>0x[0-9a-fA-F]+|\d+))"
    r"|(?P<tag>0x[0-9a-fA-F]{8}))\s*$",
    re.IGNORECASE,
)
# MAPI property type codes (the low word of a property tag), by MapiPropertyType name.
_TYPE_CODES = {
    "Short": 0x0002,
    "Integer": 0x0003,
    "Float": 0x0004,
    "Double": 0x0005,
    "Currency": 0x0006,
    "ApplicationTime": 0x0007,
    "Boolean": 0x000B,
    "Long": 0x0014,
    "String": 0x001F,
    "SystemTime": 0x0040,
    "CLSID": 0x0048,
    "Binary": 0x0102,
}
_MULTI_VALUE_FLAG = 0x1000


# --- extended property ids ---------------------------------------------------------------------


def _id_match(text: str) -> re.Match[str] | None:
    match = _EXTENDED_ID.match(text)
    if match is None:
        return None
    try:
        extended.canonical_type(match.group("type"))
    except extended.ExtendedValueError:
        return None
    return match


def parse_extended_id(text: str) -> ExtendedPropertyKey:
    """An extended property id in one of Graph's three forms → the store key; 400 otherwise."""
    match = _id_match(text)
    if match is None:
        raise bad_request(
            f"extended property id {text!r} is not valid: use '{{type}} {{guid}} Name {{name}}', "
            "'{type} {guid} Id {id}' or '{type} {proptag}'",
            "ErrorInvalidExtendedPropertyValue",
        )
    property_type = extended.canonical_type(match.group("type"))
    if match.group("tag"):
        tag = int(match.group("tag"), 16)
        return ExtendedPropertyKey("", f"{tag >> 16:#06x}", property_type)
    set_id = match.group("guid").lower()
    if match.group("id"):
        number = int(match.group("id"), 0)
        return ExtendedPropertyKey(set_id, f"{number:#06x}", property_type)
    return ExtendedPropertyKey(set_id, match.group("name"), property_type)


def format_extended_id(key: ExtendedPropertyKey) -> str:
    """The id Graph writes for a store key (the form it was named by: EWS's PropertyId and
    PropertyTag keys come out as the Id and proptag forms)."""
    if not key.property_set_id:
        kind = extended.element_type(key.type)
        code = _TYPE_CODES[kind] | (_MULTI_VALUE_FLAG if extended.is_array(key.type) else 0)
        return f"{key.type} 0x{int(key.name, 16):04X}{code:04X}"
    if re.fullmatch(r"0x[0-9a-f]{4}", key.name):
        return f"{key.type} {{{key.property_set_id}}} Id {key.name}"
    return f"{key.type} {{{key.property_set_id}}} Name {key.name}"


def canonical_extended_id(text: str) -> str:
    """An id compared in a filter, normalised like the ids the service writes (so GUID case,
    type spelling and spacing don't matter); other strings are returned unchanged."""
    if _id_match(text) is None:
        return text
    return format_extended_id(parse_extended_id(text))


# --- Prefer ----------------------------------------------------------------------------------


def parse_prefer(header: str | None) -> dict[str, str]:
    """``Prefer: outlook.timezone="X", odata.maxpagesize=5`` → {name lower-case: value}."""
    preferences: dict[str, str] = {}
    if not header:
        return preferences
    for part in re.findall(r'(?:[^,"]|"[^"]*")+', header):
        name, _, value = part.strip().partition("=")
        if name:
            preferences[name.strip().lower()] = value.strip().strip('"')
    return preferences


# --- $select ---------------------------------------------------------------------------------


def parse_select(value: str | None) -> set[str] | None:
    if not value:
        return None
    return {name.strip() for name in value.split(",") if name.strip()}


def apply_select(event: dict[str, Any], selected: set[str] | None) -> dict[str, Any]:
    """Keep the selected properties (case-insensitively); Graph always keeps id and the etag."""
    if selected is None:
        return event
    wanted = {name.lower() for name in selected} | {"id", "@odata.etag"}
    # Expanded properties are asked for separately.
    wanted |= {"singlevalueextendedproperties", "multivalueextendedproperties"}
    return {key: value for key, value in event.items() if key.lower() in wanted}


# --- $filter ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}T[\d:.]+(?:Z|[+-]\d{2}:\d{2})?)"
    r"|(?P<punct>[(),:])|(?P<word>[A-Za-z0-9_@.$/\-]+))"
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}

Predicate = Callable[[Any], bool]  # an event document, or one member inside any()


@dataclass
class _Token:
    kind: str  # "string" | "datetime" | "punct" | "word"
    text: str


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise bad_request(f"Invalid filter clause: cannot read {text[position:]!r}")
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        tokens.append(_Token(kind, value))
        position = match.end()
    return tokens


def _literal(token: _Token) -> object:
    if token.kind == "string":
        return canonical_extended_id(token.text)
    lowered = token.text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "null":
        return None
    if re.fullmatch(r"-?\d+", token.text):
        return int(token.text)
    if token.kind == "datetime":
        return token.text  # an unquoted DateTimeOffset compares as its ISO text
    raise bad_request(f"Invalid filter clause: {token.text!r} is not a literal")


def _lookup(document: object, path: list[str]) -> object:
    value: object = document
    for step in path:
        if not isinstance(value, Mapping):
            return None
        found = None
        for key, item in value.items():
            if key.lower() == step.lower():
                found = item
                break
        value = found
    return value


def _compare(left: object, operator: str, right: object) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if operator == "eq":
        return left == right
    if operator == "ne":
        return left != right
    if left is None or right is None:
        return False
    try:
        if operator == "gt":
            return left > right  # type: ignore[operator]
        if operator == "ge":
            return left >= right  # type: ignore[operator]
        if operator == "lt":
            return left < right  # type: ignore[operator]
        return left <= right  # type: ignore[operator]
    except TypeError:
        return False


class _FilterParser:
    """Recursive descent over: or-expr := and-expr ('or' and-expr)*; and-expr := unary ('and'
    unary)*; unary := 'not' unary | '(' or-expr ')' | path/any(var: or-expr) | path op literal."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0
        self.scopes: list[str] = []

    def parse(self) -> Predicate:
        if not self.tokens:
            raise bad_request("Invalid filter clause: empty")
        predicate = self._or()
        if self.position != len(self.tokens):
            raise bad_request(
                f"Invalid filter clause: unexpected {self.tokens[self.position].text!r} "
                f"in {self.text!r}"
            )
        return predicate

    def _peek(self) -> _Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self) -> _Token:
        token = self._peek()
        if token is None:
            raise bad_request(f"Invalid filter clause: {self.text!r} ends too early")
        self.position += 1
        return token

    def _expect(self, text: str) -> None:
        token = self._take()
        if token.text.lower() != text:
            raise bad_request(f"Invalid filter clause: expected {text!r}, found {token.text!r}")

    def _is_word(self, word: str) -> bool:
        token = self._peek()
        return token is not None and token.kind == "word" and token.text.lower() == word

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._is_word("or"):
            self.position += 1
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda document: any(part(document) for part in parts)

    def _and(self) -> Predicate:
        parts = [self._unary()]
        while self._is_word("and"):
            self.position += 1
            parts.append(self._unary())
        if len(parts) == 1:
            return parts[0]
        return lambda document: all(part(document) for part in parts)

    def _unary(self) -> Predicate:
        token = self._take()
        if token.kind == "word" and token.text.lower() == "not":
            inner = self._unary()
            return lambda document: not inner(document)
        if token.kind == "punct" and token.text == "(":
            inner = self._or()
            self._expect(")")
            return inner
        if token.kind != "word":
            raise bad_request(f"Invalid filter clause: unexpected {token.text!r}")
        path = token.text.split("/")
        if path[-1].lower() == "any" and self._peek() is not None and self._peek_text() == "(":
            return self._any(path[:-1])
        if self.scopes and path[0] == self.scopes[-1]:
            path = path[1:]
        elif self.scopes:
            raise bad_request(
                f"Invalid filter clause: {token.text!r} must start with {self.scopes[-1]}/"
            )
        operator = self._take().text.lower()
        if operator not in _COMPARISONS:
            raise bad_request(f"Invalid filter clause: {operator!r} is not a supported operator")
        literal = _literal(self._take())
        return lambda document: _compare(_lookup(document, path), operator, literal)

    def _peek_text(self) -> str:
        token = self._peek()
        return token.text if token else ""

    def _any(self, collection: list[str]) -> Predicate:
        self._expect("(")
        variable = self._take()
        if variable.kind != "word":
            raise bad_request("Invalid filter clause: any() needs a lambda variable")
        self._expect(":")
        self.scopes.append(variable.text)
        inner = self._or()
        self.scopes.pop()
        self._expect(")")

        def matches(document: Mapping[str, Any]) -> bool:
            members = _lookup(document, collection)
            if not isinstance(members, list):
                return False
            # Members are objects (their properties are paths under the variable) or primitive
            # values (the variable itself is the value).
            return any(inner(member) for member in members)

        return matches


def parse_filter(text: str | None) -> Predicate | None:
    if not text or not text.strip():
        return None
    return _FilterParser(text).parse()


# --- $expand ---------------------------------------------------------------------------------


@dataclass
class ExtendedExpansion:
    """One expanded collection of ``$expand``: which of its properties to include."""

    predicate: Predicate | None  # None: all of them

    def wants(self, property_json: Mapping[str, Any]) -> bool:
        return self.predicate is None or self.predicate(property_json)


EXPANDABLE = ("singleValueExtendedProperties", "multiValueExtendedProperties")


def _top_level_parts(text: str) -> list[str]:
    """``a(x,y),b`` → ``["a(x,y)", "b"]``: commas inside parentheses or quotes don't split."""
    parts: list[str] = []
    depth, start, quoted = 0, 0, False
    for position, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:position])
            start = position + 1
    parts.append(text[start:])
    return parts


def parse_expand(text: str | None) -> dict[str, ExtendedExpansion]:
    """The extended property collections ``$expand`` asks for, by name (as in EXPANDABLE); only
    those two can be expanded on events here."""
    expansions: dict[str, ExtendedExpansion] = {}
    if not text or not text.strip():
        return expansions
    for part in _top_level_parts(text):
        match = re.fullmatch(
            r"\s*(\w+)\s*(?:\(\s*\$filter\s*=\s*(.*)\))?\s*", part, re.IGNORECASE | re.DOTALL
        )
        name = next(
            (known for known in EXPANDABLE if match and match.group(1).lower() == known.lower()),
            None,
        )
        if match is None or name is None:
            raise GraphError(
                400,
                "BadRequest",
                f"$expand={text!r} is not supported here: only singleValueExtendedProperties"
                "($filter=id eq '...') and multiValueExtendedProperties(...) can be expanded "
                "on events",
            )
        if name in expansions:
            raise GraphError(
                400, "BadRequest", f"$expand names {name} twice; combine the filters with 'or'"
            )
        expansions[name] = ExtendedExpansion(
            parse_filter(match.group(2)) if match.group(2) else None
        )
    return expansions


def parse_int(name: str, value: str | None, *, minimum: int = 0) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        raise bad_request(f"{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise bad_request(f"{name} must be at least {minimum}, not {number}")
    return number
