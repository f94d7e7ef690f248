"""Everything ``make run`` starts, in order, and stops in reverse: Azurite (persistent data in
``.calbridge/azurite/``), the Exchange simulator (unless ``CALBRIDGE_DEVHOST_SIM=off``), the app's
environment, the app itself (imported only after the environment is set), the Functions runner,
the seeds; then ``.calbridge/local.json`` tells tools and people where everything is.

Ports: queue 10001, table 10002 (Azurite's usual ones, so ``UseDevelopmentStorage=true`` works
too), HTTP 7071 (the Functions host's); each overridable (``CALBRIDGE_QUEUE_PORT``,
``CALBRIDGE_TABLE_PORT``, ``CALBRIDGE_HTTP_PORT``) and replaced by a free port when taken.
``CALBRIDGE_DEVHOST_DIR`` moves the ``.calbridge`` folder (tests use a temporary one).
``local.settings.json``, when present, supplies app settings the environment lacks.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.azurite import Azurite, free_port, start_azurite
from devhost.dev_secrets import (
    ADMIN_KEY_VARIABLE,
    DEV_ORG,
    FUNCTIONS_KEY_VARIABLE,
    DevSecrets,
    load_or_create,
    signing_secret_variable,
    write_private_json,
)
from devhost.hostconfig import REPO_HOST_JSON, HostConfig
from devhost.runner import DEFAULT_STOP_GRACE_S, REPO_ROOT, FunctionsRunner
from devhost.seed import (
    DEFAULT_SEEDS,
    Seed,
    SeedContext,
    dev_staff,
    run_seeds,
    simulator_environment,
)
from devhost.simulator import (
    RunningSimulator,
    SimulatorUnavailable,
    check_simulator_present,
    launch_simulator,
    prepare_config,
)
from shared.admin import ADMIN_KEY_HEADER

log = logging.getLogger("devhost")

DEFAULT_QUEUE_PORT = 10001
DEFAULT_TABLE_PORT = 10002
DEFAULT_HTTP_PORT = 7071
STORAGE_SETTING = "AzureWebJobsStorage"
QUEUE_PREFIX_SETTING = "CALBRIDGE_QUEUE_PREFIX"
PUBLIC_URL_SETTING = "CALBRIDGE_PUBLIC_URL"
DEFAULT_QUEUE_PREFIX = "calbridge-"


def port_or_free(preferred: int) -> int:
    """``preferred`` when nothing listens there (0 → any free port), else a free port."""
    if preferred == 0:
        return free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            chosen = free_port()
            log.warning("port %d is taken, using %d", preferred, chosen)
            return chosen
    return preferred


def _port_setting(environ: MutableMapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError as exc:
        raise ValueError(f"{name}={text!r} is not a port number") from exc


def _seconds_setting(environ: MutableMapping[str, str], name: str, default: float) -> float:
    text = environ.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError as exc:
        raise ValueError(f"{name}={text!r} is not a number of seconds") from exc
    if value < 0:
        raise ValueError(f"{name}={text!r} must not be negative")
    return value


@dataclass(frozen=True)
class StackOptions:
    """Where things go; :meth:`from_environ` reads the overrides."""

    data_dir: Path = REPO_ROOT / ".calbridge"
    queue_port: int = DEFAULT_QUEUE_PORT
    table_port: int = DEFAULT_TABLE_PORT
    http_port: int = DEFAULT_HTTP_PORT
    host_json: Path = REPO_HOST_JSON
    local_settings: Path | None = REPO_ROOT / "local.settings.json"
    start_simulator: bool = True
    sim_module: str = "sim"
    stop_grace: float = DEFAULT_STOP_GRACE_S

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str]) -> StackOptions:
        data_dir = environ.get("CALBRIDGE_DEVHOST_DIR")
        return cls(
            data_dir=Path(data_dir).resolve() if data_dir else REPO_ROOT / ".calbridge",
            queue_port=_port_setting(environ, "CALBRIDGE_QUEUE_PORT", DEFAULT_QUEUE_PORT),
            table_port=_port_setting(environ, "CALBRIDGE_TABLE_PORT", DEFAULT_TABLE_PORT),
            http_port=_port_setting(environ, "CALBRIDGE_HTTP_PORT", DEFAULT_HTTP_PORT),
            start_simulator=environ.get("CALBRIDGE_DEVHOST_SIM", "auto").lower()
            not in ("0", "off", "no", "false"),
            stop_grace=_seconds_setting(
                environ, "CALBRIDGE_STOP_GRACE_SECONDS", DEFAULT_STOP_GRACE_S
            ),
        )

    @property
    def local_json(self) -> Path:
        return self.data_dir / "local.json"

    @property
    def secrets_json(self) -> Path:
        return self.data_dir / "secrets.json"

    @property
    def sim_config(self) -> Path:
        return self.data_dir / "sim-config.json"


@dataclass
class LocalStack:
    """Starts and stops the local services around one app."""

    app_factory: Callable[[], func.FunctionApp]
    options: StackOptions = field(default_factory=StackOptions)
    environ: MutableMapping[str, str] = field(default_factory=lambda: os.environ)
    seeds: Sequence[Seed] = field(default_factory=lambda: list(DEFAULT_SEEDS))

    azurite: Azurite | None = field(default=None, init=False)
    simulator: RunningSimulator | None = field(default=None, init=False)
    simulator_note: str = field(default="", init=False)
    runner: FunctionsRunner | None = field(default=None, init=False)
    secrets: DevSecrets | None = field(default=None, init=False)
    failed_seeds: list[str] = field(default_factory=list, init=False)

    def start(self) -> dict[str, Any]:
        """Start everything; returns what was written to local.json. Stops what started on error."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, Any]:
        options = self.options
        options.data_dir.mkdir(parents=True, exist_ok=True)
        options.local_json.unlink(missing_ok=True)  # a stale file would point at dead ports
        self._read_local_settings()
        secrets = self.secrets = load_or_create(options.secrets_json, self.environ)

        # The simulator starts in parallel with Azurite; its URLs are read once Azurite is up.
        self._launch_simulator(secrets)
        self.azurite = start_azurite(
            options.data_dir / "azurite",
            queue_port=port_or_free(options.queue_port),
            table_port=port_or_free(options.table_port),
        )
        self.environ[STORAGE_SETTING] = self.azurite.connection_string
        # Queue-trigger bindings name their queues "%CALBRIDGE_QUEUE_PREFIX%...", which must
        # resolve to a non-empty value (as in Azure); senders read the same setting.
        if not self.environ.get(QUEUE_PREFIX_SETTING):
            self.environ[QUEUE_PREFIX_SETTING] = DEFAULT_QUEUE_PREFIX
        self.environ[signing_secret_variable()] = secrets.signing_secret
        self.environ[ADMIN_KEY_VARIABLE] = secrets.admin_key
        self.environ[FUNCTIONS_KEY_VARIABLE] = secrets.functions_key

        self._await_simulator()
        sim_section = (
            {**self.simulator.urls, "config": str(self.simulator.config_path)}
            if self.simulator
            else None
        )
        if sim_section is not None:
            self.environ.update(simulator_environment(sim_section, DEV_ORG))

        http_port = port_or_free(options.http_port)
        host_config = HostConfig.load(options.host_json)
        # Graph posts change notifications to the runner: its address is calbridge's public URL
        # (unless one is given, e.g. a tunnel that a real Graph tenant can reach).
        if not self.environ.get(PUBLIC_URL_SETTING):
            prefix = host_config.route_prefix.strip("/")
            self.environ[PUBLIC_URL_SETTING] = f"http://127.0.0.1:{http_port}" + (
                f"/{prefix}" if prefix else ""
            )
        app = self.app_factory()  # only now: the app reads its settings when imported
        self.runner = FunctionsRunner(
            app,
            host_config,
            environ=self.environ,
            functions_key=secrets.functions_key,
            http_port=http_port,
        ).start()

        context = SeedContext(
            org=DEV_ORG,
            functions_url=self.runner.base_url,
            functions_key=secrets.functions_key,
            admin_key=secrets.admin_key,
            signing_secret=secrets.signing_secret,
            storage_connection_string=self.azurite.connection_string,
            sim=sim_section,
            environ=dict(self.environ),
        )
        self.failed_seeds = run_seeds(context, self.seeds)

        document: dict[str, Any] = {
            "functionsUrl": self.runner.base_url,
            "org": DEV_ORG,
            "signingSecret": secrets.signing_secret,
            "adminKey": secrets.admin_key,
            "functionsKey": secrets.functions_key,
            "storage": self.azurite.connection_string,
            "queuePort": self.azurite.queue_port,
            "tablePort": self.azurite.table_port,
            "functions": {
                "http": [f.name for f in self.runner.index.http],
                "queue": [f.name for f in self.runner.index.queue],
                "timer": [f.name for f in self.runner.index.timer],
                "skipped": self.runner.index.skipped,
            },
            "processes": {
                "devhost": os.getpid(),
                "azurite": self.azurite.process.pid,
                **({"sim": self.simulator.process.pid} if self.simulator else {}),
            },
        }
        if sim_section is not None:
            document["sim"] = sim_section
            document["staff"] = [member.as_json() for member in dev_staff(sim_section)]
        write_private_json(options.local_json, document)
        return document

    def _read_local_settings(self) -> None:
        path = self.options.local_settings
        if path is None or not path.is_file():
            return
        values = json.loads(path.read_text(encoding="utf-8")).get("Values", {})
        for name, value in values.items():
            if value != "" and not self.environ.get(name):
                self.environ[name] = str(value)
        log.info("read app settings from %s", path)

    def _launch_simulator(self, secrets: DevSecrets) -> None:
        if not self.options.start_simulator:
            self.simulator_note = "off (CALBRIDGE_DEVHOST_SIM)"
            return
        try:
            check_simulator_present(self.options.sim_module)
            config = prepare_config(
                self.options.sim_config, self.environ, {DEV_ORG: secrets.signing_secret}
            )
            self.simulator = launch_simulator(
                config, REPO_ROOT, self.options.sim_module, environ=self.environ
            )
        except SimulatorUnavailable as reason:
            self._skip_simulator(reason)

    def _await_simulator(self) -> None:
        if self.simulator is None:
            return
        try:
            self.simulator.wait_for_urls()
        except SimulatorUnavailable as reason:
            self.simulator = None
            self._skip_simulator(reason)

    def _skip_simulator(self, reason: SimulatorUnavailable) -> None:
        self.simulator_note = f"not started: {reason}"
        log.warning("simulator %s", self.simulator_note)

    def stop(self) -> bool:
        """Stop in reverse order; safe to call twice and after a failed start. Running
        invocations get ``options.stop_grace`` seconds; the simulator and Azurite are stopped
        whatever they do. True when no invocation had to be abandoned."""
        ended = True
        if self.runner is not None:
            ended = self.runner.stop(self.options.stop_grace)
            self.runner = None
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self.azurite is not None:
            self.azurite.stop()
            self.azurite = None
        self.options.local_json.unlink(missing_ok=True)
        return ended

    def kill_now(self) -> None:
        """End the simulator and Azurite at once (a second Ctrl-C), without waiting for
        anything; ``local.json`` goes too."""
        for process in (
            self.simulator.process if self.simulator is not None else None,
            self.azurite.process if self.azurite is not None else None,
        ):
            if process is not None and process.poll() is None:
                process.kill()
        self.options.local_json.unlink(missing_ok=True)

    def banner(self) -> str:
        assert self.runner is not None
        assert self.azurite is not None
        lines = [
            "calbridge is running",
            f"  functions   {self.runner.base_url}  "
            "(FUNCTION-level routes need x-functions-key: functionsKey in local.json;",
            f"              admin routes also {ADMIN_KEY_HEADER}: adminKey in local.json)",
            f"  storage     Azurite queues 127.0.0.1:{self.azurite.queue_port}, "
            f"tables 127.0.0.1:{self.azurite.table_port}, data in {self.azurite.location}",
        ]
        if self.simulator is not None:
            urls = ", ".join(f"{k} {v}" for k, v in self.simulator.urls.items())
            lines.append(f"  simulator   {urls}")
        else:
            lines.append(f"  simulator   {self.simulator_note}")
        if self.runner.index.skipped:
            lines.append(f"  not run     {', '.join(sorted(self.runner.index.skipped))}")
        if self.failed_seeds:
            lines.append(f"  seeds       failed: {', '.join(self.failed_seeds)} (see log)")
        lines += [
            f"  local.json  {self.options.local_json}",
            "  try it      .venv/bin/python -m devhost.demo",
            f"  status      {self.runner.base_url}/status-page  (organization dev, the two keys "
            "above)",
            "Stop with Ctrl-C.",
        ]
        return "\n".join(lines)
