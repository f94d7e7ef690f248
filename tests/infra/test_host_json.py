"""host.json as deployed: the choices docs/operations.md explains, kept from drifting apart
from what the code and the Flex Consumption plan rely on."""

from __future__ import annotations

import json

from devhost.hostconfig import HostConfig, parse_timespan
from shared.apply.service import MAX_PASSES
from shared.exchange.common import DEFAULT_CALL_DEADLINE_S
from tests.infra.templates import REPO

HOST = json.loads((REPO / "host.json").read_text())


def test_a_failing_message_is_retried_for_minutes_before_it_is_poisoned() -> None:
    queues = HostConfig.load().queues
    # An Exchange or storage outage of a few minutes is retried through, not dead-lettered.
    assert queues.visibility_timeout * (queues.max_dequeue_count - 1) >= 180
    assert queues.message_encoding == "base64"  # what shared.queues sends


def test_the_function_timeout_is_a_guard_above_a_slow_pass() -> None:
    # Every Exchange call has its own deadline; a message makes up to MAX_PASSES passes. The
    # timeout restarts the Python worker with every invocation on it, so it must not cut a pass
    # whose calls are merely slow.
    assert parse_timespan(HOST["functionTimeout"]) >= MAX_PASSES * DEFAULT_CALL_DEADLINE_S


def test_the_host_exports_none_of_what_the_app_exports_itself() -> None:
    # One exporter for calbridge's invocations: azure-monitor-opentelemetry in the Python
    # worker (shared.observability.export). Not the host's OpenTelemetry mode, which covers some
    # Python triggers only and would export the same invocations again.
    assert "telemetryMode" not in HOST
    levels = HOST["logging"]["logLevel"]
    assert levels["Host.Results"] == "None"  # requests: the app's span per invocation instead
    # The app's log lines reach the host as Function.<name>.User, beside the host's own
    # Executing/Executed lines: the app exports the first, its spans replace the second.
    assert levels["Function"] == "None"
    # The host's own trouble (start-up, listeners, scaling, timeouts) still comes from the host,
    # and so do its per-minute invocation counts, which stand even when a worker dies.
    assert levels["default"] == "Warning"
    assert levels["Host.Aggregator"] == "Information"


def test_the_hosts_own_exceptions_are_never_sampled() -> None:
    sampling = HOST["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert "Exception" in sampling["excludedTypes"].split(";")


def test_the_extension_bundle_is_one_flex_consumption_supports() -> None:
    assert HOST["extensionBundle"]["version"] == "[4.*, 5.0.0)"
