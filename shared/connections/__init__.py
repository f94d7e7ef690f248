"""A connection's state as every worker and the admin API change it: disabled for maintenance,
refused credentials (``auth_failed``) and recovery, each transition told to the booking platform
once (``connection.health_changed``), and the work held meanwhile set going again."""

from shared.connections.health import (
    AUTH_RETRY,
    AUTH_RETRY_EVERY,
    CATCH_UP,
    HealthChange,
    after_save,
    calls_allowed,
    catch_up,
    connection_secrets_fingerprint,
    mark_auth_failed,
    recover,
    requeue_parked,
    secret_fingerprint,
    set_enabled,
)

__all__ = [
    "AUTH_RETRY",
    "AUTH_RETRY_EVERY",
    "CATCH_UP",
    "HealthChange",
    "after_save",
    "calls_allowed",
    "catch_up",
    "connection_secrets_fingerprint",
    "mark_auth_failed",
    "recover",
    "requeue_parked",
    "secret_fingerprint",
    "set_enabled",
]
