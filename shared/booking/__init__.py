"""The booking platform's side of calbridge: the intake of its requests (appointment snapshots,
busy-time queries) and the HMAC signatures both ways (its requests to calbridge, calbridge's
webhooks to it). Route shapes and bodies are in ``shared.http``."""
