"""One organization with one EWS connection (NTLM, impersonation) on the simulator, set up as the
EWS benches use it: the simulator's mailboxes and service account, the app's environment, and
the administrator's calls through the admin service (connection, settings, staff)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.harness import SimProcess
from shared.config import (
    connection_secret_name,
    environment_variable_for,
    org_signing_secret_reference,
)

ORG = "bench"
ADMIN_KEY = "bench-admin"
SIGNING_SECRET = "bench-signing-secret"
SERVICE = "svc@bench.test"
SERVICE_PASSWORD = "Svc-bench:1"
SECRET_REFERENCE = "bench-ews-password"
CONNECTION = "onprem"


def address(staff_id: str) -> str:
    return f"{staff_id}@bench.test"


def sim_config(staff: list[str], time_zone: str) -> dict[str, Any]:
    """Every staff member's mailbox, and a service account that may impersonate each."""
    return {
        "mailboxes": [{"address": address(s), "name": s, "timeZone": time_zone} for s in staff],
        "serviceAccounts": [
            {
                "username": SERVICE,
                "password": SERVICE_PASSWORD,
                "impersonate": [address(s) for s in staff],
                "delegateFor": [],
            }
        ],
        "bookingPlatform": {"secrets": {ORG: SIGNING_SECRET}},
    }


def app_environment(storage_connection_string: str, prefix: str) -> dict[str, str]:
    """The app's settings: Azurite under ``prefix``, the admin key, the organization's secrets."""
    return {
        "AzureWebJobsStorage": storage_connection_string,
        "CALBRIDGE_TABLE_PREFIX": prefix,
        "CALBRIDGE_QUEUE_PREFIX": prefix + "-",
        "CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE": "true",
        "CALBRIDGE_ADMIN_KEY": ADMIN_KEY,
        environment_variable_for(org_signing_secret_reference(ORG)): SIGNING_SECRET,
        environment_variable_for(connection_secret_name(ORG, SECRET_REFERENCE)): SERVICE_PASSWORD,
    }


def admin(call: Callable[..., Any], **kwargs: Any) -> None:
    """One admin call as the administrator makes it (JSON body, admin key); it must succeed."""
    body = json.dumps(kwargs.pop("body")).encode()
    answer = call(org=ORG, body=body, admin_key=ADMIN_KEY, **kwargs)
    assert answer.status in (200, 201), answer.body


def administer(
    services: Any, sim: SimProcess, staff: list[str], time_zone: str, settings: dict[str, Any]
) -> None:
    """The connection, the organization's settings (the booking stand-in's webhook URL and
    ``settings``) and every staff member's mailbox, eight at a time."""
    calls = services.admin
    admin(
        calls.put_connection,
        connection_id=CONNECTION,
        body={
            "kind": "ews",
            "ewsUrl": sim.urls["ews"],
            "authType": "ntlm",
            "username": SERVICE,
            "secretReference": SECRET_REFERENCE,
            "accessMode": "impersonation",
        },
    )
    admin(
        calls.put_settings,
        body={"webhookUrl": sim.urls["booking"] + "/webhooks", **settings},
    )
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda s: admin(
                    calls.put_staff,
                    staff_id=s,
                    body={"connectionId": CONNECTION, "mailbox": address(s), "timeZone": time_zone},
                ),
                staff,
            )
        )


def connection_gateway(services: Any) -> Any:
    """A gateway of the connection's own, outside the workers' cache (its clients warm once
    used): what the benches' baselines read Exchange through."""
    from shared import bootstrap
    from shared.exchange.gateways import GatewayCache

    connection = services.repositories.connections.get(ORG, CONNECTION)
    assert connection is not None
    cache = GatewayCache(services.settings, services.secrets, bootstrap.calendar_gateway)
    return cache.for_connection(ORG, connection.value)
