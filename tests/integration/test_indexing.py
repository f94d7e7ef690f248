"""What the Functions host would index: every registered function's name, trigger, route,
methods, auth level, queue, connection setting and schedule equal the code's constants.

The table below is built from those constants. A new function must be added to it (the test
names any function the app registers that the table does not list, and vice versa).

Indexing is the host importing ``function_app`` in a fresh process: it must stay cheap (the
cold-start bar, ``bench/cold_import.py``), so nothing an invocation alone needs is imported then.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from devhost.routes import RouteTemplate
from functions.appointment_worker import APPLY_APPOINTMENT_FUNCTION
from functions.graph_webhook import (
    EVERY_QUARTER_HOUR,
    HOURLY,
    RENEWAL_FUNCTION,
    SUBSCRIPTION_FUNCTION,
    SWEEP_FUNCTION,
)
from functions.mailbox_sync import EVERY_MINUTE, POLL_FUNCTION, SYNC_FUNCTION
from functions.webhooks import DELIVER_FUNCTION, EVERY_FIVE_MINUTES, OUTBOX_SWEEP_FUNCTION
from shared.http.routes import ROUTES
from shared.observability.export import CONNECTION_STRING_SETTING
from shared.queues import (
    APPOINTMENT_CHANGES,
    MAILBOX_SUBSCRIPTIONS,
    MAILBOX_SYNC,
    STORAGE_CONNECTION_SETTING,
    WEBHOOK_DELIVERIES,
    binding_queue_name,
)
from tests.functions_harness import (
    call_queue_function,
    call_timer_function,
    registered_functions,
    trigger_binding,
)


@dataclass(frozen=True)
class Indexed:
    """One function as the host sees it (None: the binding has no such field)."""

    name: str
    trigger: str
    route: str | None = None
    methods: tuple[str, ...] | None = None
    auth_level: str | None = None
    queue_name: str | None = None
    connection: str | None = None
    schedule: str | None = None


def http(route_name: str) -> Indexed:
    [route] = [r for r in ROUTES if r.function_name == route_name]
    return Indexed(
        route.function_name,
        "httpTrigger",
        route=route.route,
        methods=(route.method,),
        auth_level=route.auth_level,
    )


def queue(name: str, queue_base_name: str) -> Indexed:
    return Indexed(
        name,
        "queueTrigger",
        queue_name=binding_queue_name(queue_base_name),
        connection=STORAGE_CONNECTION_SETTING,
    )


def timer(name: str, schedule: str) -> Indexed:
    return Indexed(name, "timerTrigger", schedule=schedule)


# Add every new function here, built from the constants its decorator uses.
EXPECTED: list[Indexed] = [http(route.function_name) for route in ROUTES] + [
    queue(APPLY_APPOINTMENT_FUNCTION, APPOINTMENT_CHANGES),
    queue(SYNC_FUNCTION, MAILBOX_SYNC),
    queue(DELIVER_FUNCTION, WEBHOOK_DELIVERIES),
    queue(SUBSCRIPTION_FUNCTION, MAILBOX_SUBSCRIPTIONS),
    timer(POLL_FUNCTION, EVERY_MINUTE),
    timer(RENEWAL_FUNCTION, HOURLY),
    timer(SWEEP_FUNCTION, EVERY_QUARTER_HOUR),
    timer(OUTBOX_SWEEP_FUNCTION, EVERY_FIVE_MINUTES),
]

KNOWN_QUEUES = {APPOINTMENT_CHANGES, MAILBOX_SYNC, WEBHOOK_DELIVERIES, MAILBOX_SUBSCRIPTIONS}


def indexed(name: str, trigger: dict[str, Any]) -> Indexed:
    methods = trigger.get("methods")
    return Indexed(
        name,
        trigger["type"],
        route=trigger.get("route"),
        methods=tuple(m.upper() for m in methods) if methods is not None else None,
        auth_level=trigger.get("authLevel"),
        queue_name=trigger.get("queueName"),
        connection=trigger.get("connection"),
        schedule=trigger.get("schedule"),
    )


def test_the_app_registers_exactly_the_listed_functions() -> None:
    registered = set(registered_functions())
    listed = {expected.name for expected in EXPECTED}
    assert registered - listed == set(), "registered but not listed in EXPECTED: add them"
    assert listed - registered == set(), "listed in EXPECTED but not registered"


@pytest.mark.parametrize("expected", EXPECTED, ids=[e.name for e in EXPECTED])
def test_each_function_is_indexed_as_its_constants_say(expected: Indexed) -> None:
    fn = registered_functions()[expected.name]
    assert indexed(expected.name, trigger_binding(fn)) == expected


def test_queue_triggers_use_a_known_queue_through_the_prefix_setting() -> None:
    for name, fn in registered_functions().items():
        trigger = trigger_binding(fn)
        if trigger["type"] != "queueTrigger":
            continue
        assert trigger["connection"] == STORAGE_CONNECTION_SETTING, name
        assert trigger["queueName"] in {binding_queue_name(q) for q in KNOWN_QUEUES}, name


def test_http_functions_each_have_one_trigger_and_an_http_output() -> None:
    for name, fn in registered_functions().items():
        if trigger_binding(fn)["type"] != "httpTrigger":
            continue
        outputs = [b for b in fn.get_bindings() if b.type == "http"]
        assert len(outputs) == 1, name


def test_indexing_happens_once_per_process() -> None:
    assert registered_functions() is registered_functions()


# --- what indexing imports ----------------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
# Imported by the invocations that use them, never to index: the Exchange SDKs (loaded by the
# gateway of a connection's kind), the Azure clients (storage, identity, Key Vault: built with
# the services on first use), telemetry (set up by the first invocation when configured), and
# calbridge's services and their settings (``shared.bootstrap`` imports each on first use).
NOT_IMPORTED_TO_INDEX = (
    "exchangelib",
    "msgraph",
    "msgraph_core",
    "kiota_abstractions",
    "kiota_http",
    "kiota_authentication_azure",
    "httpx",
    "azure.core",
    "azure.storage",
    "azure.data",
    "azure.identity",
    "azure.keyvault",
    "aiohttp",
    "requests",
    "azure.monitor",
    "opentelemetry",
    "pydantic_settings",
    "shared.config",
    "shared.store",
    "shared.exchange",
    "shared.engine",
    "shared.apply",
    "shared.mailbox_sync",
    "shared.push",
    "shared.admin",
    "shared.booking",
    "shared.connections",
    "shared.webhooks",
)


INDEXING = """
import json, sys
import function_app, shared.bootstrap
from pydantic import BaseModel

def subclasses(model):
    for sub in model.__subclasses__():
        yield sub
        yield from subclasses(sub)

banned = {banned!r}
print(json.dumps({{
    "imported": sorted(
        m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in banned)
    ),
    "built": sorted(
        m.__qualname__ for m in subclasses(BaseModel)
        if m.__module__.startswith("shared.") and m.__pydantic_complete__
    ),
}}))
"""


@pytest.mark.parametrize("telemetry", [False, True], ids=["no-telemetry", "telemetry-configured"])
def test_importing_the_app_imports_no_sdk_and_no_service_and_builds_no_model(
    telemetry: bool,
) -> None:
    environ = {k: v for k, v in os.environ.items() if k != CONNECTION_STRING_SETTING}
    if telemetry:  # to nowhere: the first invocation sets the exporter up, not the import
        environ[CONNECTION_STRING_SETTING] = (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            "IngestionEndpoint=http://127.0.0.1:9/"
        )
    done = subprocess.run(
        [sys.executable, "-c", INDEXING.format(banned=NOT_IMPORTED_TO_INDEX)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env=environ,
        timeout=60,
    )
    # Models build their validators on first use (defer_build): indexing builds none.
    assert json.loads(done.stdout) == {"imported": [], "built": []}


# --- the harness itself, on a small synthetic app --------------------------------------------


def test_route_templates_match_like_the_host() -> None:
    # The harness routes with the local runner's templates (devhost.routes).
    def match(template: str, path: str) -> dict[str, str] | None:
        return RouteTemplate.parse(template).match(path.strip("/").split("/"))

    appointment = "orgs/{org}/appointments/{appointmentId}"
    assert match(appointment, "/orgs/acme/appointments/apt-1") == {
        "org": "acme",
        "appointmentId": "apt-1",
    }
    assert match(appointment, "/orgs/acme/x/apt-1") is None
    assert match("items/{id:int}", "/items/42") == {"id": "42"}
    assert match("items/{id:int}", "/items/abc") is None
    assert match("files/{name?}", "/files") == {}
    assert match("files/{name?}", "/files/a.txt") == {"name": "a.txt"}
    assert match("proxy/{*rest}", "/proxy/a/b/c") == {"rest": "a/b/c"}


def test_queue_and_timer_functions_get_the_host_objects() -> None:
    seen: dict[str, Any] = {}
    app = func.FunctionApp()

    @app.function_name("take_message")
    @app.queue_trigger(
        arg_name="message",
        queue_name=binding_queue_name(MAILBOX_SYNC),
        connection=STORAGE_CONNECTION_SETTING,
    )
    def take_message(message: func.QueueMessage) -> None:
        seen["body"] = message.get_body()
        seen["dequeue_count"] = message.dequeue_count

    @app.function_name("tick")
    @app.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
    async def tick(timer: func.TimerRequest) -> str:
        seen["past_due"] = timer.past_due
        return "ticked"

    functions = {fn.get_function_name(): fn for fn in app.get_functions()}
    call_queue_function(functions["take_message"], '{"org":"acme"}', dequeue_count=3)
    assert seen == {"body": b'{"org":"acme"}', "dequeue_count": 3}
    assert call_timer_function(functions["tick"], past_due=True) == "ticked"
    assert seen["past_due"] is True
    with pytest.raises(AssertionError, match="not timer-triggered"):
        call_timer_function(functions["take_message"])
