"""The progress reporter keeps a stream alive from its first attempt to its terminal event.

Ticks are checked against a clock the test moves, one scan at a time, as the ticker's timer
would run it; one test lets the real timer run.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from aigen.server import progress
from aigen.server.progress import SCAN_S, TICK_S, ProgressReporter, next_scan
from aigen.v1 import types_pb2

Phase = types_pb2.GenerationEvent.Phase
pytestmark = pytest.mark.no_server

ATTEMPT = types_pb2.Attempt(provider="openai", model="gpt-image", attempt_number=1)


class Clock:
    """Stands in for the `time` module inside aigen.server.progress."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return time.time_ns()


@pytest.fixture
def clock(monkeypatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress, "time", fake)
    return fake


def later(clock: Clock, seconds: float) -> None:
    """Move the clock on and let the ticker look, as its next scan would."""
    clock.now += seconds
    progress._ticker().tick_quiet()


def phases(events: list[types_pb2.GenerationEvent]) -> list[str]:
    return [Phase.Name(event.phase) for event in events]


async def test_ticks_while_the_provider_works_and_while_the_image_is_stored(clock):
    events: list[types_pb2.GenerationEvent] = []
    reporter = ProgressReporter(events.append)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    assert phases(events) == ["PHASE_RUNNING"]
    later(clock, TICK_S - 0.01)
    assert len(events) == 1  # not quiet long enough yet
    later(clock, 0.01)
    later(clock, TICK_S)
    assert phases(events) == ["PHASE_RUNNING"] * 3
    assert events[-1].attempt == ATTEMPT and events[-1].percent_estimated
    assert events[-1].elapsed.ToTimedelta().total_seconds() == pytest.approx(2 * TICK_S)

    reporter.stop_attempt()
    reporter.event(Phase.PHASE_PERSISTING, "storing the image")
    events.clear()
    later(clock, TICK_S)
    later(clock, TICK_S)
    assert phases(events) == ["PHASE_PERSISTING"] * 2

    reporter.event(Phase.PHASE_COMPLETED, "completed")
    events.clear()
    later(clock, 4 * TICK_S)
    assert events == []  # nothing after the terminal event


async def test_ticks_between_attempts_say_so(clock):
    events: list[types_pb2.GenerationEvent] = []
    reporter = ProgressReporter(events.append)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    reporter.stop_attempt()  # failed; the next attempt waits for its backoff
    events.clear()
    later(clock, TICK_S)
    assert phases(events) == ["PHASE_RUNNING"]
    assert events[0].message == "waiting for the next attempt"
    reporter.close()


async def test_a_closed_reporter_gets_no_more_ticks(clock):
    events: list[types_pb2.GenerationEvent] = []
    reporter = ProgressReporter(events.append)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    reporter.close()  # the caller went away
    events.clear()
    later(clock, 4 * TICK_S)
    assert events == []


async def test_the_timer_ticks_on_its_own():
    events: list[types_pb2.GenerationEvent] = []
    third = asyncio.Event()

    def emit(event: types_pb2.GenerationEvent) -> None:
        events.append(event)
        if len(events) == 3:
            third.set()

    reporter = ProgressReporter(emit)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    try:
        await asyncio.wait_for(third.wait(), 10)
    finally:
        reporter.close()
    assert phases(events) == ["PHASE_RUNNING"] * 3


def test_scans_stay_on_their_grid_and_skip_the_slots_a_busy_loop_missed():
    assert next_scan(10.0, 10.0) == pytest.approx(10.0 + SCAN_S)
    assert next_scan(10.0, 10.0 + 0.3 * SCAN_S) == pytest.approx(10.0 + SCAN_S)  # late: not pushed back
    assert next_scan(10.0, 10.0 + 2.5 * SCAN_S) == pytest.approx(10.0 + 3 * SCAN_S)  # two slots missed
    assert next_scan(10.0, 10.0 - 0.001) == pytest.approx(10.0 + SCAN_S)  # a timer firing early
