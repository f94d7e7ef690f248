"""EWS contract: EWSMaxConcurrency — how many requests one throttling budget may have open at
once, and whose budget a request is charged to.

- "EWSMaxConcurrency: the number of concurrent open connections that a specific user can have
  against an Exchange server that is using EWS at one time" (27 by default since Exchange 2013),
  https://learn.microsoft.com/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange
- Impersonated calls "are charged against the target mailbox instead of the service account …
  the copied budget is shared across all service accounts that are using application
  impersonation", and EWSMaxConcurrency is among the settings so counted:
  https://learn.microsoft.com/archive/blogs/exchangedev/more-throttling-changes-for-exchange-online
- Over the limit the request fails with ErrorServerBusy, "The server cannot service this request
  right now. Try again later." (the EWS Managed API's ServerBusyException), naming the
  MaxConcurrency policy and its limit:
  https://learn.microsoft.com/archive/blogs/webdav_101/you-are-doing-too-much-at-one-time-ewsmaxconcurrency-too-many-concurrent-connections-opened

Requests are held in flight with the ``slow`` fault, so each test knows how many overlap.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import pytest
import requests
from exchangelib.errors import ErrorServerBusy
from lxml import etree

from sim.server import RunningSimulator
from sim.store import Fault
from tests.sim.conftest import (
    ANN,
    BOB,
    CARA,
    PASSWORDS,
    SERVICE,
    exchangelib_account,
    sample_config,
)
from tests.waiting import wait_until

M = "{http://schemas.microsoft.com/exchange/services/2006/messages}"
E = "{http://schemas.microsoft.com/exchange/services/2006/errors}"
LIMIT = 3


def delegate_everywhere() -> dict[str, Any]:
    """The sample organization, its service account also a delegate of every mailbox."""
    config = sample_config()
    config["serviceAccounts"][0]["delegateFor"] = [ANN, BOB, CARA]
    return config


def get_calendar(sim: RunningSimulator, mailbox: str, *, impersonate: bool) -> str:
    """One GetFolder of ``mailbox``'s calendar as the service account (ExchangeImpersonation, or
    delegate access through the folder's mailbox); the response code."""
    header = (
        "<t:ExchangeImpersonation><t:ConnectingSID>"
        f"<t:PrimarySmtpAddress>{mailbox}</t:PrimarySmtpAddress>"
        "</t:ConnectingSID></t:ExchangeImpersonation>"
        if impersonate
        else ""
    )
    body = f"""<?xml version="1.0" encoding="utf-8"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"
  xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">
  <s:Header><t:RequestServerVersion Version="Exchange2016"/>{header}</s:Header>
  <s:Body><m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape>
    <m:FolderIds><t:DistinguishedFolderId Id="calendar"><t:Mailbox>
      <t:EmailAddress>{mailbox}</t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>
    </m:FolderIds></m:GetFolder></s:Body>
</s:Envelope>"""
    token = base64.b64encode(f"{SERVICE}:{PASSWORDS[SERVICE]}".encode()).decode()
    response = requests.post(
        sim.urls["ews"],
        data=body.encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": "text/xml; charset=utf-8"},
        timeout=10,
    )
    root = etree.fromstring(response.content)
    code = root.findtext(f".//{M}ResponseCode") or root.findtext(f".//{E}ResponseCode") or ""
    assert (response.status_code == 200) == (code == "NoError"), response.text
    return code


def at_once(calls: Sequence[Callable[[], str]]) -> list[str]:
    """Run the calls on their own threads, all started together; their results in order."""
    results: list[str] = [""] * len(calls)
    start = threading.Barrier(len(calls))

    def run(index: int) -> None:
        start.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def sim(start_sim: Callable[..., RunningSimulator]) -> RunningSimulator:
    running = start_sim(delegate_everywhere(), ews_max_concurrency=LIMIT)
    # Every request stays in flight long enough for all of a test's requests to overlap.
    running.store.add_fault(Fault(kind="slow", remaining=None, delay_s=0.4))
    return running


def test_delegate_requests_share_the_service_accounts_budget(sim: RunningSimulator) -> None:
    mailboxes = [ANN, BOB, CARA, ANN, BOB]
    calls = [partial(get_calendar, sim, m, impersonate=False) for m in mailboxes]

    codes = at_once(calls)

    assert sorted(codes) == ["ErrorServerBusy"] * 2 + ["NoError"] * LIMIT
    assert sim.ews.peak_concurrency == {f"user:{SERVICE}": LIMIT}
    assert sim.ews.concurrency_refusals == {f"user:{SERVICE}": 2}


def test_impersonated_requests_use_each_mailboxs_own_budget(sim: RunningSimulator) -> None:
    calls = [partial(get_calendar, sim, m, impersonate=True) for m in [ANN] * 3 + [BOB] * 3]

    codes = at_once(calls)

    assert codes == ["NoError"] * 6
    assert sim.ews.peak_concurrency == {
        f"impersonation:{ANN}": LIMIT,
        f"impersonation:{BOB}": LIMIT,
    }


def test_one_mailbox_impersonated_too_often_at_once_is_refused(sim: RunningSimulator) -> None:
    calls = [lambda: get_calendar(sim, ANN, impersonate=True) for _ in range(LIMIT + 1)]

    assert sorted(at_once(calls)) == ["ErrorServerBusy"] + ["NoError"] * LIMIT


def test_a_slot_is_free_again_once_its_request_is_answered(sim: RunningSimulator) -> None:
    for _ in range(2):
        codes = at_once([lambda: get_calendar(sim, CARA, impersonate=False)] * LIMIT)
        assert codes == ["NoError"] * LIMIT
    assert sim.ews.concurrency_refusals == {}


def test_exchangelib_reads_the_refusal_as_server_busy_with_its_back_off(
    sim: RunningSimulator,
) -> None:
    account = exchangelib_account(sim, CARA, as_user=SERVICE, auth="basic", access="delegate")
    calls: list[Callable[[], str]] = [
        lambda: get_calendar(sim, BOB, impersonate=False) for _ in range(LIMIT)
    ]
    seen: list[ErrorServerBusy] = []

    def exchangelib_call() -> str:
        try:
            account.calendar  # noqa: B018 - resolving the folder is the request
        except ErrorServerBusy as busy:
            seen.append(busy)
            return "ErrorServerBusy"
        return "NoError"

    # The raw requests take every slot first; exchangelib's request arrives while they run.
    sim.store.clear_faults()
    sim.store.add_fault(Fault(kind="slow", operation="ews:GetFolder", remaining=LIMIT, delay_s=1))
    holders = threading.Thread(target=lambda: at_once(calls))
    holders.start()
    wait_until(lambda: sum(sim.ews.peak_concurrency.values()) >= LIMIT)
    result = exchangelib_call()
    holders.join()

    assert result == "ErrorServerBusy"
    assert seen[0].back_off == pytest.approx(0.5)
    assert "cannot service this request right now" in str(seen[0])
