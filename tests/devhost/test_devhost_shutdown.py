"""Clean shutdown: the runner releases its port and stops polling and firing; ``python -m
devhost`` as a subprocess writes local.json, serves, and on SIGINT or SIGTERM stops everything it
started (Azurite, the simulator) and removes local.json.

The subprocess test runs the real ``function_app`` when it imports (whatever
``functions.blueprints()`` registers today; then ``python -m devhost.demo`` must get a 202 from
the intake route), and a synthetic app otherwise, so it works before and after the intake
functions exist.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import azure.functions as func
import pytest
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.azurite import free_port
from devhost.hostconfig import HostConfig, QueueOptions
from devhost.runner import REPO_ROOT, FunctionsRunner
from tests.waiting import wait_until

SYNTHETIC_APP = textwrap.dedent(
    """
    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="ping", auth_level=func.AuthLevel.ANONYMOUS)
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")
    """
)


def real_app_importable() -> bool:
    """True when every blueprint module that ``functions.blueprints()`` imports exists."""
    return importlib.util.find_spec("functions.booking_api") is not None


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie has ended: it holds no port, file or memory and
    waits only to be reaped, which for an orphan is the machine's init process's job, done
    when it gets round to it (seconds, on some machines)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc").is_dir()  # gone meanwhile, or no /proc (macOS): trust kill
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def test_runner_stop_releases_the_port_and_stops_pollers_and_timers(
    storage_connection_string: str, name_prefix: str
) -> None:
    calls: list[str] = []
    lock = threading.Lock()
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="ping")
    def ping(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("pong")

    @app.queue_trigger(arg_name="message", queue_name=f"{name_prefix}-q", connection="Storage")
    def work(message: func.QueueMessage) -> None:
        with lock:
            calls.append("queue")

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer")
    def tick(timer: func.TimerRequest) -> None:
        with lock:
            calls.append("timer")

    config = HostConfig(queues=QueueOptions(max_polling_interval=0.1))
    environ = {"Storage": storage_connection_string}
    runner = FunctionsRunner(app, config, environ=environ)
    runner.start()
    port = runner.http.port
    assert port_open(port)
    runner.stop()
    assert not port_open(port)
    threads = {t.name for t in threading.enumerate()}
    assert not any(name.startswith(("devhost-poll", "devhost-timer")) for name in threads)
    with lock:
        calls.clear()
    sender = QueueClient.from_connection_string(
        storage_connection_string,
        f"{name_prefix}-q",
        message_encode_policy=TextBase64EncodePolicy(),
    )
    sender.send_message("after stop")
    # A live runner with the same polling and schedule shows the stopped one had its chances:
    # its timer fires (the stopped timer was due at that second too), then it polls twice more.
    witness_fired = threading.Event()
    witness = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @witness.queue_trigger(arg_name="message", queue_name=f"{name_prefix}-w", connection="Storage")
    def witness_work(message: func.QueueMessage) -> None:
        pass

    @witness.timer_trigger(schedule="* * * * * *", arg_name="timer")
    def witness_tick(timer: func.TimerRequest) -> None:
        witness_fired.set()

    with FunctionsRunner(witness, config, environ=environ) as live:
        assert witness_fired.wait(timeout=5)
        assert live.pollers[0].wait_for_polls(2)
    assert calls == []
    assert sender.get_queue_properties().approximate_message_count == 1


def devhost_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    """``python -m devhost``'s environment: its folder in ``tmp_path/calbridge``, free ports,
    apps importable from ``tmp_path``."""
    return {
        **os.environ,
        "CALBRIDGE_DEVHOST_DIR": str(tmp_path / "calbridge"),
        "CALBRIDGE_QUEUE_PORT": str(free_port()),
        "CALBRIDGE_TABLE_PORT": str(free_port()),
        "CALBRIDGE_HTTP_PORT": str(free_port()),
        "PYTHONPATH": str(tmp_path),
        **settings,
    }


def wait_for_file(
    path: Path, process: subprocess.Popen[bytes], timeout: float
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"python -m devhost exited early with {process.returncode}")
        if path.exists():
            document = json.loads(path.read_text())
            assert isinstance(document, dict)
            return document
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


@pytest.mark.parametrize(
    ("stop_signal", "use_real_app"),
    [
        pytest.param(signal.SIGINT, True, id="sigint-function_app"),
        pytest.param(signal.SIGTERM, False, id="sigterm-synthetic-app"),
    ],
)
def test_python_m_devhost_starts_serves_and_stops_everything_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals, use_real_app: bool
) -> None:
    (tmp_path / "synthetic_app.py").write_text(SYNTHETIC_APP)
    real = use_real_app and real_app_importable()
    data_dir = tmp_path / "calbridge"
    # The simulator (when the sim package has one) runs along with the real app only.
    environ = devhost_environment(tmp_path, CALBRIDGE_DEVHOST_SIM="auto" if use_real_app else "off")
    command = [sys.executable, "-m", "devhost"]
    if not real:
        command += ["--app", "synthetic_app:app"]
    with (tmp_path / "out.txt").open("wb") as out, (tmp_path / "err.txt").open("wb") as err:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=environ, stdout=out, stderr=err)
        try:
            local = wait_for_file(data_dir / "local.json", process, timeout=60)
            for key in ("functionsUrl", "org", "signingSecret", "adminKey", "functionsKey"):
                assert local[key], key
            assert local["org"] == "dev"
            assert local["storage"] == (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
                "K1SZFPTOtr/KBHBeksoGMGw==;"
                f"QueueEndpoint=http://127.0.0.1:{environ['CALBRIDGE_QUEUE_PORT']}/devstoreaccount1;"
                f"TableEndpoint=http://127.0.0.1:{environ['CALBRIDGE_TABLE_PORT']}/devstoreaccount1;"
            )
            url = urlsplit(str(local["functionsUrl"]))
            assert url.port == int(environ["CALBRIDGE_HTTP_PORT"])
            assert url.path == "/api"
            connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
            connection.request("GET", "/api/ping" if not real else "/api/no-such-route")
            status = connection.getresponse().status
            connection.close()
            assert status == (200 if not real else 404)
            pids = local["processes"]
            assert isinstance(pids, dict)
            children = [int(pids["azurite"])] + ([int(pids["sim"])] if "sim" in pids else [])
            assert all(process_alive(pid) for pid in children)
            assert (data_dir / "azurite").is_dir()
            if real:
                # The README's "try it": a signed appointment through the real intake route.
                demo = subprocess.run(
                    [sys.executable, "-m", "devhost.demo"],
                    cwd=REPO_ROOT,
                    env=environ,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert demo.returncode == 0, demo.stdout + demo.stderr
                assert '202 {"accepted": true' in demo.stdout
                # make run seeded staff on an EWS and a Graph connection; the demo's
                # multi-staff appointments reached every staff member's calendar on both.
                staff = cast(list[dict[str, str]], local["staff"])
                assert {member["kind"] for member in staff} == {"ews", "graph"}
                for member in staff:
                    role = "organizer" if member["staffId"] in ("ann", "dev") else "invited by"
                    assert f"{member['mailbox']:<24} {member['kind']:<5}" in demo.stdout
                    line = next(x for x in demo.stdout.splitlines() if member["mailbox"] in x)
                    assert role in line, demo.stdout
                switch_the_ews_connection_to_oauth(local, environ)

            process.send_signal(stop_signal)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = (tmp_path / "out.txt").read_text()
    assert "calbridge: starting Azurite" in output
    assert "calbridge is running" in output
    # Both keys a newcomer needs for the admin routes are named where they are found.
    assert "x-functions-key: functionsKey in local.json" in output
    assert "X-Calbridge-Admin-Key: adminKey in local.json" in output
    assert "calbridge stopped" in output
    assert not any(process_alive(pid) for pid in children)
    assert not port_open(int(environ["CALBRIDGE_QUEUE_PORT"]))
    assert not port_open(int(environ["CALBRIDGE_HTTP_PORT"]))
    assert not (data_dir / "local.json").exists()
    assert (data_dir / "secrets.json").exists()
    log = (tmp_path / "err.txt").read_text()
    assert str(local["signingSecret"]) not in log + output
    assert str(local["functionsKey"]) not in log + output


def switch_the_ews_connection_to_oauth(local: dict[str, object], environ: dict[str, str]) -> None:
    """The README's "Switching a connection to OAuth": ``onprem`` saved again with the
    simulator's EWS application and the certificate ``make run`` made; the next booking on it
    is written with a token got with that certificate."""
    from sim.config import DEMO_EWS_CLIENT, DEMO_TENANT

    sim = cast(dict[str, str], local["sim"])
    url = urlsplit(str(local["functionsUrl"]))
    body = {
        "kind": "ews",
        "ewsUrl": sim["ews"],
        "authType": "oauth",
        "tenantId": DEMO_TENANT,
        "clientId": DEMO_EWS_CLIENT,
        "credentialType": "certificate",
        "secretReference": "dev-ews-app-certificate",
        "accessMode": "impersonation",
    }
    connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=10)
    connection.request(
        "PUT",
        "/api/orgs/dev/connections/onprem",
        body=json.dumps(body),
        headers={
            "Content-Type": "application/json",
            "x-functions-key": str(local["functionsKey"]),
            "X-Calbridge-Admin-Key": str(local["adminKey"]),
        },
    )
    answer = connection.getresponse()
    assert answer.status == 200, answer.read()
    connection.close()
    demo = subprocess.run(
        [sys.executable, "-m", "devhost.demo", "--appointment-id", "after-oauth"],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "ann@contoso.test" in demo.stdout

    def token_by_certificate() -> bool:
        with urllib.request.urlopen(f"{sim['control']}/counters", timeout=10) as response:  # noqa: S310
            counters = json.loads(response.read())
        # The new appointment's CreateItem was sent with a token got with the certificate.
        return DEMO_EWS_CLIENT.lower() in counters.get("token:client-certificate", {}) and (
            counters.get("ews:CreateItem", {}).get("ann@contoso.test", 0) >= 2
        )

    wait_until(token_by_certificate, 30, "the EWS booking written with a certificate's token")


STUCK_APP = textwrap.dedent(
    """
    import pathlib
    import time

    import azure.functions as func

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.queue_trigger(
        arg_name="message", queue_name="stuck-work", connection="AzureWebJobsStorage"
    )
    def stuck(message: func.QueueMessage) -> None:
        pathlib.Path(message.get_body().decode()).write_text("started")
        time.sleep(3600)  # an invocation that never ends (a hung Exchange call, say)
    """
)


def start_stuck_devhost(
    tmp_path: Path, grace: float
) -> tuple[subprocess.Popen[bytes], dict[str, object], list[int]]:
    """``python -m devhost`` on an app whose one invocation never ends, with that invocation
    running; returns the process, its local.json and its children's process ids."""
    (tmp_path / "stuck_app.py").write_text(STUCK_APP)
    data_dir = tmp_path / "calbridge"
    environ = devhost_environment(tmp_path, CALBRIDGE_STOP_GRACE_SECONDS=str(grace))
    out = (tmp_path / "out.txt").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--app", "stuck_app:app"],
        cwd=REPO_ROOT,
        env=environ,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    local = wait_for_file(data_dir / "local.json", process, timeout=60)
    pids = cast(dict[str, int], local["processes"])
    children = [int(pids["azurite"])] + ([int(pids["sim"])] if "sim" in pids else [])
    started = tmp_path / "started.txt"
    QueueClient.from_connection_string(
        str(local["storage"]), "stuck-work", message_encode_policy=TextBase64EncodePolicy()
    ).send_message(str(started))
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline, "the stuck invocation never started"
        time.sleep(0.05)
    return process, local, children


def wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while any(process_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_stuck_invocation_does_not_hold_the_shutdown(tmp_path: Path) -> None:
    process, _, children = start_stuck_devhost(tmp_path, grace=1)
    try:
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        took = time.monotonic() - began
    finally:
        if process.poll() is None:
            process.kill()
    assert took < 25, f"stopping took {took:.1f} s"
    assert wait_gone(children, 10)
    assert not (tmp_path / "calbridge" / "local.json").exists()
    output = (tmp_path / "out.txt").read_text()
    assert "1 invocation(s) still running" in output
    assert "calbridge stopped (running invocations were abandoned)" in output


def test_a_second_ctrl_c_stops_at_once(tmp_path: Path) -> None:
    process, _, children = start_stuck_devhost(tmp_path, grace=120)
    try:
        process.send_signal(signal.SIGINT)
        time.sleep(1.0)  # the first one is now waiting for the stuck invocation
        assert process.poll() is None
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 128 + signal.SIGINT
        assert time.monotonic() - began < 10
    finally:
        if process.poll() is None:
            process.kill()
    assert wait_gone(children, 10)
    assert not (tmp_path / "calbridge" / "local.json").exists()


def test_azurite_and_the_simulator_never_outlive_a_killed_run(tmp_path: Path) -> None:
    process, _, children = start_stuck_devhost(tmp_path, grace=120)
    process.kill()  # kill -9: no clean-up runs at all
    process.wait()
    assert wait_gone(children, 15), "a child outlived its killed parent"
    # What the README says to do after a kill: local.json, left behind, is cleaned up.
    local_json = tmp_path / "calbridge" / "local.json"
    assert local_json.exists()
    cleanup = subprocess.run(
        [sys.executable, "-m", "devhost", "--stop-leftovers"],
        cwd=REPO_ROOT,
        env={**os.environ, "CALBRIDGE_DEVHOST_DIR": str(tmp_path / "calbridge")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cleanup.returncode == 0, cleanup.stderr
    assert not local_json.exists()
