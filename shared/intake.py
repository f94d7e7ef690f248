"""The booking platform's inbound routes as a service: appointment snapshots and busy-time
queries. Framework-free (``functions/booking_api.py`` adapts it to Azure Functions).

Every request passes the same gate, in this order: body size (413), organization id (404: an
invalid id cannot name an organization), signature with the organization's secret (401; an
unknown organization is answered exactly like a wrong signature, so answers never tell which
organizations exist), then path ids (400), then the body or the query (400 for JSON and query
syntax, 422 for the snapshot's content). A refused request stores and queues nothing.

Accepted snapshots are saved with :meth:`AppointmentRepository.save_snapshot` (ETag-guarded) and
announced on ``appointment-changes`` with the ids only. Nothing here calls Exchange. Logs carry
ids, versions and outcomes, never bodies or secrets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.booking.responses import (
    ApiError,
    AppointmentAccepted,
    AppointmentStale,
    ValidationFailed,
    ValidationProblem,
)
from shared.booking.signature import (
    REQUEST_SCHEME,
    SignatureError,
    check_digest,
    check_freshness,
    parse_header,
    request_message,
)
from shared.config import (
    SecretNotFound,
    SecretResolver,
    SecretUnavailable,
    org_previous_signing_secret_reference,
    org_signing_secret_reference,
)
from shared.models import (
    ID_PATTERN,
    ORG_ID_MAX_LENGTH,
    ORG_ID_PATTERN,
    AppointmentSnapshot,
    parse_rfc3339,
)
from shared.queues import AppointmentChanged, QueueSender, QueueUnavailable
from shared.store import (
    AppointmentRepository,
    BusyBlockRepository,
    ConcurrencyConflict,
    SaveResult,
    StoreUnavailable,
    UnstorableEntity,
)

logger = logging.getLogger(__name__)

MAX_BUSY_WINDOW = timedelta(days=62)
# Versions are stored as Table Storage Int64.
MAX_VERSION = 2**63 - 1
RETRY_AFTER_SECONDS = "5"
_ID = re.compile(ID_PATTERN)
_ORG_ID = re.compile(ORG_ID_PATTERN)
_OFFSET_LOST_IN_QUERY = re.compile(r"^\d{4}-\d{2}-\d{2}T[\d:.]+ \d{2}:\d{2}$", re.IGNORECASE)


ModelT = TypeVar("ModelT", bound=BaseModel)


@dataclass(frozen=True)
class SignedRequest:
    """What a booking platform signature covers: the method, the request target as sent (path
    and query string) and the raw body."""

    method: str
    target: str
    body: bytes = b""


@dataclass(frozen=True)
class HttpAnswer:
    """What to answer: status, JSON body, extra headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    def json_text(self) -> str:
        return json.dumps(self.body, ensure_ascii=False)


def json_answer(
    status: int, model: BaseModel, headers: Mapping[str, str] | None = None
) -> HttpAnswer:
    return HttpAnswer(status, model.model_dump(mode="json", by_alias=True), headers or {})


class Refusal(Exception):
    """A request refused with a 4xx/5xx answer (raised by the checks, answered by the routes)."""

    def __init__(
        self,
        status: int,
        body: ApiError | ValidationFailed,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(body.message)
        self.answer = json_answer(status, body, headers)


def refuse(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Refusal:
    return Refusal(status, ApiError(error=code, message=message), headers)


def unavailable(what: str) -> Refusal:
    return refuse(
        503,
        "unavailable",
        f"{what} is unavailable; retry later",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


def quoted(value: str) -> str:
    """A client-supplied value for a message, cut short (never reflect big inputs)."""
    return repr(value if len(value) <= 80 else value[:80] + "…")


def check_org(org: str) -> None:
    """An organization id in a path: 404 when it cannot name an organization."""
    # fullmatch: ``$`` in the patterns also matches before a trailing line break ("%0A").
    if len(org) > ORG_ID_MAX_LENGTH or not _ORG_ID.fullmatch(org):
        raise refuse(404, "not_found", "no such organization")


def check_id(name: str, value: str) -> None:
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


def parse_json_body(body: bytes, model: type[ModelT], what: str) -> ModelT:
    """A JSON body as ``model``: 400 when it is not JSON or names a key twice, 422 naming every
    problem otherwise. Field names are the documented camelCase ones only: a Python-style name
    (``organizer_staff_id``) is an unknown field."""
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
    try:
        return model.model_validate_json(body, by_alias=True, by_name=False)
    except ValidationError as exc:
        problems = validation_problems(exc, model)
        failed = ValidationFailed(
            message=f"{what} is not valid ({len(problems)} problem(s))",
            problems=problems,
        )
        raise Refusal(422, failed) from exc


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


def unstorable_snapshot_problems(snapshot: AppointmentSnapshot) -> list[ValidationProblem]:
    """What a valid snapshot may still hold that storage cannot represent."""
    problems = []
    if snapshot.version > MAX_VERSION:
        problems.append(
            ValidationProblem(field="version", message=f"version may be at most {MAX_VERSION}")
        )
    for name, instant in (("start", snapshot.start), ("end", snapshot.end)):
        if not representable_in_utc(instant):
            problems.append(
                ValidationProblem(
                    field=name, message=f"{name} is outside the years 1 to 9999 in UTC"
                )
            )
    return problems


class BookingIntake:
    """The service behind ``PUT .../appointments/{id}`` and ``GET .../staff/{id}/busy``."""

    def __init__(
        self,
        *,
        appointments: AppointmentRepository,
        busy_blocks: BusyBlockRepository,
        queue: QueueSender,
        secrets: SecretResolver,
        max_request_bytes: int,
        signature_tolerance_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._appointments = appointments
        self._busy_blocks = busy_blocks
        self._queue = queue
        self._secrets = secrets
        self._max_request_bytes = max_request_bytes
        self._tolerance = signature_tolerance_seconds
        self._clock = clock

    def _authenticate(self, org: str, request: SignedRequest, signature: str | None) -> None:
        if len(request.body) > self._max_request_bytes:
            raise refuse(
                413,
                "payload_too_large",
                f"the body is {len(request.body)} bytes; at most {self._max_request_bytes} "
                "are accepted",
            )
        check_org(org)
        try:
            parsed = parse_header(signature, REQUEST_SCHEME)
            check_freshness(parsed, self._clock(), self._tolerance)
            check_digest(
                self._signing_secrets(org),
                parsed,
                request_message(parsed.timestamp, request.method, request.target, request.body),
            )
        except SignatureError as exc:
            logger.info("refused request for org %s: %s", org, exc.code)
            raise refuse(401, exc.code, str(exc)) from exc
        except SecretUnavailable as exc:
            logger.warning("org %s: %s", org, exc)
            raise unavailable("the secret store") from exc

    def _signing_secrets(self, org: str) -> list[str]:
        """The organization's current signing secret and, during a rotation, the previous one.
        An unknown organization gets a random secret: the same work and the same answer as a
        wrong signature, so existence stays hidden."""
        found: list[str] = []
        for reference in (
            org_signing_secret_reference(org),
            org_previous_signing_secret_reference(org),
        ):
            with contextlib.suppress(SecretNotFound):
                found.append(self._secrets.resolve(reference))
        return found or [secrets.token_hex(32)]

    def put_appointment(
        self, org: str, appointment_id: str, request: SignedRequest, signature: str | None
    ) -> HttpAnswer:
        body = request.body
        try:
            self._authenticate(org, request, signature)
            check_id("appointmentId", appointment_id)
            snapshot = self._parse_snapshot(body)
            return self._store(org, appointment_id, snapshot)
        except Refusal as refusal:
            return refusal.answer

    def _parse_snapshot(self, body: bytes) -> AppointmentSnapshot:
        snapshot = parse_json_body(body, AppointmentSnapshot, "the snapshot")
        problems = unstorable_snapshot_problems(snapshot)
        if problems:
            raise Refusal(
                422,
                ValidationFailed(
                    message=f"the snapshot is not valid ({len(problems)} problem(s))",
                    problems=problems,
                ),
            )
        return snapshot

    def _store(self, org: str, appointment_id: str, snapshot: AppointmentSnapshot) -> HttpAnswer:
        try:
            outcome = self._appointments.save_snapshot(org, appointment_id, snapshot)
        except UnstorableEntity as exc:
            raise refuse(413, "payload_too_large", str(exc)) from exc
        except (StoreUnavailable, ConcurrencyConflict) as exc:
            logger.warning("appointment %s/%s: storage failed: %s", org, appointment_id, exc)
            raise unavailable("storage") from exc
        logger.info(
            "appointment %s/%s version %d: %s (stored version %d)",
            org,
            appointment_id,
            snapshot.version,
            outcome.result,
            outcome.stored_version,
        )
        if outcome.result is SaveResult.STALE:
            return json_answer(200, AppointmentStale(stored_version=outcome.stored_version))
        if outcome.result is SaveResult.CONFLICT:
            raise refuse(
                409,
                "version_conflict",
                f"version {snapshot.version} is already stored with different content; "
                "send a change as a higher version",
            )
        # Stored, or the same version again. "Same" re-enqueues too: the platform retries after
        # a 503 from a previous attempt that stored the snapshot but failed to queue the message,
        # and that retry is then the only thing that can still get the change to Exchange. A
        # duplicate message is harmless (the worker reconciles to the stored state).
        try:
            self._queue.send(
                AppointmentChanged(org=org, appointment_id=appointment_id, version=snapshot.version)
            )
        except QueueUnavailable as exc:
            logger.warning("appointment %s/%s: enqueue failed: %s", org, appointment_id, exc)
            raise unavailable("the work queue") from exc
        return json_answer(202, AppointmentAccepted(version=snapshot.version))

    def busy_time(
        self,
        org: str,
        staff_id: str,
        start: str | None,
        end: str | None,
        request: SignedRequest,
        signature: str | None,
    ) -> HttpAnswer:
        try:
            self._authenticate(org, request, signature)
            check_id("staffId", staff_id)
            window_start = parse_instant("start", start)
            window_end = parse_instant("end", end)
            if window_end <= window_start:
                raise refuse(400, "invalid_query", "end must be after start")
            if window_end - window_start > MAX_BUSY_WINDOW:
                raise refuse(
                    400,
                    "invalid_query",
                    f"the window may span at most {MAX_BUSY_WINDOW.days} days; this one spans "
                    f"{window_end - window_start}",
                )
            try:
                blocks = self._busy_blocks.overlapping(org, staff_id, window_start, window_end)
            except StoreUnavailable as exc:
                raise unavailable("storage") from exc
            return HttpAnswer(
                200, [block.model_dump(mode="json", by_alias=True) for block in blocks]
            )
        except Refusal as refusal:
            return refusal.answer
