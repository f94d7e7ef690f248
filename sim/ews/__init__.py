"""The simulator's EWS SOAP service (``/EWS/Exchange.asmx``) over the shared mailbox store.

``EwsService(store, validate_responses=...)`` is what the HTTP server dispatches to; the
operation modules (folders, finding, sync, writing, conversion) map the wire to the store, and
``schema`` checks responses against Microsoft's EWS schema.
"""

from sim.ews.service import EwsService, SchemaFailure

__all__ = ["EwsService", "SchemaFailure"]
