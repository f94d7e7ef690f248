"""HTTP route templates as the Functions host reads them (ASP.NET Core route syntax).

Supported: literal segments (matched case-insensitively), parameters ``{name}``, typed and
chained constraints ``{id:int}``, ``{n:int:min(1)}``, optional parameters ``{x?}``, defaults
``{x=7}``, a trailing catch-all ``{*rest}``, and segments mixing text and parameters
(``{name}.{ext}``). Constraints: int, long, bool, guid, alpha, double, float, decimal, datetime,
minlength(n), maxlength(n), length(n) / length(a,b), min(n), max(n), range(a,b), regex(expr),
required. Paths are matched segment by segment after percent-decoding each segment, so an
encoded ``%2F`` stays inside its segment.

When several templates match, the most specific wins (ASP.NET's precedence: literal segments
before constrained parameters before plain ones before catch-alls).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation


class RouteTemplateError(ValueError):
    """A route template the runner cannot read; the message names the template."""


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _integer_in(bounds: tuple[int, int]) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        return re.fullmatch(r"[+-]?\d+", value) is not None and (
            bounds[0] <= int(value) <= bounds[1]
        )

    return check


def _number(value: str) -> bool:
    try:
        Decimal(value)
    except InvalidOperation:
        return False
    return value.strip() == value and value.lower() not in ("nan", "inf", "-inf", "infinity")


def _datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": _integer_in(_INT32),
    "long": _integer_in(_INT64),
    "bool": lambda value: value.lower() in ("true", "false"),
    "guid": _guid,
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "double": _number,
    "float": _number,
    "decimal": _number,
    "datetime": _datetime,
    "required": lambda value: value != "",
}


def _as_int(text: str, template: str) -> int:
    try:
        return int(text.strip())
    except ValueError as exc:
        raise RouteTemplateError(f"route {template!r}: {text!r} is not an integer") from exc


def _constraint(name: str, argument: str | None, template: str) -> Callable[[str], bool]:
    lowered = name.lower()
    if argument is None:
        if lowered not in _SIMPLE_CONSTRAINTS:
            raise RouteTemplateError(f"route {template!r}: unknown constraint {name!r}")
        return _SIMPLE_CONSTRAINTS[lowered]
    if lowered == "regex":
        pattern = re.compile(argument, re.IGNORECASE)
        return lambda value: pattern.search(value) is not None
    numbers = [_as_int(part, template) for part in argument.split(",")]
    if lowered == "minlength" and len(numbers) == 1:
        return lambda value: len(value) >= numbers[0]
    if lowered == "maxlength" and len(numbers) == 1:
        return lambda value: len(value) <= numbers[0]
    if lowered == "length" and len(numbers) == 1:
        return lambda value: len(value) == numbers[0]
    if lowered == "length" and len(numbers) == 2:
        return lambda value: numbers[0] <= len(value) <= numbers[1]
    is_long = _SIMPLE_CONSTRAINTS["long"]
    if lowered == "min" and len(numbers) == 1:
        return lambda value: is_long(value) and int(value) >= numbers[0]
    if lowered == "max" and len(numbers) == 1:
        return lambda value: is_long(value) and int(value) <= numbers[0]
    if lowered == "range" and len(numbers) == 2:
        return lambda value: is_long(value) and numbers[0] <= int(value) <= numbers[1]
    raise RouteTemplateError(f"route {template!r}: unknown constraint {name}({argument})")


@dataclass(frozen=True)
class RouteParameter:
    name: str
    constraints: tuple[Callable[[str], bool], ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.constraints)


def _parse_parameter(body: str, template: str) -> RouteParameter:
    """``id:int?`` / ``*rest`` / ``x=5`` (the text between braces) → a RouteParameter."""
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", body)
    if match is None:
        raise RouteTemplateError(f"route {template!r}: bad parameter {{{body}}}")
    name, rest = match.group(0), body[match.end() :]
    default: str | None = None
    optional = False
    constraints: list[Callable[[str], bool]] = []
    while rest:
        if rest.startswith(":"):
            constraint = re.match(r":([A-Za-z]+)", rest)
            if constraint is None:
                raise RouteTemplateError(f"route {template!r}: bad constraint in {{{body}}}")
            rest = rest[constraint.end() :]
            argument = None
            if rest.startswith("("):
                depth, end = 0, -1
                for position, char in enumerate(rest):
                    depth += {"(": 1, ")": -1}.get(char, 0)
                    if depth == 0:
                        end = position
                        break
                if end < 0:
                    raise RouteTemplateError(f"route {template!r}: unbalanced ( in {{{body}}}")
                argument, rest = rest[1:end], rest[end + 1 :]
            constraints.append(_constraint(constraint.group(1), argument, template))
        elif rest == "?":
            optional, rest = True, ""
        elif rest.startswith("="):
            default, rest = rest[1:], ""
        else:
            raise RouteTemplateError(f"route {template!r}: cannot read {{{body}}}")
    return RouteParameter(name, tuple(constraints), optional, default, catch_all)


@dataclass(frozen=True)
class _Segment:
    """One path segment of a template: literal text and parameters, in order."""

    parts: tuple[str | RouteParameter, ...]

    @property
    def is_literal(self) -> bool:
        return all(isinstance(part, str) for part in self.parts)

    @property
    def single_parameter(self) -> RouteParameter | None:
        only = self.parts[0] if len(self.parts) == 1 else None
        return only if isinstance(only, RouteParameter) else None

    @property
    def precedence(self) -> int:
        """Lower is more specific (ASP.NET's route precedence by segment)."""
        parameter = self.single_parameter
        if self.is_literal:
            return 1
        if parameter is None:
            return 2  # text mixed with parameters
        if parameter.catch_all:
            return 5
        return 3 if parameter.constraints else 4

    def match(self, text: str) -> dict[str, str] | None:
        if self.is_literal:
            return {} if text.lower() == "".join(map(str, self.parts)).lower() else None
        pattern = "".join(
            re.escape(part) if isinstance(part, str) else f"(?P<{part.name}>.+?)"
            for part in self.parts
        )
        found = re.fullmatch(pattern, text, re.IGNORECASE | re.DOTALL)
        if found is None:
            return None
        values = {name: value for name, value in found.groupdict().items() if value is not None}
        for part in self.parts:
            if isinstance(part, RouteParameter) and not part.accepts(values[part.name]):
                return None
        return values


def _parse_segment(text: str, template: str) -> _Segment:
    parts: list[str | RouteParameter] = []
    position = 0
    for found in re.finditer(r"\{([^{}]*)\}", text):
        if found.start() > position:
            parts.append(text[position : found.start()])
        parts.append(_parse_parameter(found.group(1), template))
        position = found.end()
    if position < len(text):
        parts.append(text[position:])
    if any(isinstance(part, str) and ("{" in part or "}" in part) for part in parts):
        raise RouteTemplateError(f"route {template!r}: unbalanced braces in {text!r}")
    if not parts:
        raise RouteTemplateError(f"route {template!r} has an empty segment")
    return _Segment(tuple(parts))


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed route template; :meth:`match` gives the route parameters or None."""

    template: str
    segments: tuple[_Segment, ...]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip("/")
        segments = tuple(_parse_segment(part, template) for part in text.split("/")) if text else ()
        for position, segment in enumerate(segments):
            parameters = [p for p in segment.parts if isinstance(p, RouteParameter)]
            is_last = position == len(segments) - 1
            if any(p.catch_all for p in parameters) and not (
                is_last and segment.single_parameter is not None
            ):
                raise RouteTemplateError(
                    f"route {template!r}: a catch-all must be the whole last segment"
                )
            if any(p.optional for p in parameters) and segment.single_parameter is None:
                raise RouteTemplateError(
                    f"route {template!r}: an optional parameter must be a whole segment"
                )
        return cls(template, segments)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(segment.precedence for segment in self.segments)

    def _omittable(self, segment: _Segment) -> bool:
        parameter = segment.single_parameter
        return parameter is not None and (
            parameter.optional or parameter.default is not None or parameter.catch_all
        )

    def match(self, path_segments: Sequence[str]) -> dict[str, str] | None:
        """Route parameters for these (decoded) path segments, or None when it doesn't match."""
        values: dict[str, str] = {}
        for position, segment in enumerate(self.segments):
            parameter = segment.single_parameter
            if parameter is not None and parameter.catch_all:
                rest = "/".join(path_segments[position:])
                if rest:
                    if not parameter.accepts(rest):
                        return None
                    values[parameter.name] = rest
                elif parameter.default is not None:
                    values[parameter.name] = parameter.default
                return values
            if position >= len(path_segments):
                if not self._omittable(segment):
                    return None
                assert parameter is not None
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            found = segment.match(path_segments[position])
            if found is None:
                return None
            values.update(found)
        return values if len(path_segments) <= len(self.segments) else None
