"""``python -m sim``: run the Exchange simulator and the booking platform stand-in.

    python -m sim --config FILE [--host 127.0.0.1] [--port 0] [--validate-ews]
    python -m sim --write-demo-config PATH

Once every listener is ready it prints exactly one JSON line with its URLs (keys ``ews``,
``graph``, ``token``, ``control``, ``booking``, ``caBundle``) and serves until SIGINT or
SIGTERM. Without ``--config`` it runs the demo organization (``sim.config.demo_config()``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from sim.config import ConfigError, demo_config, load_config
from sim.server import start_simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="simulator configuration (JSON)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="EWS/Graph/control port (0: free)")
    parser.add_argument("--token-port", type=int, default=0, help="HTTPS token port (0: free)")
    parser.add_argument("--booking-port", type=int, default=0, help="booking port (0: free)")
    parser.add_argument(
        "--validate-ews",
        action="store_true",
        help="check every EWS response against Microsoft's schema (slower)",
    )
    parser.add_argument(
        "--write-demo-config",
        type=Path,
        metavar="PATH",
        help="write the demo organization's configuration to PATH and exit",
    )
    parser.add_argument("--log-level", default="WARNING", help="logging level (stderr)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    if args.write_demo_config is not None:
        args.write_demo_config.write_text(json.dumps(demo_config(), indent=2) + "\n")
        return 0
    try:
        config = load_config(args.config) if args.config else load_config(demo_config())
    except ConfigError as error:
        print(f"python -m sim: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        simulator = start_simulator(
            config,
            host=args.host,
            port=args.port,
            token_port=args.token_port,
            booking_port=args.booking_port,
            validate_ews=args.validate_ews,
        )
    except OSError as error:
        print(f"python -m sim: cannot listen: {error}", file=sys.stderr)
        return 1
    with simulator:
        print(json.dumps(simulator.urls), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
