"""Starting the local Exchange simulator (``sim/``) for ``make run``.

The simulator is started as ``python -m sim --config FILE --host 127.0.0.1 --port 0`` and prints
one JSON line with its URLs (``ews``, ``graph``, ``token``, ``control``, ``booking``). Its config
file is the demo organization (``sim.config.demo_config``) with the booking-platform secrets of
calbridge's organizations added and the dev EWS application's certificate registered
(``devhost.app_certificate``), unless ``CALBRIDGE_SIM_CONFIG`` names a config file to use as
it is.

Every step is tolerant: when that config file is missing, the module to run has no entry point,
or the process does not report its URLs in time, the simulator is skipped and the reason is
returned so the banner can say so.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.app_certificate import app_certificate_path, certificate_part, load_or_create
from devhost.azurite import die_with_parent, stop_process
from devhost.dev_secrets import write_private_json
from sim.config import demo_config

log = logging.getLogger("devhost")

CONFIG_FILE_VARIABLE = "CALBRIDGE_SIM_CONFIG"
URL_KEYS = ("ews", "graph", "token", "control", "booking")
STARTUP_TIMEOUT_SECONDS = 30.0


class SimulatorUnavailable(Exception):
    """Why the simulator is not started (shown in the banner)."""


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def prepare_config(
    path: Path,
    environ: Mapping[str, str],
    booking_secrets: Mapping[str, str],
) -> Path:
    """The simulator config file to use: the user's, or the demo organization written to
    ``path``.

    ``booking_secrets`` (org → signing secret) are added to the booking-platform stand-in's
    secrets so it can check the webhooks calbridge signs for those orgs.
    """
    if environ.get(CONFIG_FILE_VARIABLE):
        user_file = Path(environ[CONFIG_FILE_VARIABLE])
        if not user_file.is_file():
            raise SimulatorUnavailable(f"{CONFIG_FILE_VARIABLE}={user_file} is not a file")
        return user_file
    pem = load_or_create(app_certificate_path(path))
    config = demo_config(ews_app_certificate=certificate_part(pem))
    secrets: dict[str, str] = config["bookingPlatform"]["secrets"]
    secrets.update(booking_secrets)
    write_private_json(path, config)
    return path


@dataclass
class RunningSimulator:
    """A simulator process and the URLs it printed (empty until :meth:`wait_for_urls`)."""

    process: subprocess.Popen[str]
    urls: dict[str, Any]
    config_path: Path
    _lines: queue.Queue[str] = field(default_factory=queue.Queue, repr=False)

    def wait_for_urls(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> RunningSimulator:
        """Read the JSON URL line; stops the process and raises SimulatorUnavailable if none."""
        try:
            first = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise SimulatorUnavailable(
                f"the simulator printed no URLs within {timeout:.0f} s"
            ) from None
        try:
            urls = json.loads(first)
        except json.JSONDecodeError:
            urls = None
        if not isinstance(urls, dict):
            self.stop()
            code = self.process.poll()
            raise SimulatorUnavailable(
                f"the simulator did not start (exit code {code})"
                if code is not None and not first
                else "the simulator's first output line was not its JSON URL line"
            )
        self.urls = urls
        missing = [key for key in URL_KEYS if key not in urls]
        if missing:
            log.warning("the simulator did not report %s", ", ".join(missing))
        # Later output keeps being drained so the pipe never fills.
        threading.Thread(
            target=_log_lines, args=(self._lines,), name="sim-log", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        stop_process(self.process)


def check_simulator_present(module: str = "sim") -> None:
    """Raise SimulatorUnavailable unless ``python -m <module>`` can run."""
    if not _module_exists(module) or not _module_exists(f"{module}.__main__"):
        raise SimulatorUnavailable(
            f"the {module} package has no entry point ({module}/__main__.py)"
        )


def launch_simulator(
    config_path: Path,
    cwd: Path,
    module: str = "sim",
    environ: Mapping[str, str] | None = None,
) -> RunningSimulator:
    """Start ``python -m sim`` without waiting for it (other services start meanwhile)."""
    check_simulator_present(module)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            module,
            "--config",
            str(config_path),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        cwd=cwd,
        env=dict(environ) if environ is not None else None,
        stdout=subprocess.PIPE,
        text=True,
        # Own process group: Ctrl-C reaches devhost only, which stops the simulator in order;
        # and it ends with devhost, however devhost ends.
        start_new_session=True,
        preexec_fn=die_with_parent(),  # only prctl, looked up before the fork
    )
    running = RunningSimulator(process, {}, config_path)

    def forward_output(stream: Any, lines: queue.Queue[str]) -> None:
        for line in stream:
            lines.put(line)
        lines.put("")

    threading.Thread(
        target=forward_output,
        args=(process.stdout, running._lines),
        name="sim-stdout",
        daemon=True,
    ).start()
    return running


def start_simulator(
    config_path: Path,
    cwd: Path,
    module: str = "sim",
    environ: Mapping[str, str] | None = None,
) -> RunningSimulator:
    """Start ``python -m sim`` and read its URL line; raises SimulatorUnavailable."""
    return launch_simulator(config_path, cwd, module, environ).wait_for_urls()


def _log_lines(lines: queue.Queue[str]) -> None:
    while line := lines.get():
        log.debug("sim: %s", line.rstrip())
