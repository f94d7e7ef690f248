"""The checks every request passes, written once for every route.

``gate`` comes first, in this order: the body's size (413), then the organization id in the
path (404: an invalid id cannot name an organization). Authentication follows (each service its
own: the booking platform's signature, the administrator's key), then path ids (400), then the
body or the query (400 for JSON and query syntax, 422 for content). A refused request changes
nothing.

Bodies are strict, as the contract says: JSON whose keys are each named once (400 naming a
repeated key) and whose field names are the documented camelCase ones (``organizer_staff_id`` is
an unknown field, 422).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.http.answers import ValidationProblem, invalid, quoted, refuse
from shared.models import ID_PATTERN, ORG_ID_MAX_LENGTH, ORG_ID_PATTERN, parse_rfc3339

ModelT = TypeVar("ModelT", bound=BaseModel)

_ID = re.compile(ID_PATTERN)
_ORG_ID = re.compile(ORG_ID_PATTERN)
_OFFSET_LOST_IN_QUERY = re.compile(r"^\d{4}-\d{2}-\d{2}T[\d:.]+ \d{2}:\d{2}$", re.IGNORECASE)


@dataclass(frozen=True)
class SignedRequest:
    """What a booking platform signature covers: the method, the request target as sent (path
    and query string) and the raw body."""

    method: str
    target: str
    body: bytes = b""


def gate(org: str, body: bytes, max_bytes: int) -> None:
    """The first checks of every request: body size (413), then organization id (404)."""
    if len(body) > max_bytes:
        raise refuse(
            413,
            "payload_too_large",
            f"the body is {len(body)} bytes; at most {max_bytes} are accepted",
        )
    # fullmatch: ``$`` in the patterns also matches before a trailing line break ("%0A").
    if len(org) > ORG_ID_MAX_LENGTH or not _ORG_ID.fullmatch(org):
        raise refuse(404, "not_found", "no such organization")


def check_id(name: str, value: str) -> None:
    """A path id (appointment, staff member, connection): 400 unless it is a valid id."""
    if not _ID.fullmatch(value):
        raise refuse(
            400,
            "invalid_path",
            f"{name} {quoted(value)} is not a valid id: 1-128 letters, digits or . _ ~ : @ -, "
            "starting with a letter or digit",
        )


def field_path(location: Sequence[int | str]) -> str:
    """``("staff", 1, "role")`` → ``staff[1].role``."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validation_problems(error: ValidationError, model: type[BaseModel]) -> list[ValidationProblem]:
    """One problem per pydantic error, each naming its field path."""
    top_level = {info.alias or name for name, info in model.model_fields.items()}
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        location = detail["loc"]
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "extra_forbidden":
            message = f"unknown field {str(location[-1])!r}"
        path = field_path(location)
        if not location:
            # Checks across fields report no location; their messages start with the field
            # they concern ("staff must list exactly one organizer ...").
            first_word = message.split(" ", 1)[0]
            path = first_word if first_word in top_level else ""
        problems.append(ValidationProblem(field=path, message=message))
    return problems


class DuplicateKey(ValueError):
    """A JSON object names the same key twice (which one counts is up to each parser)."""


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def check_json(body: bytes) -> None:
    """400 unless the body is JSON that names each key of each object once."""
    try:
        json.loads(body, object_pairs_hook=_refuse_duplicate_keys)
    except DuplicateKey as exc:
        raise refuse(
            400, "invalid_json", f"the body names the key {quoted(str(exc))} more than once"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise refuse(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise refuse(400, "invalid_json", "the body's JSON is nested too deeply") from exc


def parse_json_body(body: bytes, model: type[ModelT], what: str) -> ModelT:
    """A JSON body as ``model``: 400 when it is not JSON or names a key twice, 422 naming every
    problem otherwise."""
    check_json(body)
    try:
        return model.model_validate_json(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise invalid(what, validation_problems(exc, model)) from exc


def parse_instant(name: str, value: str | None) -> datetime:
    """A query parameter as an aware datetime (RFC 3339 with an offset), or a 400 naming it."""
    if value is None or not value.strip():
        raise refuse(400, "invalid_query", f"{name} is required (RFC 3339 with an offset)")
    if _OFFSET_LOST_IN_QUERY.match(value):
        raise refuse(
            400,
            "invalid_query",
            f"{name} {quoted(value)} has a space before its offset: send '+' as %2B in a "
            "query string",
        )
    try:
        instant = parse_rfc3339(value)
    except ValueError as exc:
        raise refuse(400, "invalid_query", f"{name} {quoted(value)} {exc}") from exc
    if not representable_in_utc(instant):
        raise refuse(
            400, "invalid_query", f"{name} {quoted(value)} is outside the years 1 to 9999 in UTC"
        )
    return instant


def representable_in_utc(instant: datetime) -> bool:
    """Whether the instant has a UTC form (storage keeps times in UTC; near year 1 or 9999 an
    offset can push it out of range)."""
    try:
        instant.astimezone(UTC)
    except OverflowError:
        return False
    return True
