"""Response bodies of the booking-platform routes (part of the published contract: the OpenAPI
document is generated from these models)."""

from __future__ import annotations

from typing import Literal

from shared.models import CamelModel


class AppointmentAccepted(CamelModel):
    """202: the snapshot is stored (or was already) and Exchange will be brought in line."""

    accepted: Literal[True] = True
    version: int


class AppointmentStale(CamelModel):
    """200: a newer version is already stored; this snapshot was ignored."""

    accepted: Literal[False] = False
    reason: Literal["stale"] = "stale"
    stored_version: int


class ApiError(CamelModel):
    """Every refusal: a stable machine-readable ``error`` code and a message naming the
    problem."""

    error: str
    message: str


class ValidationProblem(CamelModel):
    """One problem with a request body: ``field`` is the path of the offending field
    (``staff[1].role``; empty for the body as a whole)."""

    field: str
    message: str


class ValidationFailed(CamelModel):
    """422: the body is JSON but not a valid snapshot; every problem is listed."""

    error: Literal["validation_failed"] = "validation_failed"
    message: str
    problems: list[ValidationProblem]
