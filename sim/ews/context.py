"""Who a request acts for and which mailbox it touches: ExchangeImpersonation, delegate access
through a folder's mailbox, or the caller's own mailbox — and the ids that name folders and
items, resolved to the store with the rights checked.

Rules (as Exchange applies them):
- ExchangeImpersonation: the caller must be allowed to impersonate the address
  (``ErrorImpersonateUserDenied`` fault otherwise; ``ErrorNonExistentMailbox`` for an unknown
  one) and then acts as that user: only that mailbox is reachable.
- Without it: a DistinguishedFolderId with a Mailbox, or a FolderId/ItemId of another mailbox,
  is delegate access (``principal.may_open``, else ``ErrorAccessDenied``); without a mailbox the
  caller's own mailbox is meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from sim.ews.errors import EwsError, EwsFault
from sim.ews.ids import FOLDER_NAMES, decode_folder_id, decode_item_id
from sim.ews.soap import EwsEnvelope, t, text_of
from sim.store import CalendarItem, ExchangeStore, ItemType, MeetingMessage, SimError
from sim.wire import Principal

# Distinguished folders a calendar-only mailbox answers for; any other name is "not found".
DISTINGUISHED_FOLDER_NAMES = frozenset(FOLDER_NAMES)


@dataclass
class FolderRef:
    mailbox: str
    name: str  # "root" | "msgfolderroot" | "calendar"


@dataclass
class EwsContext:
    store: ExchangeStore
    principal: Principal
    envelope: EwsEnvelope
    # Extra per-request behaviour from an injected fault (e.g. a forced sync-state error).
    forced_errors: dict[str, str] = field(default_factory=dict)

    @property
    def time_zone(self) -> tzinfo:
        return self.envelope.time_zone

    @property
    def legacy_time_zones(self) -> bool:
        """Exchange 2007 clients get MeetingTimeZone instead of Start/EndTimeZone."""
        return self.envelope.requested_version.startswith("Exchange2007")

    # --- mailboxes ---------------------------------------------------------------------------
    def check_impersonation(self) -> None:
        address = self.envelope.impersonated
        if address is None:
            return
        if not self._exists(address):
            raise EwsFault(
                "ErrorNonExistentMailbox",
                f"The SMTP address {address} has no mailbox associated with it.",
            )
        if not self.principal.may_impersonate(address):
            raise EwsFault(
                "ErrorImpersonateUserDenied",
                "The account does not have permission to impersonate the requested user.",
            )

    def own_mailbox(self) -> str:
        """The mailbox a request means when it names none."""
        if self.envelope.impersonated is not None:
            return self.envelope.impersonated
        if self.principal.kind == "app":
            raise EwsFault(
                "ErrorMissingEmailAddress",
                "An application token reaches mailboxes only through ExchangeImpersonation.",
            )
        return self.principal.name.lower()

    def open_mailbox(self, address: str) -> str:
        """Check that the caller may reach this mailbox; returns its canonical address."""
        address = address.strip().lower()
        if not self._exists(address):
            raise EwsError(
                "ErrorNonExistentMailbox",
                f"The SMTP address {address} has no mailbox associated with it.",
            )
        if self.envelope.impersonated is not None:
            if address != self.envelope.impersonated:
                raise EwsError(
                    "ErrorAccessDenied",
                    "The impersonated user does not have access to this mailbox.",
                )
            return address
        if not self.principal.may_open(address):
            raise EwsError(
                "ErrorAccessDenied",
                f"Access is denied. Check credentials and try again ({address}).",
            )
        return address

    def _exists(self, address: str) -> bool:
        try:
            self.store.mailbox(address)
        except SimError:
            return False
        return True

    # --- folders -----------------------------------------------------------------------------
    def folder(self, element: Any) -> FolderRef:
        """A FolderId or DistinguishedFolderId element, resolved and access-checked."""
        if element.tag == t("DistinguishedFolderId"):
            name = element.get("Id", "")
            mailbox_elem = element.find(t("Mailbox"))
            address = text_of(mailbox_elem, t("EmailAddress")) if mailbox_elem is not None else None
            mailbox = (
                self.open_mailbox(address) if address else self.open_mailbox(self.own_mailbox())
            )
            if name not in DISTINGUISHED_FOLDER_NAMES:
                raise EwsError(
                    "ErrorFolderNotFound",
                    f"The distinguished folder {name!r} does not exist in this calendar-only "
                    "mailbox.",
                )
            return FolderRef(mailbox, name)
        if element.tag == t("FolderId"):
            address, name = decode_folder_id(element.get("Id"))
            return FolderRef(self.open_mailbox(address), name)
        raise EwsError("ErrorInvalidRequest", f"Unsupported folder reference {element.tag}.")

    # --- items -------------------------------------------------------------------------------
    def item(self, element: Any) -> CalendarItem:
        """An ItemId / OccurrenceItemId / RecurringMasterItemId / ReferenceItemId element,
        resolved to the store's item with the caller's access checked."""
        tag = element.tag
        if tag in (t("ItemId"), t("ReferenceItemId")):
            item = self._get(decode_item_id(element.get("Id")))
        elif tag == t("OccurrenceItemId"):
            master = self._get(decode_item_id(element.get("RecurringMasterId")))
            if master.item_type != ItemType.RECURRING_MASTER:
                raise EwsError(
                    "ErrorCalendarCannotUseIdForOccurrenceId",
                    "The item is not a recurring master, so it has no occurrences.",
                )
            try:
                index = int(element.get("InstanceIndex", ""))
            except ValueError as error:
                raise EwsError(
                    "ErrorInvalidRequest", "OccurrenceItemId needs a numeric InstanceIndex."
                ) from error
            self._check_item_access(master)
            try:
                item = self.store.occurrence_by_index(master.id, index)
            except SimError as error:
                raise EwsError(error.code, error.message) from error
        elif tag == t("RecurringMasterItemId"):
            occurrence = self._get(decode_item_id(element.get("OccurrenceId")))
            if occurrence.master_id is None:
                raise EwsError(
                    "ErrorCalendarCannotUseIdForRecurringMasterId",
                    "The item is not an occurrence of a recurring series.",
                )
            item = self._get(occurrence.master_id)
        else:
            raise EwsError("ErrorInvalidRequest", f"Unsupported item reference {tag}.")
        self._check_item_access(item)
        return item

    def saved_message(self, element: Any) -> MeetingMessage | None:
        """The saved meeting message an ItemId names (a cancellation in Sent Items), with the
        caller's access checked; None when the id names anything else."""
        if element.tag != t("ItemId"):
            return None
        found = self.store.messages.get(decode_item_id(element.get("Id")))
        if found is not None:
            self.open_mailbox(found.mailbox)
        return found

    def _get(self, internal_id: str) -> CalendarItem:
        try:
            return self.store.get_item(internal_id)
        except SimError as error:
            raise EwsError(error.code, error.message) from error

    def _check_item_access(self, item: CalendarItem) -> None:
        self.open_mailbox(item.mailbox)

    def request_mailbox(self, operation: Any) -> str:
        """The mailbox a request is about, for fault matching and counters: the impersonated
        user, else the first folder or item it names that resolves, else the caller."""
        if self.envelope.impersonated is not None:
            return self.envelope.impersonated
        for element in operation.iter(
            t("DistinguishedFolderId"),
            t("FolderId"),
            t("ItemId"),
            t("OccurrenceItemId"),
            t("ReferenceItemId"),
        ):
            try:
                if element.tag == t("DistinguishedFolderId"):
                    mailbox_elem = element.find(t("Mailbox"))
                    address = (
                        text_of(mailbox_elem, t("EmailAddress"))
                        if mailbox_elem is not None
                        else None
                    )
                    if address:
                        return address.strip().lower()
                    continue
                if element.tag == t("FolderId"):
                    return decode_folder_id(element.get("Id"))[0]
                attribute = "RecurringMasterId" if element.tag == t("OccurrenceItemId") else "Id"
                return self.store.get_item(decode_item_id(element.get(attribute))).mailbox
            except (EwsError, SimError):
                continue
        return self.principal.name.lower()
