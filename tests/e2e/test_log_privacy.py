"""The end-to-end suite's log-privacy check cannot pass by seeing nothing: while a real
appointment is applied over EWS and a private event is read back by a sync, the capture holds
records from calbridge's workers and from the libraries at DEBUG, with the invocation's ids on
them; every kind of sensitive text is known to the check; and a leak planted in any part of a
record, through any logger the capture listens to, is caught.

The check itself runs after every end-to-end test (``tests/e2e/conftest.py``)."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

from tests.e2e.conftest import SIGNING_SECRET, STAFF, World
from tests.e2e.privacy import PLANTED, LogCapture, Sensitive, leaks
from tests.e2e.test_booking_to_exchange import snapshot
from tests.e2e.test_exchange_to_booking import synced

(ANN, ANN_MAILBOX), (BOB, _bob_mailbox), _cara = STAFF["ews"].items()
_runs = itertools.count(1)


def test_the_capture_sees_real_records_and_a_planted_leak_anywhere_is_caught(
    world: World, log_capture: LogCapture, sensitive: Sensitive
) -> None:
    run = next(_runs)
    start = len(log_capture.records())
    client = {
        "name": f"Ottoline Quist-{run}",
        "email": f"ottoline.quist{run}@client.test",
        "phone": f"+44 20 7946 0{run:03d}",
    }
    notes = f"Prefers the side entrance, step-free ({run})"
    appointment_id = f"privacy-{run}"
    response = world.put_appointment(
        appointment_id,
        snapshot(
            1, ANN, [BOB], title=f"Privacy {run}", day=200 + run, clients=(client,), notes=notes
        ),
    )
    assert response.status_code == 202, response.text
    world.applied(appointment_id, 1)
    private_subject = f"Oncology follow-up {run}"
    day = datetime(2027, 9, 1, tzinfo=UTC) + timedelta(days=run)
    world.sim.person(ANN_MAILBOX).create_event(
        private_subject,
        day.replace(hour=15),
        day.replace(hour=16),
        body=f"Bring the scans from March ({run})",
        private=True,
    )
    synced(world, ANN)

    # Every kind of sensitive text is known to the check, including what this test made.
    assert {"client", "body", "private subject", "secret"} <= sensitive.kinds()
    for value in [*client.values(), notes, private_subject, SIGNING_SECRET]:
        assert value in sensitive
    assert world.runner.functions_key in sensitive

    # Real records were captured meanwhile: calbridge's workers with the invocation's ids, and
    # the libraries below INFO (the capture opens every logger to DEBUG).
    records = log_capture.records()[start:]
    applied = [
        r
        for r in records
        if r.name == "shared.apply.service" and getattr(r, "appointment", None) == appointment_id
    ]
    assert applied
    assert getattr(applied[0], "trigger", None) == "queue"
    assert getattr(applied[0], "message_id", None)
    assert [r for r in records if r.name == "shared.mailbox_sync.service"]
    # ... and so do the libraries' records of its EWS calls, made on the adapter's threads.
    assert [
        r
        for r in records
        if r.name.startswith(("exchangelib", "urllib3"))
        and getattr(r, "appointment", None) == appointment_id
    ]
    libraries = {r.name.split(".")[0] for r in records if r.levelno == logging.DEBUG}
    assert {"exchangelib", "urllib3"} & libraries, libraries

    # A leak planted in any part of a record, through real loggers, is caught by the same scan.
    planted_at = len(log_capture.records())
    cases = {
        "client": client["email"].upper(),  # in any case
        "body": notes,
        "private subject": private_subject,
        "secret": world.runner.functions_key,
    }
    for kind, value in cases.items():
        mark = {PLANTED: True}
        logging.getLogger("shared.apply.service").info("with %s", value, extra=mark)
        logging.getLogger("exchangelib.protocol").debug(f"in the text: {value}", extra=mark)
        logging.getLogger("azure.core").warning("extra", extra={**mark, "detail": value})
        try:
            raise ValueError(value)
        except ValueError:
            logging.getLogger("devhost").exception("failed", extra=mark)
        # The runner's workers and pollers log on their own threads meanwhile: only the planted.
        since = log_capture.records()[planted_at:]
        planted_at += len(since)
        planted = [r for r in since if getattr(r, PLANTED, False)]
        assert len(planted) == 4, [r.name for r in planted]
        for record in planted:
            found = leaks([record], sensitive.values())
            assert {finding.kind for finding in found} == {kind}, (record.name, found)
