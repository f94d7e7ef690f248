"""Starting the local Exchange simulator (``sim/``) for ``make run``, when it is there.

The simulator is started as ``python -m sim --config FILE --host 127.0.0.1 --port 0`` and prints
one JSON line with its URLs (``ews``, ``graph``, ``token``, ``control``, ``booking``). Its config
file is produced by the simulator package's own factory (``sim.config:demo_config`` returning
the config as a dict, or any ``module:function`` named by ``CALBRIDGE_SIM_CONFIG_FACTORY``;
a function returning None is taken to have written the file itself), unless
``CALBRIDGE_SIM_CONFIG`` names a config file to use as it is.

Every step is tolerant: when the package, its entry point or its factory is missing, or the
process does not report its URLs in time, the simulator is skipped and the reason is returned
so the banner can say so.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from devhost.azurite import die_with_parent, stop_process
from devhost.dev_secrets import write_private_json

log = logging.getLogger("devhost")

DEFAULT_CONFIG_FACTORIES = ("sim.config:demo_config",)
CONFIG_FACTORY_VARIABLE = "CALBRIDGE_SIM_CONFIG_FACTORY"
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


def _factory(reference: str) -> Callable[..., Any] | None:
    module_name, _, attribute = reference.partition(":")
    if not _module_exists(module_name):
        return None
    module = importlib.import_module(module_name)
    found = getattr(module, attribute, None)
    return found if callable(found) else None


def prepare_config(
    path: Path,
    environ: Mapping[str, str],
    booking_secrets: Mapping[str, str],
) -> Path:
    """The simulator config file to use: the user's, or one written by the sim's factory.

    ``booking_secrets`` (org → signing secret) are added to the booking-platform stand-in's
    secrets so it can check the webhooks calbridge signs for those orgs.
    """
    if environ.get(CONFIG_FILE_VARIABLE):
        user_file = Path(environ[CONFIG_FILE_VARIABLE])
        if not user_file.is_file():
            raise SimulatorUnavailable(f"{CONFIG_FILE_VARIABLE}={user_file} is not a file")
        return user_file
    references = (
        [environ[CONFIG_FACTORY_VARIABLE]]
        if environ.get(CONFIG_FACTORY_VARIABLE)
        else list(DEFAULT_CONFIG_FACTORIES)
    )
    for reference in references:
        factory = _factory(reference)
        if factory is None:
            continue
        document = factory() if not _takes_path(factory) else factory(path)
        if document is None:
            if not path.is_file():
                raise SimulatorUnavailable(f"{reference} returned nothing and wrote no {path}")
            return path
        config = cast(dict[str, Any], json.loads(json.dumps(document, default=_plain)))
        platform = config.get("bookingPlatform")
        if isinstance(platform, dict) and isinstance(platform.get("secrets"), dict):
            platform["secrets"].update(booking_secrets)
        write_private_json(path, config)
        return path
    raise SimulatorUnavailable(
        "the simulator package has no config factory yet (looked for " + ", ".join(references) + ")"
    )


def _takes_path(factory: Callable[..., Any]) -> bool:
    try:
        return len(inspect.signature(factory).parameters) >= 1
    except (TypeError, ValueError):
        return False


def _plain(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(by_alias=True, mode="json")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


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
