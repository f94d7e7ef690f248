"""Queue triggers: polling Azure Storage queues (Azurite) with the host's semantics.

For every queueTrigger function, one poller thread (host.json ``extensions.queues``):
- receives up to ``batchSize`` messages at a time and runs them concurrently; fetches the next
  batch once no more than ``newBatchThreshold`` are still running;
- when a queue is empty, waits before polling again, doubling the wait up to
  ``maxPollingInterval``; any message resets the wait to the minimum;
- decodes the body from base64 (``messageEncoding``) and calls the function with an
  ``azure.functions.queue.QueueMessage`` (id, body, dequeue count, times, pop receipt);
- success → the message is deleted; the function raises → the message becomes visible again
  after ``visibilityTimeout``; the try that reaches ``maxDequeueCount`` fails → the message goes
  to ``<queue>-poison`` with its original body and is deleted from the queue. A message found
  already past ``maxDequeueCount`` (the runner died while running it) goes straight to poison.

While a message runs it stays invisible for the function timeout (host.json
``functionTimeout``), so a runner that dies mid-message gives it back after that.
A poller can be paused (:meth:`QueuePoller.pause`): it takes no new message until resumed,
as when another instance of the app is the one taking a queue's messages for a while.
Queue names may use ``%SETTING%`` expressions; the ``connection`` names the setting holding the
connection string (``AzureWebJobsStorage`` when empty). Queues are created when missing.

Each poller counts its completed polls and the messages they returned (``polls``, ``received``);
:meth:`QueuePoller.wait_for_polls` lets a test wait for polls to happen instead of sleeping.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueClient, QueueMessage, TextBase64EncodePolicy

from devhost.hostconfig import HostConfig, QueueOptions
from devhost.indexing import RegisteredFunction, SettingNotFound, resolve_setting_expressions
from devhost.invocation import InvocationTimer, Invoker, QueueOutput
from shared.observability import failure_summary

log = logging.getLogger("devhost")

DEFAULT_CONNECTION_SETTING = "AzureWebJobsStorage"
POISON_SUFFIX = "-poison"
# The host's floor for the idle back-off between polls.
MIN_POLLING_INTERVAL = 0.1


def connection_string_for(setting: str | None, environ: Mapping[str, str]) -> str:
    """The storage connection string a binding's ``connection`` setting names."""
    name = setting or DEFAULT_CONNECTION_SETTING
    value = environ.get(name)
    if not value:
        raise SettingNotFound(f"app setting {name!r} (a storage connection string) is not set")
    return value


def _ensure_queue(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


class PollingBackoff:
    """Waits between polls of an empty queue: doubling from 100 ms up to the maximum."""

    def __init__(self, max_interval: float) -> None:
        self.max_interval = max(max_interval, MIN_POLLING_INTERVAL)
        self._next = MIN_POLLING_INTERVAL

    def next_idle_wait(self) -> float:
        wait = self._next
        self._next = min(self._next * 2, self.max_interval)
        return wait

    def reset(self) -> None:
        """A message arrived: poll again at once, and quickly after that."""
        self._next = MIN_POLLING_INTERVAL


class QueueOutputSender:
    """Sends what queue output bindings collected, base64-encoded like the host."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._lock = threading.Lock()

    def send(self, outputs: list[QueueOutput]) -> None:
        for output in outputs:
            bodies = output.messages()
            if not bodies:
                continue
            queue_name = resolve_setting_expressions(
                str(output.binding["queueName"]), self._environ
            )
            connection = connection_string_for(output.binding.get("connection"), self._environ)
            client = self._client(connection, queue_name)
            for body in bodies:
                client.send_message(body)

    def _client(self, connection: str, queue_name: str) -> QueueClient:
        with self._lock:
            key = (connection, queue_name)
            if key not in self._clients:
                client = QueueClient.from_connection_string(
                    connection, queue_name, message_encode_policy=TextBase64EncodePolicy()
                )
                _ensure_queue(client)
                self._clients[key] = client
            return self._clients[key]


class QueuePoller:
    """Polls one queue for one queueTrigger function until stopped."""

    def __init__(
        self,
        function: RegisteredFunction,
        environ: Mapping[str, str],
        host_config: HostConfig,
        invoker: Invoker,
        output_sender: QueueOutputSender,
    ) -> None:
        self.function = function
        self.options: QueueOptions = host_config.queues
        self.queue_name = resolve_setting_expressions(str(function.trigger["queueName"]), environ)
        connection = connection_string_for(function.trigger.get("connection"), environ)
        # No decode policy: the raw text is what a poison message must carry unchanged.
        self._queue = QueueClient.from_connection_string(connection, self.queue_name)
        self._poison = QueueClient.from_connection_string(
            connection, self.queue_name + POISON_SUFFIX
        )
        self._lease_seconds = max(1, int(host_config.function_timeout))
        self._invoker = invoker
        self._output_sender = output_sender
        self._stop = threading.Event()
        self._resumed = threading.Event()
        self._resumed.set()
        self._receiving = threading.Lock()  # held while a poll receives
        self._polls = 0
        self._received = 0
        self._polled = threading.Condition()
        self._in_flight = 0
        self._slot_freed = threading.Condition()
        capacity = self.options.batch_size + self.options.effective_new_batch_threshold
        self._pool = ThreadPoolExecutor(capacity, thread_name_prefix=f"queue-{self.queue_name}")
        self._thread = threading.Thread(
            target=self._poll_until_stopped, name=f"devhost-poll-{self.queue_name}", daemon=True
        )

    def start(self) -> None:
        _ensure_queue(self._queue)
        self._thread.start()

    @property
    def polls(self) -> int:
        """Polls of the queue that completed (a failed receive is not counted)."""
        with self._polled:
            return self._polls

    @property
    def received(self) -> int:
        """Messages those polls returned, redeliveries included."""
        with self._polled:
            return self._received

    def wait_for_polls(self, more: int, timeout: float = 10.0) -> bool:
        """Wait until ``more`` further polls have completed; False when ``timeout`` passes first.
        A poll under way at the call counts, so "a poll that started after now" needs two."""
        with self._polled:
            target = self._polls + more
            return self._polled.wait_for(lambda: self._polls >= target, timeout)

    def pause(self) -> None:
        """Take no new message until :meth:`resume` (invocations under way go on). Returns
        once a poll under way has ended: a message sent after the call is left to others."""
        self._resumed.clear()
        with self._receiving:
            pass

    def resume(self) -> None:
        self._resumed.set()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop polling; unstarted messages are handed back (see ``_run_and_release``) and
        running ones get until ``timeout`` to finish. True when none is still running."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        with self._slot_freed:
            self._slot_freed.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
        self._pool.shutdown(wait=False)
        with self._slot_freed:
            while self._in_flight > 0 and (left := deadline - time.monotonic()) > 0:
                self._slot_freed.wait(left)
            running = self._in_flight
        if running:
            log.warning(
                "queue %s: %d invocation(s) still running at the end of the stop's grace "
                "period; not waiting for them (their messages come back after their "
                "visibility timeout)",
                self.queue_name,
                running,
            )
        return running == 0

    def _poll_until_stopped(self) -> None:
        backoff = PollingBackoff(self.options.max_polling_interval)
        threshold = self.options.effective_new_batch_threshold
        while not self._stop.is_set():
            with self._slot_freed:
                while self._in_flight > threshold and not self._stop.is_set():
                    self._slot_freed.wait(0.5)
            if self._stop.is_set():
                return
            if not self._resumed.is_set():
                self._resumed.wait(MIN_POLLING_INTERVAL)
                continue
            try:
                with self._receiving:
                    if not self._resumed.is_set():
                        continue
                    messages = list(
                        self._queue.receive_messages(
                            max_messages=self.options.batch_size,
                            messages_per_page=self.options.batch_size,
                            visibility_timeout=self._lease_seconds,
                        )
                    )
            except Exception as exc:
                # Whatever one poll meets (an outage, or os.environ changed by another thread
                # while the HTTP library read it: KeyError), the next poll is tried, as the
                # host's listener does: a poller that died would stop the queue for good.
                log.warning("polling queue %s failed: %s", self.queue_name, type(exc).__name__)
                messages = []
            else:
                with self._polled:
                    self._polls += 1
                    self._received += len(messages)
                    self._polled.notify_all()
            if messages:
                backoff.reset()
                for message in messages:
                    with self._slot_freed:
                        self._in_flight += 1
                    self._pool.submit(self._run_and_release, message)
                continue
            self._stop.wait(backoff.next_idle_wait())

    def _run_and_release(self, message: QueueMessage) -> None:
        try:
            if self._stop.is_set():
                # Received but not started before the runner stopped: hand it back at once
                # instead of leaving it invisible for the whole lease.
                self._queue.update_message(message.id, message.pop_receipt, visibility_timeout=0)
                return
            self.process(message)
        except Exception as error:
            log.error(
                "queue %s: message %s could not be settled: %s",
                self.queue_name,
                message.id,
                failure_summary(error),
            )
        finally:
            with self._slot_freed:
                self._in_flight -= 1
                self._slot_freed.notify_all()

    def _decode(self, content: str) -> bytes:
        if self.options.message_encoding == "base64":
            return base64.b64decode(content, validate=True)
        return content.encode("utf-8")

    def invoke(self, message: QueueMessage) -> None:
        """Run the function on one received message as the host hands it to the language
        worker (decoded, its queue outputs sent after), settling nothing: raises what the
        function raised."""
        try:
            body = self._decode(str(message.content))
        except (binascii.Error, ValueError) as exc:
            raise ValueError(
                f"message {message.id} is not valid base64 (messageEncoding is base64)"
            ) from exc
        outputs = [QueueOutput(binding) for binding in self.function.queue_outputs]
        self._invoker.call(self.function, self._functions_message(message, body), outputs)
        self._output_sender.send(outputs)

    def process(self, message: QueueMessage) -> None:
        """Run the function on one received message and settle it (delete, retry or poison)."""
        dequeue_count = int(message.dequeue_count or 1)
        max_count = self.options.max_dequeue_count
        raw = str(message.content)
        if dequeue_count > max_count:
            self._to_poison(message, raw)
            InvocationTimer(self.function.name, "queue").finish(
                f"poisoned before running (dequeued {dequeue_count} times)", logging.ERROR
            )
            return
        timer = InvocationTimer(self.function.name, "queue")
        try:
            self.invoke(message)
        except Exception as error:
            if dequeue_count >= max_count:
                self._to_poison(message, raw)
                log.error(
                    "queue %s: message %s failed its last try (%s), moved to %s",
                    self.queue_name,
                    message.id,
                    failure_summary(error),
                    self.queue_name + POISON_SUFFIX,
                )
                timer.finish(f"poisoned (try {dequeue_count}/{max_count})", logging.ERROR)
            else:
                log.warning(
                    "queue %s: message %s failed try %d/%d: %s",
                    self.queue_name,
                    message.id,
                    dequeue_count,
                    max_count,
                    failure_summary(error),
                )
                self._queue.update_message(
                    message.id,
                    message.pop_receipt,
                    visibility_timeout=int(self.options.visibility_timeout),
                )
                timer.finish(f"failed (try {dequeue_count}/{max_count})", logging.WARNING)
            return
        try:
            self._queue.delete_message(message.id, message.pop_receipt)
        except ResourceNotFoundError:
            # The lease ran out and another receive took it: the next run will see it again.
            log.warning("queue %s: message %s was gone before delete", self.queue_name, message.id)
        timer.finish("succeeded")

    def _to_poison(self, message: QueueMessage, raw: str) -> None:
        _ensure_queue(self._poison)
        self._poison.send_message(raw)
        self._queue.delete_message(message.id, message.pop_receipt)

    def _functions_message(self, message: QueueMessage, body: bytes) -> FunctionsQueueMessage:
        return FunctionsQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=int(message.dequeue_count or 1),
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
