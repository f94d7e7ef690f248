"""The booking platform's inbound routes as a service: appointment snapshots and busy-time
queries. Framework-free (``functions/booking_api.py`` adapts it to Azure Functions).

Every request passes ``shared.http.requests.gate`` (size 413, organization id 404), then the
signature with the organization's current or previous secret (401; an unknown organization is
answered exactly like a wrong signature, so answers never tell which organizations exist), then
path ids (400), then the body or the query (400 for JSON and query syntax, 422 for the
snapshot's content). A refused request stores and queues nothing.

Accepted snapshots are saved with :meth:`AppointmentRepository.save_snapshot` (ETag-guarded) and
announced on ``appointment-changes`` with the ids only. Nothing here calls Exchange. Logs carry
ids, versions and outcomes, never bodies or secrets.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from datetime import timedelta

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
from shared.http.answers import (
    HttpAnswer,
    Refusal,
    ValidationProblem,
    invalid,
    json_answer,
    refuse,
    unavailable,
)
from shared.http.contract import AppointmentAccepted, AppointmentStale
from shared.http.requests import (
    SignedRequest,
    check_id,
    gate,
    parse_instant,
    parse_json_body,
    representable_in_utc,
)
from shared.models import AppointmentSnapshot
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
        gate(org, request.body, self._max_request_bytes)
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
            raise invalid("the snapshot", problems)
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
                AppointmentChanged(
                    org=org,
                    appointment_id=appointment_id,
                    version=snapshot.version,
                    staff_ids=[staff.staff_id for staff in snapshot.staff],
                )
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
