"""CreateItem, UpdateItem and DeleteItem on calendars: saving meetings, answering invitations
(AcceptItem / TentativelyAcceptItem / DeclineItem response objects), cancelling them
(CancelCalendarItem, answered with the id of the cancellation saved in Sent Items), changing and
deleting items and single occurrences.

Meeting semantics live in the store; this module maps the wire to it: SendMeetingInvitations,
SendMeetingInvitationsOrCancellations and SendMeetingCancellations become the store's SendMode;
ConflictResolution + ChangeKey become its change-key check (a stale key fails only with
NeverOverwrite, as [MS-OXWSCORE] ConflictResolutionType says); an OccurrenceItemId (or the id of an
occurrence from a CalendarView) becomes an exception of its series.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/createitem-operation-calendar-item
https://learn.microsoft.com/exchange/client-developer/web-service-reference/updateitem-operation
https://learn.microsoft.com/exchange/client-developer/web-service-reference/deleteitem-operation
https://learn.microsoft.com/exchange/client-developer/exchange-web-services/how-to-delete-appointments-and-cancel-meetings-by-using-ews-in-exchange
"""

from __future__ import annotations

from typing import Any

from sim.ews.calendar_items import (
    add_item_id,
    check_times,
    read_calendar_item,
)
from sim.ews.context import EwsContext, FolderRef
from sim.ews.errors import EwsError, EwsFault
from sim.ews.ids import decode_change_key, encode_change_key, encode_item_id
from sim.ews.properties import COMPUTED_PROPERTIES, read_extended_uri
from sim.ews.responses import answer_each, empty_items, messages_container
from sim.ews.soap import add, m, t, text_of
from sim.ews.timezones import ms_id_for_iana
from sim.extended import ExtendedValue
from sim.store import (
    CalendarItem,
    ExtendedPropertyKey,
    MeetingMessage,
    ResponseType,
    SendMode,
    SimError,
)

_INVITATION_MODES = {mode.value: mode for mode in SendMode}
_CANCELLATION_MODES = {
    mode.value: mode for mode in (SendMode.NONE, SendMode.ONLY_TO_ALL, SendMode.ALL_AND_SAVE_COPY)
}
_RESPONSES = {
    "AcceptItem": (ResponseType.ACCEPT, "ErrorCalendarIsOrganizerForAccept"),
    "TentativelyAcceptItem": (ResponseType.TENTATIVE, "ErrorCalendarIsOrganizerForTentative"),
    "DeclineItem": (ResponseType.DECLINE, "ErrorCalendarIsOrganizerForDecline"),
}
_DISPOSITIONS = frozenset({"SaveOnly", "SendOnly", "SendAndSaveCopy"})

# FieldURI → the store fields a SetItemField of it carries.
_SETTABLE: dict[str, tuple[str, ...]] = {
    "item:Subject": ("subject",),
    "item:Body": ("body", "body_type"),
    "item:Sensitivity": ("sensitivity",),
    "calendar:Start": ("start",),
    "calendar:End": ("end",),
    "calendar:StartTimeZone": ("time_zone",),
    "calendar:EndTimeZone": ("time_zone",),
    "calendar:MeetingTimeZone": ("time_zone",),
    "calendar:IsAllDayEvent": ("is_all_day",),
    "calendar:LegacyFreeBusyStatus": ("free_busy",),
    "calendar:Location": ("location",),
    "calendar:RequiredAttendees": ("required_attendees",),
    "calendar:OptionalAttendees": ("optional_attendees",),
    "calendar:Recurrence": ("recurrence",),
    "calendar:UID": ("uid",),
    "item:Categories": ("categories",),
    "item:Importance": ("importance",),
    "item:ReminderIsSet": ("reminder_is_set",),
    "item:ReminderMinutesBeforeStart": ("reminder_minutes_before_start",),
    "item:Culture": ("culture",),
    "calendar:IsResponseRequested": ("response_requested",),
    "calendar:AllowNewTimeProposal": ("allow_new_time_proposal",),
    "calendar:ConferenceType": ("conference_type",),
    "calendar:MeetingWorkspaceUrl": ("meeting_workspace_url",),
    "calendar:NetShowUrl": ("net_show_url",),
}
# What DeleteItemField leaves behind.
_CLEARED: dict[str, dict[str, object]] = {
    "item:Subject": {"subject": ""},
    "item:Body": {"body": "", "body_type": "Text"},
    "item:Categories": {"categories": []},
    "calendar:Location": {"location": ""},
    "calendar:RequiredAttendees": {"required_attendees": []},
    "calendar:OptionalAttendees": {"optional_attendees": []},
    "calendar:Recurrence": {"recurrence": None},
    "calendar:MeetingWorkspaceUrl": {"meeting_workspace_url": ""},
    "calendar:NetShowUrl": {"net_show_url": ""},
}
# Computed by the server; a client may not set them.
_READ_ONLY = frozenset(
    {
        "item:ItemId",
        "item:ParentFolderId",
        "item:ItemClass",
        "item:DateTimeCreated",
        "item:DateTimeReceived",
        "item:LastModifiedTime",
        "item:Size",
        "calendar:IsCancelled",
        "calendar:IsMeeting",
        "calendar:IsRecurring",
        "calendar:MeetingRequestWasSent",
        "calendar:CalendarItemType",
        "calendar:MyResponseType",
        "calendar:Organizer",
        "calendar:OriginalStart",
        "calendar:RecurrenceId",
        "calendar:FirstOccurrence",
        "calendar:LastOccurrence",
        "calendar:ModifiedOccurrences",
        "calendar:DeletedOccurrences",
        "calendar:AppointmentState",
        "calendar:Duration",
        "calendar:IsOnlineMeeting",
    }
)
# Attendee lists can be appended to (AppendToItemField).
_APPENDABLE = frozenset({"calendar:RequiredAttendees", "calendar:OptionalAttendees", "item:Body"})


def _send_mode(operation: Any, attribute: str, modes: dict[str, SendMode]) -> SendMode | None:
    raw = operation.get(attribute)
    if raw is None:
        return None
    mode = modes.get(raw)
    if mode is None:
        raise EwsFault(
            "ErrorSchemaValidation",
            f"The request failed schema validation: {attribute} {raw!r} is not valid.",
        )
    return mode


def _keep_equivalent_zone(values: dict[str, object], *known_zones: str) -> None:
    """Windows zone ids are coarser than IANA zones (Toronto and New York are both "Eastern
    Standard Time"): when a client names the Windows equivalent of the zone the item or the
    mailbox already has, keep that zone — otherwise every full save would look like a time
    zone change (which resets a series' exceptions)."""
    sent = values.get("time_zone")
    if not isinstance(sent, str):
        return
    sent_windows_id = ms_id_for_iana(sent)
    for zone in known_zones:
        if ms_id_for_iana(zone) == sent_windows_id:
            values["time_zone"] = zone
            return


def _store_error(error: SimError, organizer_code: str | None = None) -> EwsError:
    if error.code == "ErrorInvalidOperation" and organizer_code is not None:
        return EwsError(organizer_code, error.message)
    return EwsError(error.code, error.message)


# --- CreateItem --------------------------------------------------------------------------------


def create_item(ctx: EwsContext, operation: Any, body: Any) -> None:
    invitations = _send_mode(operation, "SendMeetingInvitations", _INVITATION_MODES)
    disposition = operation.get("MessageDisposition", "SaveOnly")
    if disposition not in _DISPOSITIONS:
        raise EwsFault("ErrorSchemaValidation", f"MessageDisposition {disposition!r} is not valid.")
    saved_folder = operation.find(m("SavedItemFolderId"))
    items = operation.find(m("Items"))
    if items is None:
        raise EwsFault("ErrorSchemaValidation", "CreateItem needs an Items element.")
    messages = messages_container(body, "CreateItem")

    def answer(message: Any, element: Any) -> None:
        name = element.tag.split("}")[-1]
        if name == "CalendarItem":
            if invitations is None:
                raise EwsError(
                    "ErrorSendMeetingInvitationsRequired",
                    "SendMeetingInvitations is required for calendar items.",
                )
            created = _create_calendar_item(ctx, element, saved_folder, invitations)
            add_item_id(add(add(message, m("Items")), t("CalendarItem")), created)
        elif name in _RESPONSES:
            _respond(ctx, element, name, send_response=disposition != "SaveOnly")
            add(message, m("Items"))
        elif name == "CancelCalendarItem":
            saved = _cancel(ctx, element, disposition)
            container = add(message, m("Items"))
            if saved is not None:
                # Exchange answers with the id of the cancellation it saved (Sent Items), in a
                # t:CalendarItem element, as the EWS documentation's example response shows.
                add(
                    add(container, t("CalendarItem")),
                    t("ItemId"),
                    Id=encode_item_id(saved.id),
                    ChangeKey=encode_change_key(saved.change_key),
                )
        else:
            raise EwsError(
                "ErrorInvalidItemForOperationCreateItem",
                f"A calendar-only mailbox cannot create a {name}.",
            )

    answer_each(messages, "CreateItem", list(items), answer, empty_items)


def _target_folder(ctx: EwsContext, saved_folder: Any | None) -> FolderRef:
    if saved_folder is not None and len(saved_folder):
        folder = ctx.folder(saved_folder[0])
    else:
        folder = FolderRef(ctx.open_mailbox(ctx.own_mailbox()), "calendar")
    if folder.name != "calendar":
        raise EwsError(
            "ErrorCannotCreateCalendarItemInNonCalendarFolder",
            "Calendar items can only be created in a calendar folder.",
        )
    return folder


def _create_calendar_item(
    ctx: EwsContext, element: Any, saved_folder: Any | None, send: SendMode
) -> CalendarItem:
    folder = _target_folder(ctx, saved_folder)
    fields = read_calendar_item(element, ctx)
    values = dict(fields.values)
    if "start" not in values or "end" not in values:
        raise EwsError(
            "ErrorCalendarInvalidPropertyValue", "A calendar item needs both Start and End."
        )
    check_times(values)
    mailbox_zone = ctx.store.mailbox(folder.mailbox).time_zone
    if "time_zone" not in values:
        values["time_zone"] = getattr(ctx.time_zone, "key", None) or mailbox_zone
    _keep_equivalent_zone(values, mailbox_zone)
    item = CalendarItem(id="", mailbox=folder.mailbox)
    for name, value in values.items():
        setattr(item, name, value)
    item.extended_properties = {
        key: value for key, value in fields.extended.items() if value is not None
    }
    try:
        return ctx.store.create_item(folder.mailbox, item, send)
    except SimError as error:
        raise _store_error(error) from error


def _reference(ctx: EwsContext, element: Any) -> CalendarItem:
    reference = element.find(t("ReferenceItemId"))
    if reference is None:
        raise EwsError(
            "ErrorMissingInformationReferenceItemId",
            f"{element.tag.split('}')[-1]} needs a ReferenceItemId.",
        )
    return ctx.item(reference)


def _respond(ctx: EwsContext, element: Any, name: str, *, send_response: bool) -> None:
    response, organizer_code = _RESPONSES[name]
    item = _reference(ctx, element)
    comment = text_of(element, t("Body")) or ""
    try:
        ctx.store.respond(
            item.mailbox, item.id, response, send_response=send_response, comment=comment
        )
    except SimError as error:
        raise _store_error(error, organizer_code) from error


def _cancel(ctx: EwsContext, element: Any, disposition: str) -> MeetingMessage | None:
    """Cancel the referenced meeting. SendOnly and SendAndSaveCopy send the cancellation (so it
    needs a recipient); SendAndSaveCopy also saves it, and its id is the answer. SaveOnly keeps
    the simulator's reading that the meeting is cancelled without a message to check."""
    item = _reference(ctx, element)
    comment = text_of(element, t("NewBodyContent")) or text_of(element, t("Body")) or ""
    try:
        return ctx.store.cancel_meeting(
            item.mailbox,
            item.id,
            comment=comment,
            send=disposition != "SaveOnly",
            save_copy=disposition == "SendAndSaveCopy",
        )
    except SimError as error:
        raise _store_error(error, "ErrorCalendarIsNotOrganizer") from error


# --- UpdateItem --------------------------------------------------------------------------------


def update_item(ctx: EwsContext, operation: Any, body: Any) -> None:
    send = _send_mode(operation, "SendMeetingInvitationsOrCancellations", _INVITATION_MODES)
    conflict = operation.get("ConflictResolution", "AutoResolve")
    if conflict not in ("NeverOverwrite", "AutoResolve", "AlwaysOverwrite"):
        raise EwsFault("ErrorSchemaValidation", f"ConflictResolution {conflict!r} is not valid.")
    changes = operation.find(m("ItemChanges"))
    if changes is None:
        raise EwsFault("ErrorSchemaValidation", "UpdateItem needs ItemChanges.")
    messages = messages_container(body, "UpdateItem")

    def answer(message: Any, change: Any) -> None:
        if send is None:
            raise EwsError(
                "ErrorSendMeetingInvitationsOrCancellationsRequired",
                "SendMeetingInvitationsOrCancellations is required for calendar items.",
            )
        target = next(
            (
                child
                for child in change
                if child.tag in (t("ItemId"), t("OccurrenceItemId"), t("RecurringMasterItemId"))
            ),
            None,
        )
        updates = change.find(t("Updates"))
        if target is None or updates is None:
            raise EwsError("ErrorInvalidRequest", "ItemChange needs an item id and Updates.")
        item = ctx.item(target)
        raw_change_key = target.get("ChangeKey")
        change_key = decode_change_key(raw_change_key) if raw_change_key else None
        values, extended = _read_updates(ctx, item, updates)
        _keep_equivalent_zone(values, item.time_zone, ctx.store.mailbox(item.mailbox).time_zone)
        check_times(values, item)
        try:
            updated = ctx.store.update_item(
                item.mailbox,
                item.id,
                values,
                change_key=change_key,
                send=send,
                extended=extended,
                # [MS-OXWSCORE] 3.1.4.9.4.1: AutoResolve "will in most cases overwrite the
                # existing value for a property"; only NeverOverwrite fails on a stale key.
                always_overwrite=conflict != "NeverOverwrite",
            )
        except SimError as error:
            raise _store_error(error) from error
        add_item_id(add(add(message, m("Items")), t("CalendarItem")), updated)
        add(add(message, m("ConflictResults")), t("Count"), "0")

    answer_each(messages, "UpdateItem", list(changes), answer, empty_items)


def _read_updates(
    ctx: EwsContext, item: CalendarItem, updates: Any
) -> tuple[dict[str, object], dict[ExtendedPropertyKey, ExtendedValue | None]]:
    values: dict[str, object] = {}
    extended: dict[ExtendedPropertyKey, ExtendedValue | None] = {}
    for update in updates:
        kind = update.tag.split("}")[-1]
        if kind not in ("SetItemField", "AppendToItemField", "DeleteItemField") or not len(update):
            raise EwsError("ErrorInvalidRequest", f"Unsupported update {kind}.")
        path = update[0]
        if path.tag == t("ExtendedFieldURI"):
            key = read_extended_uri(path).key
            if key in COMPUTED_PROPERTIES:
                continue  # derived from the UID, as Exchange maintains it
            if kind == "DeleteItemField":
                extended[key] = None
                continue
            carried = read_calendar_item(_carrier(update), ctx).extended
            if key not in carried:
                raise EwsError(
                    "ErrorIncorrectUpdatePropertyCount",
                    "The item in SetItemField must carry the extended property it names.",
                )
            extended[key] = carried[key]
            continue
        if path.tag != t("FieldURI"):
            # IndexedFieldURI names contact/message properties a calendar item does not have.
            raise EwsError(
                "ErrorInvalidPropertySet", "Indexed properties do not apply to calendar items."
            )
        uri = path.get("FieldURI", "")
        if uri in _READ_ONLY:
            raise EwsError("ErrorInvalidPropertySet", f"Set action is invalid for property {uri}.")
        if kind == "DeleteItemField":
            values.update(_CLEARED.get(uri, {}))
            continue
        names = _SETTABLE.get(uri)
        if names is None:
            # Computed by Exchange (ReminderDueBy follows the start) or not kept by the simulated
            # store: accepted and ignored.
            continue
        carried_values = read_calendar_item(_carrier(update), ctx).values
        if kind == "AppendToItemField":
            if uri not in _APPENDABLE:
                raise EwsError(
                    "ErrorInvalidPropertyAppend", f"Append action is invalid for property {uri}."
                )
            _append(values, item, carried_values)
            continue
        for name in names:
            if name in carried_values:
                values[name] = carried_values[name]
    return values, extended


def _carrier(update: Any) -> Any:
    if len(update) < 2:
        raise EwsError(
            "ErrorIncorrectUpdatePropertyCount", "SetItemField needs an item carrying the value."
        )
    return update[1]


def _append(values: dict[str, object], item: CalendarItem, carried: dict[str, object]) -> None:
    for name in ("required_attendees", "optional_attendees"):
        if name in carried:
            existing = values.get(name, getattr(item, name))
            assert isinstance(existing, list)
            added = carried[name]
            assert isinstance(added, list)
            known = {attendee.address for attendee in existing}
            values[name] = [*existing, *(a for a in added if a.address not in known)]
    if "body" in carried:
        values["body"] = str(values.get("body", item.body)) + str(carried["body"])


# --- DeleteItem --------------------------------------------------------------------------------


def delete_item(ctx: EwsContext, operation: Any, body: Any) -> None:
    delete_type = operation.get("DeleteType")
    if delete_type not in ("HardDelete", "SoftDelete", "MoveToDeletedItems"):
        raise EwsFault(
            "ErrorSchemaValidation",
            f"DeleteType {delete_type!r} is not valid "
            "(HardDelete, SoftDelete, MoveToDeletedItems).",
        )
    send = _send_mode(operation, "SendMeetingCancellations", _CANCELLATION_MODES)
    item_ids = operation.find(m("ItemIds"))
    messages = messages_container(body, "DeleteItem")
    targets = list(item_ids) if item_ids is not None else []

    def answer(message: Any, element: Any) -> None:
        if send is None:
            raise EwsError(
                "ErrorSendMeetingCancellationsRequired",
                "SendMeetingCancellations is required for calendar items.",
            )
        item = ctx.item(element)
        try:
            ctx.store.delete_item(item.mailbox, item.id, send)
        except SimError as error:
            raise _store_error(error) from error

    answer_each(messages, "DeleteItem", targets, answer)
