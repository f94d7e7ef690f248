"""Start and stop Azurite (the Azure Storage emulator from npm) on free loopback ports."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"

# The well-known development account of the emulator (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes a child process receive SIGTERM when the process that
    started it ends, however it ends (``kill -9`` included): Azurite and the simulator never
    outlive ``make run`` or a test run. Linux only (``prctl``); None elsewhere, where the normal
    stop and ``python -m devhost --stop-leftovers`` remain."""
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    # Looked up before the fork: the child only calls it.
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the wish was registered
            os._exit(1)

    return arm


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a child process, killing it if it has not ended after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Azurite:
    """A running Azurite process serving queues and tables on loopback."""

    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes]
    location: Path
    _own_location: bool = field(default=False, repr=False)

    @property
    def connection_string(self) -> str:
        return (
            "DefaultEndpointsProtocol=http;"
            f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"QueueEndpoint=http://127.0.0.1:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint=http://127.0.0.1:{self.table_port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        stop_process(self.process)
        if self._own_location:
            shutil.rmtree(self.location, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_azurite(
    location: Path | None = None, queue_port: int = 0, table_port: int = 0
) -> Azurite:
    """Start Azurite with queue and table services; a temporary data folder unless one is given."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"{AZURITE_BIN} is missing: run `npm ci` (make setup) first")
    own = location is None
    data_dir = Path(tempfile.mkdtemp(prefix="calbridge-azurite-")) if location is None else location
    data_dir.mkdir(parents=True, exist_ok=True)
    queue_port = queue_port or free_port()
    table_port = table_port or free_port()
    process = subprocess.Popen(
        [
            str(AZURITE_BIN),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--location",
            str(data_dir),
            "--blobPort",
            "0",
            "--queuePort",
            str(queue_port),
            "--tablePort",
            str(table_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent(),  # only prctl, looked up before the fork
    )
    azurite = Azurite(queue_port, table_port, process, data_dir, own)
    try:
        wait_for_port(queue_port)
        wait_for_port(table_port)
    except TimeoutError:
        azurite.stop()
        raise
    return azurite
