"""The ``webhook-deliveries`` worker: deliver one outbox row to the booking platform; and the
outbox sweep (a timer, every five minutes), which queues again what lost its message. The work
is done by ``shared.webhooks.delivery.WebhookDelivery`` and ``shared.webhooks.sweep``."""

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
OUTBOX_SWEEP_FUNCTION = "sweep_webhooks"
EVERY_FIVE_MINUTES = "0 */5 * * * *"

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


@bp.function_name(OUTBOX_SWEEP_FUNCTION)
@bp.timer_trigger(arg_name="timer", schedule=EVERY_FIVE_MINUTES, run_on_startup=False)
def sweep_webhooks(timer: func.TimerRequest, context: func.Context) -> None:
    with observability.timer_invocation(context):
        bootstrap.services().webhook_sweep.run()
