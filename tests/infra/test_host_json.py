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


def test_every_invocation_and_exception_is_counted_and_the_rest_sampled() -> None:
    sampling = HOST["logging"]["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert set(sampling["excludedTypes"].split(";")) == {"Request", "Exception"}
    levels = HOST["logging"]["logLevel"]
    assert levels["Host.Results"] == "Information"  # one row per invocation
    assert levels["Function"] == "Information"  # calbridge's own outcome lines


def test_the_extension_bundle_is_one_flex_consumption_supports() -> None:
    assert HOST["extensionBundle"]["version"] == "[4.*, 5.0.0)"
