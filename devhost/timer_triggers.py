"""Timer triggers: each timerTrigger function fires on its NCRONTAB schedule (in UTC).

``%SETTING%`` expressions in the schedule are resolved from the environment. ``runOnStartup``
fires once when the runner starts. The function gets an ``azure.functions.timer.TimerRequest``
whose ``past_due`` says the run started noticeably later than scheduled (a slow previous run or
a suspended machine). As in the host, missed occurrences are not caught up one by one: after a
run, the next occurrence is computed from the current time. A failing run is logged; the
schedule goes on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from azure.functions.timer import TimerRequest

from devhost.indexing import RegisteredFunction, resolve_setting_expressions
from devhost.invocation import InvocationTimer, Invoker
from devhost.ncrontab import CronSchedule, next_occurrence
from shared.observability import failure_summary

log = logging.getLogger("devhost")

# A run starting this much later than its scheduled second counts as past due.
PAST_DUE_AFTER_SECONDS = 1.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TimerSchedule:
    """Runs one timerTrigger function on its schedule until stopped."""

    def __init__(
        self,
        function: RegisteredFunction,
        environ: Mapping[str, str],
        invoker: Invoker,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.function = function
        self.schedule = CronSchedule.parse(
            resolve_setting_expressions(str(function.trigger["schedule"]), environ)
        )
        self.run_on_startup = bool(function.trigger.get("runOnStartup", False))
        self._invoker = invoker
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run_until_stopped, name=f"devhost-timer-{function.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop firing; True when no invocation is still running after ``timeout``."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(0.0, timeout))
        if self._thread.is_alive():
            log.warning(
                "timer %s: an invocation is still running at the end of the stop's grace "
                "period; not waiting for it",
                self.function.name,
            )
            return False
        return True

    def _run_until_stopped(self) -> None:
        if self.run_on_startup:
            self.fire(past_due=False)
        due = next_occurrence(self.schedule, self._clock())
        while not self._stop.is_set():
            wait = (due - self._clock()).total_seconds()
            if wait > 0:
                # Short waits keep the clock honest after a suspend and stop fast.
                self._stop.wait(min(wait, 1.0))
                continue
            self.fire(past_due=-wait > PAST_DUE_AFTER_SECONDS)
            due = next_occurrence(self.schedule, max(due, self._clock()))

    def fire(self, past_due: bool) -> None:
        timer = InvocationTimer(self.function.name, "timer")
        request = TimerRequest(
            past_due=past_due,
            schedule={"AdjustForDST": True},
            schedule_status={},
        )
        try:
            self._invoker.call(self.function, request)
        except Exception as error:
            log.error("function %s raised %s", self.function.name, failure_summary(error))
            timer.finish("failed", logging.ERROR)
            return
        timer.finish("succeeded (past due)" if past_due else "succeeded")
