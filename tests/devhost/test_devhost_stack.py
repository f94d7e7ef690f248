"""The local stack behind ``make run``, in process: Azurite with a data folder, environment set
before the app is imported, seeds, local.json, kept secrets, the simulator launcher (with a
stand-in ``python -m`` module that prints URLs the way the simulator does), and the demo's
signature."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import stat
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func
import pytest

from devhost.demo import example_appointment, sign
from devhost.dev_secrets import load_or_create
from devhost.local_stack import LocalStack, StackOptions, port_or_free
from devhost.runner import REPO_ROOT
from devhost.seed import SeedContext
from devhost.simulator import SimulatorUnavailable, prepare_config, start_simulator
from shared.booking.signature import verify_request
from shared.config import Settings
from shared.models import AppointmentSnapshot

FAKE_SIM_MAIN = textwrap.dedent(
    """
    import argparse, json, sys, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--config"); parser.add_argument("--host"); parser.add_argument("--port")
    arguments = parser.parse_args()
    config = json.load(open(arguments.config))
    base = "http://127.0.0.1:1"
    print(json.dumps({"ews": base + "/EWS/Exchange.asmx", "graph": base + "/v1.0",
                      "token": base, "control": base + "/control", "booking": base + "/booking",
                      "secrets": sorted(config["bookingPlatform"]["secrets"])}), flush=True)
    while True:
        time.sleep(1)
    """
)


@pytest.fixture(scope="module")
def fake_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``fakesim`` package (an entry point) importable here and in children."""
    package = tmp_path_factory.mktemp("modules") / "fakesim"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_SIM_MAIN)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(package.parent))
        yield str(package.parent)


def sample_app(seen_at_import: dict[str, str], environ: dict[str, str]) -> func.FunctionApp:
    # What the real function_app would read at import time must already be there.
    seen_at_import.update(environ)
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    return app


@pytest.fixture(scope="module")
def stack_environ(fake_sim: str) -> dict[str, str]:
    return {"PYTHONPATH": fake_sim}


def make_stack(
    tmp_path: Path,
    environ: dict[str, str],
    seen_at_import: dict[str, str],
    seeded: list[SeedContext],
) -> LocalStack:
    settings = tmp_path / "local.settings.json"
    settings.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"CALBRIDGE_TABLE_PREFIX": "dev"}})
    )
    return LocalStack(
        app_factory=lambda: sample_app(seen_at_import, environ),
        options=StackOptions(
            data_dir=tmp_path / "data",
            queue_port=0,
            table_port=0,
            http_port=0,
            local_settings=settings,
            sim_module="fakesim",
        ),
        environ=environ,
        seeds=[seeded.append],
    )


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("GET", parts.path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def check_local_json_and_environment(
    stack: LocalStack,
    document: dict[str, object],
    seen_at_import: dict[str, str],
    seeded: list[SeedContext],
) -> None:
    local_json = stack.options.local_json
    assert json.loads(local_json.read_text()) == document
    assert stat.S_IMODE(local_json.stat().st_mode) == 0o600
    assert document["org"] == "dev"
    assert str(document["functionsUrl"]).startswith("http://127.0.0.1:")
    assert str(document["functionsUrl"]).endswith("/api")
    assert stack.azurite is not None
    assert stack.options.data_dir / "azurite" == stack.azurite.location
    assert document["storage"] == stack.azurite.connection_string
    # Everything the app reads at import time was set before the app was built.
    assert seen_at_import["AzureWebJobsStorage"] == document["storage"]
    assert seen_at_import["CALBRIDGE_SECRET_ORG_DEV_SIGNING_SECRET"] == document["signingSecret"]
    assert seen_at_import["CALBRIDGE_ADMIN_KEY"] == document["adminKey"]
    assert seen_at_import["CALBRIDGE_FUNCTIONS_KEY"] == document["functionsKey"]
    assert seen_at_import["CALBRIDGE_TABLE_PREFIX"] == "dev"  # from local.settings.json
    assert seen_at_import["CALBRIDGE_QUEUE_PREFIX"] == "calbridge-"  # bindings need a value
    # Graph's notifications come to the runner itself.
    assert seen_at_import["CALBRIDGE_PUBLIC_URL"] == document["functionsUrl"]
    assert [context.functions_url for context in seeded] == [document["functionsUrl"]]
    assert seeded[0].signing_secret == document["signingSecret"]


def check_simulator(stack: LocalStack, document: dict[str, object], sim_seen: object) -> None:
    sim = document["sim"]
    assert isinstance(sim, dict)
    assert sim["ews"] == "http://127.0.0.1:1/EWS/Exchange.asmx"
    assert sim["config"] == str(stack.options.sim_config)
    # The booking-platform stand-in learns the dev org's secret, next to its own orgs.
    assert sim["secrets"] == ["demo-org", "dev"]
    config = json.loads(stack.options.sim_config.read_text())
    assert config["bookingPlatform"]["secrets"]["dev"] == document["signingSecret"]
    assert sim_seen == sim


def test_stack_starts_everything_writes_local_json_and_stops_every_process(
    tmp_path: Path, stack_environ: dict[str, str]
) -> None:
    seen_at_import: dict[str, str] = {}
    seeded: list[SeedContext] = []
    stack = make_stack(tmp_path, dict(stack_environ), seen_at_import, seeded)
    try:
        document = stack.start()
        check_local_json_and_environment(stack, document, seen_at_import, seeded)
        check_simulator(stack, document, seeded[0].sim)
        url = f"{document['functionsUrl']}/ping"
        assert get(url)[0] == 401
        assert get(url, {"x-functions-key": str(document["functionsKey"])}) == (200, b"pong")
        assert stack.azurite is not None
        assert stack.simulator is not None
        azurite, simulator = stack.azurite.process, stack.simulator.process
    finally:
        stack.stop()
    assert azurite.poll() is not None
    assert simulator.poll() is not None
    assert not stack.options.local_json.exists()
    kept = load_or_create(stack.options.secrets_json, {})
    assert kept.signing_secret == document["signingSecret"]
    assert kept.functions_key == document["functionsKey"]
    stack.stop()  # a second stop is harmless


def test_secrets_are_generated_once_and_the_environment_overrides_them(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    first = load_or_create(path, {})
    assert load_or_create(path, {}) == first
    assert len({first.signing_secret, first.admin_key, first.functions_key}) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    overridden = load_or_create(
        path,
        {"CALBRIDGE_ADMIN_KEY": "given", "CALBRIDGE_SECRET_ORG_DEV_SIGNING_SECRET": "signed"},
    )
    assert overridden.admin_key == "given"
    assert overridden.signing_secret == "signed"
    assert overridden.functions_key == first.functions_key
    assert json.loads(path.read_text())["admin_key"] == first.admin_key  # not overwritten


def test_simulator_that_prints_no_url_line_is_skipped_with_a_reason(
    tmp_path: Path, fake_sim: str
) -> None:
    broken = Path(fake_sim) / "brokensim"
    broken.mkdir()
    (broken / "__init__.py").write_text("")
    (broken / "__main__.py").write_text("print('starting up...', flush=True)\n")
    config = tmp_path / "c.json"
    config.write_text("{}")
    with pytest.raises(SimulatorUnavailable, match=r"JSON URL line|did not start"):
        start_simulator(config, tmp_path, "brokensim", environ={"PYTHONPATH": fake_sim})


def test_missing_simulator_config_file_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    environ = {"CALBRIDGE_SIM_CONFIG": str(tmp_path / "absent.json")}
    with pytest.raises(SimulatorUnavailable, match="is not a file"):
        prepare_config(tmp_path / "c.json", environ, {})


def test_taken_port_is_replaced_by_a_free_one() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        chosen = port_or_free(taken)
        assert chosen != taken
    assert port_or_free(chosen) == chosen


def test_demo_appointment_is_valid_and_signed_as_the_platform_signs() -> None:
    document = example_appointment(version=7)
    assert AppointmentSnapshot.model_validate(document).version == 7
    body = json.dumps(document).encode()
    target = "/api/orgs/dev/appointments/demo-appointment-1"
    header = sign("secret", "PUT", target, body, 1700000000)
    # The demo writes the recipe out; it must agree with what the intake verifies.
    verify_request(["secret"], header, "PUT", target, body, now=1700000000)
    message = b"1700000000.PUT." + target.encode() + b"." + body
    expected = hmac.new(b"secret", message, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v2={expected}"


def test_stack_options_read_ports_and_folder_from_the_environment(tmp_path: Path) -> None:
    options = StackOptions.from_environ(
        {
            "CALBRIDGE_DEVHOST_DIR": str(tmp_path),
            "CALBRIDGE_QUEUE_PORT": "20001",
            "CALBRIDGE_TABLE_PORT": "20002",
            "CALBRIDGE_HTTP_PORT": "20071",
            "CALBRIDGE_DEVHOST_SIM": "off",
        }
    )
    assert (options.queue_port, options.table_port, options.http_port) == (20001, 20002, 20071)
    assert options.local_json == tmp_path / "local.json"
    assert not options.start_simulator
    defaults = StackOptions.from_environ({})
    assert (defaults.queue_port, defaults.table_port, defaults.http_port) == (10001, 10002, 7071)
    with pytest.raises(ValueError, match="CALBRIDGE_HTTP_PORT"):
        StackOptions.from_environ({"CALBRIDGE_HTTP_PORT": "seventy"})


def test_local_settings_example_is_core_tools_format_and_valid_settings() -> None:
    example = json.loads((REPO_ROOT / "local.settings.json.example").read_text())
    assert example["IsEncrypted"] is False
    values = example["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["CALBRIDGE_QUEUE_PREFIX"]  # queue-trigger bindings need a non-empty prefix
    settings = Settings(**{k: v for k, v in values.items() if v != ""})
    assert settings.storage_connection_string == values["AzureWebJobsStorage"]
    assert settings.max_request_bytes == int(values["CALBRIDGE_MAX_REQUEST_BYTES"])
    assert settings.queue_prefix == values["CALBRIDGE_QUEUE_PREFIX"]


def test_the_first_setup_says_what_it_installs_and_how_long_it_takes() -> None:
    planned = subprocess.run(
        ["make", "--dry-run", "--always-make", "setup"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "installing calbridge's Python packages" in planned
    assert "1-3 minutes the" in planned
    assert "installing Azurite" in planned
    assert "about 20 seconds" in planned
