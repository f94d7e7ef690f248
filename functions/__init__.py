"""Trigger blueprints: one module per trigger family, each thin (parse, validate, one call into
``shared``, answer)."""

from __future__ import annotations

import azure.functions as func


def blueprints() -> list[func.Blueprint]:
    """Every blueprint the app registers, in registration order."""
    from functions import (
        admin_api,
        appointment_worker,
        booking_api,
        graph_webhook,
        mailbox_sync,
        status_page,
        webhooks,
    )

    return [
        booking_api.bp,
        admin_api.bp,
        appointment_worker.bp,
        mailbox_sync.bp,
        graph_webhook.bp,
        webhooks.bp,
        status_page.bp,
    ]
