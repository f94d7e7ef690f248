"""Another instance of the app, in a process of its own, that a test kills mid-invocation.

In Azure, several instances of the Functions host take messages from the same queues; one may
die at any moment (a scale-in, a crash, an out-of-memory kill) between two steps of an
invocation, after some of its effects and before the others. The message it held comes back
once its visibility lapses and another instance runs it again. This module plays that instance:

- :class:`DyingInstance` (the test's side) starts ``python -m tests.e2e.dying_instance`` with
  the app's settings, its storage and Graph reached through the test's :class:`Network` relays
  (its EWS too: the connection's URL is the relay's), and waits until it has loaded the app;
- ``go`` makes it poll every queue trigger's queue the way the local runner does, with a short
  lease (``LEASE_S``: how long a message it took stays hidden, the host's visibility timeout);
- the test arms the network with a hold at the chosen point, lets the instance take the work,
  and once the hold happened kills it with SIGKILL: no ``finally``, no error handler, no
  retry of the instance's own runs;
- every log record the instance wrote is handed to the test process's logging afterwards (its
  texts as the instance rendered them), so the end-to-end suite's privacy scan reads them too.

Nothing of calbridge is changed or replaced in the instance: it runs the registered functions
through the local runner's queue pollers, with the same code and settings as any instance.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

from tests.e2e.privacy import record_texts

REPO_ROOT = Path(__file__).resolve().parents[2]
# How long a message the instance took stays invisible: the lease a dead instance leaves.
LEASE_S: Final = 2.0
READY: Final = "ready"
GO: Final = "go"


class DyingInstance:
    """One instance process (test side): started at once, ready after it loaded the app."""

    def __init__(self, environ: Mapping[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.dying_instance", str(log_path)],
            cwd=REPO_ROOT,
            env=dict(environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._ready = threading.Event()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.strip() == READY:
                self._ready.set()

    def go(self, timeout: float = 60.0) -> None:
        """Start taking messages (once the app is loaded)."""
        if not self._ready.wait(timeout):
            raise AssertionError(f"the instance did not load the app within {timeout} s")
        assert self._process.stdin is not None
        self._process.stdin.write(GO + "\n")
        self._process.stdin.flush()

    def kill(self) -> None:
        """SIGKILL: the instance stops between two instructions, whatever it was doing."""
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGKILL)
        self._process.wait(timeout=30)

    def stop(self) -> None:
        """An unused instance goes quietly (its stdin closed)."""
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def replay_logs(self) -> int:
        """Hand the instance's log records to this process's root logger (the suite's capture
        scans them); the number handed."""
        if not self.log_path.exists():
            return 0
        root = logging.getLogger()
        count = 0
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                written = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line, cut short by the kill
            texts = {str(k): str(v) for k, v in written["texts"].items()}
            record = logging.makeLogRecord(
                {
                    "name": written["name"],
                    "levelno": written["levelno"],
                    "levelname": logging.getLevelName(written["levelno"]),
                    "msg": "[dying instance] " + texts.get("message", ""),
                    "_captured_texts": texts,
                }
            )
            root.handle(record)
            count += 1
        self.log_path.unlink()
        return count


class InstancePool:
    """Keeps one instance loading or loaded ahead of need (loading the app takes seconds):
    ``take`` hands it out and starts loading the next."""

    def __init__(self, environ: Mapping[str, str], directory: Path) -> None:
        self._environ = dict(environ)
        self._directory = directory
        self._made = 0
        self._spare: DyingInstance | None = None
        self.replenish()

    def _new(self) -> DyingInstance:
        self._made += 1
        return DyingInstance(self._environ, self._directory / f"instance-{self._made}.jsonl")

    def take(self) -> DyingInstance:
        instance, self._spare = self._spare or self._new(), None
        self.replenish()
        return instance

    def replenish(self) -> None:
        if self._spare is None:
            self._spare = self._new()

    def close(self) -> None:
        if self._spare is not None:
            self._spare.stop()
            self._spare.replay_logs()
            self._spare = None


class _JsonLines(logging.Handler):
    """Writes each record's texts (``record_texts``) as one JSON line, flushed at once: what
    the instance logged up to its death is on disk."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(logging.DEBUG)
        self._stream = stream
        self._lock_stream = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        line = json.dumps(
            {"name": record.name, "levelno": record.levelno, "texts": record_texts(record)}
        )
        with self._lock_stream:
            self._stream.write(line + "\n")
            self._stream.flush()


def _open_logging(log_path: str) -> None:
    # The EWS adapter's logging rules apply from its import (as in the suite's capture).
    import shared.exchange.ews  # noqa: F401
    from shared.observability import CorrelationFilter

    handler = _JsonLines(open(log_path, "a", encoding="utf-8"))  # noqa: SIM115 (until killed)
    handler.addFilter(CorrelationFilter())
    root = logging.getLogger()
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)


def main(log_path: str) -> None:
    _open_logging(log_path)
    import function_app
    from devhost.hostconfig import HostConfig, QueueOptions
    from devhost.runner import FunctionsRunner
    from shared import bootstrap

    host = HostConfig.load()
    config = HostConfig(
        route_prefix=host.route_prefix,
        function_timeout=LEASE_S,
        queues=QueueOptions(
            batch_size=4,
            new_batch_threshold=2,
            max_polling_interval=0.1,
            visibility_timeout=0.5,
            max_dequeue_count=host.queues.max_dequeue_count,
        ),
    )
    runner = FunctionsRunner(function_app.app, config, environ=os.environ)
    bootstrap.services()
    # The adapters load their SDKs on first use: load them now, so a kill waits for no import.
    import shared.exchange.ews.gateway
    import shared.exchange.graph.gateway  # noqa: F401

    print(READY, flush=True)
    if sys.stdin.readline().strip() != GO:
        runner.stop(grace=0)
        return
    for poller in runner.pollers:
        poller.start()
    sys.stdin.readline()  # until killed, or told to stop (stdin closed)
    runner.stop(grace=5)


if __name__ == "__main__":
    main(sys.argv[1])
