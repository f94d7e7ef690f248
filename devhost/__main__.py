"""``python -m devhost`` (what ``make run`` runs): start the local stack, print a banner, run
until Ctrl-C (SIGINT) or SIGTERM, then stop everything it started.

Stopping is bounded: running invocations get ``CALBRIDGE_STOP_GRACE_SECONDS`` (10 s) to finish
and are then abandoned; the simulator and Azurite are stopped whatever happens. A second Ctrl-C
ends everything at once. Azurite and the simulator end with this process however it ends (on
Linux; elsewhere ``--stop-leftovers`` ends what a killed run left behind).

``--app module:attribute`` picks the FunctionApp (default ``function_app:app``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import azure.functions as func

from devhost.local_stack import LocalStack, StackOptions
from devhost.runner import REPO_ROOT
from shared.observability import CorrelationFilter


class ShutdownRequested(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


class CorrelatedFormatter(logging.Formatter):
    """``time LEVEL logger: message``, then the invocation's ids when there are any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = getattr(record, "correlation", "")
        return f"{line}  [{ids}]" if ids else line


def import_app(reference: str) -> func.FunctionApp:
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    app = getattr(module, attribute or "app")
    if not isinstance(app, func.FunctionApp):
        raise TypeError(f"{reference} is a {type(app).__name__}, not a FunctionApp")
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the app")
    parser.add_argument("--log-level", default=os.environ.get("CALBRIDGE_LOG_LEVEL", "INFO"))
    parser.add_argument(
        "--stop-leftovers",
        action="store_true",
        help="end the Azurite and simulator processes a killed run left behind",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=arguments.log_level.upper(), stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        # What each line is about (org, appointment, queue message, invocation), as Application
        # Insights shows it in Azure.
        handler.addFilter(CorrelationFilter())
        handler.setFormatter(CorrelatedFormatter())
    # The azure SDK logs every HTTP request at INFO; the runner's own lines are what matter here.
    logging.getLogger("azure").setLevel(logging.WARNING)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    stopping = threading.Event()

    if arguments.stop_leftovers:
        return stop_leftovers(StackOptions.from_environ(os.environ))

    stack = LocalStack(
        app_factory=lambda: import_app(arguments.app),
        options=StackOptions.from_environ(os.environ),
    )

    def request_shutdown(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            # A second Ctrl-C: the user will not wait for the clean-up.
            print("stopping now", file=sys.stderr, flush=True)
            stack.kill_now()
            os._exit(128 + signum)
        stopping.set()
        raise ShutdownRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, request_shutdown)
    signal.signal(signal.SIGTERM, request_shutdown)

    ended = True
    try:
        print(setup_note(), flush=True)
        stack.start()
        print(stack.banner(), flush=True)
        while not stopping.wait(1.0):
            pass
    except ShutdownRequested as signal_name:
        logging.getLogger("devhost").info(
            "%s received, stopping (Ctrl-C again to stop at once)", signal_name
        )
    finally:
        stopping.set()
        ended = stack.stop()
    if not ended:
        # Abandoned invocations hold threads the interpreter would wait for on exit.
        print("calbridge stopped (running invocations were abandoned)", flush=True)
        sys.stderr.flush()
        os._exit(0)
    print("calbridge stopped", flush=True)
    return 0


def setup_note() -> str:
    return "calbridge: starting Azurite, the Exchange simulator and the functions (a few seconds)"


def stop_leftovers(options: StackOptions) -> int:
    """End the Azurite and simulator processes a killed run left behind (named in its
    local.json, and only while they still are those programs), then remove local.json."""
    path = options.local_json
    if not path.is_file():
        print(f"nothing to stop: {path} does not exist")
        return 0
    processes = json.loads(path.read_text(encoding="utf-8")).get("processes", {})
    for name, marker in (("sim", "sim"), ("azurite", "azurite")):
        pid = processes.get(name)
        if isinstance(pid, int) and _runs(pid, marker):
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {name} (process {pid})")
    path.unlink(missing_ok=True)
    return 0


def _runs(pid: int, marker: str) -> bool:
    """Whether process ``pid`` is alive and its command line mentions ``marker``."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (macOS): trust local.json
    return marker in command


if __name__ == "__main__":
    sys.exit(main())
