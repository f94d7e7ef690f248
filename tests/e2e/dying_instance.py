"""Another instance of the app, in a process of its own, that a test kills mid-invocation.

In Azure, several instances of the Functions host take messages from the same queues; one may
die at any moment (a scale-in, a crash, an out-of-memory kill) between two steps of an
invocation, after some of its effects and before the others. The message it held comes back
once its visibility lapses and another instance runs it again. This module plays that instance:

- :class:`InstancePool` (the test's side) starts ``python -m tests.e2e.dying_instance`` with
  the app's settings, its storage and Graph reached through the test's relays (its EWS too: the
  connection's URL is the relay's). That process loads the app and the Exchange SDKs once and
  then forks one instance per kill on demand, so a kill costs a fork, not seconds of imports;
- :meth:`DyingInstance.go` (SIGUSR1) makes an instance poll every queue trigger's queue the way
  the local runner does, with a short lease (``LEASE_S``: how long a message it took stays
  hidden, the host's visibility timeout);
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
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Final

from tests.e2e.privacy import record_texts

REPO_ROOT = Path(__file__).resolve().parents[2]
# How long a message the instance took stays invisible: the lease a dead instance leaves.
LEASE_S: Final = 2.0
READY: Final = "ready"
FORK: Final = "fork"


class DyingInstance:
    """One forked instance (test side): ready once it built its runner; ``pid`` then."""

    def __init__(self, number: int, log_path: Path) -> None:
        self.number = number
        self.log_path = log_path
        self.pid: int | None = None
        self.ready = threading.Event()

    def go(self, timeout: float = 60.0) -> None:
        """Start taking messages."""
        if not self.ready.wait(timeout) or self.pid is None:
            raise AssertionError(f"instance {self.number} was not ready within {timeout} s")
        os.kill(self.pid, signal.SIGUSR1)

    def kill(self) -> None:
        """SIGKILL: the instance stops between two instructions, whatever it was doing. Returns
        once it is gone (reaped by the process that forked it)."""
        if not self.ready.wait(60.0) or self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.01)  # the zombie is reaped at once (SIGCHLD ignored)
        raise AssertionError(f"instance {self.number} (pid {self.pid}) outlived SIGKILL")

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
    """The process that forks instances, and one instance forked ahead of need: ``take`` hands
    it out and forks the next."""

    def __init__(self, environ: Mapping[str, str], directory: Path) -> None:
        self._directory = directory
        self._made = 0
        self._lock = threading.Lock()
        self._instances: dict[int, DyingInstance] = {}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.dying_instance"],
            cwd=REPO_ROOT,
            env=dict(environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        self._spare = self._fork()

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            words = line.split()
            if len(words) == 3 and words[0] == READY:
                with self._lock:
                    instance = self._instances.get(int(words[1]))
                if instance is not None:
                    instance.pid = int(words[2])
                    instance.ready.set()

    def _fork(self) -> DyingInstance:
        with self._lock:
            self._made += 1
            instance = DyingInstance(self._made, self._directory / f"instance-{self._made}.jsonl")
            self._instances[instance.number] = instance
        assert self._process.stdin is not None
        self._process.stdin.write(f"{FORK} {instance.number} {instance.log_path}\n")
        self._process.stdin.flush()
        return instance

    def take(self) -> DyingInstance:
        instance, self._spare = self._spare, self._fork()
        return instance

    def close(self) -> None:
        self._spare.kill()
        self._spare.replay_logs()
        with contextlib.suppress(OSError):
            if self._process.stdin is not None:
                self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()


# --- the instances' side -------------------------------------------------------------------------


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


def _load() -> None:
    """What every instance needs, loaded once before any fork (no thread is started here:
    a forked child has only the thread that forked it)."""
    # The EWS adapter's logging rules apply from its import (as in the suite's capture).
    import function_app  # noqa: F401
    import shared.exchange.ews
    import shared.exchange.ews.gateway
    import shared.exchange.graph.gateway  # noqa: F401

    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)


def _instance(number: int, log_path: str) -> None:
    """One forked instance: build the runner, say so, take messages from SIGUSR1 on, until
    killed."""
    import function_app
    from devhost.hostconfig import HostConfig, QueueOptions
    from devhost.runner import FunctionsRunner
    from shared.observability import CorrelationFilter

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # (every thread inherits it)
    handler = _JsonLines(open(log_path, "a", encoding="utf-8"))  # noqa: SIM115 (until killed)
    handler.addFilter(CorrelationFilter())
    logging.getLogger().addHandler(handler)
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
    forked_by = os.getppid()

    def orphaned() -> None:
        # The forking process ends with the test's (its stdin closes): so does the instance.
        while os.getppid() == forked_by:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=orphaned, daemon=True).start()
    print(f"{READY} {number} {os.getpid()}", flush=True)
    signal.sigwait({signal.SIGUSR1})
    for poller in runner.pollers:
        poller.start()
    threading.Event().wait()  # until killed


def main() -> None:
    _load()
    assert threading.active_count() == 1, "a thread started before the forks"
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # killed instances are reaped at once
    for line in sys.stdin:
        words = line.split()
        if len(words) != 3 or words[0] != FORK:
            continue
        if os.fork() == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _instance(int(words[1]), words[2])
            finally:
                os._exit(0)


if __name__ == "__main__":
    main()
