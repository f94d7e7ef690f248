"""The bodies and headers of the HTTP contract that are not domain models (those live in
``shared.models``): what the routes answer, and the admin API's staff assignment. The OpenAPI
document is generated from these."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from shared.models import CamelModel, EmailAddress, Identifier, TimeZoneName

# The booking platform's HMAC signature (``shared.booking.signature``).
SIGNATURE_HEADER = "X-Calbridge-Signature"
# The organization administrator's key (``shared.admin``), beside the host's function key.
ADMIN_KEY_HEADER = "X-Calbridge-Admin-Key"


class AppointmentAccepted(CamelModel):
    """202: the snapshot is stored (or was already) and Exchange will be brought in line."""

    accepted: Literal[True] = True
    version: int


class AppointmentStale(CamelModel):
    """200: a newer version is already stored; this snapshot was ignored."""

    accepted: Literal[False] = False
    reason: Literal["stale"] = "stale"
    stored_version: int


class StaffMailboxAssignment(CamelModel):
    """``PUT .../staff/{staffId}``: a staff member's mailbox and the connection reaching it."""

    connection_id: Identifier
    mailbox: EmailAddress
    time_zone: TimeZoneName
    # Whether the staff member's own Exchange events count as busy time for their availability.
    busy_time: bool = True


class ConnectionSaved(CamelModel):
    connection_id: str
    created: bool
    requeued_parked_changes: int = 0


class StaffSaved(CamelModel):
    model_config = ConfigDict(frozen=True)

    staff_id: str
    connection_id: str
    mailbox: str
    created: bool
    sync_reset: bool


class WebhookReplayed(CamelModel):
    """202: the event is queued for delivery again."""

    event_id: str
    queued: Literal[True] = True


# --- Graph change notifications (Microsoft's format, received) ---------------------------------
# https://learn.microsoft.com/graph/change-notifications-delivery-webhooks and
# https://learn.microsoft.com/graph/change-notifications-lifecycle-events. Unknown fields are
# ignored (Graph adds fields over time); calbridge reads the subscription id, the clientState and,
# for lifecycle notifications, the event.


class GraphNotification(CamelModel):
    """One change or lifecycle notification as Graph posts it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    subscription_id: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    client_state: Annotated[str, StringConstraints(max_length=256)] | None = None
    change_type: Annotated[str, StringConstraints(max_length=64)] | None = None
    lifecycle_event: Annotated[str, StringConstraints(max_length=64)] | None = None
    tenant_id: Annotated[str, StringConstraints(max_length=64)] | None = None


class GraphNotificationBatch(CamelModel):
    """What Graph posts to a notification or lifecycle URL: ``{"value": [...]}``."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    value: Annotated[list[GraphNotification], Field(min_length=1, max_length=1000)]
