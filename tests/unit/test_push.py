"""Graph push on in-memory storage and the in-memory Exchange: the notification and lifecycle
intake (handshake, clientState, coalescing, refusals that change nothing), the subscription
manager (made, kept, renewed, made anew, deleted, left alone) and its timer, and the mailbox
sync reading a windowed reader and syncing again after notifications that came in meanwhile."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.config import SecretNotFound, connection_secret_name
from shared.exchange.fake import FakeCalendarGateway, FakeExchange
from shared.exchange.port import CalendarGateway, RetryAfter
from shared.mailbox_sync.fanout import GraphSweep
from shared.mailbox_sync.pending import PENDING_EXPIRY
from shared.mailbox_sync.service import NOTIFIED_DURING_SYNC, MailboxSyncer, SyncOutcome
from shared.models import ConnectionConfig, Health
from shared.push.notifications import NotificationIntake, client_state_hash
from shared.push.subscriptions import (
    RENEW_BEFORE,
    SUBSCRIPTION_LIFETIME,
    SubscriptionManager,
    SubscriptionOutcome,
)
from shared.queues import (
    MAILBOX_SUBSCRIPTIONS,
    MAILBOX_SYNC,
    MailboxSyncRequested,
    MemoryQueueSender,
    QueueUnavailable,
    SubscriptionWork,
)
from shared.store.memory import memory_repositories
from shared.store.records import ConnectionRecord, MailboxRecord, SubscriptionRecord

ORG = "acme"
DAN, EVE = "dan@bank.test", "eve@bank.test"
NOW = datetime(2031, 3, 3, 8, tzinfo=UTC)
FUNCTIONS_URL = "https://calbridge.example/api"
NOTIFICATION_URL = f"{FUNCTIONS_URL}/graph/notifications/{ORG}"


class Secrets:
    def resolve(self, reference: str) -> str:
        if reference != connection_secret_name(ORG, "graph-secret"):
            raise SecretNotFound(reference)
        return "client-secret"


class Gateways:
    def __init__(self, exchange: FakeExchange) -> None:
        self.exchange = exchange

    def for_connection(self, org: str, connection: ConnectionRecord) -> CalendarGateway:
        return FakeCalendarGateway(self.exchange, connection_id=connection.connection_id)


class World:
    def __init__(self) -> None:
        self.clock = [NOW]
        self.repos = memory_repositories()
        self.queue = MemoryQueueSender()
        self.exchange = FakeExchange([DAN, EVE], windowed=True)
        gateways = Gateways(self.exchange)
        self.intake = NotificationIntake(self.repos, self.queue, now=lambda: self.clock[0])
        self.manager = SubscriptionManager(
            self.repos,
            self.queue,
            gateways,
            functions_url=FUNCTIONS_URL,
            now=lambda: self.clock[0],
        )
        self.syncer = MailboxSyncer(
            self.repos, self.queue, gateways, Secrets(), now=lambda: self.clock[0]
        )
        self.sweep = GraphSweep(self.repos, self.queue, Secrets(), now=lambda: self.clock[0])
        for connection_id, kind in (("cloud", "graph"), ("onprem", "ews")):
            config = (
                ConnectionConfig(
                    kind="graph",
                    auth_type="oauth",
                    tenant_id="tenant",
                    client_id="client",
                    secret_reference="graph-secret",
                )
                if kind == "graph"
                else ConnectionConfig(
                    kind="ews",
                    ews_url="https://mail.bank.test/EWS/Exchange.asmx",
                    auth_type="ntlm",
                    username="svc@bank.test",
                    secret_reference="graph-secret",
                )
            )
            self.repos.connections.put(
                ORG,
                connection_id,
                ConnectionRecord(connection_id=connection_id, **config.model_dump()),
                None,
            )
        for staff_id, address in (("dan", DAN), ("eve", EVE)):
            self.repos.mailboxes.put(
                ORG,
                staff_id,
                MailboxRecord(
                    staff_id=staff_id,
                    connection_id="cloud",
                    address=address,
                    time_zone="Europe/Berlin",
                ),
                None,
            )

    def run(self, coroutine: Any) -> Any:
        return asyncio.run(coroutine)

    def subscribe(self, staff_id: str = "dan") -> SubscriptionRecord:
        assert self.run(self.manager.ensure(ORG, staff_id)) is SubscriptionOutcome.CREATED
        [record] = [
            row.value
            for row in self.repos.subscriptions.list_by_org(ORG).values()
            if row.value.staff_id == staff_id
        ]
        return record

    def client_state(self, record: SubscriptionRecord) -> str:
        return self.exchange.subscriptions[record.subscription_id].client_state

    def post(
        self, notifications: list[dict[str, Any]], *, lifecycle: bool = False, org: str = ORG
    ) -> Any:
        body = json.dumps({"value": notifications}).encode()
        take = self.intake.lifecycle if lifecycle else self.intake.notifications
        return take(org=org, validation_token=None, body=body)

    def notification(self, record: SubscriptionRecord, **changes: Any) -> dict[str, Any]:
        return {
            "subscriptionId": record.subscription_id,
            "clientState": self.client_state(record),
            "changeType": "updated",
            "resource": "Users/x/Events/y",
            "tenantId": "tenant",
            "resourceData": {"id": "y"},
            **changes,
        }

    def syncs(self) -> list[dict[str, Any]]:
        return self.queue.bodies(MAILBOX_SYNC)

    def mailbox(self, staff_id: str = "dan") -> MailboxRecord:
        found = self.repos.mailboxes.get(ORG, staff_id)
        assert found is not None
        return found.value

    def sync(self, staff_id: str = "dan", reason: str = "notification") -> Any:
        message = MailboxSyncRequested(org=ORG, staff_id=staff_id, reason=reason)
        return self.run(self.syncer.sync(message))


@pytest.fixture
def world() -> World:
    return World()


# --- the intake ------------------------------------------------------------------------------


def test_the_validation_handshake_echoes_the_token_as_plain_text_and_nothing_else(
    world: World,
) -> None:
    token = "Validation: Testing client application reachability <script>alert(1)</script>"
    for take in (world.intake.notifications, world.intake.lifecycle):
        answer = take(org=ORG, validation_token=token, body=b"")
        assert (answer.status, answer.media_type, answer.body_text()) == (200, "text/plain", token)
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
    too_long = world.intake.notifications(org=ORG, validation_token="x" * 1025, body=b"")
    assert too_long.status == 400
    assert (
        world.intake.notifications(org="Not An Org", validation_token="t", body=b"").status == 404
    )
    assert world.queue.sent == []


def test_a_burst_of_notifications_for_one_mailbox_queues_one_sync(world: World) -> None:
    dan = world.subscribe("dan")
    world.sync(reason="subscribed")  # the sync that follows a new subscription
    world.queue.sent.clear()
    first = world.post([world.notification(dan) for _ in range(5)])
    second = world.post([world.notification(dan, changeType="deleted")])
    assert (first.status, second.status) == (202, 202)
    assert [(m["staffId"], m["reason"]) for m in world.syncs()] == [("dan", "notification")]
    assert world.mailbox().notices == 2  # each delivery counted, one sync queued
    assert world.post([world.notification(dan)]).body["syncsQueued"] == 0  # still pending


def test_spoofed_notifications_change_nothing_and_are_refused(world: World) -> None:
    dan = world.subscribe("dan")
    world.queue.sent.clear()
    before = world.mailbox()
    wrong_state = world.post([world.notification(dan, clientState="guessed")])
    no_state = world.post([world.notification(dan, clientState=None)])
    unknown = world.post([world.notification(dan, subscriptionId="not-ours")])
    other_org = world.post([world.notification(dan)], org="other-bank")
    for answer in (wrong_state, no_state, unknown, other_org):
        assert answer.status == 403
        assert answer.body["error"] == "forbidden"
        assert "guessed" not in answer.json_text()
    assert world.queue.sent == []
    assert world.mailbox() == before
    # A batch with one real notification among forgeries: the real one counts, alone.
    mixed = world.post([world.notification(dan, clientState="guessed"), world.notification(dan)])
    assert (mixed.status, mixed.body["accepted"]) == (202, 1)
    assert world.mailbox().notices == 1


def test_a_body_that_is_not_a_notification_batch_is_refused(world: World) -> None:
    for body in (b"", b"{", b'{"value": []}', b'{"value": [{"clientState": "x"}]}', b"[]"):
        answer = world.intake.notifications(org=ORG, validation_token=None, body=body)
        assert answer.status == 400, body
    assert world.queue.sent == []


def test_only_a_hash_of_the_client_state_is_stored(world: World) -> None:
    dan = world.subscribe("dan")
    secret = world.client_state(dan)
    assert len(secret) >= 40
    assert dan.client_state_hash == client_state_hash(secret)
    stored = json.dumps(
        [
            row.value.model_dump(mode="json")
            for row in world.repos.subscriptions.list_by_org(ORG).values()
        ]
    )
    assert secret not in stored
    other = world.subscribe("eve")
    assert world.client_state(other) != secret  # a secret per subscription


def test_when_the_queue_is_down_graph_is_told_to_deliver_again_and_no_mark_is_left(
    world: World,
) -> None:
    dan = world.subscribe("dan")
    world.run(world.syncer.sync(MailboxSyncRequested(org=ORG, staff_id="dan", reason="x")))
    world.queue.failure = QueueUnavailable("down")
    answer = world.post([world.notification(dan)])
    assert answer.status == 503
    assert world.mailbox().sync_pending_since is None
    world.queue.failure = None
    assert world.post([world.notification(dan)]).status == 202
    assert world.syncs()[-1]["reason"] == "notification"


def test_lifecycle_events_queue_the_right_work(world: World) -> None:
    dan = world.subscribe("dan")
    world.run(world.syncer.sync(MailboxSyncRequested(org=ORG, staff_id="dan", reason="x")))
    world.queue.sent.clear()
    for event in ("reauthorizationRequired", "subscriptionRemoved", "missed", "somethingNew"):
        answer = world.post([world.notification(dan, lifecycleEvent=event)], lifecycle=True)
        assert answer.status == 202
    work = world.queue.bodies(MAILBOX_SUBSCRIPTIONS)
    assert [(w["action"], w["subscriptionId"]) for w in work] == [
        ("reauthorize", dan.subscription_id),
        ("recreate", dan.subscription_id),
    ]
    assert [m["reason"] for m in world.syncs()] == ["missed notifications"]
    spoofed = world.post(
        [world.notification(dan, clientState="x", lifecycleEvent="subscriptionRemoved")],
        lifecycle=True,
    )
    assert spoofed.status == 403
    assert len(world.queue.bodies(MAILBOX_SUBSCRIPTIONS)) == 2


# --- the subscription manager ------------------------------------------------------------------


def test_a_new_subscription_points_at_the_org_s_urls_and_is_followed_by_a_sync(
    world: World,
) -> None:
    dan = world.subscribe("dan")
    server = world.exchange.subscriptions[dan.subscription_id]
    assert (server.mailbox, server.notification_url, server.lifecycle_url) == (
        DAN,
        NOTIFICATION_URL,
        f"{FUNCTIONS_URL}/graph/lifecycle/{ORG}",
    )
    assert server.expires_at == NOW + SUBSCRIPTION_LIFETIME
    assert timedelta(minutes=10_080) >= SUBSCRIPTION_LIFETIME
    assert [(m["staffId"], m["reason"]) for m in world.syncs()] == [("dan", "subscribed")]
    assert world.run(world.manager.ensure(ORG, "dan")) is SubscriptionOutcome.KEPT
    assert len(world.exchange.subscriptions) == 1


def test_subscriptions_are_renewed_before_they_lapse_and_made_anew_when_gone(
    world: World,
) -> None:
    dan = world.subscribe("dan")
    world.clock[0] += SUBSCRIPTION_LIFETIME - RENEW_BEFORE + timedelta(minutes=1)
    assert world.run(world.manager.ensure(ORG, "dan")) is SubscriptionOutcome.RENEWED
    server = world.exchange.subscriptions[dan.subscription_id]
    assert server.expires_at == world.clock[0] + SUBSCRIPTION_LIFETIME
    world.clock[0] += SUBSCRIPTION_LIFETIME - RENEW_BEFORE + timedelta(minutes=1)
    world.exchange.drop_subscription(dan.subscription_id)
    assert world.run(world.manager.ensure(ORG, "dan")) is SubscriptionOutcome.CREATED
    [row] = world.repos.subscriptions.list_by_org(ORG).values()
    assert row.value.subscription_id != dan.subscription_id


def test_reauthorization_and_removal_as_graph_asks(world: World) -> None:
    dan = world.subscribe("dan")
    reauthorize = SubscriptionWork(
        org=ORG, staff_id="dan", action="reauthorize", subscription_id=dan.subscription_id
    )
    assert world.run(world.manager.handle(reauthorize)) is SubscriptionOutcome.REAUTHORIZED
    assert world.exchange.subscriptions[dan.subscription_id].reauthorized == 1
    world.run(world.syncer.sync(MailboxSyncRequested(org=ORG, staff_id="dan", reason="x")))
    world.queue.sent.clear()
    world.exchange.drop_subscription(dan.subscription_id)
    recreate = SubscriptionWork(
        org=ORG, staff_id="dan", action="recreate", subscription_id=dan.subscription_id
    )
    assert world.run(world.manager.handle(recreate)) is SubscriptionOutcome.CREATED
    assert [m["reason"] for m in world.syncs()] == ["subscribed"]  # and then a resync
    [row] = world.repos.subscriptions.list_by_org(ORG).values()
    assert row.value.subscription_id in world.exchange.subscriptions
    # Reauthorizing one Graph no longer has makes a new one.
    world.exchange.drop_subscription(row.value.subscription_id)
    gone = reauthorize.model_copy(update={"subscription_id": row.value.subscription_id})
    assert world.run(world.manager.handle(gone)) is SubscriptionOutcome.CREATED


def test_a_mailbox_that_leaves_graph_loses_its_subscription(world: World) -> None:
    dan = world.subscribe("dan")
    current = world.repos.mailboxes.get(ORG, "dan")
    assert current is not None
    world.repos.mailboxes.put(
        ORG, "dan", current.value.model_copy(update={"connection_id": "onprem"}), current.etag
    )
    assert world.run(world.manager.ensure(ORG, "dan")) is SubscriptionOutcome.NONE
    assert dan.subscription_id not in world.exchange.subscriptions
    assert world.repos.subscriptions.list_by_org(ORG) == {}


def test_a_disabled_or_refused_connection_is_left_alone(world: World) -> None:
    connection = world.repos.connections.get(ORG, "cloud")
    assert connection is not None
    for paused in ({"enabled": False}, {"health": Health.AUTH_FAILED}):
        current = world.repos.connections.get(ORG, "cloud")
        assert current is not None
        world.repos.connections.put(
            ORG, "cloud", connection.value.model_copy(update=paused), current.etag
        )
        assert world.run(world.manager.ensure(ORG, "dan")) is SubscriptionOutcome.LEFT_ALONE
        assert world.manager.due() == 0
    assert world.exchange.request_count() == 0


def test_without_a_public_url_the_mailbox_says_why_it_has_no_subscription(world: World) -> None:
    manager = SubscriptionManager(
        world.repos, world.queue, Gateways(world.exchange), functions_url=None, now=lambda: NOW
    )
    assert world.run(manager.ensure(ORG, "dan")) is SubscriptionOutcome.FAILED
    assert "CALBRIDGE_PUBLIC_URL" in (world.mailbox().subscription_error or "")
    world.subscribe("dan")
    assert world.mailbox().subscription_error is None


def test_throttled_subscription_work_comes_back_after_graphs_delay(world: World) -> None:
    world.exchange.fail_next("subscribe", RetryAfter(17))
    work = SubscriptionWork(org=ORG, staff_id="dan")
    assert world.run(world.manager.handle(work)) is SubscriptionOutcome.REQUEUED
    [sent] = [s for s in world.queue.sent if s.queue == MAILBOX_SUBSCRIPTIONS]
    assert sent.visibility_delay == timedelta(seconds=17)


def test_the_hourly_timer_queues_only_mailboxes_that_need_work(world: World) -> None:
    assert world.manager.due() == 2  # neither has a subscription yet
    world.queue.sent.clear()
    world.subscribe("dan")
    world.subscribe("eve")
    assert world.manager.due() == 0
    world.clock[0] += SUBSCRIPTION_LIFETIME - RENEW_BEFORE
    assert world.manager.due() == 2
    queued = world.queue.bodies(MAILBOX_SUBSCRIPTIONS)
    assert {(w["staffId"], w["action"]) for w in queued} == {("dan", "ensure"), ("eve", "ensure")}


# --- the sync and the sweep ---------------------------------------------------------------------


def test_notifications_during_a_sync_make_one_more_sync_and_no_more(world: World) -> None:
    dan = world.subscribe("dan")
    world.sync(reason="subscribed")
    world.queue.sent.clear()
    world.post([world.notification(dan)])  # claims the mark: one sync queued
    world.exchange.add_personal_event(
        DAN, "Dentist", NOW + timedelta(hours=2), NOW + timedelta(hours=3)
    )

    # Notifications that arrive while the sync is reading.
    original = world.exchange.changes_since

    def reading(*args: Any, **kwargs: Any) -> Any:
        world.post([world.notification(dan) for _ in range(3)])
        world.exchange.changes_since = original  # type: ignore[method-assign]
        return original(*args, **kwargs)

    world.exchange.changes_since = reading  # type: ignore[method-assign]
    assert world.sync().outcome is SyncOutcome.SYNCED
    assert [m["reason"] for m in world.syncs()] == ["notification", NOTIFIED_DURING_SYNC]
    assert world.mailbox().sync_pending_since is not None  # the follow-up is pending
    assert world.sync(reason=NOTIFIED_DURING_SYNC).outcome is SyncOutcome.SYNCED
    assert len(world.syncs()) == 2  # nothing new came in: no third
    assert world.mailbox().sync_pending_since is None


def test_the_sweep_queues_every_graph_mailbox_whatever_the_notifications_did(
    world: World,
) -> None:
    assert world.sweep.run().queued == 2
    assert {m["reason"] for m in world.syncs()} == {"full"}  # never read: a full read
    assert world.sweep.run().queued == 0  # still pending
    world.sync("dan", "full")
    world.sync("eve", "full")
    world.clock[0] += timedelta(minutes=1)
    assert world.sweep.run().queued == 2  # synced a minute ago: read again all the same
    assert {m["reason"] for m in world.syncs()[2:]} == {"sweep"}
    world.clock[0] += PENDING_EXPIRY
    assert world.sweep.run().queued == 2


def test_a_windowed_reader_forgets_the_past_quietly_and_keeps_what_lies_beyond_it(
    world: World,
) -> None:
    past = world.exchange.add_personal_event(
        DAN, "Yesterday's gym", NOW - timedelta(hours=10), NOW - timedelta(hours=9)
    )
    soon = world.exchange.add_personal_event(
        DAN, "Dentist", NOW + timedelta(days=2), NOW + timedelta(days=2, hours=1)
    )
    world.sync(reason="full")
    blocks = {b.value.subject for b in world.repos.busy_blocks.blocks_of(ORG, "dan")}
    assert blocks == {"Yesterday's gym", "Dentist"}
    told = len(world.repos.outbox.list_by_org(ORG))
    # Two days later the daily full read rolls the window past yesterday's gym.
    world.clock[0] += timedelta(days=2)
    assert world.sync(reason="full").outcome is SyncOutcome.SYNCED
    blocks = {b.value.subject for b in world.repos.busy_blocks.blocks_of(ORG, "dan")}
    assert blocks == {"Dentist"}
    assert past.item_id not in world.repos.mailbox_items.items_of(ORG, "dan")
    assert soon.item_id in world.repos.mailbox_items.items_of(ORG, "dan")
    assert len(world.repos.outbox.list_by_org(ORG)) == told  # time passing tells nobody


# --- the admin API asks for subscriptions ------------------------------------------------------


def test_assigning_a_graph_mailbox_or_moving_one_off_graph_queues_subscription_work(
    world: World,
) -> None:
    from shared.admin import AdminApi

    admin = AdminApi(
        world.repos, world.queue, Secrets(), operator_key="op", max_request_bytes=65536
    )

    def assign(staff_id: str, connection_id: str, mailbox: str) -> None:
        body = {"connectionId": connection_id, "mailbox": mailbox, "timeZone": "UTC"}
        answer = admin.put_staff(
            org=ORG, staff_id=staff_id, body=json.dumps(body).encode(), admin_key="op"
        )
        assert answer.status in (200, 201), answer.body

    assign("gus", "cloud", "gus@bank.test")  # a new Graph mailbox
    assign("hal", "onprem", "hal@bank.test")  # EWS: polled, no subscription
    assign("dan", "onprem", DAN)  # leaves Graph: its subscription must go
    work = world.queue.bodies(MAILBOX_SUBSCRIPTIONS)
    assert [(w["staffId"], w["action"]) for w in work] == [("gus", "ensure"), ("dan", "ensure")]

    # A Graph connection enabled again: each of its mailboxes is looked at.
    world.queue.sent.clear()
    connection = {
        "kind": "graph",
        "authType": "oauth",
        "tenantId": "tenant",
        "clientId": "client",
        "secretReference": "graph-secret",
        "enabled": False,
    }
    for enabled in (False, True):
        answer = admin.put_connection(
            org=ORG,
            connection_id="cloud",
            body=json.dumps({**connection, "enabled": enabled}).encode(),
            admin_key="op",
        )
        assert answer.status == 200, answer.body
    work = world.queue.bodies(MAILBOX_SUBSCRIPTIONS)
    assert sorted(w["staffId"] for w in work) == ["eve", "gus"]
