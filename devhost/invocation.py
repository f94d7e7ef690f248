"""Calling a registered function's user code the way the Python worker does.

The trigger object goes in under its binding name; a ``context`` parameter, when the function
declares one, gets a :class:`InvocationContext`; each ``queue`` output binding gets a
:class:`QueueOutput` (or takes the return value when bound to ``$return``). Coroutine functions
run on one shared event loop (as in the worker, so clients cached across invocations stay on
their loop); plain functions run in the calling thread.

Every invocation logs exactly one line: function, trigger, outcome and duration. Never bodies;
a failure is logged by exception type and location only (``failure_summary``, the rule the
app's own invocation scope uses too).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import azure.functions as func
from azure.functions._abc import RetryContext, TraceContext

from devhost.indexing import RegisteredFunction

log = logging.getLogger("devhost")

T = TypeVar("T")


class EventLoopThread:
    """One asyncio loop on a daemon thread for every coroutine function the runner calls."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="devhost-asyncio", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the loop; True when its thread ended within ``timeout`` (a coroutine that
        blocks the loop keeps it, and is abandoned: the thread is a daemon)."""
        if self._loop.is_closed():
            return True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=max(0.0, timeout))
        if self._thread.is_alive():
            return False
        self._loop.close()
        return True


class _TraceContext(TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The ``context`` argument: invocation id, function name and directory."""

    _thread_local = threading.local

    def __init__(self, function_name: str, function_directory: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = _TraceContext()
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._thread_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceContext:
        return self._trace

    @property
    def retry_context(self) -> RetryContext:
        return self._retry


class QueueOutput(func.Out[Any]):
    """A queue output binding: collects what the function sets, sent after it succeeds."""

    def __init__(self, binding: dict[str, Any]) -> None:
        self.binding = binding
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value

    def messages(self) -> list[str]:
        """The bodies to send: a str, bytes, or a list of them (one message each)."""
        value = self._value
        if value is None:
            return []
        items = value if isinstance(value, list | tuple) else [value]
        bodies = []
        for item in items:
            if isinstance(item, bytes):
                bodies.append(item.decode("utf-8"))
            elif isinstance(item, func.QueueMessage):
                bodies.append(item.get_body().decode("utf-8"))
            else:
                bodies.append(str(item))
        return bodies


class Invoker:
    """Calls user functions (sync or async) with the worker's argument conventions."""

    def __init__(self, loop: EventLoopThread, function_directory: str) -> None:
        self._loop = loop
        self._function_directory = function_directory

    def call(
        self,
        function: RegisteredFunction,
        trigger_value: Any,
        outputs: list[QueueOutput] | None = None,
    ) -> Any:
        """Run the user function; returns its return value (exceptions propagate)."""
        arguments: dict[str, Any] = {str(function.trigger["name"]): trigger_value}
        parameters = inspect.signature(function.user_function).parameters
        if "context" in parameters and "context" not in arguments:
            arguments["context"] = InvocationContext(function.name, self._function_directory)
        for output in outputs or []:
            name = str(output.binding["name"])
            if name != "$return":
                arguments[name] = output
        user_function: Callable[..., Any] = function.user_function
        if inspect.iscoroutinefunction(user_function):
            result = self._loop.run(user_function(**arguments))
        else:
            result = user_function(**arguments)
        for output in outputs or []:
            if output.binding["name"] == "$return":
                output.set(result)
        return result


class InvocationTimer:
    """Measures one invocation and writes its single log line."""

    def __init__(self, function_name: str, trigger: str) -> None:
        self.function_name = function_name
        self.trigger = trigger
        self._started = time.perf_counter()

    def finish(self, outcome: str, level: int = logging.INFO) -> float:
        duration_ms = (time.perf_counter() - self._started) * 1000
        log.log(
            level,
            "invocation function=%s trigger=%s outcome=%s duration_ms=%.1f",
            self.function_name,
            self.trigger,
            outcome,
            duration_ms,
        )
        return duration_ms
