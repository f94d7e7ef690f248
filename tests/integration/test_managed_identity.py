"""The credential built from the identity-based settings asks the platform's managed-identity
endpoint for a token as the user-assigned identity ``AzureWebJobsStorage__clientId`` names.

App Service (and so Flex Consumption) offers that endpoint as ``IDENTITY_ENDPOINT`` with the
secret header ``IDENTITY_HEADER``; here a stand-in on loopback plays it and records what it was
asked."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from shared.config import Settings, azure_credential

CLIENT_ID = "0b7e4f0c-3a51-4f3e-9d0a-6c1e2f3a4b5c"
IDENTITY_HEADER = "platform-secret-header"


class IdentityEndpoint(ThreadingHTTPServer):
    """Answers every token request with a token, keeping each request's query and headers."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, list[str]], dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), _TokenHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/msi/token"


class _TokenHandler(BaseHTTPRequestHandler):
    server: IdentityEndpoint

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        self.server.requests.append((query, dict(self.headers)))
        body = json.dumps(
            {
                "access_token": "token-for-" + query.get("client_id", ["system"])[0],
                "expires_on": str(int(time.time()) + 3600),
                "resource": query["resource"][0],
                "token_type": "Bearer",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[IdentityEndpoint]:
    endpoint = IdentityEndpoint()
    thread = threading.Thread(target=endpoint.serve_forever, daemon=True)
    thread.start()
    # Only the platform's managed identity may answer: no service principal, no workload
    # identity, no developer sign-in from this machine's environment.
    for name in (
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_TENANT_ID",
        "AZURE_FEDERATED_TOKEN_FILE",
        "MSI_ENDPOINT",
        "MSI_SECRET",
        "IMDS_ENDPOINT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    try:
        yield endpoint
    finally:
        endpoint.shutdown()
        endpoint.server_close()
        thread.join(timeout=5)


def test_storage_tokens_are_asked_for_as_the_configured_user_assigned_identity(
    identity_endpoint: IdentityEndpoint,
) -> None:
    settings = Settings(  # app-setting names, as the host passes them
        AzureWebJobsStorage__clientId=CLIENT_ID,
        AzureWebJobsStorage__tableServiceUri="https://stcalbridge.table.core.windows.net",
        AzureWebJobsStorage__queueServiceUri="https://stcalbridge.queue.core.windows.net",
    )
    token = azure_credential(settings).get_token("https://storage.azure.com/.default")
    assert token.token == "token-for-" + CLIENT_ID
    [(query, headers)] = identity_endpoint.requests
    assert query["client_id"] == [CLIENT_ID]
    assert query["resource"] == ["https://storage.azure.com"]
    assert headers["X-IDENTITY-HEADER"] == IDENTITY_HEADER
