"""Graph subscriptions through msgraph-sdk, with a real local subscriber: the validation
handshake, change notifications with clientState, retries when the subscriber fails, dropped
notifications, lifecycle notifications, renewal and the 10,080-minute cap."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.subscription import Subscription

from sim.graph import DeliveryPolicy
from sim.graph.receiver import NotificationReceiver
from sim.people import Outlook
from sim.server import RunningSimulator
from sim.store import Fault
from tests.sim.conftest import ANN, BOB, CARA, TENANT_ID
from tests.sim.graph_clients import GraphSession, graph_session, graph_simulator

FAST = DeliveryPolicy(retry_delays_s=(0.1, 0.2, 0.3), timeout_s=2.0, validation_timeout_s=5.0)


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with graph_simulator() as running:
        running.graph.configure_delivery(FAST)
        yield running


@pytest.fixture(scope="module")
def graph(simulator: RunningSimulator) -> Iterator[GraphSession]:
    with graph_session(simulator) as session:
        yield session


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    with NotificationReceiver() as running:
        yield running


def subscription_for(
    receiver: NotificationReceiver,
    resource: str,
    *,
    minutes: float = 60,
    lifecycle: bool = True,
    client_state: str = "state-3f9a",
) -> Subscription:
    return Subscription(
        change_type="created,updated,deleted",
        notification_url=receiver.url,
        lifecycle_notification_url=receiver.lifecycle_url if lifecycle else None,
        resource=resource,
        expiration_date_time=datetime.now(UTC) + timedelta(minutes=minutes),
        client_state=client_state,
    )


def subscribe(
    graph: GraphSession, receiver: NotificationReceiver, address: str, **options: Any
) -> Subscription:
    created = graph.run(
        graph.app.subscriptions.post(
            subscription_for(receiver, f"users/{address}/events", **options)
        )
    )
    assert created is not None
    return created


def odata_error(graph: GraphSession, coroutine: Any) -> ODataError:
    with pytest.raises(ODataError) as caught:
        graph.run(coroutine)
    return caught.value


def test_validation_handshake_then_notifications_with_client_state(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    created = subscribe(graph, receiver, ANN)

    assert len(receiver.validations) == 2  # notification URL and lifecycle URL
    assert all(token.startswith("Validation:") for token in receiver.validations)
    assert created.client_state == "state-3f9a"
    assert created.resource == f"users/{ANN}/events"

    item = Outlook(simulator.store, ANN).create_event(
        "Notify me", datetime(2029, 1, 5, 9), datetime(2029, 1, 5, 10)
    )
    (notification,) = receiver.wait_for(1)

    assert notification["subscriptionId"] == created.id
    assert notification["clientState"] == "state-3f9a"
    assert notification["changeType"] == "created"
    assert notification["tenantId"] == TENANT_ID  # the tenant of the app's token
    event_id = notification["resourceData"]["id"]
    assert notification["resource"].endswith(f"/Events/{event_id}")
    fetched = graph.run(graph.app.users.by_user_id(ANN).events.by_event_id(event_id).get())
    assert fetched.subject == "Notify me"
    assert "Notify me" not in str(notification)  # ids only, never content

    Outlook(simulator.store, ANN).rename(item.id, "Renamed")
    Outlook(simulator.store, ANN).delete(item.id)
    changes = [n["changeType"] for n in receiver.wait_for(3)]
    assert changes == ["created", "updated", "deleted"]
    graph.run(graph.app.subscriptions.by_subscription_id(created.id).delete())


def test_refused_validation_creates_nothing(
    graph: GraphSession, receiver: NotificationReceiver
) -> None:
    receiver.refuse_validation = True

    refused = odata_error(
        graph, graph.app.subscriptions.post(subscription_for(receiver, f"users/{BOB}/events"))
    )
    listed = graph.run(graph.app.subscriptions.get())

    assert refused.response_status_code == 400
    assert refused.error.code == "ValidationError"
    assert all(s.notification_url != receiver.url for s in listed.value)


def test_unreachable_subscriber_is_refused(graph: GraphSession) -> None:
    with NotificationReceiver() as gone:
        body = subscription_for(gone, f"users/{BOB}/events", lifecycle=False)
    refused = odata_error(graph, graph.app.subscriptions.post(body))

    assert refused.response_status_code == 400
    assert "could not be reached" in refused.error.message


def test_failed_deliveries_are_retried(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    created = subscribe(graph, receiver, BOB)
    receiver.fail_next = 2

    Outlook(simulator.store, BOB).create_event(
        "Retry me", datetime(2029, 1, 6, 9), datetime(2029, 1, 6, 10)
    )
    (notification,) = receiver.wait_for(1)

    assert notification["subscriptionId"] == created.id
    statuses = [d.status for d in receiver.deliveries if d.path == "/notifications"]
    assert statuses == [503, 503, 202]
    graph.run(graph.app.subscriptions.by_subscription_id(created.id).delete())


def test_a_subscriber_that_never_answers_gets_a_missed_lifecycle_event(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    created = subscribe(graph, receiver, BOB)
    receiver.fail_next = 100

    Outlook(simulator.store, BOB).create_event(
        "Lost", datetime(2029, 1, 7, 9), datetime(2029, 1, 7, 10)
    )
    (missed,) = receiver.wait_for(1, path="/lifecycle")

    assert missed["lifecycleEvent"] == "missed"
    assert missed["subscriptionId"] == created.id
    failed = [d for d in receiver.deliveries if d.path == "/notifications"]
    assert len(failed) == 1 + len(FAST.retry_delays_s)
    graph.run(graph.app.subscriptions.by_subscription_id(created.id).delete())


def test_drop_notifications_fault(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    created = subscribe(graph, receiver, CARA)
    simulator.store.add_fault(Fault(kind="drop_notifications", mailbox=CARA))
    cara = Outlook(simulator.store, CARA)
    book = simulator.graph.subscriptions
    assert book.wait_for_deliveries()  # nothing left over from earlier tests
    attempts = book.delivery_attempts

    cara.create_event("Dropped", datetime(2029, 1, 8, 9), datetime(2029, 1, 8, 10))
    assert book.wait_for_deliveries()
    assert book.delivery_attempts == attempts  # dropped before delivery: never tried
    assert receiver.notifications() == []
    cara.create_event("Delivered", datetime(2029, 1, 8, 11), datetime(2029, 1, 8, 12))
    assert len(receiver.wait_for(1)) == 1
    assert book.wait_for_deliveries()
    assert book.delivery_attempts == attempts + 1
    graph.run(graph.app.subscriptions.by_subscription_id(created.id).delete())


def test_deleted_subscription_stops_notifications(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    created = subscribe(graph, receiver, CARA)
    graph.run(graph.app.subscriptions.by_subscription_id(created.id).delete())
    book = simulator.graph.subscriptions
    assert book.wait_for_deliveries()
    attempts = book.delivery_attempts

    Outlook(simulator.store, CARA).create_event(
        "Nobody listens", datetime(2029, 1, 9, 9), datetime(2029, 1, 9, 10)
    )
    assert book.wait_for_deliveries()

    assert book.delivery_attempts == attempts
    assert receiver.notifications() == []
    gone = odata_error(graph, graph.app.subscriptions.by_subscription_id(created.id).get())
    assert gone.response_status_code == 404


def test_lifecycle_notifications_on_demand(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    created = subscribe(graph, receiver, ANN)
    subscriptions = graph.app.subscriptions.by_subscription_id(created.id)

    simulator.graph.send_lifecycle(created.id, "reauthorizationRequired")
    (reauthorize,) = receiver.wait_for(1, path="/lifecycle")
    graph.run(subscriptions.reauthorize.post())
    simulator.graph.send_lifecycle(created.id, "missed")
    simulator.graph.send_lifecycle(created.id, "subscriptionRemoved")
    events = [n["lifecycleEvent"] for n in receiver.wait_for(3, path="/lifecycle")]

    assert reauthorize["clientState"] == "state-3f9a"
    assert reauthorize["subscriptionId"] == created.id
    assert events == ["reauthorizationRequired", "missed", "subscriptionRemoved"]
    assert odata_error(graph, subscriptions.get()).response_status_code == 404


def test_renewal_and_the_lifetime_cap(graph: GraphSession, receiver: NotificationReceiver) -> None:
    created = subscribe(graph, receiver, ANN)
    subscriptions = graph.app.subscriptions.by_subscription_id(created.id)
    in_six_days = datetime.now(UTC) + timedelta(days=6)

    renewed = graph.run(subscriptions.patch(Subscription(expiration_date_time=in_six_days)))
    too_far = odata_error(
        graph,
        subscriptions.patch(
            Subscription(expiration_date_time=datetime.now(UTC) + timedelta(minutes=10082))
        ),
    )
    refused_at_creation = odata_error(
        graph,
        graph.app.subscriptions.post(
            subscription_for(receiver, f"users/{ANN}/events", minutes=10082)
        ),
    )
    at_the_cap = subscribe(graph, receiver, ANN, minutes=10079)

    assert abs(renewed.expiration_date_time - in_six_days) < timedelta(seconds=1)
    assert too_far.response_status_code == 400
    assert "10080 minutes" in too_far.error.message
    assert refused_at_creation.response_status_code == 400
    current = graph.run(subscriptions.get())
    assert current.expiration_date_time == renewed.expiration_date_time
    for subscription in (created, at_the_cap):
        graph.run(graph.app.subscriptions.by_subscription_id(subscription.id).delete())


def test_users_subscribe_to_their_own_mailbox_only(
    graph: GraphSession, simulator: RunningSimulator, receiver: NotificationReceiver
) -> None:
    bob = graph.user(BOB)

    denied = odata_error(
        graph, bob.subscriptions.post(subscription_for(receiver, f"users/{ANN}/events"))
    )
    own = graph.run(bob.subscriptions.post(subscription_for(receiver, "me/calendar/events")))
    Outlook(simulator.store, BOB).create_event(
        "Mine", datetime(2029, 1, 10, 9), datetime(2029, 1, 10, 10)
    )

    assert denied.response_status_code == 403
    assert receiver.wait_for(1)[0]["subscriptionId"] == own.id
    listed_by_app = graph.run(graph.app.subscriptions.get())
    assert own.id not in [s.id for s in listed_by_app.value]  # each caller sees its own
    graph.run(bob.subscriptions.by_subscription_id(own.id).delete())


def test_bad_subscription_requests_name_the_problem(
    graph: GraphSession, receiver: NotificationReceiver
) -> None:
    bad_change = subscription_for(receiver, f"users/{ANN}/events")
    bad_change.change_type = "created,moved"
    bad_resource = subscription_for(receiver, f"users/{ANN}/messages")

    change_error = odata_error(graph, graph.app.subscriptions.post(bad_change))
    resource_error = odata_error(graph, graph.app.subscriptions.post(bad_resource))

    assert change_error.response_status_code == 400
    assert "moved" in change_error.error.message
    assert resource_error.response_status_code == 400
    assert "messages" in resource_error.error.message
    assert receiver.validations == []  # refused before any handshake
