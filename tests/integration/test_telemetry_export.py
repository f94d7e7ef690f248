"""The one exporter, for real: azure-monitor-opentelemetry configured by the first invocation of
a fresh process, sending to a local stand-in of Application Insights' ingestion endpoint
(``{IngestionEndpoint}/v2.1/track``, the endpoint a connection string names).

What arrives: one request per invocation (queue, HTTP with its status, timer) carrying the
correlation ids, under the host's trace; calbridge's log lines with the same ids as
dimensions, no library chatter below WARNING, no exception text; calbridge's metrics. And
without a connection string, nothing of the exporter is even imported.

Skipped where azure-monitor-opentelemetry is not installed (requirements.txt pins it).
"""

from __future__ import annotations

import gzip
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.observability.export import CONNECTION_STRING_SETTING

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_EMAIL = "grace@client.test"

# The child process: three invocations as the trigger layer opens them, then a flush.
INVOCATIONS = f"""
import json, logging, sys
from shared import observability
from shared.observability import metrics

class Trace:
    trace_parent = "00-{TRACE_ID}-00f067aa0ba902b7-01"

class Context:
    def __init__(self, name):
        self.function_name, self.invocation_id, self.trace_context = name, "inv-" + name, Trace()

class Message:
    id, dequeue_count = "msg-1", 2
    def get_body(self):
        return json.dumps({{"org": "acme", "appointmentId": "apt-1", "version": 1}}).encode()

class Request:
    method, route_params = "PUT", {{"org": "acme", "staffId": "ann"}}

print("imported before:", [m for m in sys.modules if m.startswith("azure.monitor")])
with observability.queue_invocation(Context("apply_appointment_change"), Message()):
    logging.getLogger("shared.apply.service").info("appointment applied")
    logging.getLogger("azure.core.pipeline").info("library chatter")
    logging.getLogger("exchangelib.protocol").warning("a library warning")
    metrics.appointment_applied("acme", "done")
with observability.http_invocation(Context("put_staff"), Request()):
    observability.answered(202)
try:
    with observability.timer_invocation(Context("poll_mailboxes")):
        raise ValueError("{CLIENT_EMAIL}")
except ValueError:
    pass
print("imported after:", [m for m in sys.modules if m.startswith("azure.monitor")])

from opentelemetry import _logs, metrics as otel_metrics, trace
for provider in (
    trace.get_tracer_provider(), _logs.get_logger_provider(), otel_metrics.get_meter_provider()
):
    getattr(provider, "force_flush", lambda: None)()  # without an exporter: the API's proxies
"""


class Ingestion(http.server.ThreadingHTTPServer):
    """Answers every track request as accepted and keeps what it was sent."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Track)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Track(http.server.BaseHTTPRequestHandler):
    server: Ingestion

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path.rstrip("/").endswith("/v2.1/track"):
            parsed = json.loads(body)
            with self.server.lock:
                self.server.items.extend(parsed if isinstance(parsed, list) else [parsed])
        answer = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    server = Ingestion()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_child(tmp_path: Path, **settings: str) -> str:
    environ = {
        name: value for name, value in os.environ.items() if name != CONNECTION_STRING_SETTING
    }
    environ.update(
        {
            # Nothing leaves this machine: no statsbeat, no control plane, no VM metadata probe.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service",
            "TMPDIR": str(tmp_path),  # the exporter's retry files, if any
            **settings,
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", INVOCATIONS],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def of_type(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in items if item.get("name") == f"Microsoft.ApplicationInsights.{kind}"]


def base(item: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = item["data"]["baseData"]
    return data


def test_every_invocation_its_log_lines_and_metrics_reach_application_insights(
    ingestion: Ingestion, tmp_path: Path
) -> None:
    pytest.importorskip("azure.monitor.opentelemetry")
    connection_string = (
        "InstrumentationKey=00000000-0000-0000-0000-000000000001;"
        f"IngestionEndpoint={ingestion.endpoint}"
    )
    output = run_child(tmp_path, **{CONNECTION_STRING_SETTING: connection_string})
    assert "imported before: []" in output  # configured by the first invocation, not before
    items = list(ingestion.items)

    requests = {base(item)["name"]: item for item in of_type(items, "Request")}
    assert set(requests) == {"apply_appointment_change", "put_staff", "poll_mailboxes"}
    queue = requests["apply_appointment_change"]
    assert queue["tags"]["ai.operation.id"] == TRACE_ID  # under the host's trace
    assert base(queue)["success"] is True
    assert {
        name: base(queue)["properties"][name]
        for name in ("org", "appointment", "message_id", "dequeue_count", "trigger", "faas.trigger")
    } == {
        "org": "acme",
        "appointment": "apt-1",
        "message_id": "msg-1",
        "dequeue_count": "2",
        "trigger": "queue",
        "faas.trigger": "pubsub",
    }
    http = base(requests["put_staff"])
    assert http["responseCode"] == "202"
    assert http["properties"]["staff"] == "ann"
    timer = base(requests["poll_mailboxes"])
    assert timer["success"] is False
    assert timer["properties"]["faas.trigger"] == "timer"

    messages = {base(item)["message"]: base(item) for item in of_type(items, "Message")}
    applied = messages["appointment applied"]
    assert applied["properties"]["appointment"] == "apt-1"
    assert applied["properties"]["invocation_id"] == "inv-apply_appointment_change"
    assert "correlation" not in applied["properties"]
    assert "a library warning" in messages
    assert "library chatter" not in messages
    [failed] = [text for text in messages if text.startswith("invocation failed: ValueError at")]
    assert messages[failed]["properties"]["function"] == "poll_mailboxes"

    outcomes = [
        base(item)
        for item in of_type(items, "Metric")
        if base(item)["metrics"][0]["name"] == "calbridge.apply.outcomes"
    ]
    assert [metric["properties"] for metric in outcomes] == [{"org": "acme", "outcome": "done"}]

    # The exception's message (a client's address here) went nowhere.
    assert CLIENT_EMAIL not in json.dumps(items)


def test_without_a_connection_string_nothing_of_the_exporter_is_loaded(tmp_path: Path) -> None:
    output = run_child(tmp_path)
    assert "imported before: []" in output
    assert "imported after: []" in output
