"""The app as the end-to-end, security and browser suites run it: ``function_app.app`` under
the local runner (HTTP on a free loopback port, queue triggers polling Azurite), its settings
pointing at a running simulator — Graph, its token authority and CA bundle, EWS on loopback —
with fast queue polling and retries, since the scenarios wait on the workers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

import httpx

from devhost.azurite import free_port
from devhost.hostconfig import HostConfig
from devhost.runner import FunctionsRunner
from sim.server import RunningSimulator
from tests.functions_harness import app_environment


@contextmanager
def local_app(
    storage: str,
    prefix: str,
    sim: RunningSimulator,
    signing_secrets: Mapping[str, str],
    settings: Mapping[str, str],
    *,
    timers: bool = True,
) -> Iterator[tuple[FunctionsRunner, httpx.Client]]:
    """The runner started and an HTTP client for it; ``settings``: further app settings
    (secrets by their environment variable, the operator key). Without ``timers`` no timer
    fires (a suite that drives them itself)."""
    # Graph posts change notifications to the runner's HTTP server: its address is calbridge's
    # public URL here, known before the app reads its settings.
    http_port = free_port()
    with app_environment(
        storage,
        prefix,
        dict(signing_secrets),
        # A local run: the simulator's EWS and the booking stand-in are on loopback.
        CALBRIDGE_ALLOW_LOOPBACK_EXCHANGE="true",
        CALBRIDGE_GRAPH_URL=sim.urls["graph"],
        CALBRIDGE_GRAPH_AUTHORITY=sim.urls["token"],
        CALBRIDGE_GRAPH_CA_BUNDLE=sim.urls["caBundle"],
        CALBRIDGE_PUBLIC_URL=f"http://127.0.0.1:{http_port}/api",
        **settings,
    ):
        import function_app

        host = HostConfig.load()
        config = replace(
            host, queues=replace(host.queues, max_polling_interval=0.2, visibility_timeout=0.5)
        )
        runner = FunctionsRunner(function_app.app, config, http_port=http_port)
        if not timers:
            runner.timers = []
        with runner, httpx.Client(timeout=30) as client:
            yield runner, client
