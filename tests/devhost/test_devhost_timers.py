"""NCRONTAB schedules (units and a Hypothesis property) and timer functions firing in a runner."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import azure.functions as func
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devhost.hostconfig import HostConfig
from devhost.indexing import index_app
from devhost.invocation import EventLoopThread, Invoker
from devhost.ncrontab import CronSchedule, ScheduleError, next_occurrence
from devhost.runner import FunctionsRunner
from devhost.timer_triggers import TimerSchedule
from tests.waiting import wait_until


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("0 */5 * * * *", "2026-11-23T10:02:30", "2026-11-23T10:05:00"),
        ("0 */1 * * * *", "2026-11-23T10:05:00", "2026-11-23T10:06:00"),
        ("*/15 * * * * *", "2026-11-23T10:00:14.999", "2026-11-23T10:00:15"),
        ("* * * * * *", "2026-11-23T23:59:59.5", "2026-11-24T00:00:00"),
        ("5/15 * * * * *", "2026-11-23T10:00:21", "2026-11-23T10:00:35"),
        ("0 0 9 * * Mon-Fri", "2026-11-28T12:00:00", "2026-11-30T09:00:00"),
        ("0 0 9 * * 1-5", "2026-11-27T09:00:00", "2026-11-30T09:00:00"),
        ("0 0 9 * * Saturday", "2026-11-23T00:00:00", "2026-11-28T09:00:00"),
        ("0 30 9 1 Jan,jul *", "2026-11-23T00:00:00", "2027-01-01T09:30:00"),
        ("0 30 9 1 JANUARY,July *", "2027-01-01T09:30:00", "2027-07-01T09:30:00"),
        ("0 0 0 13 * Fri", "2026-03-14T00:00:00", "2026-11-13T00:00:00"),
        ("0 0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("0 15,45 8-10/2 * * *", "2026-11-23T08:46:00", "2026-11-23T10:15:00"),
        ("0 0 0 1 1 *", "2026-12-31T23:59:59", "2027-01-01T00:00:00"),
    ],
)
def test_next_occurrence(schedule: str, after: str, expected: str) -> None:
    assert next_occurrence(schedule, at(after)) == at(expected)


def test_fields_parse_to_the_values_the_host_would_use() -> None:
    parsed = CronSchedule.parse("5/15 0-10/5 1,2,20-22 */10 Feb-Apr Sun,6")
    assert parsed.seconds == {5, 20, 35, 50}
    assert parsed.minutes == {0, 5, 10}
    assert parsed.hours == {1, 2, 20, 21, 22}
    assert parsed.days == {1, 11, 21, 31}
    assert parsed.months == {2, 3, 4}
    assert parsed.weekdays == {0, 6}


def test_result_keeps_the_time_zone_of_after() -> None:
    after = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
    assert next_occurrence("0 0 * * * *", after).tzinfo is UTC


def test_schedule_that_can_never_fire_is_refused() -> None:
    with pytest.raises(ScheduleError, match="never fires"):
        next_occurrence("0 0 0 31 2 *", at("2026-01-01T00:00:00"))


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("0 */5 * * *", "6"),
        ("60 * * * * *", "second field"),
        ("* * 24 * * *", "hour field"),
        ("* * * 0 * *", "day field"),
        ("* * * * 13 *", "month field"),
        ("* * * * * 7", "day-of-week field"),
        ("*/0 * * * * *", "bad step"),
        ("5-1 * * * * *", "backwards"),
        ("* * * * Foo *", "month field"),
        ("1,,2 * * * * *", "empty"),
        ("x * * * * *", "second field"),
    ],
)
def test_invalid_schedules_name_the_problem(schedule: str, problem: str) -> None:
    with pytest.raises(ScheduleError, match=problem):
        CronSchedule.parse(schedule)


# --- property: the result is the first matching second after `after` -----------------------


def _field(low: int, high: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    value = st.integers(low, high).map(str)
    if names:
        value = value | st.sampled_from(names)
    number = st.integers(low, high)
    step = st.integers(1, max(1, (high - low) // 2 + 1))
    ranged = st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}")
    item = st.one_of(
        st.just("*"),
        step.map(lambda n: f"*/{n}"),
        value,
        ranged,
        st.tuples(ranged, step).map(lambda rs: f"{rs[0]}/{rs[1]}"),
        st.tuples(number, step).map(lambda ns: f"{ns[0]}/{ns[1]}"),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


schedules = st.tuples(
    _field(0, 59),
    _field(0, 59),
    _field(0, 23),
    _field(1, 28),  # days every month has, so every generated schedule can fire
    _field(1, 12, ["Jan", "mar", "JUNE", "Dec"]),
    _field(0, 6, ["Sun", "mon", "Friday"]),
).map(" ".join)

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)


def _first_match_between(
    parsed: CronSchedule, after: datetime, before: datetime
) -> datetime | None:
    """Brute force over the calendar: the first matching second in (after, before), if any."""
    day = after.date()
    while day <= before.date():
        if parsed.matches_date(day):
            for hour in sorted(parsed.hours):
                for minute in sorted(parsed.minutes):
                    for second in sorted(parsed.seconds):
                        moment = datetime(
                            day.year, day.month, day.day, hour, minute, second, tzinfo=UTC
                        )
                        if moment >= before:
                            return None
                        if moment > after:
                            return moment
        day += timedelta(days=1)
    return None


@settings(max_examples=120, deadline=None)
@given(schedule=schedules, after=moments)
def test_next_occurrence_is_the_first_matching_second_after(schedule: str, after: datetime) -> None:
    parsed = CronSchedule.parse(schedule)
    result = next_occurrence(parsed, after)
    assert result > after
    assert parsed.matches(result)
    assert _first_match_between(parsed, after, result) is None


def test_brute_force_oracle_finds_matches_it_should() -> None:
    # The property above relies on this oracle: check it can see a match.
    parsed = CronSchedule.parse("0 0 12 * * *")
    found = _first_match_between(parsed, at("2026-11-23T00:00:00"), at("2026-11-25T00:00:00"))
    assert found == at("2026-11-23T12:00:00")
    assert parsed.matches_date(date(2026, 11, 23))


# --- timers in a runner ---------------------------------------------------------------------


@pytest.fixture
def fired() -> list[tuple[str, bool, float]]:
    return []


def timer_app(fired: list[tuple[str, bool, float]]) -> func.FunctionApp:
    app = func.FunctionApp()

    @app.timer_trigger(schedule="%TEST_SCHEDULE%", arg_name="timer")
    def every_second(timer: func.TimerRequest) -> None:
        fired.append(("every_second", timer.past_due, time.time()))

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
    async def yearly(timer: func.TimerRequest) -> None:
        fired.append(("yearly", timer.past_due, time.time()))

    return app


def test_timer_functions_fire_on_schedule_and_on_startup(
    fired: list[tuple[str, bool, float]],
) -> None:
    runner = FunctionsRunner(
        timer_app(fired), HostConfig(), environ={"TEST_SCHEDULE": "* * * * * *"}
    )
    with runner:
        wait_until(lambda: sum(1 for name, _, _ in fired if name == "every_second") >= 2)
    names = [name for name, _, _ in fired]
    assert names.count("yearly") == 1  # on startup only
    seconds = [moment for name, _, moment in fired if name == "every_second"]
    # Each run lands on (just after) a whole second, one second apart.
    assert 0.7 < seconds[1] - seconds[0] < 1.3
    assert all(moment % 1 < 0.3 for moment in seconds)
    assert not any(past_due for _, past_due, _ in fired)


def test_a_late_run_is_marked_past_due() -> None:
    app = func.FunctionApp()
    seen: list[bool] = []
    done = threading.Event()

    @app.timer_trigger(schedule="* * * * * *", arg_name="timer")
    def tick(timer: func.TimerRequest) -> None:
        seen.append(timer.past_due)
        done.set()

    start = at("2026-11-23T10:00:00.5")
    readings = iter([start, start + timedelta(seconds=5)])

    def clock() -> datetime:
        # The machine "sleeps" for five seconds right after the schedule was computed.
        return next(readings, start + timedelta(seconds=5))

    loop = EventLoopThread()
    schedule = TimerSchedule(index_app(app).timer[0], {}, Invoker(loop, "."), clock)
    schedule.start()
    try:
        assert done.wait(5)
    finally:
        schedule.stop()
        loop.stop()
    assert seen == [True]
