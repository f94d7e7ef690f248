"""``PUT .../connections/{id}`` with several service accounts and a concurrency budget, through
the registered function and Azurite: stored as sent, and refused with a 422 naming the field
(changing nothing) when it cannot work."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_admin_api import (
    EWS_CONNECTION,
    ORG,
    admin_put,
    answer,
    app,  # noqa: F401 - the fixture
    connections,
)

ACCOUNTS = [
    {"username": "svc-cal1@acme.test", "secretReference": "svc-cal1"},
    {"username": "svc-cal2@acme.test", "secretReference": "svc-cal2"},
]


def several(**changes: Any) -> dict[str, Any]:
    body = {k: v for k, v in EWS_CONNECTION.items() if k not in ("username", "secretReference")}
    return {**body, "serviceAccounts": ACCOUNTS, "accessMode": "delegate", **changes}


@pytest.mark.usefixtures("app")
def test_several_service_accounts_and_a_budget_are_stored() -> None:
    response = admin_put(f"{ORG}/connections/onprem", several(maxConcurrentCalls=20))
    assert response.status_code == 201, response.get_body()

    stored = connections()["onprem"]
    assert [(a.username, a.secret_reference) for a in stored.accounts()] == [
        (a["username"], a["secretReference"]) for a in ACCOUNTS
    ]
    assert stored.max_concurrent_calls == 20
    assert stored.secret_references() == ["svc-cal1", "svc-cal2"]


@pytest.mark.usefixtures("app")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            several(
                serviceAccounts=[ACCOUNTS[0], {**ACCOUNTS[1], "username": "SVC-CAL1@acme.test"}]
            ),
            "serviceAccounts",
        ),
        (several(username="svc-cal1@acme.test"), "serviceAccounts"),
        (several(maxConcurrentCalls=27), "maxConcurrentCalls"),
        (
            several(serviceAccounts=[{**ACCOUNTS[0], "secretReference": "org-acme-admin-key"}]),
            "serviceAccounts[0].secretReference",
        ),
    ],
)
def test_service_accounts_that_cannot_work_are_refused(body: dict[str, Any], field: str) -> None:
    response = admin_put(f"{ORG}/connections/onprem", body)

    assert response.status_code == 422, response.get_body()
    fields = [problem["field"] for problem in answer(response)["problems"]]
    assert any(f.startswith(field) for f in fields), fields
    assert connections() == {}
