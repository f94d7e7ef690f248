"""The local Functions host: runs the functions that ``function_app.app`` registers without the
Azure Functions host (HTTP on a loopback port, queue triggers polling Azurite, timers on their
NCRONTAB schedules), plus the helpers that start local services (Azurite, simulators)."""
