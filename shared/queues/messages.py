"""The messages the queues carry: ids only, as camelCase JSON (what workers parse, what senders
send), and which queue carries each kind."""

from __future__ import annotations

from typing import Annotated, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, StringConstraints, ValidationError

from shared.models import CamelModel, Identifier, OrgId
from shared.queues.names import (
    APPOINTMENT_CHANGES,
    MAILBOX_SUBSCRIPTIONS,
    MAILBOX_SYNC,
    WEBHOOK_DELIVERIES,
)


class AppointmentChanged(CamelModel):
    """``appointment-changes``: an appointment's snapshot was stored; make Exchange match it.

    ``staff_ids``: the staff the stored snapshot names, when the sender knows them (the intake
    does): only a hint, so the worker reads their mailboxes in its first storage round together
    with the snapshot and the mapping. The worker decides from what it reads, and reads whoever
    else the stored snapshot or the mapping names."""

    org: OrgId
    appointment_id: Identifier
    version: Annotated[int, Field(ge=0)]
    staff_ids: Annotated[
        list[Identifier], Field(max_length=50, exclude_if=lambda ids: not ids)
    ] = []


class ListedMailbox(CamelModel):
    """A read hint for ``mailbox-sync`` from the poll fan-out: the mailbox's row (its JSON, a
    ``MailboxRecord``) as the fan-out wrote it when it set the pending mark, under the ETag
    that write got, and the ETag of the connection row it listed. The worker may take the row
    for read (every write of it is conditional on that ETag: a row changed since is read again
    and decided afresh) while the mark is recent, and skips reading the connection when it
    holds that very version."""

    etag: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    connection_etag: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    row: Annotated[str, StringConstraints(min_length=2, max_length=32 * 1024)]


class MailboxSyncRequested(CamelModel):
    """``mailbox-sync``: read what changed in one staff member's mailbox (the Exchange → booking
    direction); ``reason`` says who asked (the poll fan-out, a full read, the apply worker);
    ``listed``: the poll fan-out's read hint (absent from every other sender)."""

    org: OrgId
    staff_id: Identifier
    reason: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    listed: Annotated[ListedMailbox | None, Field(exclude_if=lambda listed: listed is None)] = None


class WebhookDeliveryDue(CamelModel):
    """``webhook-deliveries``: deliver (or retry) one outbox row (an outbound webhook)."""

    org: OrgId
    event_id: Identifier


class SubscriptionWork(CamelModel):
    """``mailbox-subscriptions``: bring a staff member's change-notification subscription in
    line. ``ensure``: make it match the mailbox's assignment (create, renew, or delete it);
    ``reauthorize``: Graph asked for it (``reauthorizationRequired``); ``recreate``: Graph
    removed it (``subscriptionRemoved``), so make a new one and sync the mailbox."""

    org: OrgId
    staff_id: Identifier
    action: Literal["ensure", "reauthorize", "recreate"] = "ensure"
    subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


QueueMessageModel = (
    AppointmentChanged | MailboxSyncRequested | WebhookDeliveryDue | SubscriptionWork
)
QUEUE_OF_MESSAGE: dict[type[BaseModel], str] = {
    AppointmentChanged: APPOINTMENT_CHANGES,
    MailboxSyncRequested: MAILBOX_SYNC,
    WebhookDeliveryDue: WEBHOOK_DELIVERIES,
    SubscriptionWork: MAILBOX_SUBSCRIPTIONS,
}

M = TypeVar("M", bound=BaseModel)


class InvalidQueueMessage(ValueError):
    """A queue message that is not the expected model (bad JSON or failed validation).

    Retrying cannot fix it: workers log it and let it go (or poison it)."""


class MessageBody(Protocol):
    """What a Functions queue message offers (``azure.functions.QueueMessage``)."""

    def get_body(self) -> bytes: ...


def parse_message(model: type[M], body: str | bytes) -> M:
    """A message body (JSON text, already base64-decoded) as ``model``."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise InvalidQueueMessage(f"not a valid {model.__name__}: {problems}") from exc


def parse_queue_message(model: type[M], message: MessageBody) -> M:
    """A Functions ``QueueMessage`` as ``model``."""
    return parse_message(model, message.get_body())


def message_body(message: BaseModel) -> str:
    """The JSON a message is sent as (camelCase)."""
    return message.model_dump_json(by_alias=True)


def queue_of(message: BaseModel) -> str:
    """The base name of the queue that carries this kind of message."""
    try:
        return QUEUE_OF_MESSAGE[type(message)]
    except KeyError as exc:
        raise TypeError(f"{type(message).__name__} is not a queue message") from exc
