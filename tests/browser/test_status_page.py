"""The status page in headless Chromium against the running app: an administrator types the
organization and the keys, sees the connections' badges and a lag bar per real mailbox (synced
through the simulator), and presses buttons that call the admin routes.

Buttons whose route this build does not register must show the 404 as a message (and the page
goes on working); those whose route exists must show their effect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from shared import bootstrap
from shared.http.routes import ROUTES
from shared.queues import MailboxSyncRequested
from shared.webhooks.events import busy_time_row
from tests.e2e.conftest import OPERATOR_KEY, ORG, STAFF, World
from tests.waiting import wait_until

# Text that would run as script if the page rendered data as HTML.
PLANTED = '<img src="x" id="planted" onerror="document.title=\'pwned\'">'


def has_route(method: str, route: str) -> bool:
    return any(r.method == method and r.route == route for r in ROUTES)


def synced(world: World, staff_id: str) -> None:
    """Sync one mailbox through the simulator, as the poll fan-out would."""
    repos = bootstrap.services().repositories
    before = repos.mailboxes.get(ORG, staff_id)
    assert before is not None
    last = before.value.last_sync_at
    bootstrap.services().queue.send(MailboxSyncRequested(org=ORG, staff_id=staff_id, reason="poll"))

    def done() -> bool:
        now = repos.mailboxes.get(ORG, staff_id)
        return now is not None and now.value.last_sync_at not in (None, last)

    wait_until(done, 20, f"{staff_id}'s mailbox to sync")


def sign_in(driver: webdriver.Chrome, world: World) -> None:
    driver.get(f"{world.runner.base_url}/status-page")
    driver.find_element(By.ID, "org").send_keys(ORG)
    driver.find_element(By.ID, "function-key").send_keys(world.runner.functions_key)
    driver.find_element(By.ID, "admin-key").send_keys(OPERATOR_KEY)
    driver.find_element(By.ID, "show").click()
    wait_until(lambda: mailbox_row(driver, "ann"), 10, "the mailboxes to show")


def mailbox_row(driver: webdriver.Chrome, staff_id: str) -> WebElement | None:
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr.mailbox[data-staff="{staff_id}"]')
    return rows[0] if rows else None


def connection_card(driver: webdriver.Chrome, connection_id: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'article[data-connection="{connection_id}"]')


def message(driver: webdriver.Chrome) -> str:
    return str(driver.find_element(By.ID, "message").text)


def text_of(find: Any) -> str | None:
    """The text of what ``find`` finds, None while the page re-renders it."""
    try:
        return str(find().text)
    except (StaleElementReferenceException, IndexError, AttributeError):
        return None


def press_and_expect(driver: webdriver.Chrome, button: WebElement, expected: str) -> None:
    button.click()
    wait_until(lambda: expected in message(driver), 10, f"the message {expected!r}")


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """Console errors other than the failed requests the page reports itself."""
    return [
        str(entry["message"])
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


@pytest.fixture(scope="module")
def prepared(world: World) -> World:
    synced(world, "ann")
    # Bob's own sync first: one still under way would clear the error planted below.
    synced(world, "bob")
    repos = bootstrap.services().repositories
    bob = repos.mailboxes.get(ORG, "bob")
    assert bob is not None
    repos.mailboxes.put(ORG, "bob", bob.value.model_copy(update={"last_error": PLANTED}), bob.etag)
    return world


def test_the_page_shows_badges_lag_bars_and_errors_and_keeps_the_keys_out_of_urls(
    chromium: webdriver.Chrome, prepared: World
) -> None:
    driver = chromium
    sign_in(driver, prepared)
    for connection_id, health in (("onprem", "ok"), ("cloud", "ok")):
        badge = connection_card(driver, connection_id).find_element(By.CSS_SELECTOR, ".badge")
        assert badge.get_attribute("data-health") == health
    shown = {
        row.get_attribute("data-staff")
        for row in driver.find_elements(By.CSS_SELECTOR, "tr.mailbox")
    }
    assert shown == {staff for side in STAFF.values() for staff in side}
    ann = mailbox_row(driver, "ann")
    assert ann is not None
    assert ann.find_element(By.CSS_SELECTOR, ".badge").get_attribute("data-health") == "ok"
    lag = ann.find_element(By.CSS_SELECTOR, ".lag")
    assert 0 <= float(lag.get_attribute("data-lag-seconds") or "nan") < 300
    fill = lag.find_element(By.CSS_SELECTOR, ".lag-fill")
    assert float(fill.value_of_css_property("width").removesuffix("px")) > 0
    # Data is text, never markup: the planted error shows as written and runs nothing.
    bob = mailbox_row(driver, "bob")
    assert bob is not None
    assert bob.find_element(By.CSS_SELECTOR, ".error-text").text == PLANTED
    assert driver.find_elements(By.ID, "planted") == []
    assert driver.title == "calbridge status"
    errors = driver.find_element(By.ID, "errors").text
    assert "bob" in errors
    # The keys never reach a URL, and are not kept unless asked.
    assert OPERATOR_KEY not in driver.current_url
    assert prepared.runner.functions_key not in driver.current_url
    assert driver.execute_script("return window.sessionStorage.length") == 0
    assert console_errors(driver) == []


def test_replaying_a_dead_lettered_webhook_from_the_page(
    chromium: webdriver.Chrome, prepared: World
) -> None:
    driver = chromium
    repos = bootstrap.services().repositories
    now = datetime.now(UTC)
    dead = busy_time_row(ORG, "ann", (now, now + timedelta(hours=1)), "browser", now).model_copy(
        update={"attempts": 8, "dead_lettered": True, "last_error": "HTTP 500 eight times"}
    )
    assert repos.outbox.add(ORG, dead)
    sign_in(driver, prepared)
    selector = f'tr.dead-letter[data-subject="{dead.event_id}"]'
    row = wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, selector), 10, "the dead letter")
    press_and_expect(driver, row[0].find_element(By.TAG_NAME, "button"), "done")
    wait_until(
        lambda: not driver.find_elements(By.CSS_SELECTOR, selector), 10, "the dead letter to go"
    )
    stored = repos.outbox.get(ORG, dead.event_id)
    assert stored is not None
    assert stored.value.dead_lettered is False


def test_resync_disable_and_enable_buttons_call_the_admin_routes(
    chromium: webdriver.Chrome, prepared: World
) -> None:
    driver = chromium
    repos = bootstrap.services().repositories
    sign_in(driver, prepared)

    # Resync of one mailbox.
    ann = mailbox_row(driver, "ann")
    assert ann is not None
    before = repos.mailboxes.get(ORG, "ann")
    assert before is not None
    resync = ann.find_element(By.XPATH, ".//button[text()='Resync']")
    if has_route("POST", "orgs/{org}/staff/{staffId}/resync"):
        press_and_expect(driver, resync, "done")

        def resynced() -> bool:
            now = repos.mailboxes.get(ORG, "ann")
            assert now is not None
            return now.value.last_full_read_at != before.value.last_full_read_at

        wait_until(resynced, 20, "ann's mailbox to be read in full again")
    else:
        press_and_expect(driver, resync, "HTTP 404")

    # Disable, then enable, a connection.
    card = connection_card(driver, "onprem")
    disable = card.find_element(By.XPATH, ".//button[text()='Disable']")
    if has_route("POST", "orgs/{org}/connections/{connectionId}/disable"):
        press_and_expect(driver, disable, "done")
        wait_until(
            lambda: (
                text_of(
                    lambda: connection_card(driver, "onprem").find_element(
                        By.CSS_SELECTOR, ".badge"
                    )
                )
                == "disabled"
            ),
            10,
            "the badge to say disabled",
        )
        enable = connection_card(driver, "onprem").find_element(
            By.XPATH, ".//button[text()='Enable']"
        )
        press_and_expect(driver, enable, "done")
        wait_until(
            lambda: (
                text_of(
                    lambda: connection_card(driver, "onprem").find_element(
                        By.CSS_SELECTOR, ".badge"
                    )
                )
                == "ok"
            ),
            10,
            "the badge to say ok",
        )
    else:
        press_and_expect(driver, disable, "HTTP 404")
    # The page still works after a refused action: the status is shown again.
    assert mailbox_row(driver, "ann") is not None
    assert console_errors(driver) == []


def test_keys_kept_for_the_tab_survive_a_reload_and_are_forgotten_on_request(
    chromium: webdriver.Chrome, prepared: World
) -> None:
    driver = chromium
    driver.get(f"{prepared.runner.base_url}/status-page")
    driver.execute_script("window.sessionStorage.clear()")
    driver.find_element(By.ID, "org").send_keys(ORG)
    driver.find_element(By.ID, "function-key").send_keys(prepared.runner.functions_key)
    driver.find_element(By.ID, "admin-key").send_keys(OPERATOR_KEY)
    driver.find_element(By.ID, "remember").click()
    driver.find_element(By.ID, "show").click()
    wait_until(lambda: mailbox_row(driver, "ann"), 10, "the mailboxes to show")
    assert driver.execute_script("return window.sessionStorage.length") == 1
    # A reload in the same tab shows the status again without typing; no key in any URL.
    driver.refresh()
    wait_until(lambda: mailbox_row(driver, "ann"), 10, "the mailboxes to show after a reload")
    assert OPERATOR_KEY not in driver.current_url
    driver.find_element(By.ID, "forget").click()
    assert driver.execute_script("return window.sessionStorage.length") == 0
    assert driver.find_element(By.ID, "admin-key").get_attribute("value") == ""
    assert not driver.find_element(By.ID, "status").is_displayed()
    assert console_errors(driver) == []
