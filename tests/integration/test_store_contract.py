"""The repository contract, run against both backends: in-memory and Azure (Azurite).

Same suite, same expectations: ETag conflicts, insert-only writes, organization scoping,
snapshot save outcomes, busy-block windows, and racing writers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from shared.models import AppointmentSnapshot, BusyBlock, ConnectionConfig, EventMapping, Health
from shared.store import (
    ConcurrencyConflict,
    EntityKey,
    Repositories,
    SaveResult,
    UnstorableEntity,
    build_repositories,
)
from shared.store.entity_repository import EntityRepository, OrgScopedRepository
from shared.store.memory import MemoryTableService
from shared.store.records import (
    ConnectionRecord,
    MailboxItemKind,
    MailboxItemRecord,
    MailboxRecord,
    OutboxRecord,
    SubscriptionRecord,
)
from shared.store.tables import Condition, Scalar, TableService
from tests.builders import snapshot as build_snapshot

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture(params=["memory", "azurite"])
def tables(request: pytest.FixtureRequest, name_prefix: str) -> TableService:
    if request.param == "memory":
        return MemoryTableService()
    from shared.store.azure_tables import AzureTableService

    azurite = request.getfixturevalue("azurite")
    return AzureTableService.from_connection_string(azurite.connection_string, name_prefix)


@pytest.fixture
def repos(tables: TableService) -> Repositories:
    return build_repositories(tables)


def snapshot(version: int = 1, **fields: Any) -> AppointmentSnapshot:
    return build_snapshot(version, **fields)


def mapping(version: int = 1, item_id: str = "AAMk/+=") -> EventMapping:
    return EventMapping(
        organizer_staff_id="s1",
        mailbox="s1@example.com",
        connection_id="c1",
        item_id=item_id,
        applied_version=version,
    )


def block(event_id: str, start_hour: float, hours: float, **changes: Any) -> BusyBlock:
    start = T0 + timedelta(hours=start_hour)
    return BusyBlock(start=start, end=start + timedelta(hours=hours), event_id=event_id, **changes)


# --- ETag semantics, on the generic org-scoped base (EventMap) --------------------------------


def test_missing_row_reads_as_none(repos: Repositories) -> None:
    assert repos.event_map.get("acme", "nope") is None


def test_insert_only_write_refuses_an_existing_row(repos: Repositories) -> None:
    repos.event_map.put("acme", "apt-1", mapping(1), etag=None)
    with pytest.raises(ConcurrencyConflict):
        repos.event_map.put("acme", "apt-1", mapping(2), etag=None)
    stored = repos.event_map.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.applied_version == 1


def test_write_with_the_etag_read_succeeds_and_changes_the_etag(repos: Repositories) -> None:
    first = repos.event_map.put("acme", "apt-1", mapping(1), etag=None)
    read = repos.event_map.get("acme", "apt-1")
    assert read is not None
    assert read.etag == first
    second = repos.event_map.put("acme", "apt-1", mapping(2), etag=read.etag)
    assert second != first
    again = repos.event_map.get("acme", "apt-1")
    assert again is not None
    assert again.value == mapping(2)
    assert again.etag == second


def test_write_with_a_stale_etag_conflicts_and_changes_nothing(repos: Repositories) -> None:
    stale = repos.event_map.put("acme", "apt-1", mapping(1), etag=None)
    repos.event_map.put("acme", "apt-1", mapping(2), etag=stale)
    with pytest.raises(ConcurrencyConflict):
        repos.event_map.put("acme", "apt-1", mapping(3), etag=stale)
    stored = repos.event_map.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.applied_version == 2


def test_write_with_an_etag_after_the_row_was_deleted_conflicts(repos: Repositories) -> None:
    etag = repos.event_map.put("acme", "apt-1", mapping(1), etag=None)
    repos.event_map.delete("acme", "apt-1")
    with pytest.raises(ConcurrencyConflict):
        repos.event_map.put("acme", "apt-1", mapping(2), etag=etag)
    assert repos.event_map.get("acme", "apt-1") is None


def test_delete_with_a_stale_etag_conflicts_and_without_one_is_quiet(repos: Repositories) -> None:
    stale = repos.event_map.put("acme", "apt-1", mapping(1), etag=None)
    current = repos.event_map.put("acme", "apt-1", mapping(2), etag=stale)
    with pytest.raises(ConcurrencyConflict):
        repos.event_map.delete("acme", "apt-1", etag=stale)
    repos.event_map.delete("acme", "apt-1", etag=current)
    assert repos.event_map.get("acme", "apt-1") is None
    repos.event_map.delete("acme", "apt-1")  # already gone: fine


def test_many_rows_are_replaced_together_each_under_the_etag_it_was_read_with(
    repos: Repositories,
) -> None:
    """``put_many``: a hundred rows a round trip; a batch holding a row changed since it was
    read (or gone) still writes its other rows, and never the stale one."""
    ids = [f"apt-{n:03d}" for n in range(130)]
    etags = {i: repos.event_map.put("acme", i, mapping(1), etag=None) for i in ids}
    repos.event_map.put("acme", "apt-007", mapping(5), etag=etags["apt-007"])  # changed since
    repos.event_map.delete("acme", "apt-120")  # gone since
    written = repos.event_map.put_many("acme", [(i, mapping(2), etags[i]) for i in ids])
    assert set(written) == set(ids) - {"apt-007", "apt-120"}
    stored = repos.event_map.list_by_org("acme")
    assert stored["apt-007"].value.applied_version == 5
    assert "apt-120" not in stored
    assert {i for i, row in stored.items() if row.value.applied_version == 2} == set(written)
    # Each id comes with its row's new ETag: a write under it succeeds.
    assert {i: stored[i].etag for i in written} == written


def test_a_transaction_is_all_or_nothing(tables: TableService) -> None:
    table = tables.table("Transactions")
    first = table.insert("p", "a", {"n": 1})
    second = table.insert("p", "b", {"n": 1})
    table.replace("p", "b", {"n": 2}, second)
    with pytest.raises(ConcurrencyConflict):
        table.replace_many("p", [("a", {"n": 3}, first), ("b", {"n": 3}, second)])
    assert [(row.row_key, row.properties["n"]) for row in table.query("p")] == [
        ("a", 1),
        ("b", 2),
    ]
    # Written together, each row's new ETag comes back in order.
    third = table.get("p", "b")
    assert third is not None
    etags = table.replace_many("p", [("a", {"n": 4}, first), ("b", {"n": 4}, third.etag)])
    assert etags == [row.etag for row in table.query("p")]


def test_rows_are_scoped_by_organization(repos: Repositories) -> None:
    repos.event_map.put("acme", "apt-1", mapping(1), etag=None)
    repos.event_map.put("acme|x", "apt-2", mapping(2), etag=None)
    repos.event_map.put("acm", "apt-3", mapping(3), etag=None)
    assert repos.event_map.get("other", "apt-1") is None
    assert list(repos.event_map.list_by_org("acme")) == ["apt-1"]
    assert list(repos.event_map.list_by_org("acme|x")) == ["apt-2"]
    assert list(repos.event_map.list_by_org("acm")) == ["apt-3"]


def test_list_by_org_gives_every_id_decoded_in_id_order(repos: Repositories) -> None:
    ids = ["b", "a/1", "a+2", "c#?"]
    for index, row_id in enumerate(ids):
        repos.event_map.put("acme", row_id, mapping(index), etag=None)
    listed = repos.event_map.list_by_org("acme")
    assert set(listed) == set(ids)
    assert {row_id: v.value.applied_version for row_id, v in listed.items()} == {
        row_id: index for index, row_id in enumerate(ids)
    }


def test_a_value_that_does_not_fit_is_refused_and_nothing_is_stored(repos: Repositories) -> None:
    record = MailboxRecord(
        staff_id="s1", connection_id="c1", address="s1@example.com", sync_state="x" * 40_000
    )
    with pytest.raises(UnstorableEntity):
        repos.mailboxes.put("acme", "s1", record, etag=None)
    assert repos.mailboxes.get("acme", "s1") is None


def test_a_record_stored_under_another_id_is_refused(repos: Repositories) -> None:
    record = MailboxRecord(staff_id="s1", connection_id="c1", address="s1@example.com")
    with pytest.raises(ValueError, match="does not match the row id"):
        repos.mailboxes.put("acme", "s2", record, etag=None)
    assert repos.mailboxes.list_by_org("acme") == {}


# --- every table stores its model -------------------------------------------------------------

SAMPLES: list[tuple[str, str, BaseModel]] = [
    (
        "connections",
        "ews-onprem",
        ConnectionRecord(
            connection_id="ews-onprem",
            **ConnectionConfig(
                kind="ews",
                ews_url="https://mail.example.com/EWS/Exchange.asmx",
                auth_type="ntlm",
                username="EXAMPLE\\svc-calbridge",
                secret_reference="acme-ews-password",
                access_mode="impersonation",
            ).model_dump(),
            health=Health.OK,
        ),
    ),
    (
        "mailboxes",
        "s1",
        MailboxRecord(
            staff_id="s1",
            connection_id="ews-onprem",
            address="s1@example.com",
            time_zone="Europe/Berlin",
            sync_state="H4sIAAAAAAAEAO29B2AcSZYlJi9tynt/SvVK1+B0iS==",
            last_sync_at=T0,
            health=Health.THROTTLED,
            lag_seconds=12.5,
            last_error="ErrorServerBusy",
        ),
    ),
    ("appointments", "apt-1", snapshot(7, notes="Bring ID")),
    ("event_map", "apt-1", mapping(7)),
    (
        "subscriptions",
        "sub-1",
        SubscriptionRecord(
            subscription_id="sub-1",
            connection_id="graph",
            staff_id="s1",
            mailbox="s1@example.com",
            expires_at=T0 + timedelta(days=6),
            client_state_hash="9f86d081884c7d659a2feaa0c55ad015",
        ),
    ),
    (
        "outbox",
        "evt-1",
        OutboxRecord(
            event_id="evt-1",
            event_type="busy_time.changed",
            payload='{"id":"evt-1","type":"busy_time.changed"}',
            attempts=2,
            next_attempt_at=T0,
        ),
    ),
]


@pytest.mark.parametrize(("repository", "row_id", "value"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_each_table_round_trips_its_model(
    repos: Repositories, repository: str, row_id: str, value: BaseModel
) -> None:
    repo: OrgScopedRepository[Any] = getattr(repos, repository)
    etag = repo.put("acme", row_id, value, etag=None)
    stored = repo.get("acme", row_id)
    assert stored is not None
    assert stored.value == value
    assert stored.etag == etag
    assert list(repo.list_by_org("acme")) == [row_id]


# --- appointments: save_snapshot outcomes ----------------------------------------------------


def test_first_snapshot_is_stored(repos: Repositories) -> None:
    outcome = repos.appointments.save_snapshot("acme", "apt-1", snapshot(3))
    assert (outcome.result, outcome.stored_version) == (SaveResult.STORED, 3)
    stored = repos.appointments.get("acme", "apt-1")
    assert stored is not None
    assert stored.value == snapshot(3)


def test_the_same_snapshot_again_is_same(repos: Repositories) -> None:
    repos.appointments.save_snapshot("acme", "apt-1", snapshot(3))
    outcome = repos.appointments.save_snapshot("acme", "apt-1", snapshot(3))
    assert (outcome.result, outcome.stored_version) == (SaveResult.SAME, 3)


def test_the_same_instants_with_other_offsets_are_the_same_content(repos: Repositories) -> None:
    repos.appointments.save_snapshot("acme", "apt-1", snapshot(3))
    utc_times = snapshot(3, start=datetime(2026, 3, 2, 8, tzinfo=UTC))  # the same instants
    assert repos.appointments.save_snapshot("acme", "apt-1", utc_times).result is SaveResult.SAME


def test_an_older_snapshot_is_stale_and_changes_nothing(repos: Repositories) -> None:
    repos.appointments.save_snapshot("acme", "apt-1", snapshot(5))
    outcome = repos.appointments.save_snapshot("acme", "apt-1", snapshot(4, title="Old"))
    assert (outcome.result, outcome.stored_version) == (SaveResult.STALE, 5)
    stored = repos.appointments.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.title == "Mortgage advice"


def test_same_version_with_other_content_is_a_conflict(repos: Repositories) -> None:
    repos.appointments.save_snapshot("acme", "apt-1", snapshot(5))
    outcome = repos.appointments.save_snapshot("acme", "apt-1", snapshot(5, title="Changed"))
    assert (outcome.result, outcome.stored_version) == (SaveResult.CONFLICT, 5)
    stored = repos.appointments.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.title == "Mortgage advice"


def test_a_newer_snapshot_replaces_the_stored_one(repos: Repositories) -> None:
    repos.appointments.save_snapshot("acme", "apt-1", snapshot(5))
    outcome = repos.appointments.save_snapshot("acme", "apt-1", snapshot(9, status="cancelled"))
    assert (outcome.result, outcome.stored_version) == (SaveResult.STORED, 9)
    stored = repos.appointments.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.status == "cancelled"


# --- busy blocks ------------------------------------------------------------------------------


def test_busy_blocks_overlapping_a_window_come_back_by_start(repos: Repositories) -> None:
    busy = repos.busy_blocks
    busy.put_block("acme", "s1", block("late", 5, 1))
    busy.put_block("acme", "s1", block("early", 0, 1))
    busy.put_block("acme", "s1", block("spanning", -10, 30))
    busy.put_block("acme", "s1", block("touches-start", -1, 1))  # ends when the window starts
    busy.put_block("acme", "s1", block("touches-end", 6, 1))  # starts when the window ends
    busy.put_block("acme", "s1", block("series", 2, 1, occurrence_id="occ-1"))
    busy.put_block("acme", "s1", block("series", 3, 1, occurrence_id="occ-2"))
    busy.put_block("acme", "s2", block("other-staff", 1, 1))
    busy.put_block("other", "s1", block("other-org", 1, 1))
    found = busy.overlapping("acme", "s1", T0, T0 + timedelta(hours=6))
    assert [(b.event_id, b.occurrence_id) for b in found] == [
        ("spanning", None),
        ("early", None),
        ("series", "occ-1"),
        ("series", "occ-2"),
        ("late", None),
    ]


def test_blocks_at_the_same_times_come_back_by_event_then_occurrence(
    repos: Repositories,
) -> None:
    busy = repos.busy_blocks
    for event_id, occurrence_id in (("b", "2"), ("c", None), ("a", None), ("b", "1")):
        busy.put_block("acme", "s1", block(event_id, 1, 1, occurrence_id=occurrence_id))
    busy.put_block("acme", "s1", block("z-earlier", 0.5, 1))
    busy.put_block("acme", "s1", block("a-longer", 1, 2))
    found = busy.overlapping("acme", "s1", T0, T0 + timedelta(hours=6))
    assert [(b.event_id, b.occurrence_id) for b in found] == [
        ("z-earlier", None),
        ("a", None),
        ("b", "1"),
        ("b", "2"),
        ("c", None),
        ("a-longer", None),
    ]


def test_putting_a_block_again_replaces_it(repos: Repositories) -> None:
    repos.busy_blocks.put_block("acme", "s1", block("e1", 0, 1, subject="Before"))
    repos.busy_blocks.put_block("acme", "s1", block("e1", 2, 1, private=True))
    [stored] = repos.busy_blocks.blocks_of("acme", "s1")
    assert stored.value == block("e1", 2, 1, private=True)


def test_many_blocks_are_written_and_removed_together_beyond_one_batch(
    repos: Repositories,
) -> None:
    busy = repos.busy_blocks
    many = [block("series", k, 0.5, occurrence_id=f"occ-{k:03d}") for k in range(250)]
    busy.put_blocks("acme", "s1", [*many, block("single", 1, 1, subject="First")])
    # The same row twice in one call: the last one wins.
    busy.put_blocks(
        "acme", "s1", [block("single", 1, 1, subject="Old"), block("single", 1, 1, subject="New")]
    )
    stored = {
        (b.value.event_id, b.value.occurrence_id): b.value for b in busy.blocks_of("acme", "s1")
    }
    assert len(stored) == 251
    assert stored[("single", None)].subject == "New"

    gone = [("series", f"occ-{k:03d}") for k in range(0, 250, 2)] + [("never", None)]
    busy.remove_blocks("acme", "s1", gone)  # a missing row is not an error
    left = {(b.value.event_id, b.value.occurrence_id) for b in busy.blocks_of("acme", "s1")}
    assert left == {("series", f"occ-{k:03d}") for k in range(1, 250, 2)} | {("single", None)}


def test_mailbox_items_are_written_and_removed_together(repos: Repositories) -> None:
    items = repos.mailbox_items
    records = [
        MailboxItemRecord(item_id=f"AAMk{k}/+=", kind=MailboxItemKind.BUSY, confirmed=k % 3 != 0)
        for k in range(120)
    ]
    items.put_items("acme", "s1", records)
    assert len(items.items_of("acme", "s1")) == 120
    assert sorted(items.unconfirmed_of("acme", "s1")) == sorted(
        r.item_id for r in records if not r.confirmed
    )
    items.remove_items("acme", "s1", [r.item_id for r in records[:100]])
    assert sorted(items.items_of("acme", "s1")) == sorted(r.item_id for r in records[100:])


def test_mailbox_items_are_found_by_their_meetings_uid(repos: Repositories) -> None:
    items = repos.mailbox_items
    # URL-special characters too: the filter is a query parameter.
    uid = "040000008200E00074C5B7101A82E008+/=&#%'\"?"
    items.put_items(
        "acme",
        "s1",
        [
            MailboxItemRecord(item_id="a", kind=MailboxItemKind.BUSY, uid=uid),
            MailboxItemRecord(item_id="b", kind=MailboxItemKind.COPY, uid=uid),
            MailboxItemRecord(item_id="c", kind=MailboxItemKind.BUSY, uid=uid + "0"),
            MailboxItemRecord(item_id="d", kind=MailboxItemKind.BUSY),
        ],
    )
    items.put_item("acme", "s2", MailboxItemRecord(item_id="e", kind=MailboxItemKind.BUSY, uid=uid))

    assert sorted(item.item_id for item in items.with_uid("acme", "s1", uid)) == ["a", "b"]
    assert items.with_uid("acme", "s1", "nothing") == []


def test_items_of_a_meeting_are_marked_for_the_next_sync_by_kind(repos: Repositories) -> None:
    items = repos.mailbox_items
    items.put_items(
        "acme",
        "s1",
        [
            MailboxItemRecord(item_id="a", kind=MailboxItemKind.BUSY, uid="u1"),
            MailboxItemRecord(item_id="b", kind=MailboxItemKind.COPY, uid="u1"),
            MailboxItemRecord(item_id="c", kind=MailboxItemKind.COPY, uid="u2"),
        ],
    )

    assert items.recheck("acme", "s1", "u1", MailboxItemKind.COPY)
    assert not items.recheck("acme", "s1", "u3", MailboxItemKind.COPY)

    assert items.unconfirmed_of("acme", "s1") == ["b"]


# --- the generic base and racing writers -----------------------------------------------------


class Counter(BaseModel):
    count: int


class CounterRepository(EntityRepository[Counter]):
    table_name = "Counters"
    model = Counter


def race(writers: int, attempt: Callable[[int], None]) -> list[BaseException | None]:
    """Run ``attempt(i)`` in ``writers`` threads started together; what each raised."""
    outcomes: list[BaseException | None] = [None] * writers

    def run(index: int) -> None:
        try:
            attempt(index)
        except BaseException as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_two_writers_with_the_same_etag_exactly_one_wins(tables: TableService) -> None:
    counters = CounterRepository(tables)
    key = EntityKey.of(("acme",), ("visits",))
    counters.write(key, Counter(count=0), etag=None)
    both_read = threading.Barrier(2)

    def increment_once(_: int) -> None:
        current = counters.read(key)
        assert current is not None
        both_read.wait(timeout=10)
        counters.write(key, Counter(count=current.value.count + 1), etag=current.etag)

    outcomes = race(2, increment_once)
    assert sum(o is None for o in outcomes) == 1
    assert sum(isinstance(o, ConcurrencyConflict) for o in outcomes) == 1
    stored = counters.read(key)
    assert stored is not None
    assert stored.value.count == 1


def test_the_loser_re_reads_and_re_decides(tables: TableService) -> None:
    counters = CounterRepository(tables)
    key = EntityKey.of(("acme",), ("visits",))
    counters.write(key, Counter(count=0), etag=None)
    both_read = threading.Barrier(2)
    conflicts = [0, 0]

    def increment(index: int) -> None:
        first = True
        while True:
            current = counters.read(key)
            assert current is not None
            if first:
                both_read.wait(timeout=10)
                first = False
            try:
                counters.write(key, Counter(count=current.value.count + 1), etag=current.etag)
                return
            except ConcurrencyConflict:
                conflicts[index] += 1

    assert race(2, increment) == [None, None]
    assert sorted(conflicts) == [0, 1]  # the winner never conflicts, the loser once
    stored = counters.read(key)
    assert stored is not None
    assert stored.value.count == 2


def test_two_inserts_of_the_same_row_exactly_one_wins(tables: TableService) -> None:
    counters = CounterRepository(tables)
    key = EntityKey.of(("acme",), ("new",))
    start = threading.Barrier(2)

    def insert(index: int) -> None:
        start.wait(timeout=10)
        counters.write(key, Counter(count=index), etag=None)

    outcomes = race(2, insert)
    assert sorted(type(o).__name__ for o in outcomes) == ["ConcurrencyConflict", "NoneType"]


def test_racing_puts_of_one_version_with_different_content(repos: Repositories) -> None:
    start = threading.Barrier(2)
    results: list[SaveResult | None] = [None, None]

    def save(index: int) -> None:
        start.wait(timeout=10)
        outcome = repos.appointments.save_snapshot("acme", "apt-1", snapshot(4, title=f"T{index}"))
        results[index] = outcome.result

    assert race(2, save) == [None, None]
    assert sorted(str(r) for r in results) == ["conflict", "stored"]
    stored = repos.appointments.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.title == f"T{results.index(SaveResult.STORED)}"


def test_racing_puts_of_many_versions_keep_the_newest(repos: Repositories) -> None:
    start = threading.Barrier(6)
    results: list[SaveResult | None] = [None] * 6

    def save(index: int) -> None:
        start.wait(timeout=10)
        results[index] = repos.appointments.save_snapshot(
            "acme", "apt-1", snapshot(index + 1)
        ).result

    assert race(6, save) == [None] * 6
    assert results[5] is SaveResult.STORED
    assert set(results) <= {SaveResult.STORED, SaveResult.STALE}
    stored = repos.appointments.get("acme", "apt-1")
    assert stored is not None
    assert stored.value.version == 6


# --- queries ----------------------------------------------------------------------------------


def test_a_query_reads_every_row_of_a_partition_beyond_one_page(tables: TableService) -> None:
    """Table Storage answers at most 1,000 rows a page; the rest follow the continuation."""
    table = tables.table("Paged")
    table.upsert_many("p", [(f"r{n:05d}", {"n": n}) for n in range(1050)])
    table.upsert_many("q", [(f"r{n:05d}", {"n": n}) for n in range(3)])
    rows = table.query("p")
    assert [row.row_key for row in rows] == [f"r{n:05d}" for n in range(1050)]
    assert [row.properties["n"] for row in rows] == list(range(1050))
    assert [row.row_key for row in table.query("p", [Condition("n", "ge", 998)])] == [
        f"r{n:05d}" for n in range(998, 1050)
    ]
    assert len(table.scan()) == 1053


def test_a_queried_row_is_the_row_a_point_read_gives(tables: TableService) -> None:
    """Every kind of scalar, as a query and a point read return it, with the same ETag."""
    table = tables.table("Typed")
    properties: dict[str, Scalar] = {
        "text": "O'Brien — Zoë",
        "small": 7,
        "negative": -5,
        "large": 2**40 + 1,
        "smallest": -(2**63),
        "fraction": 2.5,
        "whole": 2.0,
        "yes": True,
        "no": False,
    }
    etag = table.insert("p", "r", properties)
    [queried] = table.query("p")
    read = table.get("p", "r")
    assert read is not None
    assert queried == read
    assert queried.etag == etag
    assert queried.properties == properties
    assert {name: type(value) for name, value in queried.properties.items()} == {
        name: type(value) for name, value in properties.items()
    }


def test_conditions_on_text_with_quotes_match_exactly(tables: TableService) -> None:
    table = tables.table("Quoted")
    for row_key, text in (("a", "O'Brien"), ("b", "O''Brien"), ("c", "' or true or '")):
        table.insert("p", row_key, {"text": text})
    for row_key, text in (("a", "O'Brien"), ("b", "O''Brien"), ("c", "' or true or '")):
        assert [row.row_key for row in table.query("p", [Condition("text", "eq", text)])] == [
            row_key
        ]
    assert [row.row_key for row in table.scan([Condition("text", "eq", "O'Brien")])] == ["a"]


def test_selected_properties_are_the_only_ones_read(tables: TableService) -> None:
    table = tables.table("Selected")
    table.insert("p", "r", {"wanted": 1, "other": "x"})
    [row] = table.query("p", select=["wanted", "missing"])
    assert (row.row_key, row.properties) == ("r", {"wanted": 1})


# --- what the status API reads ----------------------------------------------------------------


def test_integer_conditions_match_the_integers_stored(repos: Repositories) -> None:
    """Integers are stored as Int64: a condition on one must match them (Azure needs an Int64
    literal, ``0L``)."""
    fresh = OutboxRecord(event_id="e-new", event_type="busy_time.changed", payload="{}")
    tried = fresh.model_copy(update={"event_id": "e-tried", "attempts": 3})
    for row in (fresh, tried):
        assert repos.outbox.add("o1", row)
    assert [row.event_id for row in repos.outbox.never_tried("o1")] == ["e-new"]


def test_undelivered_outbox_rows_are_found_by_filtered_queries(repos: Repositories) -> None:
    base = OutboxRecord(event_id="x", event_type="busy_time.changed", payload="{}")
    rows = {
        "retrying": {"attempts": 2, "next_attempt_at": T0 + timedelta(minutes=1)},
        "long-ago": {"attempts": 2, "next_attempt_at": T0 - timedelta(days=30)},
        "delivered": {"attempts": 2, "next_attempt_at": T0, "delivered_at": T0},
        "dead": {"attempts": 8, "next_attempt_at": T0, "dead_lettered": True},
    }
    for event_id, changes in rows.items():
        repos.outbox.add("o1", base.model_copy(update={"event_id": event_id, **changes}))
    retried = repos.outbox.retried_since("o1", T0 - timedelta(days=7))
    assert sorted(row.event_id for row in retried) == ["dead", "retrying"]
    assert [row.event_id for row in repos.outbox.dead_lettered("o1")] == ["dead"]


def test_mailboxes_are_read_for_the_status_without_their_cursors(repos: Repositories) -> None:
    record = MailboxRecord(
        staff_id="ann",
        connection_id="c1",
        address="ann@example.com",
        time_zone="Europe/Berlin",
        sync_state="H4sI" + "x" * 2000,
        last_sync_at=T0,
        health=Health.OK,
        held="3 of 4 appointments would be cancelled",
    )
    repos.mailboxes.put("o1", "ann", record, None)
    assert repos.mailboxes.status_of("o1") == [record.model_copy(update={"sync_state": None})]
    assert repos.mailboxes.status_of("o2") == []


def test_a_field_a_row_was_written_without_reads_as_its_default_when_selected(
    tables: TableService, repos: Repositories
) -> None:
    """A row from before a field existed (``notices``, ``busyTime`` here): selecting the field
    reads its default, not a null."""
    tables.table("Mailboxes").upsert(
        "o1",
        "old",
        {
            "staffId": "old",
            "connectionId": "c1",
            "address": "old@example.com",
            "timeZone": "Europe/Berlin",
        },
    )
    [record] = repos.mailboxes.status_of("o1")
    assert record.notices == 0
    assert record.busy_time is True
    assert record.last_sync_at is None
