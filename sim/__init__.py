"""A local Exchange organization for development and tests: EWS (SOAP) and Microsoft Graph over
HTTP on one mailbox store with real meeting semantics, an OAuth token endpoint, fault injection,
request counters, and a stand-in booking platform that receives calbridge's webhooks.

Production code never imports this package. Start it with
``python -m sim --config FILE --host 127.0.0.1 --port 0``.
"""
