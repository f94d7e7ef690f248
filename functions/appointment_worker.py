"""Queue trigger on ``appointment-changes``: make Exchange show an appointment's latest snapshot.

The message carries ids only; ``shared.apply.service.AppointmentApplier`` does the work. An
exception here is the host's cue to retry (visibility timeout) and, after ``maxDequeueCount``
tries, to move the message to ``appointment-changes-poison``.
"""

from __future__ import annotations

import azure.functions as func

from shared import bootstrap, observability
from shared.queues import (
    APPOINTMENT_CHANGES,
    STORAGE_CONNECTION_SETTING,
    AppointmentChanged,
    binding_queue_name,
    parse_queue_message,
)

APPLY_APPOINTMENT_FUNCTION = "apply_appointment_change"

bp = func.Blueprint()


@bp.function_name(APPLY_APPOINTMENT_FUNCTION)
@bp.queue_trigger(
    arg_name="message",
    queue_name=binding_queue_name(APPOINTMENT_CHANGES),
    connection=STORAGE_CONNECTION_SETTING,
)
async def apply_appointment_change(message: func.QueueMessage, context: func.Context) -> None:
    with observability.queue_invocation(context, message):
        change = parse_queue_message(AppointmentChanged, message)
        await bootstrap.services().appointment_applier.apply(
            change, dequeue_count=getattr(message, "dequeue_count", None) or 1
        )
