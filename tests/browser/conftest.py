"""The status page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``) driven by Selenium, against the local runner with Azurite and the Exchange
simulator, set up as the end-to-end suite's world is (``tests/e2e/conftest.py``).

The browser must be there: ``make test`` installs it on a fresh machine. Only an explicit
``CALBRIDGE_SKIP_BROWSER_TESTS=1`` skips these tests; a missing browser otherwise fails them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from devhost.azurite import Azurite
from shared.config import connection_secret_name, environment_variable_for
from sim.server import start_simulator
from tests.e2e.conftest import (
    CLIENT_SECRET,
    OPERATOR_KEY,
    ORG,
    SERVICE_PASSWORD,
    SIGNING_SECRET,
    World,
    _administer,
    simulator_config,
)
from tests.e2e.privacy import Sensitive
from tests.local_app import local_app

CHROMIUM = Path(os.environ.get("CALBRIDGE_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CALBRIDGE_CHROMEDRIVER", "/usr/bin/chromedriver"))
SKIP_SETTING = "CALBRIDGE_SKIP_BROWSER_TESTS"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


@pytest.fixture(scope="package")
def chromium() -> Iterator[webdriver.Chrome]:
    if os.environ.get(SKIP_SETTING) == "1":
        pytest.skip(f"{SKIP_SETTING}=1: the status page's browser tests are skipped")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: install Debian's chromium and chromium-driver "
            f"(make test does), or set {SKIP_SETTING}=1 to skip the browser tests explicitly"
        )
    profile = tempfile.mkdtemp(prefix="calbridge-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    # The console, to see Content-Security-Policy refusals and script errors.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="package")
def world(azurite: Azurite) -> Iterator[World]:
    """The end-to-end world: the function app on the local runner, Azurite, the simulator,
    two connections (EWS and Graph) and six staff, set up through the admin API."""
    sim = start_simulator(simulator_config())
    prefix = "br" + str(int(time.time() * 1000) % 10**8)
    secrets = {
        environment_variable_for(connection_secret_name(ORG, "e2e-ews-password")): SERVICE_PASSWORD,
        environment_variable_for(connection_secret_name(ORG, "e2e-graph-secret")): CLIENT_SECRET,
    }
    try:
        with local_app(
            azurite.connection_string,
            prefix,
            sim,
            {ORG: SIGNING_SECRET},
            {"CALBRIDGE_ADMIN_KEY": OPERATOR_KEY, **secrets},
        ) as (runner, client):
            world = World(sim, runner, client, azurite.connection_string, prefix, Sensitive())
            _administer(world, sim)
            yield world
    finally:
        sim.stop()
