"""Meeting messages on the EWS wire: the cancellation Exchange saves in the organizer's Sent
Items when a meeting is cancelled with SendAndSaveCopy (CancelCalendarItem answers with its id),
written for GetItem as ``t:MeetingCancellation``.

Properties follow types.xsd's order: ItemType's, then MessageType's, MeetingMessageType's and
MeetingCancellationMessageType's. An IdOnly shape gives the id alone; any other shape, or a
property asked for by name, adds what the store keeps of the message. The mail folders hold no
items for FindItem here: a saved cancellation is reached by the id CancelCalendarItem returned.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/meetingcancellation
"""

from __future__ import annotations

from typing import Any

from sim.ews.calendar_items import add_mailbox
from sim.ews.context import EwsContext
from sim.ews.ids import encode_change_key, encode_folder_id, encode_item_id
from sim.ews.properties import Shape
from sim.ews.soap import add, format_bool, format_datetime, t
from sim.store import MeetingMessage


def render_meeting_message(
    parent: Any, message: MeetingMessage, shape: Shape, ctx: EwsContext
) -> Any:
    """Append ``t:MeetingCancellation`` for a saved cancellation."""
    store = ctx.store
    element = add(parent, t("MeetingCancellation"))

    def wants(uri: str) -> bool:
        return shape.wants(uri, in_default=True)

    add(
        element,
        t("ItemId"),
        Id=encode_item_id(message.id),
        ChangeKey=encode_change_key(message.change_key),
    )
    if wants("item:ParentFolderId"):
        add(
            element,
            t("ParentFolderId"),
            Id=encode_folder_id(message.mailbox, message.folder),
            ChangeKey=encode_change_key("folder"),
        )
    if wants("item:ItemClass"):
        add(element, t("ItemClass"), message.item_class)
    if wants("item:Subject"):
        add(element, t("Subject"), message.subject)
    if wants("item:DateTimeSent"):
        add(element, t("DateTimeSent"), format_datetime(message.sent))
    if wants("item:DateTimeCreated"):
        add(element, t("DateTimeCreated"), format_datetime(message.sent))
    if wants("message:Sender"):
        add_mailbox(add(element, t("Sender")), store, message.mailbox, "")
    if wants("message:ToRecipients") and message.recipients:
        recipients = add(element, t("ToRecipients"))
        for recipient in message.recipients:
            add_mailbox(recipients, store, recipient.address, recipient.name)
    if wants("message:From"):
        add_mailbox(add(element, t("From")), store, message.mailbox, "")
    if wants("message:IsRead"):
        add(element, t("IsRead"), format_bool(True))  # the sender's own copy
    if wants("calendar:UID") and message.uid:
        add(element, t("UID"), message.uid)
    if wants("calendar:RecurrenceId") and message.original_start is not None:
        add(element, t("RecurrenceId"), format_datetime(message.original_start))
    if wants("calendar:IsOrganizer"):
        add(element, t("IsOrganizer"), format_bool(True))
    if wants("calendar:Start") and message.start is not None:
        add(element, t("Start"), format_datetime(message.start))
    if wants("calendar:End") and message.end is not None:
        add(element, t("End"), format_datetime(message.end))
    if wants("calendar:Location"):
        add(element, t("Location"), message.location)
    return element
