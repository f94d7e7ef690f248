"""Exchange → booking over EWS: the poll fan-out (a timer, every minute) and the ``mailbox-sync``
worker. The work is done by ``shared.mailbox_sync`` (``PollFanOut``, ``MailboxSyncer``)."""

from __future__ import annotations

import azure.functions as func

from shared import bootstrap, observability
from shared.queues import (
    MAILBOX_SYNC,
    STORAGE_CONNECTION_SETTING,
    MailboxSyncRequested,
    binding_queue_name,
    parse_queue_message,
)

POLL_FUNCTION = "poll_mailboxes"
SYNC_FUNCTION = "sync_mailbox"
# Every minute, on the minute (NCRONTAB, seconds first); each mailbox is synced at its
# organization's poll interval.
EVERY_MINUTE = "0 * * * * *"

bp = func.Blueprint()


@bp.function_name(POLL_FUNCTION)
@bp.timer_trigger(arg_name="timer", schedule=EVERY_MINUTE, run_on_startup=False)
def poll_mailboxes(timer: func.TimerRequest, context: func.Context) -> None:
    with observability.timer_invocation(context):
        bootstrap.services().poll_fanout.run()


@bp.function_name(SYNC_FUNCTION)
@bp.queue_trigger(
    arg_name="message",
    queue_name=binding_queue_name(MAILBOX_SYNC),
    connection=STORAGE_CONNECTION_SETTING,
)
async def sync_mailbox(message: func.QueueMessage, context: func.Context) -> None:
    with observability.queue_invocation(context, message):
        request = parse_queue_message(MailboxSyncRequested, message)
        await bootstrap.services().mailbox_syncer.sync(request)
