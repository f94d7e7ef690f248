"""The ``webhook-deliveries`` worker: deliver one outbox row to the booking platform. The work is
done by ``shared.webhooks.delivery.WebhookDelivery``."""

from __future__ import annotations

import azure.functions as func

from shared import bootstrap, observability
from shared.queues import (
    STORAGE_CONNECTION_SETTING,
    WEBHOOK_DELIVERIES,
    WebhookDeliveryDue,
    binding_queue_name,
    parse_queue_message,
)

DELIVER_FUNCTION = "deliver_webhook"

bp = func.Blueprint()


@bp.function_name(DELIVER_FUNCTION)
@bp.queue_trigger(
    arg_name="message",
    queue_name=binding_queue_name(WEBHOOK_DELIVERIES),
    connection=STORAGE_CONNECTION_SETTING,
)
async def deliver_webhook(message: func.QueueMessage, context: func.Context) -> None:
    with observability.queue_invocation(context, message):
        due = parse_queue_message(WebhookDeliveryDue, message)
        await bootstrap.services().webhook_delivery.deliver(due)
