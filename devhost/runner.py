"""The local Functions runner: drives every function a ``func.FunctionApp`` registers.

Usage::

    runner = FunctionsRunner(app, HostConfig.load(), environ=os.environ, functions_key="...")
    runner.start()          # HTTP on runner.base_url, queue pollers, timers
    ...
    runner.stop()           # or use it as a context manager

The app is a parameter (``function_app.app`` for ``make run``, a small synthetic app in tests);
it is indexed once (see :mod:`devhost.indexing`). Functions whose triggers or bindings the runner
cannot drive are listed in ``runner.index.skipped`` and logged, not run.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import azure.functions as func

from devhost.hostconfig import HostConfig
from devhost.http_triggers import MAX_BODY_BYTES, HttpDispatcher, HttpTriggerServer
from devhost.indexing import FunctionIndex, index_app
from devhost.invocation import EventLoopThread, Invoker
from devhost.queue_triggers import QueueOutputSender, QueuePoller
from devhost.timer_triggers import TimerSchedule

log = logging.getLogger("devhost")

REPO_ROOT = Path(__file__).resolve().parent.parent
# How long a stop waits for running invocations before abandoning them.
DEFAULT_STOP_GRACE_S = 10.0


def new_functions_key() -> str:
    """A random key in the shape the host generates (URL-safe, 40+ characters)."""
    return secrets.token_urlsafe(40)


class FunctionsRunner:
    """HTTP server, queue pollers and timers for one app, started and stopped together."""

    def __init__(
        self,
        app: func.FunctionApp,
        host_config: HostConfig | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        functions_key: str | None = None,
        http_host: str = "127.0.0.1",
        http_port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
        function_directory: Path = REPO_ROOT,
    ) -> None:
        self.host_config = host_config or HostConfig.load()
        self.environ: Mapping[str, str] = environ if environ is not None else os.environ
        self.functions_key = functions_key or new_functions_key()
        self.index: FunctionIndex = index_app(app)
        self._loop = EventLoopThread()
        http: HttpTriggerServer | None = None
        try:
            invoker = Invoker(self._loop, str(function_directory))
            output_sender = QueueOutputSender(self.environ)
            dispatcher = HttpDispatcher(
                self.index.http, self.host_config.route_prefix, self.functions_key, invoker
            )
            http = HttpTriggerServer(dispatcher, http_host, http_port, max_body_bytes)
            self.http = http
            self.pollers = [
                QueuePoller(function, self.environ, self.host_config, invoker, output_sender)
                for function in self.index.queue
            ]
            self.timers = [
                TimerSchedule(function, self.environ, invoker) for function in self.index.timer
            ]
        except BaseException:
            if http is not None:
                http.stop()
            self._loop.stop()
            raise
        self._started = False

    @property
    def base_url(self) -> str:
        """Where HTTP functions live, e.g. ``http://127.0.0.1:7071/api``."""
        return self.http.base_url

    def start(self) -> FunctionsRunner:
        self._started = True
        self.http.start()
        for poller in self.pollers:
            poller.start()
        for timer in self.timers:
            timer.start()
        log.info(
            "runner started: %d http, %d queue, %d timer functions; http on %s",
            len(self.index.http),
            len(self.pollers),
            len(self.timers),
            self.base_url,
        )
        return self

    @contextmanager
    def queues_paused(self) -> Iterator[None]:
        """No queue poller takes a new message meanwhile (invocations under way go on): as
        when another instance of the app takes every queue's messages for a while."""
        for poller in self.pollers:
            poller.pause()
        try:
            yield
        finally:
            for poller in self.pollers:
                poller.resume()

    def stop(self, grace: float = DEFAULT_STOP_GRACE_S) -> bool:
        """Stop taking work, release the port, and give running invocations ``grace`` seconds
        (all together) to finish. True when every invocation ended; False when some are still
        running, abandoned (their queue messages come back after the visibility timeout)."""
        deadline = time.monotonic() + grace
        self.http.stop()

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        ended = all([timer.stop(left()) for timer in self.timers])
        ended = all([poller.stop(left()) for poller in self.pollers]) and ended
        ended = self._loop.stop(min(5.0, left())) and ended
        if self._started:
            log.info("runner stopped" if ended else "runner stopped; invocations abandoned")
        self._started = False
        return ended

    def __enter__(self) -> FunctionsRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
