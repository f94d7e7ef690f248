"""SyncFolderItems: the calendar's changes since a sync state, collapsed per item.

The SyncState is the store's tamper-evident token for a position in the mailbox's change log,
plus ``base``: where the current round of paging started. Changes since the position are
collapsed per folder item (singles and recurring masters — a change to one occurrence is an
update of its master) and ordered by each item's latest change; a page of at most
MaxChangesReturned (1..512) ends at the latest change of its last item, so nothing is skipped
and nothing is reported twice within a round.

What each item becomes (as Exchange's ICS reports it):
- deleted, and created after the position: omitted (the client never saw it);
- deleted otherwise: Delete;
- created after ``base``: Create; otherwise Update.
An idle sync answers with the same SyncState and IncludesLastItemInRange=true.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/syncfolderitems-operation
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.ews.calendar_items import ews_item_id, render_calendar_item
from sim.ews.context import EwsContext
from sim.ews.errors import EwsError, EwsFault
from sim.ews.ids import decode_item_id
from sim.ews.properties import Shape, read_shape
from sim.ews.responses import answer_each, messages_container
from sim.ews.soap import add, format_bool, m, t, text_of
from sim.store import CalendarItem, ChangeKind, SimError

MAX_CHANGES_LIMIT = 512


@dataclass
class _Entry:
    item_id: str
    last_seq: int
    kinds: set[ChangeKind]


def _max_changes(operation: Any) -> int:
    raw = text_of(operation, m("MaxChangesReturned"))
    try:
        value = int(raw or "")
    except ValueError as error:
        raise EwsFault(
            "ErrorSchemaValidation",
            "The request failed schema validation: MaxChangesReturned must be an integer from "
            f"1 to {MAX_CHANGES_LIMIT}.",
        ) from error
    if not 1 <= value <= MAX_CHANGES_LIMIT:
        raise EwsFault(
            "ErrorSchemaValidation",
            f"The request failed schema validation: MaxChangesReturned {value} is outside "
            f"1..{MAX_CHANGES_LIMIT}.",
        )
    return value


def sync_folder_items(ctx: EwsContext, operation: Any, body: Any) -> None:
    shape = read_shape(operation.find(m("ItemShape")))
    ctx.store.record_shape("ews:SyncFolderItems", shape.base, shape.field_uris)
    folder_container = operation.find(m("SyncFolderId"))
    state = text_of(operation, m("SyncState")) or None
    max_changes = _max_changes(operation)
    ignored: set[str] = set()
    ignore_elem = operation.find(m("Ignore"))
    if ignore_elem is not None:
        for element in ignore_elem.findall(t("ItemId")):
            try:
                ignored.add(decode_item_id(element.get("Id")))
            except EwsError:
                continue  # an id that cannot be ours cannot match a change
    if folder_container is None or len(folder_container) != 1:
        raise EwsFault("ErrorSchemaValidation", "SyncFolderId needs exactly one folder.")
    messages = messages_container(body, "SyncFolderItems")

    def answer(message: Any, element: Any) -> None:
        folder = ctx.folder(element)
        forced = ctx.forced_errors.get("SyncState")
        if forced is not None:
            raise EwsError(forced, "Synchronization state data is corrupt or otherwise invalid.")
        with ctx.store.lock:
            _answer_sync(
                ctx, message, folder.mailbox, folder.name, state, shape, max_changes, ignored
            )

    def on_error(failed: Any) -> None:
        # exchangelib reads SyncState and IncludesLastItemInRange before it looks at the code.
        add(failed, m("SyncState"))
        add(failed, m("IncludesLastItemInRange"), format_bool(True))

    answer_each(messages, "SyncFolderItems", list(folder_container), answer, on_error)


def _answer_sync(
    ctx: EwsContext,
    message: Any,
    mailbox: str,
    folder_name: str,
    state: str | None,
    shape: Shape,
    max_changes: int,
    ignored: set[str],
) -> None:
    store = ctx.store
    if state:
        try:
            position, extra = store.decode_sync_state(mailbox, state)
        except SimError as error:
            raise EwsError(error.code, error.message) from error
        try:
            base = int(extra.get("base", position))
        except ValueError:
            base = position
    else:
        position = base = 0
    now = store.current_seq(mailbox)
    if folder_name != "calendar":
        # Only the calendar holds items in a simulated mailbox.
        add(message, m("SyncState"), store.encode_sync_state(mailbox, now, base=str(now)))
        add(message, m("IncludesLastItemInRange"), format_bool(True))
        add(message, m("Changes"))
        return

    entries: dict[str, _Entry] = {}
    for change in store.changes_since(mailbox, position):
        entry = entries.setdefault(change.item_id, _Entry(change.item_id, change.seq, set()))
        entry.last_seq = change.seq
        entry.kinds.add(change.kind)
    created_since_base = {
        change.item_id
        for change in store.changes_since(mailbox, base)
        if change.kind == ChangeKind.CREATE
    }
    ordered = sorted(entries.values(), key=lambda entry: entry.last_seq)

    reported: list[tuple[str, CalendarItem]] = []
    new_position = now
    complete = True
    for index, entry in enumerate(ordered):
        if len(reported) == max_changes:
            new_position = ordered[index - 1].last_seq
            complete = False
            break
        if entry.item_id in ignored:
            continue
        item = store.get_item(entry.item_id, include_deleted=True)
        if item.deleted:
            if ChangeKind.CREATE in entry.kinds:
                continue  # born and gone since the client's state
            reported.append(("Delete", item))
        elif entry.item_id in created_since_base:
            reported.append(("Create", item))
        else:
            reported.append(("Update", item))

    next_base = new_position if complete else base
    add(
        message,
        m("SyncState"),
        store.encode_sync_state(mailbox, new_position, base=str(next_base)),
    )
    add(message, m("IncludesLastItemInRange"), format_bool(complete))
    changes = add(message, m("Changes"))
    for kind, item in reported:
        change = add(changes, t(kind))
        if kind == "Delete":
            add(change, t("ItemId"), Id=ews_item_id(item))
        else:
            render_calendar_item(change, item, shape, ctx)
