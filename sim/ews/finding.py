"""FindItem and GetItem: reading a calendar.

FindItem with a CalendarView returns the singles, occurrences and exceptions the store's
calendar view admits (Exchange's edges: what ends at or after StartDate and starts before
EndDate), sorted by start; restrictions and sort orders are refused as Exchange refuses them;
without one it returns singles and recurring masters, filtered by a Restriction, sorted by a
SortOrder and paged by IndexedPageItemView. GetItem returns items by ItemId, OccurrenceItemId or
RecurringMasterItemId, and the cancellation a CancelCalendarItem saved (as a MeetingCancellation).

https://learn.microsoft.com/exchange/client-developer/web-service-reference/finditem-operation
https://learn.microsoft.com/exchange/client-developer/web-service-reference/getitem-operation
"""

from __future__ import annotations

from typing import Any

from sim.ews.calendar_items import render_calendar_item
from sim.ews.context import EwsContext
from sim.ews.errors import EwsError
from sim.ews.meeting_messages import render_meeting_message
from sim.ews.properties import read_shape
from sim.ews.responses import answer_each, empty_items, messages_container
from sim.ews.restrictions import compile_restriction, sort_items, sort_key_functions
from sim.ews.soap import add, format_bool, m, parse_datetime, t
from sim.store import CalendarItem


def _int_attribute(element: Any, name: str, default: int | None) -> int | None:
    raw = element.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as error:
        raise EwsError("ErrorInvalidRequest", f"{name} must be a number, not {raw!r}.") from error
    if value < 0:
        raise EwsError("ErrorInvalidRequest", f"{name} must not be negative.")
    return value


def find_item(ctx: EwsContext, operation: Any, body: Any) -> None:
    shape = read_shape(operation.find(m("ItemShape")))
    ctx.store.record_shape("ews:FindItem", shape.base, shape.field_uris)
    calendar_view = operation.find(m("CalendarView"))
    paged_view = operation.find(m("IndexedPageItemView"))
    restriction = operation.find(m("Restriction"))
    sort_order = operation.find(m("SortOrder"))
    parents = operation.find(m("ParentFolderIds"))
    messages = messages_container(body, "FindItem")
    targets = list(parents) if parents is not None else []

    def answer(message: Any, element: Any) -> None:
        folder = ctx.folder(element)
        if folder.name != "calendar":
            items: list[CalendarItem] = []
        elif calendar_view is not None:
            items = _calendar_view_items(
                ctx, folder.mailbox, calendar_view, restriction, sort_order
            )
        else:
            items = _filtered_items(ctx, folder.mailbox, restriction, sort_order)
        total = len(items)
        root = add(message, m("RootFolder"))
        if calendar_view is not None:
            limit = _int_attribute(calendar_view, "MaxEntriesReturned", None)
            page = items if limit is None else items[:limit]
            root.set("TotalItemsInView", str(total))
            root.set("IncludesLastItemInRange", format_bool(len(page) == total))
        else:
            offset = _int_attribute(paged_view, "Offset", 0) if paged_view is not None else 0
            limit = (
                _int_attribute(paged_view, "MaxEntriesReturned", None)
                if paged_view is not None
                else None
            )
            if paged_view is not None and paged_view.get("BasePoint") == "End":
                end = max(total - (offset or 0), 0)
                begin = 0 if limit is None else max(end - limit, 0)
                page = items[begin:end]
                next_offset = total - begin
                is_last = begin == 0
            else:
                begin = offset or 0
                page = items[begin:] if limit is None else items[begin : begin + limit]
                next_offset = begin + len(page)
                is_last = next_offset >= total
            root.set("IndexedPagingOffset", str(next_offset))
            root.set("TotalItemsInView", str(total))
            root.set("IncludesLastItemInRange", format_bool(is_last))
        container = add(root, t("Items"))
        for item in page:
            render_calendar_item(container, item, shape, ctx)

    answer_each(messages, "FindItem", targets, answer)


def _calendar_view_items(
    ctx: EwsContext, mailbox: str, view: Any, restriction: Any, sort_order: Any
) -> list[CalendarItem]:
    if restriction is not None or sort_order is not None:
        raise EwsError(
            "ErrorInvalidRestriction",
            "Restrictions and sort order may not be specified for a CalendarView.",
        )
    start = parse_datetime(view.get("StartDate"), "CalendarView StartDate", ctx.time_zone)
    end = parse_datetime(view.get("EndDate"), "CalendarView EndDate", ctx.time_zone)
    if end < start:
        raise EwsError(
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "EndDate is earlier than StartDate",
        )
    return ctx.store.calendar_view(mailbox, start, end)


def _filtered_items(
    ctx: EwsContext, mailbox: str, restriction: Any, sort_order: Any
) -> list[CalendarItem]:
    items = ctx.store.calendar_items(mailbox)
    if restriction is not None:
        if len(restriction) != 1:
            raise EwsError("ErrorInvalidRestriction", "Restriction takes one search expression.")
        predicate = compile_restriction(restriction[0], ctx.time_zone)
        items = [item for item in items if predicate(item)]
    if sort_order is not None:
        items = sort_items(items, sort_key_functions(sort_order))
    return items


def get_item(ctx: EwsContext, operation: Any, body: Any) -> None:
    shape = read_shape(operation.find(m("ItemShape")))
    ctx.store.record_shape("ews:GetItem", shape.base, shape.field_uris)
    item_ids = operation.find(m("ItemIds"))
    messages = messages_container(body, "GetItem")
    targets = list(item_ids) if item_ids is not None else []

    def answer(message: Any, element: Any) -> None:
        saved = ctx.saved_message(element)
        if saved is not None:
            render_meeting_message(add(message, m("Items")), saved, shape, ctx)
            return
        item = ctx.item(element)
        render_calendar_item(add(message, m("Items")), item, shape, ctx)

    answer_each(messages, "GetItem", targets, answer, empty_items)
