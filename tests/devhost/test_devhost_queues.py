"""The local runner's queue triggers on Azurite: decode, delete on success, retry with a growing
dequeue count, poison after maxDequeueCount, batches, output bindings, idle back-off."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from devhost.hostconfig import HostConfig, QueueOptions
from devhost.indexing import SettingNotFound, resolve_setting_expressions
from devhost.queue_triggers import PollingBackoff
from devhost.runner import FunctionsRunner
from tests.waiting import wait_until

MAX_DEQUEUE = 3


@dataclass
class Seen:
    """What the queue function saw, shared with the test thread."""

    calls: list[tuple[str, int, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    most_running: int = 0

    def record(self, message: func.QueueMessage) -> None:
        assert isinstance(message, FunctionsQueueMessage)
        with self.lock:
            self.calls.append(
                (str(message.id), int(message.dequeue_count or 0), message.get_body())
            )

    def counts_for(self, body: bytes) -> list[int]:
        with self.lock:
            return [count for _, count, seen in self.calls if seen == body]


def fast_config(batch_size: int = 4) -> HostConfig:
    return HostConfig(
        route_prefix="api",
        function_timeout=30,
        queues=QueueOptions(
            batch_size=batch_size,
            new_batch_threshold=batch_size // 2,
            max_polling_interval=0.2,
            visibility_timeout=0,
            max_dequeue_count=MAX_DEQUEUE,
        ),
    )


def queue_app(seen: Seen, behaviour: Callable[[func.QueueMessage], None]) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="message", queue_name="%TEST_QUEUE%", connection="TestStorage")
    def work(message: func.QueueMessage) -> None:
        seen.record(message)
        behaviour(message)

    return app


@pytest.fixture
def queue_name(name_prefix: str) -> str:
    return f"{name_prefix}-work"


@pytest.fixture
def environ(storage_connection_string: str, queue_name: str) -> dict[str, str]:
    return {"TEST_QUEUE": queue_name, "TestStorage": storage_connection_string}


@pytest.fixture
def sender(storage_connection_string: str, queue_name: str) -> QueueClient:
    client = QueueClient.from_connection_string(
        storage_connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy()
    )
    client.create_queue()
    return client


def raw_client(connection: str, name: str) -> QueueClient:
    """No decode policy: shows the stored text (base64) as it is."""
    return QueueClient.from_connection_string(connection, name)


def queue_is_empty(client: QueueClient) -> bool:
    return client.get_queue_properties().approximate_message_count == 0


def queue_exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


@pytest.fixture
def run_app(environ: dict[str, str]) -> Iterator[Callable[[func.FunctionApp], FunctionsRunner]]:
    runners: list[FunctionsRunner] = []

    def start(app: func.FunctionApp, config: HostConfig | None = None) -> FunctionsRunner:
        runner = FunctionsRunner(app, config or fast_config(), environ=environ)
        runners.append(runner.start())
        return runner

    yield start
    for runner in runners:
        runner.stop()


def test_message_is_decoded_passed_with_metadata_and_deleted_after_success(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    sender: QueueClient,
) -> None:
    seen = Seen()
    messages: list[func.QueueMessage] = []
    poller = run_app(queue_app(seen, messages.append)).pollers[0]
    sent = sender.send_message('{"org": "dev", "appointmentId": "a-1"}')
    wait_until(lambda: len(seen.calls) == 1)
    wait_until(lambda: queue_is_empty(sender))
    message = messages[0]
    assert message.id == sent.id
    assert message.get_json() == {"org": "dev", "appointmentId": "a-1"}
    assert message.dequeue_count == 1
    assert message.insertion_time is not None
    assert message.pop_receipt
    # The second of two more polls started after the delete: a redelivery would be received.
    assert poller.wait_for_polls(2)
    assert poller.received == 1  # deleted, so never delivered again
    assert len(seen.calls) == 1


def test_failing_function_is_retried_then_the_message_goes_to_poison_with_its_body(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    sender: QueueClient,
    storage_connection_string: str,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="devhost")

    def always_fail(message: func.QueueMessage) -> None:
        raise RuntimeError(f"downstream refused {message.get_body().decode()}")

    seen = Seen()
    poller = run_app(queue_app(seen, always_fail)).pollers[0]
    body = '{"org": "dev", "appointmentId": "poisoned"}'
    sender.send_message(body)
    poison = raw_client(storage_connection_string, f"{queue_name}-poison")
    wait_until(lambda: queue_exists(poison) and not queue_is_empty(poison))
    assert seen.counts_for(body.encode()) == [1, 2, 3]

    def outcomes() -> list[str]:
        return [
            r.getMessage().split("outcome=")[1].split(" duration")[0]
            for r in caplog.records
            if r.getMessage().startswith("invocation function=work")
        ]

    wait_until(lambda: len(outcomes()) == 3)  # the last line follows the move to poison
    assert outcomes() == ["failed (try 1/3)", "failed (try 2/3)", "poisoned (try 3/3)"]
    assert not any("appointmentId" in r.getMessage() for r in caplog.records)  # no body in logs
    poisoned = list(poison.receive_messages())
    assert len(poisoned) == 1
    assert base64.b64decode(poisoned[0].content).decode() == body
    wait_until(lambda: queue_is_empty(sender))
    assert poller.wait_for_polls(2)  # as above: a fourth delivery would be received by now
    assert poller.received == 3
    assert seen.counts_for(body.encode()) == [1, 2, 3]


def test_function_that_recovers_before_the_last_try_is_not_poisoned(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    sender: QueueClient,
    storage_connection_string: str,
    queue_name: str,
) -> None:
    def fail_twice(message: func.QueueMessage) -> None:
        if (message.dequeue_count or 0) < 3:
            raise RuntimeError("not yet")

    seen = Seen()
    run_app(queue_app(seen, fail_twice))
    sender.send_message("recovering")
    wait_until(lambda: seen.counts_for(b"recovering") == [1, 2, 3])
    wait_until(lambda: queue_is_empty(sender))
    assert not queue_exists(raw_client(storage_connection_string, f"{queue_name}-poison"))


def test_visibility_timeout_delays_the_retry(
    run_app: Callable[..., FunctionsRunner],
    sender: QueueClient,
) -> None:
    def fail_first(message: func.QueueMessage) -> None:
        if message.dequeue_count == 1:
            raise RuntimeError("first try fails")

    seen = Seen()
    times: list[float] = []
    config = HostConfig(
        queues=QueueOptions(
            batch_size=4, max_polling_interval=0.2, visibility_timeout=1, max_dequeue_count=3
        )
    )

    def timed(message: func.QueueMessage) -> None:
        times.append(time.monotonic())
        fail_first(message)

    run_app(queue_app(seen, timed), config)
    sender.send_message("delayed")
    wait_until(lambda: len(times) == 2, timeout=15)
    assert times[1] - times[0] >= 0.8


def test_body_that_is_not_base64_is_never_passed_and_ends_in_poison(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    storage_connection_string: str,
    queue_name: str,
) -> None:
    seen = Seen()
    run_app(queue_app(seen, lambda message: None))
    raw_client(storage_connection_string, queue_name).send_message("not base64 at all!")
    poison = raw_client(storage_connection_string, f"{queue_name}-poison")
    wait_until(lambda: queue_exists(poison) and not queue_is_empty(poison))
    assert seen.calls == []
    assert [m.content for m in poison.receive_messages()] == ["not base64 at all!"]


def test_message_already_past_max_dequeue_count_goes_to_poison_without_running(
    storage_connection_string: str, queue_name: str, environ: dict[str, str]
) -> None:
    client = raw_client(storage_connection_string, queue_name)
    client.create_queue()
    client.send_message(base64.b64encode(b"crashed-host").decode())
    # Dequeue it MAX_DEQUEUE times without settling (as if the runner died each time).
    for _ in range(MAX_DEQUEUE):
        received = list(client.receive_messages(visibility_timeout=1))
        assert len(received) == 1
        client.update_message(received[0].id, received[0].pop_receipt, visibility_timeout=0)
    seen = Seen()
    with FunctionsRunner(queue_app(seen, lambda m: None), fast_config(), environ=environ):
        poison = raw_client(storage_connection_string, f"{queue_name}-poison")
        wait_until(lambda: queue_exists(poison) and not queue_is_empty(poison))
    assert seen.calls == []


def test_a_batch_runs_concurrently_within_batch_size_plus_threshold(
    run_app: Callable[..., FunctionsRunner],
    sender: QueueClient,
) -> None:
    seen = Seen()

    def slow(message: func.QueueMessage) -> None:
        with seen.lock:
            seen.running += 1
            seen.most_running = max(seen.most_running, seen.running)
        time.sleep(0.3)
        with seen.lock:
            seen.running -= 1

    for number in range(10):
        sender.send_message(f"m{number}")
    run_app(queue_app(seen, slow), fast_config(batch_size=4))
    wait_until(lambda: len(seen.calls) == 10)
    wait_until(lambda: queue_is_empty(sender))
    assert 2 <= seen.most_running <= 4 + 2


def test_a_paused_runner_leaves_new_messages_to_another_instance_until_resumed(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    sender: QueueClient,
) -> None:
    seen = Seen()
    runner = run_app(queue_app(seen, lambda m: None))
    poller = runner.pollers[0]
    assert poller.wait_for_polls(1)
    with runner.queues_paused():
        sent = sender.send_message("while paused")
        # Another instance takes it (the paused runner did not), then gives it back.
        [taken] = list(sender.receive_messages(max_messages=1, visibility_timeout=30))
        assert taken.id == sent.id
        sender.update_message(taken.id, taken.pop_receipt, visibility_timeout=0)
        [again] = list(sender.receive_messages(max_messages=1, visibility_timeout=30))
        assert again.id == sent.id
        sender.update_message(again.id, again.pop_receipt, visibility_timeout=0)
        assert seen.calls == []
    wait_until(lambda: seen.counts_for(b"while paused") == [3])
    wait_until(lambda: queue_is_empty(sender))


def test_queue_output_binding_sends_base64_messages_after_success(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    sender: QueueClient,
    storage_connection_string: str,
    environ: dict[str, str],
    queue_name: str,
) -> None:
    environ["TEST_OUT_QUEUE"] = f"{queue_name}-out"
    app = func.FunctionApp()

    @app.queue_trigger(arg_name="message", queue_name="%TEST_QUEUE%", connection="TestStorage")
    @app.queue_output(arg_name="out", queue_name="%TEST_OUT_QUEUE%", connection="TestStorage")
    def forward(message: func.QueueMessage, out: func.Out[str]) -> None:
        out.set(message.get_body().decode().upper())

    run_app(app)
    sender.send_message("forward me")
    out = raw_client(storage_connection_string, f"{queue_name}-out")
    wait_until(lambda: queue_exists(out) and not queue_is_empty(out))
    assert [base64.b64decode(m.content) for m in out.receive_messages()] == [b"FORWARD ME"]


def test_missing_setting_in_queue_name_is_named_at_start(storage_connection_string: str) -> None:
    app = queue_app(Seen(), lambda message: None)
    with pytest.raises(LookupError, match="TEST_QUEUE"):
        FunctionsRunner(app, fast_config(), environ={"TestStorage": storage_connection_string})


def test_idle_backoff_doubles_up_to_the_maximum_and_resets_on_activity() -> None:
    backoff = PollingBackoff(max_interval=1.0)
    waits = [backoff.next_idle_wait() for _ in range(6)]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_idle_wait() == 0.1


def test_setting_expressions_resolve_from_the_environment_and_empty_counts_as_missing() -> None:
    environ = {"PREFIX": "calbridge-", "EMPTY": ""}
    assert resolve_setting_expressions("%PREFIX%mailbox-sync", environ) == "calbridge-mailbox-sync"
    assert resolve_setting_expressions("plain-name", environ) == "plain-name"
    with pytest.raises(SettingNotFound, match="EMPTY"):
        resolve_setting_expressions("%EMPTY%work", environ)
    with pytest.raises(SettingNotFound, match="ABSENT"):
        resolve_setting_expressions("%ABSENT%work", environ)


def test_a_poll_that_fails_in_any_way_does_not_end_the_queues_polling(
    run_app: Callable[[func.FunctionApp], FunctionsRunner],
    sender: QueueClient,
) -> None:
    seen = Seen()
    poller = run_app(queue_app(seen, lambda message: None)).pollers[0]
    receive = poller._queue.receive_messages
    # A reply the SDK cannot parse, a dropped connection, os.environ changed by another thread
    # while the HTTP library read it.
    failures = [
        ValueError("a reply the SDK cannot parse"),
        ConnectionResetError(),
        KeyError("PYTEST_CURRENT_TEST"),
    ]

    def failing_receive(**kwargs: object) -> object:
        if failures:
            raise failures.pop(0)
        return receive(**kwargs)  # type: ignore[arg-type]

    poller._queue.receive_messages = failing_receive  # type: ignore[method-assign,assignment]
    sender.send_message("after the failures")
    wait_until(lambda: seen.counts_for(b"after the failures") == [1])
    assert failures == []
