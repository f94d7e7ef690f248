"""The apply worker's service (``AppointmentApplier``) on in-memory storage and the in-memory
Exchange: what happens to a message in each situation — done, re-queued after throttling, parked
for a disabled connection, a problem recorded, retried by the host, dead-lettered on the last
try — and that nothing is written twice."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.apply.service import (
    ApplyDisposition,
    AppointmentApplier,
    AppointmentApplyFailed,
)
from shared.connections import recover
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import (
    AuthenticationFailed,
    CalendarGateway,
    ChangeKeyConflict,
    ExchangeUnavailable,
    RetryAfter,
)
from shared.models import ConnectionConfig, Health
from shared.queues import (
    APPOINTMENT_CHANGES,
    MAX_VISIBILITY_DELAY,
    AppointmentChanged,
    MemoryQueueSender,
)
from shared.store import Repositories
from shared.store.memory import memory_repositories
from shared.store.records import ConnectionRecord, MailboxRecord
from tests.builders import snapshot as build_snapshot

ORG = "acme"
ORGANIZER = "olga@bank.test"
SECONDARY = "sam@bank.test"


class FakeGateways:
    """The gateway provider over one in-memory Exchange; counts gateways asked for."""

    def __init__(self, exchange: FakeExchange) -> None:
        self.exchange = exchange
        self.calls = 0

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        self.calls += 1
        return FakeCalendarGateway(self.exchange, connection_id=connection.connection_id)


class Setup:
    def __init__(self) -> None:
        self.repos: Repositories = memory_repositories()
        self.queue = MemoryQueueSender()
        self.exchange = FakeExchange([ORGANIZER, SECONDARY])
        self.gateways = FakeGateways(self.exchange)
        self.applier = AppointmentApplier(
            self.repos, self.queue, self.gateways, max_dequeue_count=3
        )
        self.put_connection(enabled=True)
        for staff_id, address in (("olga", ORGANIZER), ("sam", SECONDARY)):
            self.repos.mailboxes.put(
                ORG,
                staff_id,
                MailboxRecord(staff_id=staff_id, connection_id="onprem", address=address),
                None,
            )

    def put_connection(self, *, enabled: bool) -> None:
        config = ConnectionConfig(
            kind="ews",
            ews_url="https://mail.bank.test/EWS/Exchange.asmx",
            auth_type="ntlm",
            username="svc@bank.test",
            secret_reference="svc-password",
            enabled=enabled,
        )
        current = self.repos.connections.get(ORG, "onprem")
        self.repos.connections.put(
            ORG,
            "onprem",
            ConnectionRecord(connection_id="onprem", **config.model_dump()),
            current.etag if current else None,
        )

    def store(self, version: int, **fields: Any) -> AppointmentChanged:
        defaults: dict[str, Any] = {
            "organizer": "olga",
            "secondaries": ("sam",),
            "start": datetime(2027, 1, 4, 9, tzinfo=UTC),
            "time_zone": "UTC",
            "title": "Advice",
        }
        snapshot = build_snapshot(version, **{**defaults, **fields})
        self.repos.appointments.save_snapshot(ORG, "apt-1", snapshot)
        return AppointmentChanged(org=ORG, appointment_id="apt-1", version=version)

    def apply(self, message: AppointmentChanged, dequeue_count: int = 1) -> Any:
        return asyncio.run(self.applier.apply(message, dequeue_count=dequeue_count))

    def live(self, mailbox: str) -> list[Any]:
        return [e for e in self.exchange.calendar(mailbox) if e.is_live]


@pytest.fixture
def setup() -> Setup:
    return Setup()


def test_a_booking_is_written_once_however_often_the_message_comes(setup: Setup) -> None:
    message = setup.store(1)
    for _ in range(3):
        assert setup.apply(message).disposition is ApplyDisposition.DONE
    [event] = setup.live(ORGANIZER)
    assert event.attendee_addresses == (SECONDARY,)
    assert len(setup.live(SECONDARY)) == 1
    assert setup.exchange.request_count("create_event") == 1
    mapping = setup.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert (mapping.value.item_id, mapping.value.applied_version) == (event.item_id, 1)


def test_the_staff_a_message_names_are_only_a_hint_for_the_first_read(setup: Setup) -> None:
    # The message names staff from an older snapshot (and someone unknown): the worker reads
    # whoever the stored snapshot names, and applies that.
    setup.store(1, secondaries=())
    stale_hint = AppointmentChanged(
        org=ORG, appointment_id="apt-1", version=1, staff_ids=["olga", "nobody"]
    )
    setup.store(2, secondaries=("sam",))

    assert setup.apply(stale_hint).disposition is ApplyDisposition.DONE

    [event] = setup.live(ORGANIZER)
    assert event.attendee_addresses == (SECONDARY,)


def test_an_old_message_applies_the_newest_snapshot(setup: Setup) -> None:
    old = setup.store(1)
    setup.store(2, title="Advice (moved)")
    setup.apply(old)
    [event] = setup.live(ORGANIZER)
    assert event.subject == "Advice (moved)"


def test_throttling_requeues_with_the_servers_delay_and_never_sleeps(setup: Setup) -> None:
    message = setup.store(1)
    setup.exchange.fail_next("create_event", RetryAfter(7.5))
    report = setup.apply(message)
    assert report.disposition is ApplyDisposition.REQUEUED
    assert report.retry_after == 7.5
    [sent] = setup.queue.sent
    assert sent.queue == APPOINTMENT_CHANGES
    assert sent.visibility_delay == timedelta(seconds=7.5)
    assert setup.live(ORGANIZER) == []
    assert setup.apply(message).disposition is ApplyDisposition.DONE
    assert len(setup.live(ORGANIZER)) == 1


@pytest.mark.parametrize(
    ("operation", "mapped"),
    [
        ("create_event", False),
        ("update_event", True),
    ],
)
def test_endless_throttling_is_counted_where_status_and_logs_show_it_then_cleared(
    setup: Setup, operation: str, mapped: bool, caplog: pytest.LogCaptureFixture
) -> None:
    clock = [datetime(2027, 1, 1, 8, tzinfo=UTC)]
    setup.applier = AppointmentApplier(
        setup.repos, setup.queue, setup.gateways, max_dequeue_count=3, now=lambda: clock[0]
    )
    if mapped:
        assert setup.apply(setup.store(1)).disposition is ApplyDisposition.DONE
    message = setup.store(2, title="Advice (moved)")
    setup.exchange.fail_next(operation, RetryAfter(5.0), times=4)
    began = clock[0]
    for tries in range(1, 5):
        with caplog.at_level("INFO", logger="shared.apply.service"):
            report = setup.apply(message)
        assert report.disposition is ApplyDisposition.REQUEUED
        assert f"throttled {tries} time(s) since 2027-01-01T08:00:00Z" in report.detail
        problem = setup.repos.problems.get(ORG, "apt-1")
        assert problem is not None
        assert problem.value.throttled_since == began
        assert problem.value.throttled_tries == tries
        assert "throttled, retry after 5 s" in problem.value.problem
        clock[0] += timedelta(seconds=5)
    throttled_lines = [r for r in caplog.records if "throttled" in r.getMessage()]
    assert len(throttled_lines) == 4
    assert all(r.levelname == "WARNING" for r in throttled_lines)
    assert not any(r.getMessage() == "appointment applied" for r in caplog.records)
    assert len(setup.queue.sent) == 4  # nothing lost: each try re-queued the change

    assert setup.apply(message).disposition is ApplyDisposition.DONE
    assert setup.repos.problems.get(ORG, "apt-1") is None
    mapping = setup.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert mapping.value.last_error is None
    assert mapping.value.applied_version == 2


def test_a_disabled_connection_is_not_called_and_the_change_is_parked(setup: Setup) -> None:
    setup.put_connection(enabled=False)
    report = setup.apply(setup.store(1))
    assert report.disposition is ApplyDisposition.PARKED
    assert setup.gateways.calls == 0
    assert setup.exchange.request_count() == 0
    [parked] = setup.repos.parked.parked_on(ORG, "onprem")
    assert parked.appointment_id == "apt-1"


def test_a_connection_enabled_while_the_change_is_being_parked_still_gets_the_change(
    setup: Setup,
) -> None:
    # Found by the convergence machine: the worker read the connection disabled; the
    # administrator enabled it and requeued what was parked at that moment (nothing yet); then
    # the worker parked the change, which waited for an enable that had already happened.
    setup.put_connection(enabled=False)
    park = setup.repos.parked.park

    def enabled_meanwhile(org: str, record: Any) -> None:
        setup.put_connection(enabled=True)
        assert setup.repos.parked.parked_on(ORG, "onprem") == []  # what enabling requeues
        park(org, record)

    setup.repos.parked.park = enabled_meanwhile  # type: ignore[method-assign]
    report = setup.apply(setup.store(1))

    assert report.disposition is ApplyDisposition.REQUEUED
    assert setup.repos.parked.parked_on(ORG, "onprem") == []
    [message] = setup.queue.bodies(APPOINTMENT_CHANGES)
    assert message["appointmentId"] == "apt-1"
    setup.repos.parked.park = park  # type: ignore[method-assign]
    assert setup.apply(setup.store(1)).disposition is ApplyDisposition.DONE
    assert len(setup.live(ORGANIZER)) == 1


def test_a_change_key_conflict_is_settled_by_observing_again(setup: Setup) -> None:
    setup.apply(setup.store(1))
    setup.exchange.fail_next("update_event", ChangeKeyConflict("changed meanwhile"))
    report = setup.apply(setup.store(2, title="Advice v2"))
    assert report.disposition is ApplyDisposition.DONE
    [event] = setup.live(ORGANIZER)
    assert event.subject == "Advice v2"


def test_an_outage_is_left_to_the_hosts_retry_and_recorded(setup: Setup) -> None:
    message = setup.store(1)
    setup.exchange.fail_next("create_event", ExchangeUnavailable("503 from the server"))
    with pytest.raises(AppointmentApplyFailed, match="ExchangeUnavailable"):
        setup.apply(message, dequeue_count=1)
    assert setup.repos.dead_letters.of_org(ORG) == []  # not the last try yet
    assert setup.apply(message, dequeue_count=2).disposition is ApplyDisposition.DONE
    assert len(setup.live(ORGANIZER)) == 1


def test_a_persistent_failure_is_dead_lettered_with_its_reason_on_the_last_try(
    setup: Setup,
) -> None:
    message = setup.store(1)
    setup.exchange.fail_next("create_event", ExchangeUnavailable("HTTP 503"), times=3)
    for attempt in (1, 2, 3):
        with pytest.raises(AppointmentApplyFailed):
            setup.apply(message, dequeue_count=attempt)
    [letter] = setup.repos.dead_letters.of_org(ORG)
    assert letter.queue == APPOINTMENT_CHANGES
    assert letter.subject_id == "apt-1"
    assert "ExchangeUnavailable" in letter.reason
    assert letter.dequeue_count == 3
    assert letter.message == {"org": ORG, "appointmentId": "apt-1", "version": 1}


def test_refused_credentials_mark_the_connection_and_hold_the_work_until_it_recovers(
    setup: Setup,
) -> None:
    message = setup.store(1)
    setup.exchange.fail_next("create_event", AuthenticationFailed("401 from the server"))
    report = setup.apply(message)
    assert report.disposition is ApplyDisposition.PARKED
    connection = setup.repos.connections.get(ORG, "onprem")
    assert connection is not None
    assert connection.value.health is Health.AUTH_FAILED
    [parked] = setup.repos.parked.parked_on(ORG, "onprem")
    assert parked.appointment_id == "apt-1"
    [told] = [json.loads(r.value.payload) for r in setup.repos.outbox.list_by_org(ORG).values()]
    assert told["type"] == "connection.health_changed"
    assert told["data"]["health"] == "auth_failed"
    # Held: a newer snapshot makes no call while the connection is auth_failed.
    calls = setup.exchange.request_count()
    newer = setup.store(2)
    assert setup.apply(newer).disposition is ApplyDisposition.PARKED
    assert setup.exchange.request_count() == calls
    setup.queue.sent.clear()
    change = recover(setup.repos, setup.queue, ORG, "onprem", datetime.now(UTC))
    assert change is not None
    assert change.requeued == 1
    [requeued] = setup.queue.bodies(APPOINTMENT_CHANGES)
    assert requeued == {"org": ORG, "appointmentId": "apt-1", "version": 2}
    assert setup.apply(AppointmentChanged.model_validate(requeued)).disposition is (
        ApplyDisposition.DONE
    )
    assert len(setup.live(ORGANIZER)) == 1
    assert setup.repos.parked.parked_on(ORG, "onprem") == []


def test_an_unknown_organizer_is_a_recorded_problem_cleared_once_fixed(setup: Setup) -> None:
    message = setup.store(1, organizer="nobody", secondaries=())
    report = setup.apply(message)
    assert report.disposition is ApplyDisposition.PROBLEM
    problem = setup.repos.problems.get(ORG, "apt-1")
    assert problem is not None
    assert "nobody" in problem.value.problem
    assert setup.exchange.request_count() == 0
    setup.repos.mailboxes.put(
        ORG,
        "nobody",
        MailboxRecord(staff_id="nobody", connection_id="onprem", address=SECONDARY),
        None,
    )
    assert setup.apply(message).disposition is ApplyDisposition.DONE
    assert setup.repos.problems.get(ORG, "apt-1") is None


def test_a_missing_connection_is_a_recorded_problem(setup: Setup) -> None:
    setup.repos.connections.delete(ORG, "onprem")
    report = setup.apply(setup.store(1))
    assert report.disposition is ApplyDisposition.PROBLEM
    assert "onprem" in report.detail
    assert setup.repos.problems.get(ORG, "apt-1") is not None


def test_a_message_for_an_appointment_never_stored_does_nothing(setup: Setup) -> None:
    message = AppointmentChanged(org=ORG, appointment_id="apt-unknown", version=1)
    assert setup.apply(message).disposition is ApplyDisposition.MISSING
    assert setup.exchange.request_count() == 0


def test_any_failure_on_the_last_try_is_dead_lettered(setup: Setup) -> None:
    class BrokenGateways:
        def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
            raise LookupError("secret 'svc-password' is not configured")

    applier = AppointmentApplier(setup.repos, setup.queue, BrokenGateways(), max_dequeue_count=2)
    message = setup.store(1)
    with pytest.raises(LookupError):
        asyncio.run(applier.apply(message, dequeue_count=1))
    assert setup.repos.dead_letters.of_org(ORG) == []
    with pytest.raises(LookupError):
        asyncio.run(applier.apply(message, dequeue_count=2))
    [letter] = setup.repos.dead_letters.of_org(ORG)
    assert letter.reason == "LookupError: secret 'svc-password' is not configured"


def _move_olga_to_cloud(setup: Setup, *, onprem_enabled: bool) -> None:
    """Olga's mailbox migrates (same address) from ``onprem`` to a ``cloud`` connection."""
    cloud = ConnectionConfig(
        kind="graph", auth_type="oauth", tenant_id="t-1", client_id="c-1", secret_reference="s"
    )
    setup.repos.connections.put(
        ORG, "cloud", ConnectionRecord(connection_id="cloud", **cloud.model_dump()), None
    )
    current = setup.repos.mailboxes.get(ORG, "olga")
    assert current is not None
    setup.repos.mailboxes.put(
        ORG,
        "olga",
        MailboxRecord(staff_id="olga", connection_id="cloud", address=ORGANIZER),
        current.etag,
    )
    setup.put_connection(enabled=onprem_enabled)


def test_a_migrated_mailbox_is_served_by_its_new_connection_once_the_old_one_is_disabled(
    setup: Setup,
) -> None:
    setup.apply(setup.store(1))
    _move_olga_to_cloud(setup, onprem_enabled=False)
    report = setup.apply(setup.store(2, title="Advice v2"))
    assert report.disposition is ApplyDisposition.DONE
    [event] = setup.live(ORGANIZER)
    assert event.subject == "Advice v2"
    assert setup.repos.parked.parked_on(ORG, "onprem") == []
    mapping = setup.repos.event_map.get(ORG, "apt-1")
    assert mapping is not None
    assert mapping.value.connection_id == "cloud"


def test_a_handover_from_a_migrated_organizer_cancels_through_the_new_connection(
    setup: Setup,
) -> None:
    setup.apply(setup.store(1))
    _move_olga_to_cloud(setup, onprem_enabled=True)
    report = setup.apply(setup.store(2, organizer="sam", secondaries=()))
    assert report.disposition is ApplyDisposition.DONE
    assert setup.live(ORGANIZER) == []
    [event] = setup.live(SECONDARY)
    assert event.organizer == SECONDARY


def test_a_throttling_delay_longer_than_a_queue_allows_is_capped_not_a_crash(
    setup: Setup,
) -> None:
    message = setup.store(1)
    setup.exchange.fail_next("create_event", RetryAfter(30 * 24 * 3600.0))
    report = setup.apply(message)
    assert report.disposition is ApplyDisposition.REQUEUED
    [sent] = setup.queue.sent
    assert sent.visibility_delay == MAX_VISIBILITY_DELAY


def test_a_problem_is_cleared_even_after_a_pass_that_died_before_its_create(
    setup: Setup,
) -> None:
    message = setup.store(1, organizer="nobody", secondaries=())
    assert setup.apply(message).disposition is ApplyDisposition.PROBLEM
    setup.repos.mailboxes.put(
        ORG,
        "nobody",
        MailboxRecord(staff_id="nobody", connection_id="onprem", address=SECONDARY),
        None,
    )
    # A worker stores its pending-create note, then dies before creating anything.
    setup.exchange.fail_next("create_event", RuntimeError("worker killed"))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        setup.apply(message)
    pending = setup.repos.event_map.get(ORG, "apt-1")
    assert pending is not None
    assert pending.value.item_id is None
    assert setup.repos.problems.get(ORG, "apt-1") is not None
    assert setup.apply(message).disposition is ApplyDisposition.DONE
    assert setup.repos.problems.get(ORG, "apt-1") is None


class _RaceGateways(FakeGateways):
    """Runs ``meanwhile`` once, right before the first marker lookup any gateway makes: another
    worker's whole pass (and what a staff member does next) between this pass's read of the
    mapping and its look at Exchange."""

    def __init__(self, exchange: FakeExchange, meanwhile: Any) -> None:
        super().__init__(exchange)
        self._meanwhile = meanwhile

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        gateway = super().for_connection(org, connection)
        look = gateway.find_by_marker

        async def find_by_marker(mailbox: str, marker: str) -> Any:
            if self._meanwhile is not None:
                meanwhile, self._meanwhile = self._meanwhile, None
                await meanwhile()
            return await look(mailbox, marker)

        gateway.find_by_marker = find_by_marker  # type: ignore[method-assign]
        return gateway


def test_a_pass_that_looked_from_a_stale_mapping_does_not_write_over_an_outlook_move(
    setup: Setup,
) -> None:
    # Two deliveries of one hand-over run at once. The second read the mapping (in doubt, so it
    # looks) before the first stored anything; the first cancels olga's meeting and makes sam's;
    # sam moves it in Outlook; only then does the second look, and finds the moved meeting. It
    # must not write the booked time over the move: calbridge would take its own write for the
    # answer to sam's move, which then is never reported.
    setup.apply(setup.store(1))
    stored = setup.repos.event_map.get(ORG, "apt-1")
    assert stored is not None
    setup.repos.event_map.put(
        ORG, "apt-1", stored.value.model_copy(update={"in_doubt": True}), stored.etag
    )
    handover = setup.store(2, organizer="sam", secondaries=())
    moved_to = datetime(2027, 1, 4, 11, tzinfo=UTC)

    async def first_worker_then_sam_moves_it() -> None:
        report = await setup.applier.apply(handover)
        assert report.disposition is ApplyDisposition.DONE
        [made] = setup.live(SECONDARY)
        setup.exchange.move_as_organizer(
            SECONDARY, made.item_id, moved_to, moved_to + timedelta(hours=1)
        )

    second = AppointmentApplier(
        setup.repos, setup.queue, _RaceGateways(setup.exchange, first_worker_then_sam_moves_it)
    )
    updates_before = setup.exchange.request_count("update_event")

    report = asyncio.run(second.apply(handover))

    assert report.disposition is ApplyDisposition.DONE
    assert setup.live(ORGANIZER) == []
    [event] = setup.live(SECONDARY)
    assert event.start == moved_to
    assert setup.exchange.request_count("update_event") == updates_before
