"""HTTP route templates as the Functions host reads them (ASP.NET Core route syntax), as far as
calbridge's routes and the runner's tests use it.

Supported: literal segments (matched case-insensitively), parameters ``{name}``, optional
parameters ``{name?}``, the ``int`` constraint ``{id:int}`` (a 32-bit integer) and a trailing
catch-all ``{*rest}``; each parameter is a whole segment. The rest of ASP.NET's syntax (other
constraints, defaults ``{x=7}``, text and parameters mixed in one segment) is refused with a
RouteTemplateError naming the route, so an app using it fails when it is indexed instead of
being routed differently than in Azure. Paths are matched segment by segment after
percent-decoding each segment, so an encoded ``%2F`` stays inside its segment.

When several templates match, the most specific wins (ASP.NET's precedence: literal segments
before constrained parameters before plain ones before catch-alls).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class RouteTemplateError(ValueError):
    """A route template the runner cannot read; the message names the template."""


_INT32 = (-(2**31), 2**31 - 1)
_PARAMETER = re.compile(
    r"\{(?P<catch_all>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?::(?P<constraint>[^{}?]*))?(?P<optional>\?)?\}"
)
_SEGMENT_FORMS = "literal text or one parameter: {name}, {name?}, {name:int}, {*rest}"


def _int32(value: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", value) is not None and _INT32[0] <= int(value) <= _INT32[1]


# ASP.NET has many more; these are the ones some route here uses, so the only ones checked.
_CONSTRAINTS: dict[str, Callable[[str], bool]] = {"int": _int32}


@dataclass(frozen=True)
class RouteParameter:
    name: str
    constraint: Callable[[str], bool] | None = None
    optional: bool = False
    catch_all: bool = False

    def accepts(self, value: str) -> bool:
        return self.constraint is None or self.constraint(value)

    @property
    def precedence(self) -> int:
        """Lower is more specific (ASP.NET's route precedence by segment; literals are 0)."""
        if self.catch_all:
            return 3
        return 1 if self.constraint is not None else 2


Segment = str | RouteParameter


def _parse_segment(text: str, template: str) -> Segment:
    if not text:
        raise RouteTemplateError(f"route {template!r} has an empty segment")
    if "{" not in text and "}" not in text:
        return text
    found = _PARAMETER.fullmatch(text)
    if found is None:
        raise RouteTemplateError(
            f"route {template!r}: segment {text!r} is not supported (a segment is {_SEGMENT_FORMS})"
        )
    constraint = found["constraint"]
    check = None
    if constraint is not None:
        check = _CONSTRAINTS.get(constraint.lower())
        if check is None:
            raise RouteTemplateError(
                f"route {template!r}: constraint {constraint!r} in {text!r} is not supported "
                f"(only {', '.join(_CONSTRAINTS)})"
            )
    return RouteParameter(
        found["name"],
        check,
        optional=found["optional"] is not None,
        catch_all=found["catch_all"] is not None,
    )


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed route template; :meth:`match` gives the route parameters or None."""

    template: str
    segments: tuple[Segment, ...]

    @classmethod
    def parse(cls, template: str) -> RouteTemplate:
        text = template.strip("/")
        segments = tuple(_parse_segment(part, template) for part in text.split("/")) if text else ()
        for segment in segments[:-1]:
            if isinstance(segment, RouteParameter) and segment.catch_all:
                raise RouteTemplateError(
                    f"route {template!r}: a catch-all must be the whole last segment"
                )
        return cls(template, segments)

    @property
    def precedence(self) -> tuple[int, ...]:
        return tuple(
            segment.precedence if isinstance(segment, RouteParameter) else 0
            for segment in self.segments
        )

    def match(self, path_segments: Sequence[str]) -> dict[str, str] | None:
        """Route parameters for these (decoded) path segments, or None when it doesn't match."""
        values: dict[str, str] = {}
        for position, segment in enumerate(self.segments):
            if isinstance(segment, RouteParameter) and segment.catch_all:
                rest = "/".join(path_segments[position:])
                if rest:
                    if not segment.accepts(rest):
                        return None
                    values[segment.name] = rest
                return values
            if position >= len(path_segments):
                if isinstance(segment, RouteParameter) and segment.optional:
                    continue
                return None
            text = path_segments[position]
            if isinstance(segment, str):
                if text.lower() != segment.lower():
                    return None
                continue
            if not text or not segment.accepts(text):
                return None
            values[segment.name] = text
        return values if len(path_segments) <= len(self.segments) else None
