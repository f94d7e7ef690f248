"""``python -m devhost`` (what ``make run`` runs): start the local stack, print a banner, run
until Ctrl-C (SIGINT) or SIGTERM, then stop everything it started.

``--app module:attribute`` picks the FunctionApp (default ``function_app:app``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading
from types import FrameType

import azure.functions as func

from devhost.local_stack import LocalStack, StackOptions
from devhost.runner import REPO_ROOT


class ShutdownRequested(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


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
    arguments = parser.parse_args(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The azure SDK logs every HTTP request at INFO; the runner's own lines are what matter here.
    logging.getLogger("azure").setLevel(logging.WARNING)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))

    stopping = threading.Event()

    def request_shutdown(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return  # already stopping: a second Ctrl-C must not interrupt the clean-up
        stopping.set()
        raise ShutdownRequested(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, request_shutdown)
    signal.signal(signal.SIGTERM, request_shutdown)

    stack = LocalStack(
        app_factory=lambda: import_app(arguments.app),
        options=StackOptions.from_environ(os.environ),
    )
    try:
        stack.start()
        print(stack.banner(), flush=True)
        while not stopping.wait(1.0):
            pass
    except ShutdownRequested as signal_name:
        logging.getLogger("devhost").info("%s received, stopping", signal_name)
    finally:
        stopping.set()
        stack.stop()
    print("calbridge stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
