"""The security suite's world: Azurite, the Exchange simulator and the real function app behind
the local runner (the functions key enforced, as the host does), set up as two organizations'
administrators would: ``sec`` (an EWS and a Graph connection, a webhook URL, one appointment
applied) and ``rival`` (a Graph connection), each with its own signing secret and admin key;
``fuzz``, a third, is schemathesis's own (its writes never touch the other two).

Once set up, the world is held still: timers never run and the queue pollers stop, so whatever a
request changes stays where :class:`Observer` can see it — every row of every table (its
ETag), every queue's messages (poison queues included), every request the simulator's EWS and
Graph served, its Graph subscriptions and every webhook the booking stand-in received. A refused
request must leave all of it as it was (``unchanged``: read before and after each test, or
around each request with ``CALBRIDGE_SECURITY_EACH_REQUEST=1``).

Every log record of the suite (every logger at DEBUG) and every answer the runner gives are
kept and scanned for secrets and private data after each test (``no_secret_in_logs_or_answers``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from devhost.azurite import Azurite
from devhost.runner import FunctionsRunner
from shared import bootstrap
from shared.admin.service import org_admin_key_reference
from shared.booking.signature import sign_request
from shared.config import connection_secret_name, environment_variable_for
from shared.http.contract import ADMIN_KEY_HEADER, SIGNATURE_HEADER
from sim.server import RunningSimulator, start_simulator
from tests.builders import snapshot_document
from tests.e2e.privacy import LogCapture, Sensitive, leaks, unplanted
from tests.local_app import local_app
from tests.waiting import wait_until

T = TypeVar("T")
ORG = "sec"
RIVAL = "rival"
FUZZ = "fuzz"  # schemathesis's own organization: its writes never touch the other two
SIGNING_SECRETS = {
    ORG: "sec-signing-secret-7f3a91",
    RIVAL: "rival-signing-secret-c44e02",
    FUZZ: "fuzz-signing-secret-8a21d7",
}
ADMIN_KEYS = {
    ORG: "sec-admin-key-5b0d6e",
    RIVAL: "rival-admin-key-e91f37",
    FUZZ: "fuzz-admin-key-30c9b4",
}
OPERATOR_KEY = "operator-key-2d8c54"
SERVICE = "svc@bank.test"
SERVICE_PASSWORD = "Svc-pass:sec-1"
TENANT_ID = "7d0e0a55-41b4-4a0e-9f3c-0d1b2c3d4e5f"
CLIENT_ID = "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
CLIENT_SECRET = "graph~client~secret~sec"
EWS_STAFF = {"ann": "ann@bank.test", "bob": "bob@bank.test"}
GRAPH_STAFF = {ORG: {"dan": "dan@bank.test"}, RIVAL: {"rita": "rita@bank.test"}}
APPOINTMENT = "apt-1"
# A client's contact details and the notes: private data that no log line or answer may carry.
CLIENT = {"name": "Zebulon Quartermaine", "email": "zebulon.q@client.test", "phone": "+15550109"}
OBSERVER_THREADS = "security-observer"
NOTES = "Wants to discuss the inheritance from aunt Philippa"


def simulator_config() -> dict[str, Any]:
    graph = [address for staff in GRAPH_STAFF.values() for address in staff.values()]
    return {
        "mailboxes": [
            {
                "address": address,
                "name": address.split("@")[0].title(),
                "timeZone": "Europe/Berlin",
                "password": f"{address}-pw",
            }
            for address in [*EWS_STAFF.values(), *graph]
        ],
        "serviceAccounts": [
            {
                "username": SERVICE,
                "password": SERVICE_PASSWORD,
                "impersonate": list(EWS_STAFF.values()),
                "delegateFor": [],
            }
        ],
        "oauthClients": [
            {
                "tenantId": TENANT_ID,
                "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET,
                "mailboxes": graph,
            }
        ],
        "bookingPlatform": {"secrets": SIGNING_SECRETS},
    }


@dataclass(frozen=True)
class Snapshot:
    """Everything a request could have changed, at one moment."""

    rows: Mapping[str, Mapping[tuple[str, str], str]]  # table → (pk, rk) → etag
    messages: Mapping[str, int]  # queue → messages in it
    exchange_requests: int  # EWS and Graph requests the simulator served
    exchange_counters: Mapping[str, Mapping[str, int]]
    webhooks: int  # what the booking stand-in received
    graph_subscriptions: int

    def differences(self, later: Snapshot) -> list[str]:
        found = []
        for table in sorted(set(self.rows) | set(later.rows)):
            before, after = self.rows.get(table, {}), later.rows.get(table, {})
            for key in sorted(set(before) | set(after)):
                if before.get(key) != after.get(key):
                    what = "added" if key not in before else "removed" if key not in after else ""
                    found.append(f"table {table} row {key} {what or 'changed'}")
        for queue in sorted(set(self.messages) | set(later.messages)):
            if self.messages.get(queue, 0) != later.messages.get(queue, 0):
                was, now = self.messages.get(queue), later.messages.get(queue)
                found.append(f"queue {queue}: {was} → {now}")
        for name in ("exchange_requests", "exchange_counters", "webhooks", "graph_subscriptions"):
            if getattr(self, name) != getattr(later, name):
                found.append(f"{name}: {getattr(self, name)} → {getattr(later, name)}")
        return found


@dataclass
class Observer:
    """Reads the world's state straight from Azurite and the simulator."""

    storage: str
    prefix: str
    sim: RunningSimulator

    def __post_init__(self) -> None:
        self._tables = TableServiceClient.from_connection_string(self.storage)
        self._queues = QueueServiceClient.from_connection_string(self.storage)
        # Its threads' log records are the observer's, not calbridge's (see ``log_capture``).
        self._pool = ThreadPoolExecutor(8, thread_name_prefix=OBSERVER_THREADS)

    def close(self) -> None:
        self._pool.shutdown()

    def _rows(self, table: str) -> dict[tuple[str, str], str]:
        client = self._tables.get_table_client(table)
        return {
            (entity["PartitionKey"], entity["RowKey"]): str(entity.metadata["etag"])
            for entity in client.list_entities(select=["PartitionKey", "RowKey"])
        }

    def _messages(self, queue: str) -> int:
        # Nothing takes messages off (the pollers are stopped): a count that did not move
        # means nothing was queued. It counts invisible (delayed) messages too.
        client = self._queues.get_queue_client(queue)
        return int(client.get_queue_properties().approximate_message_count or 0)

    def snapshot(self) -> Snapshot:
        tables = [
            table.name
            for table in self._tables.list_tables()
            if table.name.lower().startswith(self.prefix.lower())
        ]
        queues = [q.name for q in self._queues.list_queues(name_starts_with=self.prefix.lower())]
        rows = dict(zip(tables, self._pool.map(self._rows, tables), strict=True))
        messages = dict(zip(queues, self._pool.map(self._messages, queues), strict=True))
        return Snapshot(
            rows=rows,
            messages=messages,
            exchange_requests=int(self.sim.store.service_time()["requests"]),
            exchange_counters=self.sim.store.counter_snapshot(),
            webhooks=len(self.sim.booking.received),
            graph_subscriptions=len(self.sim.graph.subscriptions._subscriptions),
        )


@dataclass
class World:
    """The running system, ways to act as each party, and the observer."""

    sim: RunningSimulator
    runner: FunctionsRunner
    http: httpx.Client
    observer: Observer
    sensitive: Sensitive
    client_states: dict[str, tuple[str, str]] = field(default_factory=dict)
    answers: list[httpx.Response] = field(default_factory=list)
    # The last snapshot taken and how many requests had been sent then: while no request was
    # sent since, it is still the world's state (nothing else moves).
    last_seen: tuple[int, Snapshot] | None = None

    def state(self) -> Snapshot:
        if self.last_seen is not None and self.last_seen[0] == len(self.answers):
            return self.last_seen[1]
        snapshot = self.observer.snapshot()
        self.last_seen = (len(self.answers), snapshot)
        return snapshot

    @property
    def base(self) -> str:
        return self.runner.base_url

    def url(self, path: str) -> str:
        """``path`` relative to the route prefix (``orgs/sec/...``), or a full URL."""
        return path if path.startswith("http") else f"{self.base}/{path.lstrip('/')}"

    def send(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request as given (no key, no signature unless in ``headers``)."""
        request = self.http.build_request(
            method, self.url(path), content=body, headers=dict(headers or {})
        )
        response = self.http.send(request)
        self.answers.append(response)
        return response

    def signed(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        secret: str = SIGNING_SECRETS[ORG],
        timestamp: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """A request signed as the booking platform signs it: method, request target, body."""
        target = httpx.URL(self.url(path)).raw_path.decode()
        stamp = int(time.time()) if timestamp is None else timestamp
        signature = sign_request(secret, method, target, body, stamp)
        return self.send(method, path, body, {SIGNATURE_HEADER: signature, **(headers or {})})

    def admin_headers(self, org: str = ORG) -> dict[str, str]:
        return {ADMIN_KEY_HEADER: ADMIN_KEYS[org], "x-functions-key": self.runner.functions_key}

    def admin(self, method: str, path: str, body: Any = None, org: str = ORG) -> httpx.Response:
        content = b"" if body is None else json.dumps(body).encode()
        return self.send(method, path, content, self.admin_headers(org))


@pytest.fixture(scope="package")
def sensitive() -> Sensitive:
    found = Sensitive()
    found.secrets(
        [
            *SIGNING_SECRETS.values(),
            *ADMIN_KEYS.values(),
            OPERATOR_KEY,
            SERVICE_PASSWORD,
            CLIENT_SECRET,
            *(f"{address}-pw" for address in [*EWS_STAFF.values(), "dan@bank.test"]),
        ]
    )
    found.snapshot({"clients": [CLIENT], "notes": NOTES})
    return found


def _calbridges(record: logging.LogRecord) -> bool:
    thread = record.threadName or ""
    return thread != "MainThread" and not thread.startswith(OBSERVER_THREADS)


@pytest.fixture(scope="package")
def log_capture() -> Iterator[LogCapture]:
    """Every record of the suite, every logger at DEBUG."""
    import shared.exchange.ews  # noqa: F401  (its own logging rules apply from its import)

    capture = LogCapture()
    # calbridge runs on the runner's threads; the test's own thread (its HTTP client, a key in
    # a query string on purpose) and the observer's are not calbridge's.
    capture.addFilter(_calbridges)
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


@pytest.fixture(scope="package")
def world(azurite: Azurite, sensitive: Sensitive, log_capture: LogCapture) -> Iterator[World]:
    sim = start_simulator(simulator_config())
    sensitive.watch(sim.store)
    prefix = "sec" + str(int(time.time() * 1000) % 10**8)
    connection_secrets = {
        environment_variable_for(connection_secret_name(org, f"{org}-graph-secret")): CLIENT_SECRET
        for org in (ORG, RIVAL)
    }
    connection_secrets[environment_variable_for(connection_secret_name(ORG, "ews-password"))] = (
        SERVICE_PASSWORD
    )
    admin_keys = {
        environment_variable_for(org_admin_key_reference(org)): key
        for org, key in ADMIN_KEYS.items()
    }
    try:
        # Held still: no timer fires during the suite (the end-to-end suite drives them).
        with local_app(
            azurite.connection_string,
            prefix,
            sim,
            SIGNING_SECRETS,
            {"CALBRIDGE_ADMIN_KEY": OPERATOR_KEY, **connection_secrets, **admin_keys},
            timers=False,
        ) as (runner, client):
            sensitive.secrets([runner.functions_key])
            observer = Observer(azurite.connection_string, prefix, sim)
            world = World(sim, runner, client, observer, sensitive)
            _administer(world)
            _settle(world)
            world.answers.clear()
            try:
                yield world
            finally:
                observer.close()
    finally:
        sim.stop()


def _administer(world: World) -> None:
    """What the two organizations' administrators set up, and one booked appointment."""
    sim = world.sim
    ews = {
        "kind": "ews",
        "ewsUrl": sim.urls["ews"],
        "authType": "ntlm",
        "username": SERVICE,
        "secretReference": "ews-password",
        "accessMode": "impersonation",
    }

    def graph(org: str) -> dict[str, Any]:
        return {
            "kind": "graph",
            "authType": "oauth",
            "tenantId": TENANT_ID,
            "clientId": CLIENT_ID,
            "secretReference": f"{org}-graph-secret",
        }

    calls: list[tuple[str, str, dict[str, Any]]] = [
        (ORG, f"orgs/{ORG}/connections/onprem", ews),
        (ORG, f"orgs/{ORG}/connections/cloud", graph(ORG)),
        (RIVAL, f"orgs/{RIVAL}/connections/cloud", graph(RIVAL)),
        (ORG, f"orgs/{ORG}/settings", {"webhookUrl": sim.urls["booking"] + "/webhooks"}),
    ]
    for staff_id, address in EWS_STAFF.items():
        body = {"connectionId": "onprem", "mailbox": address, "timeZone": "Europe/Berlin"}
        calls.append((ORG, f"orgs/{ORG}/staff/{staff_id}", body))
    for org, staff in GRAPH_STAFF.items():
        for staff_id, address in staff.items():
            body = {"connectionId": "cloud", "mailbox": address, "timeZone": "Europe/Berlin"}
            calls.append((org, f"orgs/{org}/staff/{staff_id}", body))
    for org, path, body in calls:
        answer = world.admin("PUT", path, body, org=org)
        assert answer.status_code in (200, 201), answer.text
    document = snapshot_document(
        organizer="ann", secondaries=["bob"], clients=[CLIENT], notes=NOTES
    )
    path = f"orgs/{ORG}/appointments/{APPOINTMENT}"
    answer = world.signed("PUT", path, json.dumps(document).encode())
    assert answer.status_code == 202, answer.text


def _settle(world: World) -> None:
    """Wait for the set-up work (the appointment applied, both Graph subscriptions made), then
    stop the queue pollers so nothing moves any more."""
    repositories = bootstrap.services().repositories

    def applied() -> bool:
        found = repositories.event_map.get(ORG, APPOINTMENT)
        return found is not None and found.value.item_id is not None

    wait_until(applied, 30, "the appointment applied")
    for org, staff in GRAPH_STAFF.items():
        for staff_id in staff:

            def subscribed(org: str = org, staff_id: str = staff_id) -> tuple[str, str] | None:
                rows = repositories.subscriptions.list_by_org(org).values()
                mine = [row.value for row in rows if row.value.staff_id == staff_id]
                if not mine:
                    return None
                made = world.sim.graph.subscriptions._subscriptions.get(mine[0].subscription_id)
                return (mine[0].subscription_id, made.client_state or "") if made else None

            world.client_states[org] = wait_until(subscribed, 30, f"{org}/{staff_id} subscribed")
    world.sensitive.secrets([state for _, state in world.client_states.values()])

    def drained() -> bool:
        # The approximate count includes messages in flight (invisible while a worker runs).
        snapshot = world.observer.snapshot()
        return not any(snapshot.messages.values())

    wait_until(drained, 30, "the queues drained")
    for poller in world.runner.pollers:
        poller.stop(10)
    # Nothing left over from the set-up (an in-flight message handed back after the stop).
    assert not any(world.observer.snapshot().messages.values())


# Look after every single request instead of once per test (slower; to find which request of a
# failing test changed something).
EACH_REQUEST = os.environ.get("CALBRIDGE_SECURITY_EACH_REQUEST", "") not in ("", "0", "false")


class Unchanged:
    """``unchanged(send, *args)`` sends a request that must change nothing. The world is read
    before the test and again after it (and around each request with
    ``CALBRIDGE_SECURITY_EACH_REQUEST=1``): every row of every table, every queue's messages,
    the simulator's requests and the booking stand-in's webhooks must be as they were.
    ``with unchanged.throughout():`` checks a block on its own."""

    def __init__(self, world: World) -> None:
        self._world = world

    def __call__(self, send: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if not EACH_REQUEST:
            return send(*args, **kwargs)
        with self.throughout():
            return send(*args, **kwargs)

    @contextmanager
    def throughout(self) -> Iterator[None]:
        before = self._world.state()
        yield
        differences = before.differences(self._world.state())
        assert differences == [], f"a refused request changed the world: {differences}"


@pytest.fixture
def unchanged(world: World) -> Iterator[Unchanged]:
    check = Unchanged(world)
    with check.throughout():
        yield check


@pytest.fixture(autouse=True)
def no_secret_in_logs_or_answers(
    request: pytest.FixtureRequest, log_capture: LogCapture, sensitive: Sensitive
) -> Iterator[None]:
    """After each test: no log record and no answer of the test carries a secret or private
    data (clients' contact details, notes, event bodies, private subjects), and no answer is
    anything but JSON or plain text (nothing from a request comes back as HTML)."""
    world: World | None = (
        request.getfixturevalue("world") if "world" in request.fixturenames else None
    )
    records_before = len(log_capture.records())
    answers_before = len(world.answers) if world else 0
    yield
    found = leaks(unplanted(log_capture.records()[records_before:]), sensitive.values())
    assert found == [], f"sensitive text in log records: {found[:5]}"
    if world is None:
        return
    for answer in world.answers[answers_before:]:
        media_type = answer.headers.get("content-type", "").split(";")[0].strip()
        assert media_type in ("application/json", "text/plain", ""), (
            f"{answer.request.method} {answer.request.url} answered {media_type}"
        )
        text = (answer.text + json.dumps(dict(answer.headers))).casefold()
        named = [kind for value, kind in sensitive.values().items() if value in text]
        assert named == [], f"{answer.request.method} {answer.request.url} answered {named}"
