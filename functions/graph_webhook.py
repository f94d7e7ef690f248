"""Exchange Online push: Graph's notification and lifecycle URLs (HTTP, ``ANONYMOUS``: each
notification is checked against its subscription's clientState), the ``mailbox-subscriptions``
worker, the hourly subscription timer and the 15-minute sweep of every Graph mailbox.

The work is done by ``shared.push`` (``NotificationIntake``, ``SubscriptionManager``) and
``shared.mailbox_sync.fanout.GraphSweep``. The HTTP functions are synchronous and import no
Exchange SDK: they answer within Graph's 3 seconds, even in a fresh process.
"""

from __future__ import annotations

import azure.functions as func

from functions.http_functions import http_function, to_http_response
from shared import bootstrap
from shared.http.routes import GRAPH_LIFECYCLE, GRAPH_NOTIFICATIONS
from shared.queues import (
    MAILBOX_SUBSCRIPTIONS,
    STORAGE_CONNECTION_SETTING,
    SubscriptionWork,
    binding_queue_name,
    parse_queue_message,
)

SUBSCRIPTION_FUNCTION = "manage_graph_subscription"
RENEWAL_FUNCTION = "renew_graph_subscriptions"
SWEEP_FUNCTION = "sweep_graph_mailboxes"
# Hourly, five minutes past (NCRONTAB, seconds first): renewals are due days before expiry.
HOURLY = "0 5 * * * *"
# Every 15 minutes: a delta round for every Graph mailbox, whatever the notifications did.
EVERY_QUARTER_HOUR = "0 */15 * * * *"
VALIDATION_TOKEN = "validationToken"  # noqa: S105 - a query parameter name

bp = func.Blueprint()


@http_function(bp, GRAPH_NOTIFICATIONS, "POST graph/notifications/{org} ANONYMOUS")
def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    return to_http_response(
        bootstrap.services().notification_intake.notifications(
            org=req.route_params.get("org", ""),
            validation_token=req.params.get(VALIDATION_TOKEN),
            body=req.get_body(),
        )
    )


@http_function(bp, GRAPH_LIFECYCLE, "POST graph/lifecycle/{org} ANONYMOUS")
def graph_lifecycle(req: func.HttpRequest) -> func.HttpResponse:
    return to_http_response(
        bootstrap.services().notification_intake.lifecycle(
            org=req.route_params.get("org", ""),
            validation_token=req.params.get(VALIDATION_TOKEN),
            body=req.get_body(),
        )
    )


@bp.function_name(SUBSCRIPTION_FUNCTION)
@bp.queue_trigger(
    arg_name="message",
    queue_name=binding_queue_name(MAILBOX_SUBSCRIPTIONS),
    connection=STORAGE_CONNECTION_SETTING,
)
async def manage_graph_subscription(message: func.QueueMessage) -> None:
    work = parse_queue_message(SubscriptionWork, message)
    await bootstrap.services().subscription_manager.handle(work)


@bp.function_name(RENEWAL_FUNCTION)
@bp.timer_trigger(arg_name="timer", schedule=HOURLY, run_on_startup=False)
def renew_graph_subscriptions(timer: func.TimerRequest) -> None:
    bootstrap.services().subscription_manager.due()


@bp.function_name(SWEEP_FUNCTION)
@bp.timer_trigger(arg_name="timer", schedule=EVERY_QUARTER_HOUR, run_on_startup=False)
def sweep_graph_mailboxes(timer: func.TimerRequest) -> None:
    bootstrap.services().graph_sweep.run()
