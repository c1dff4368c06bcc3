"""The progress reporter keeps a stream alive from its first attempt to its terminal event."""

from __future__ import annotations

import asyncio

import pytest

from aigen.server import progress
from aigen.server.progress import ProgressReporter
from aigen.v1 import types_pb2

Phase = types_pb2.GenerationEvent.Phase
pytestmark = pytest.mark.no_server

ATTEMPT = types_pb2.Attempt(provider="openai", model="gpt-image", attempt_number=1)


def phases(events: list[types_pb2.GenerationEvent]) -> list[str]:
    return [Phase.Name(event.phase) for event in events]


async def quiet_for(ticks: float) -> None:
    await asyncio.sleep(progress.TICK_S * ticks + progress.SCAN_S * 2)


async def test_ticks_while_the_provider_works_and_while_the_image_is_stored():
    events: list[types_pb2.GenerationEvent] = []
    reporter = ProgressReporter(events.append)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    await quiet_for(1)
    assert phases(events) == ["PHASE_RUNNING", "PHASE_RUNNING"]
    assert events[-1].attempt == ATTEMPT and events[-1].percent_estimated

    reporter.stop_attempt()
    reporter.event(Phase.PHASE_PERSISTING, "storing the image")
    events.clear()
    await quiet_for(2)
    assert len(events) >= 2 and set(phases(events)) == {"PHASE_PERSISTING"}

    reporter.event(Phase.PHASE_COMPLETED, "completed")
    events.clear()
    await quiet_for(2)
    assert events == []  # nothing after the terminal event


async def test_ticks_between_attempts_say_so():
    events: list[types_pb2.GenerationEvent] = []
    reporter = ProgressReporter(events.append)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    reporter.stop_attempt()  # failed; the next attempt waits for its backoff
    events.clear()
    await quiet_for(1)
    assert phases(events) == ["PHASE_RUNNING"]
    assert events[0].message == "waiting for the next attempt"
    reporter.close()


async def test_a_closed_reporter_gets_no_more_ticks():
    events: list[types_pb2.GenerationEvent] = []
    reporter = ProgressReporter(events.append)
    reporter.start_attempt(ATTEMPT, expected_s=30.0, fallback=False)
    reporter.close()  # the caller went away
    events.clear()
    await quiet_for(2)
    assert events == []
