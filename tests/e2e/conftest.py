"""End-to-end world: Azurite, the Exchange simulator and the real function app driven by the
local runner (HTTP on loopback, queue triggers polling Azurite), set up as an administrator
would: an EWS connection (service account with impersonation) and a Graph connection (app-only
OAuth), with staff on both.

Nothing of calbridge is replaced: requests go through the registered functions, messages through
Azurite's queues, Exchange writes through exchangelib and msgraph-sdk to the simulator, and the
simulator posts Graph's change notifications to the runner's HTTP server (calbridge's public URL
here), which made the Graph mailboxes' subscriptions when they were assigned.

Every log record of the suite, from every logger at DEBUG, is captured and scanned after each
test (and once more at the end) for event bodies, private subjects, clients' contact details
and secrets (``tests/e2e/privacy.py``): a test that makes calbridge log one fails.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from devhost.azurite import Azurite
from devhost.runner import FunctionsRunner
from shared import bootstrap
from shared.admin import ADMIN_KEY_HEADER
from shared.booking.signature import SIGNATURE_HEADER, sign_request
from shared.config import connection_secret_name, environment_variable_for
from shared.models import EventMapping
from shared.observability import CorrelationFilter
from shared.queues import APPOINTMENT_CHANGES
from shared.store.records import ApplyProblemRecord
from sim.server import RunningSimulator, start_simulator
from sim.store import CalendarItem
from tests.certificates import self_signed
from tests.e2e.privacy import LogCapture, Sensitive, leaks, unplanted
from tests.local_app import local_app
from tests.waiting import wait_until

T = TypeVar("T")

ORG = "e2e"
SIGNING_SECRET = "e2e-signing-secret"
OPERATOR_KEY = "e2e-operator-key"
SERVICE = "svc@bank.test"
SERVICE_PASSWORD = "Svc-pass:1"
TENANT_ID = "7d0e0a55-41b4-4a0e-9f3c-0d1b2c3d4e5f"
CLIENT_ID = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
CLIENT_SECRET = "graph~client~secret"
# An application registered for the on-premises mailboxes, for switching ``onprem`` to OAuth:
# it has a client secret and a certificate.
EWS_APP_CLIENT_ID = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
EWS_APP_SECRET = "ews~app~secret"
EWS_APP_CERTIFICATE = self_signed("e2e-ews-app")
# The Graph application's certificate, for switching ``cloud`` from its secret to it.
GRAPH_APP_CERTIFICATE = self_signed("e2e-graph-app")
_KEY_LINES = EWS_APP_CERTIFICATE.key_pem.splitlines()
EWS_APP_SECRETS = {
    "e2e-ews-app-secret": EWS_APP_SECRET,
    "e2e-ews-app-certificate": EWS_APP_CERTIFICATE.secret,
    # What an operator might paste by mistake: the key cut short, then the certificate.
    "e2e-ews-app-broken-certificate": "\n".join(_KEY_LINES[:6] + _KEY_LINES[-1:])
    + "\n"
    + EWS_APP_CERTIFICATE.certificate_pem,
    "e2e-graph-certificate": GRAPH_APP_CERTIFICATE.secret,
}

# staff id → mailbox; the "ews" staff live on the on-premises connection, "graph" staff online.
STAFF = {
    "ews": {"ann": "ann@bank.test", "bob": "bob@bank.test", "cara": "cara@bank.test"},
    "graph": {"dan": "dan@bank.test", "eve": "eve@bank.test", "fay": "fay@bank.test"},
}
CONNECTION_OF = {"ews": "onprem", "graph": "cloud"}
# Exchange Online mailboxes the administrator has not assigned: a test that needs a calendar no
# other test has touched assigns one (staff id → mailbox).
SPARE_GRAPH = {"gus": "gus@bank.test"}


def mailbox_password(staff_id: str) -> str:
    return f"{staff_id}-pw"


def simulator_config() -> dict[str, Any]:
    mailboxes = [
        {
            "address": address,
            "name": staff_id.title(),
            "timeZone": "America/Toronto",
            "password": mailbox_password(staff_id),
        }
        for side in [*STAFF.values(), SPARE_GRAPH]
        for staff_id, address in side.items()
    ]
    return {
        "mailboxes": mailboxes,
        "serviceAccounts": [
            {
                "username": SERVICE,
                "password": SERVICE_PASSWORD,
                "impersonate": list(STAFF["ews"].values()),
                "delegateFor": [],
            }
        ],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "certificates": [GRAPH_APP_CERTIFICATE.certificate_pem],
                # Every mailbox: an on-premises mailbox moved to Exchange Online is reached
                # through Graph too (tests/e2e/test_admin_connections.py migrates one).
                "mailboxes": [
                    *(address for side in STAFF.values() for address in side.values()),
                    *SPARE_GRAPH.values(),
                ],
            },
            {
                "tenantId": TENANT_ID,
                "clientId": EWS_APP_CLIENT_ID,
                "clientSecret": EWS_APP_SECRET,
                "certificates": [EWS_APP_CERTIFICATE.certificate_pem],
                "mailboxes": list(STAFF["ews"].values()),
            },
        ],
        "bookingPlatform": {"secrets": {ORG: SIGNING_SECRET}},
    }


@dataclass
class World:
    """The running system plus ways to act as the booking platform and look as staff do."""

    sim: RunningSimulator
    runner: FunctionsRunner
    http: httpx.Client
    storage: str
    queue_prefix: str
    sensitive: Sensitive

    def put_appointment(self, appointment_id: str, snapshot: dict[str, Any]) -> httpx.Response:
        self.sensitive.snapshot(snapshot)
        body = json.dumps(snapshot).encode()
        url = f"{self.runner.base_url}/orgs/{ORG}/appointments/{appointment_id}"
        target = httpx.URL(url).raw_path.decode()
        headers = {
            SIGNATURE_HEADER: sign_request(SIGNING_SECRET, "PUT", target, body, int(time.time())),
            "Content-Type": "application/json",
        }
        return self.http.put(url, content=body, headers=headers)

    def admin_put(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.http.put(
            f"{self.runner.base_url}/orgs/{ORG}/{path}",
            json=body,
            headers={ADMIN_KEY_HEADER: OPERATOR_KEY, "x-functions-key": self.runner.functions_key},
        )

    def admin_call(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Any admin route of the organization, with the operator's key."""
        return self.http.request(
            method,
            f"{self.runner.base_url}/orgs/{ORG}/{path}",
            json=body,
            headers={ADMIN_KEY_HEADER: OPERATOR_KEY, "x-functions-key": self.runner.functions_key},
        )

    def queue_drained(self) -> bool:
        """No message waiting or in flight on ``appointment-changes``."""
        from azure.storage.queue import QueueClient

        client = QueueClient.from_connection_string(
            self.storage, self.queue_prefix + APPOINTMENT_CHANGES
        )
        return client.get_queue_properties().approximate_message_count == 0

    def calendar(self, address: str) -> list[CalendarItem]:
        """The mailbox's items as its owner sees them in Outlook (cancelled ones included)."""
        return self.sim.store.calendar_items(address)

    def live(self, address: str, subject_part: str) -> list[CalendarItem]:
        return [
            item
            for item in self.calendar(address)
            if subject_part in item.subject and not item.is_cancelled
        ]

    def mapping(self, appointment_id: str) -> EventMapping | None:
        found = bootstrap.services().repositories.event_map.get(ORG, appointment_id)
        return found.value if found else None

    def problem(self, appointment_id: str) -> ApplyProblemRecord | None:
        found = bootstrap.services().repositories.problems.get(ORG, appointment_id)
        return found.value if found else None

    def applied(self, appointment_id: str, version: int, timeout: float = 30.0) -> EventMapping:
        """Wait until the worker recorded ``version`` as applied."""

        def probe() -> EventMapping | None:
            mapping = self.mapping(appointment_id)
            # A mapping without an item id is the worker's note before a create: not done yet.
            # (A failed pass keeps that note and records last_error: still not done.)
            settled = mapping is not None and (mapping.item_id is not None or mapping.cancelled)
            if mapping is not None and settled and mapping.applied_version >= version:
                return mapping
            return None

        return wait_until(probe, timeout, f"{appointment_id} v{version} applied")


@pytest.fixture(scope="package")
def sensitive() -> Sensitive:
    """What no log record may carry; the world and the simulator add to it as the suite runs."""
    found = Sensitive()
    found.secrets(
        [
            SIGNING_SECRET,
            OPERATOR_KEY,
            SERVICE_PASSWORD,
            CLIENT_SECRET,
            *EWS_APP_SECRETS.values(),  # (a PEM is watched line by line)
            *(
                mailbox_password(staff_id)
                for side in [*STAFF.values(), SPARE_GRAPH]
                for staff_id in side
            ),
        ]
    )
    return found


@pytest.fixture(scope="package", autouse=True)
def log_capture(sensitive: Sensitive) -> Iterator[LogCapture]:
    """Every record of the end-to-end suite, every logger at DEBUG; scanned once more when the
    suite ends, against everything collected by then."""
    # The EWS adapter's own logging rules (exchangelib capped at INFO, its arguments withheld)
    # apply from its import: import it first, then open every logger to DEBUG regardless.
    import shared.exchange.ews  # noqa: F401

    capture = LogCapture()
    capture.addFilter(CorrelationFilter())  # the ids, as an exporting handler adds them
    root = logging.getLogger()
    loggers = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level) for logger in [root, *loggers]]
    for logger in loggers:
        if logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for logger, level in saved:
            logger.setLevel(level)
    records = unplanted(capture.records())
    # Not vacuous: the suite's invocations logged, calbridge's workers among them.
    assert any(record.name.startswith("shared.") for record in records), "no record captured"
    found = leaks(records, sensitive.values())
    assert found == [], f"sensitive text in log records: {found[:5]}"


@pytest.fixture(autouse=True)
def no_sensitive_text_in_this_tests_logs(
    log_capture: LogCapture, sensitive: Sensitive
) -> Iterator[None]:
    before = len(log_capture.records())
    yield
    found = leaks(unplanted(log_capture.records()[before:]), sensitive.values())
    assert found == [], f"sensitive text in log records: {found[:5]}"


@pytest.fixture(scope="module")
def world_simulator_config() -> dict[str, Any]:
    """The simulator's organization of a module's world (a module may override this)."""
    return simulator_config()


@pytest.fixture(scope="module")
def world_graph_front() -> Callable[[RunningSimulator], str] | None:
    """Where a module's world reaches the simulator's Graph, given the started simulator (a
    relay in front of it); None: at its listener. A module may override this: every instance
    of the app then calls Graph there, and Graph's links name it."""
    return None


@pytest.fixture(scope="module")
def world(
    azurite: Azurite,
    sensitive: Sensitive,
    world_simulator_config: dict[str, Any],
    world_graph_front: Callable[[RunningSimulator], str] | None,
) -> Iterator[World]:
    sim = start_simulator(world_simulator_config)
    if world_graph_front is not None:
        sim.serve_graph_behind(world_graph_front(sim))
    sensitive.watch(sim.store)
    issue = sim.issuer._issue

    def issue_and_remember(*args: Any, **kwargs: Any) -> Any:
        issued = issue(*args, **kwargs)
        sensitive.secrets([issued.access_token])
        return issued

    sim.issuer._issue = issue_and_remember  # type: ignore[method-assign]
    prefix = "e2e" + str(int(time.time() * 1000) % 10**8)
    secrets = {
        environment_variable_for(connection_secret_name(ORG, "e2e-ews-password")): SERVICE_PASSWORD,
        environment_variable_for(connection_secret_name(ORG, "e2e-graph-secret")): CLIENT_SECRET,
        **{
            environment_variable_for(connection_secret_name(ORG, reference)): value
            for reference, value in EWS_APP_SECRETS.items()
        },
    }
    try:
        with local_app(
            azurite.connection_string,
            prefix,
            sim,
            {ORG: SIGNING_SECRET},
            {"CALBRIDGE_ADMIN_KEY": OPERATOR_KEY, **secrets},
        ) as (runner, client):
            sensitive.secrets([runner.functions_key])
            world = World(sim, runner, client, azurite.connection_string, prefix, sensitive)
            _administer(world, sim)
            yield world
    finally:
        sim.stop()


def connection_settings(sim: RunningSimulator) -> dict[str, dict[str, Any]]:
    """The two connections' settings as the administrator PUTs them, by connection id."""
    return {
        "onprem": {
            "kind": "ews",
            "ewsUrl": sim.urls["ews"],
            "authType": "ntlm",
            "username": SERVICE,
            "secretReference": "e2e-ews-password",
            "accessMode": "impersonation",
        },
        "cloud": {
            "kind": "graph",
            "authType": "oauth",
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "secretReference": "e2e-graph-secret",
        },
    }


def _administer(world: World, sim: RunningSimulator) -> None:
    """What the organization's administrator sets up: two connections, six staff."""
    for connection_id, body in connection_settings(sim).items():
        response = world.admin_put(f"connections/{connection_id}", body)
        assert response.status_code in (200, 201), response.text
    for side, staff in STAFF.items():
        for staff_id, address in staff.items():
            body = {
                "connectionId": CONNECTION_OF[side],
                "mailbox": address,
                "timeZone": "America/Toronto",
            }
            response = world.admin_put(f"staff/{staff_id}", body)
            assert response.status_code in (200, 201), response.text
