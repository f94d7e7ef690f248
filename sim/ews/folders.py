"""GetFolder: the folders a simulated mailbox has — the root of the hierarchy, the top of the
information store (msgfolderroot), the calendar and the standard mail folders (always empty).
exchangelib asks for ``root`` and ``calendar`` the first time an Account touches them, and for
``sentitems`` when it sends a meeting response.

https://learn.microsoft.com/exchange/client-developer/web-service-reference/getfolder-operation
"""

from __future__ import annotations

from typing import Any

from sim.ews.context import EwsContext, FolderRef
from sim.ews.ids import FOLDER_CHANGE_KEY, encode_folder_id
from sim.ews.responses import answer_each, messages_container
from sim.ews.soap import add, format_bool, m, t

_DISPLAY_NAMES = {
    "root": "Root",
    "msgfolderroot": "Top of Information Store",
    "calendar": "Calendar",
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "drafts": "Drafts",
    "outbox": "Outbox",
}
_CHILD_COUNTS = {"root": 1, "msgfolderroot": len(_DISPLAY_NAMES) - 2}


def render_folder(parent: Any, folder: FolderRef, ctx: EwsContext) -> None:
    is_calendar = folder.name == "calendar"
    element = add(parent, t("CalendarFolder" if is_calendar else "Folder"))
    add(
        element,
        t("FolderId"),
        Id=encode_folder_id(folder.mailbox, folder.name),
        ChangeKey=FOLDER_CHANGE_KEY,
    )
    parent_name = {"root": None, "msgfolderroot": "root"}.get(folder.name, "msgfolderroot")
    if parent_name is not None:
        add(
            element,
            t("ParentFolderId"),
            Id=encode_folder_id(folder.mailbox, parent_name),
            ChangeKey=FOLDER_CHANGE_KEY,
        )
    add(element, t("FolderClass"), "IPF.Appointment" if is_calendar else "IPF.Note")
    add(element, t("DisplayName"), _DISPLAY_NAMES[folder.name])
    total = len(ctx.store.calendar_items(folder.mailbox)) if is_calendar else 0
    add(element, t("TotalCount"), str(total))
    add(element, t("ChildFolderCount"), str(_CHILD_COUNTS.get(folder.name, 0)))
    rights = add(element, t("EffectiveRights"))
    for right, allowed in (
        ("CreateAssociated", True),
        ("CreateContents", True),
        ("CreateHierarchy", True),
        ("Delete", True),
        ("Modify", True),
        ("Read", True),
        ("ViewPrivateItems", True),
    ):
        add(rights, t(right), format_bool(allowed))
    add(element, t("DistinguishedFolderId"), folder.name)
    if not is_calendar:
        add(element, t("UnreadCount"), "0")


def get_folder(ctx: EwsContext, operation: Any, body: Any) -> None:
    folder_ids = operation.find(m("FolderIds"))
    messages = messages_container(body, "GetFolder")
    targets = list(folder_ids) if folder_ids is not None else []

    def answer(message: Any, element: Any) -> None:
        folder = ctx.folder(element)
        render_folder(add(message, m("Folders")), folder, ctx)

    answer_each(messages, "GetFolder", targets, answer)
