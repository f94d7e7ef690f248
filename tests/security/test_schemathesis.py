"""Schemathesis against the committed contract (``docs/openapi.json``) through the local runner:
every documented operation, with data that fits the contract (positive) and data that does not
(negative), once with a legitimate caller's credentials supplied by a hook (the booking
platform's signature over the request as sent, the administrator's keys, a Graph subscription's
clientState) so requests reach past the gate, and once with none.

Checked on every answer: never a 5xx, the status is one the operation documents, the media type
and the body are the documented ones, and data that breaks the contract is refused with a 4xx.
A positive request the contract allows may still be refused by a rule the schema cannot say
(an end before its start, a connection that does not exist): refusals are documented answers,
so that is not a failure.

Writes with credentials go to a third organization of their own (``fuzz``), so the fuzzer
never rewrites what the rest of the suite relies on. ``CALBRIDGE_SCHEMATHESIS_EXAMPLES`` sets
the examples per operation, mode and credentials (default 8, about 20 s here; a longer run:
``CALBRIDGE_SCHEMATHESIS_EXAMPLES=200``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, openapi
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from shared.booking.signature import sign_request
from shared.http.contract import ADMIN_KEY_HEADER, SIGNATURE_HEADER
from shared.models import ORG_ID_PATTERN
from tests.functions_harness import REPO_ROOT
from tests.security.conftest import ADMIN_KEYS, FUZZ, ORG, SIGNING_SECRETS, World

EXAMPLES = int(os.environ.get("CALBRIDGE_SCHEMATHESIS_EXAMPLES", "8"))
SCHEMA = openapi.from_path(str(REPO_ROOT / "docs" / "openapi.json"))
OPERATIONS: list[APIOperation] = [result.ok() for result in SCHEMA.get_all_operations()]  # type: ignore[union-attr]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
REJECTED_BY_SIZE_CHECKS = [check for check in CHECKS if check is not negative_data_rejection]
_ORG = re.compile(ORG_ID_PATTERN)

# What the runs saw, for the report at the end of the module.
SEEN: dict[str, dict[int, int]] = {}


class Signing(requests.auth.AuthBase):
    """The booking platform's signature over the request exactly as it goes out."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes), "schemathesis sends whole bodies"
        method = str(request.method)
        request.headers[SIGNATURE_HEADER] = sign_request(
            SIGNING_SECRETS[FUZZ], method, request.path_url, raw, int(time.time())
        )
        return request


def security_of(operation: APIOperation) -> set[str]:
    return {
        name for requirement in operation.definition.raw.get("security", []) for name in requirement
    }


def with_credentials(
    world: World, operation: APIOperation, case: Case, mode: GenerationMode
) -> dict[str, Any]:
    """What a legitimate caller adds: the request's keyword arguments for ``case.call``. (A
    Graph notification's own fields are its credentials: set only on positive data, where they
    cannot undo what a negative case broke.)"""
    if case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER):
        return {}  # the case breaks the headers (a credential left out): keep it broken
    schemes = security_of(operation)
    org = case.path_parameters.get("org") if case.path_parameters else None
    if org is not None and isinstance(org, str) and _ORG.fullmatch(org):
        # A valid organization id becomes one that exists (a random one is unknown: 401).
        case.path_parameters["org"] = ORG if operation.path.startswith("/api/graph/") else FUZZ
    if "signature" in schemes:
        return {"auth": Signing()}
    if "adminKey" in schemes:
        return {
            "headers": {
                "x-functions-key": world.runner.functions_key,
                ADMIN_KEY_HEADER: ADMIN_KEYS[FUZZ],
            }
        }
    positive = mode is GenerationMode.POSITIVE
    if positive and operation.path.startswith("/api/graph/") and isinstance(case.body, dict):
        notifications = case.body.get("value")
        if isinstance(notifications, list) and notifications and isinstance(notifications[0], dict):
            subscription_id, client_state = world.client_states[ORG]
            notifications[0]["subscriptionId"] = subscription_id
            notifications[0]["clientState"] = client_state
    return {}


def label(operation: APIOperation) -> str:
    return f"{operation.method.upper()} {operation.path}"


@pytest.mark.parametrize("credentials", ["valid", "none"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("operation", OPERATIONS, ids=label)
def test_every_documented_operation_answers_as_documented_and_never_5xx(
    world: World, operation: APIOperation, mode: GenerationMode, credentials: str
) -> None:
    if mode is GenerationMode.NEGATIVE and not operation.path_parameters and not operation.body:
        pytest.skip("nothing to break: no parameter, no body")
    session = requests.Session()
    seen = SEEN.setdefault(f"{label(operation)} {mode.value} {credentials}", {})

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=False,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), _=st.just(None))
    def run(case: Case, _: None) -> None:
        extra = with_credentials(world, operation, case, mode) if credentials == "valid" else {}
        response = case.call(base_url=world.base.removesuffix("/api"), session=session, **extra)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        # A body over the size limit is refused with 413 before it is read: a rejection too,
        # though not among the codes schemathesis's negative-data check counts as one.
        checks = CHECKS if response.status_code != 413 else REJECTED_BY_SIZE_CHECKS
        case.validate_response(response, checks=checks, headers=extra.get("headers"))

    run()


@pytest.fixture(scope="module", autouse=True)
def what_schemathesis_ran(request: pytest.FixtureRequest) -> Iterator[None]:
    """Prints, once the module's runs are over, the operations, modes and the statuses seen."""
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not SEEN:
        return
    total = sum(sum(statuses.values()) for statuses in SEEN.values())
    with capture.global_and_fixture_disabled():
        reporter.write_line(
            f"\nschemathesis: {len(OPERATIONS)} operations, {EXAMPLES} examples per operation, "
            f"mode and credentials, {total} requests"
        )
        for run, statuses in sorted(SEEN.items()):
            reporter.write_line(f"  {run}: {dict(sorted(statuses.items()))}")
