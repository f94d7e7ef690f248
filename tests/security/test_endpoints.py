"""Where an organization's administrator may point calbridge: a connection's EWS URL (calbridge
sends the connection's secret there) and the webhook URL (signed events go there). Link-local
and cloud metadata addresses, private networks and anything that is not a plain https URL are
refused in every run, loopback too outside local runs (``CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE`` off,
as in Azure); each is a 422 naming the field, nothing is stored, and nothing is sent there."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from shared import bootstrap
from tests.security.conftest import ORG, Unchanged, World
from tests.security.surface import assert_refused

NEVER = [
    # cloud instance metadata and platform addresses, however they are written
    "https://169.254.169.254/metadata/instance?api-version=2021-02-01",
    "http://169.254.169.254/latest/meta-data/",
    "https://[::ffff:169.254.169.254]/metadata",
    "https://[::ffff:a9fe:a9fe]/metadata",
    "https://2852039166/metadata",  # 169.254.169.254 as one number
    "https://0xa9.0xfe.0xa9.0xfe/metadata",  # ... in hex
    "https://0251.0376.0251.0376/metadata",  # ... in octal
    "https://168.63.129.16/machine?comp=goalstate",
    "https://100.100.100.200/latest/meta-data",
    "https://[fd00:ec2::254]/latest/meta-data",
    "https://[fe80::1]/EWS/Exchange.asmx",
    "https://[fe80::1%25eth0]/EWS/Exchange.asmx",
    # private networks (the operator has not allowed them)
    "https://10.0.0.5/EWS/Exchange.asmx",
    "https://172.16.0.1/EWS/Exchange.asmx",
    "https://192.168.1.10/EWS/Exchange.asmx",
    "https://100.64.0.1/EWS/Exchange.asmx",
    "https://[fc00::1]/EWS/Exchange.asmx",
    # not a server
    "https://0.0.0.0/EWS/Exchange.asmx",
    "https://224.0.0.1/EWS/Exchange.asmx",
    "https://[::]/EWS/Exchange.asmx",
    # not https, or not a URL
    "http://mail.contoso.com/EWS/Exchange.asmx",
    "file:///etc/passwd",
    "gopher://mail.contoso.com:25/",
    "ftp://mail.contoso.com/",
    "javascript:alert(1)",
    "https://",
    "https://mail.contoso.com\r\nX-Injected: 1/EWS",
    "https://svc:Passw0rd@mail.contoso.com/EWS/Exchange.asmx",
    "https://mail.contoso.com/" + "a" * 3000,
]
# Refused only outside local runs (the simulator's EWS and the booking stand-in are on
# loopback, so a local run allows it).
LOOPBACK = [
    "https://127.0.0.1/EWS/Exchange.asmx",
    "http://127.0.0.1:8080/EWS/Exchange.asmx",
    "https://127.1/EWS/Exchange.asmx",
    "https://2130706433/EWS/Exchange.asmx",
    "https://[::1]/EWS/Exchange.asmx",
    "https://[::ffff:127.0.0.1]/EWS/Exchange.asmx",
    "https://localhost/EWS/Exchange.asmx",
    "https://mail.localhost/EWS/Exchange.asmx",
]


def connection(url: str) -> dict[str, str]:
    return {
        "kind": "ews",
        "ewsUrl": url,
        "authType": "ntlm",
        "username": "svc@bank.test",
        "secretReference": "ews-password",
        "accessMode": "impersonation",
    }


def refuse_everywhere(world: World, unchanged: Unchanged, urls: list[str]) -> None:
    """Each URL as a new connection, as the existing one, and as the webhook URL."""
    with unchanged.throughout():
        answers = [
            (url, field, world.admin("PUT", path, body))
            for url in urls
            for field, path, body in (
                ("ewsUrl", f"orgs/{ORG}/connections/elsewhere", connection(url)),
                ("ewsUrl", f"orgs/{ORG}/connections/onprem", connection(url)),
                ("webhookUrl", f"orgs/{ORG}/settings", {"webhookUrl": url}),
            )
        ]
    for url, field, answer in answers:
        assert answer.status_code == 422, (url, field, answer.text)
        assert_refused(answer, 422, field)
        assert "Passw0rd" not in answer.text


def test_metadata_link_local_private_and_non_https_urls_are_refused_in_every_run(
    world: World, unchanged: Unchanged
) -> None:
    refuse_everywhere(world, unchanged, NEVER)


@pytest.fixture
def azure_policy(world: World) -> Iterator[None]:
    """The operator's settings in Azure: loopback endpoints not allowed. Safe to switch while
    the world is still (no worker runs); the local-run policy is restored after the test."""
    name = "CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE"
    saved = os.environ.get(name)
    os.environ[name] = "false"
    bootstrap.reset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
        bootstrap.reset()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A port on this machine that notices any connection to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.usefixtures("azure_policy")
def test_loopback_urls_are_refused_outside_local_runs_and_nothing_is_sent_there(
    world: World, unchanged: Unchanged, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    ours = [f"https://127.0.0.1:{port}/EWS/Exchange.asmx", f"http://localhost:{port}/hooks"]
    refuse_everywhere(world, unchanged, LOOPBACK + ours + NEVER[:3])
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody came
