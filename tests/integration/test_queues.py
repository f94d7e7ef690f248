"""Queues: names, message models, parsing, and the Azure (Azurite) and in-memory senders."""

from __future__ import annotations

import base64
import json
import time
from datetime import timedelta

import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite, free_port
from shared.queues import (
    APPOINTMENT_CHANGES,
    MAILBOX_SUBSCRIPTIONS,
    MAILBOX_SYNC,
    QUEUE_OF_MESSAGE,
    WEBHOOK_DELIVERIES,
    AppointmentChanged,
    InvalidQueueMessage,
    MailboxSyncRequested,
    MemoryQueueSender,
    QueueUnavailable,
    SubscriptionWork,
    WebhookDeliveryDue,
    binding_queue_name,
    parse_message,
    parse_queue_message,
    queue_name,
)
from shared.queues.azure import AzureQueueSender


def test_binding_name_is_the_prefix_setting_expression() -> None:
    assert binding_queue_name(APPOINTMENT_CHANGES) == "%CALBRIDGE_QUEUE_PREFIX%appointment-changes"


@pytest.mark.parametrize(
    "name", [APPOINTMENT_CHANGES, MAILBOX_SYNC, WEBHOOK_DELIVERIES, MAILBOX_SUBSCRIPTIONS]
)
def test_every_queue_with_a_long_prefix_and_poison_suffix_is_a_valid_name(name: str) -> None:
    prefix = "t" + "0" * 30 + "-"
    assert queue_name(prefix, name + "-poison") == prefix + name + "-poison"


@pytest.mark.parametrize(
    "prefix", ["Upper", "double--", "-lead", "x" * 60, "under_score", "sp ace"]
)
def test_invalid_prefixes_are_refused_by_name(prefix: str) -> None:
    with pytest.raises(ValueError, match="CALBRIDGE_QUEUE_PREFIX"):
        queue_name(prefix, APPOINTMENT_CHANGES)


def test_every_message_kind_has_its_queue() -> None:
    assert {
        AppointmentChanged: APPOINTMENT_CHANGES,
        MailboxSyncRequested: MAILBOX_SYNC,
        WebhookDeliveryDue: WEBHOOK_DELIVERIES,
        SubscriptionWork: MAILBOX_SUBSCRIPTIONS,
    } == QUEUE_OF_MESSAGE


def test_messages_are_camel_case_json_with_ids_only() -> None:
    sender = MemoryQueueSender()
    sender.send(AppointmentChanged(org="acme", appointment_id="apt-1", version=3))
    sender.send(MailboxSyncRequested(org="acme", staff_id="s1", reason="poll"))
    sender.send(WebhookDeliveryDue(org="acme", event_id="e1"))
    assert sender.bodies(APPOINTMENT_CHANGES) == [
        {"org": "acme", "appointmentId": "apt-1", "version": 3}
    ]
    assert sender.bodies(MAILBOX_SYNC) == [{"org": "acme", "staffId": "s1", "reason": "poll"}]
    assert sender.bodies(WEBHOOK_DELIVERIES) == [{"org": "acme", "eventId": "e1"}]


def test_parse_round_trips_a_message() -> None:
    message = AppointmentChanged(org="acme", appointment_id="apt-1", version=3)
    body = message.model_dump_json(by_alias=True)
    assert parse_message(AppointmentChanged, body) == message
    assert parse_message(AppointmentChanged, body.encode()) == message


def test_parse_takes_a_functions_queue_message() -> None:
    raw = QueueMessage(body=b'{"org":"acme","staffId":"s1","reason":"resync"}', dequeue_count=2)
    parsed = parse_queue_message(MailboxSyncRequested, raw)
    assert parsed == MailboxSyncRequested(org="acme", staff_id="s1", reason="resync")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("not json", "Invalid JSON"),
        ('{"org": "acme", "appointmentId": "apt-1"}', "version"),
        ('{"org": "acme", "appointmentId": "a/b", "version": 1}', "appointmentId"),
        ('{"org": "acme", "appointmentId": "a", "version": 1, "extra": 1}', "extra"),
        ("[]", "body"),
    ],
)
def test_bad_bodies_raise_a_typed_error_naming_the_problem(body: str, named: str) -> None:
    with pytest.raises(InvalidQueueMessage, match=named):
        parse_message(AppointmentChanged, body)


def test_a_delay_outside_zero_to_seven_days_is_refused() -> None:
    sender = MemoryQueueSender()
    message = WebhookDeliveryDue(org="acme", event_id="e1")
    for delay in (timedelta(seconds=-1), timedelta(days=7, seconds=1)):
        with pytest.raises(ValueError, match="visibility delay"):
            sender.send(message, visibility_delay=delay)
    assert sender.sent == []


def test_memory_sender_failure_raises_and_records_nothing() -> None:
    sender = MemoryQueueSender("p1")
    sender.failure = QueueUnavailable("down")
    with pytest.raises(QueueUnavailable):
        sender.send(WebhookDeliveryDue(org="acme", event_id="e1"))
    sender.failure = None
    sender.send(WebhookDeliveryDue(org="acme", event_id="e1"))
    assert [s.queue for s in sender.sent] == ["p1webhook-deliveries"]


def raw_queue(azurite: Azurite, name: str) -> QueueClient:
    """A client that reads bodies as stored (no decode policy)."""
    return QueueClient.from_connection_string(azurite.connection_string, name)


def test_azure_sender_creates_the_queue_and_sends_base64_json(
    azurite: Azurite, name_prefix: str
) -> None:
    sender = AzureQueueSender.from_connection_string(azurite.connection_string, name_prefix)
    sender.send(AppointmentChanged(org="acme", appointment_id="apt-1", version=3))
    sender.send(AppointmentChanged(org="acme", appointment_id="apt-2", version=1))
    stored = list(
        raw_queue(azurite, name_prefix + APPOINTMENT_CHANGES).peek_messages(max_messages=5)
    )
    bodies = [json.loads(base64.b64decode(m.content)) for m in stored]
    assert bodies == [
        {"org": "acme", "appointmentId": "apt-1", "version": 3},
        {"org": "acme", "appointmentId": "apt-2", "version": 1},
    ]


def test_azure_sender_delays_visibility_rounding_up(azurite: Azurite, name_prefix: str) -> None:
    sender = AzureQueueSender.from_connection_string(azurite.connection_string, name_prefix)
    sender.send(
        MailboxSyncRequested(org="acme", staff_id="s1", reason="throttled"),
        visibility_delay=timedelta(seconds=0.2),  # rounded up to 1 s, never down to 0
    )
    queue = raw_queue(azurite, name_prefix + MAILBOX_SYNC)
    sent_at = time.monotonic()
    assert list(queue.peek_messages()) == []
    while not list(queue.peek_messages()):
        assert time.monotonic() - sent_at < 5, "the delayed message never became visible"
        time.sleep(0.1)
    assert time.monotonic() - sent_at >= 0.5


def test_azure_sender_unreachable_raises_queue_unavailable() -> None:
    port = free_port()
    connection_string = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
        f"KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    sender = AzureQueueSender.from_connection_string(connection_string, "dead", retry_total=0)
    with pytest.raises(QueueUnavailable, match="deadappointment-changes"):
        sender.send(AppointmentChanged(org="acme", appointment_id="apt-1", version=1))
