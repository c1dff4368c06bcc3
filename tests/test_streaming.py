"""Streaming generations: cadence, estimated vs measured progress, fallback, terminal events."""

from __future__ import annotations

import time

import grpc
import pytest
from providers import Fail, ScriptedProvider, SlowProvider, Succeed, profile
from server_harness import running_server, unpack_status

from aigen.server.errors import ProviderRejected, ProviderUnavailable
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

Phase = types_pb2.GenerationEvent.Phase
Outcome = types_pb2.AttemptOutcome


async def _session(h) -> str:
    return (await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))).session_id


async def _collect(call) -> tuple[list[types_pb2.GenerationEvent], list[float], float]:
    """Every event with its arrival time; also when the call was made."""
    started = time.monotonic()
    events, arrivals = [], []
    async for event in call:
        events.append(event)
        arrivals.append(time.monotonic())
    assert await call.code() == grpc.StatusCode.OK
    return events, arrivals, started


def _assert_terminal(events: list[types_pb2.GenerationEvent], phase: int) -> types_pb2.GenerationEvent:
    terminal = [e for e in events if e.phase in (Phase.PHASE_COMPLETED, Phase.PHASE_FAILED)]
    assert len(terminal) == 1
    assert events[-1] is terminal[0]
    assert events[-1].phase == phase
    return events[-1]


async def test_stream_generate_sends_estimated_progress_every_second(tmp_path):
    slow = SlowProvider("alpha", seconds=2.5, model_profiles=[profile("alpha", "alpha-1", typical_latency_s=2.0)])
    async with running_server(tmp_path, [slow]) as h:
        sid = await _session(h)
        call = h.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="slow planet"))
        events, arrivals, started = await _collect(call)

        gaps = [b - a for a, b in zip([started, *arrivals], arrivals, strict=False)]
        assert max(gaps) < 1.0, gaps
        assert arrivals[-1] - started >= 2.4
        assert events[0].phase == Phase.PHASE_QUEUED
        running = [e for e in events if e.phase == Phase.PHASE_RUNNING]
        assert len(running) >= 4
        assert all(e.percent_estimated for e in running)
        percents = [e.percent for e in running]
        assert percents == sorted(percents)
        assert 0 <= percents[0] < percents[-1] < 100
        assert all(e.attempt.provider == "alpha" and e.attempt.model == "alpha-1" for e in running)
        assert all(e.attempt.outcome == Outcome.ATTEMPT_OUTCOME_UNSPECIFIED for e in running)
        elapsed = [e.elapsed.ToNanoseconds() for e in events]
        assert elapsed == sorted(elapsed)
        times = [e.time.ToNanoseconds() for e in events]
        assert times == sorted(times)
        assert abs(times[-1] / 1e9 - time.time()) < 5
        running_times = [e.time.ToNanoseconds() for e in running]
        assert len(set(running_times)) == len(running_times)  # sub-second resolution

        completed = _assert_terminal(events, Phase.PHASE_COMPLETED)
        result = completed.result
        assert completed.percent == 100
        assert (result.provider, result.model, result.session_id) == ("alpha", "alpha-1", sid)
        assert result.image_id and result.data and result.turn_id
        assert [a.outcome for a in result.attempts] == [Outcome.ATTEMPT_OUTCOME_SUCCEEDED]
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.current_image.image_id == result.image_id
        assert session.status == "ready"


async def test_stream_reports_measured_progress_when_the_provider_does(tmp_path):
    slow = SlowProvider(
        "alpha",
        seconds=1.2,
        report_every=0.2,
        measured=True,
        model_profiles=[profile("alpha", "alpha-1", reports_progress=True)],
    )
    async with running_server(tmp_path, [slow]) as h:
        call = h.generation.StreamGenerateImage(gen_pb2.GenerateImageRequest(prompt="measured"))
        events, _, _ = await _collect(call)
        running = [e for e in events if e.phase == Phase.PHASE_RUNNING]
        measured = [e for e in running if not e.percent_estimated]
        assert len(measured) >= 4
        first = running.index(measured[0])
        assert all(not e.percent_estimated for e in running[first:])
        assert any(e.percent > 50 for e in measured)
        assert any(e.message == "working" for e in measured)
        result = _assert_terminal(events, Phase.PHASE_COMPLETED).result
        assert result.session_id == ""
        assert result.data


async def test_stream_announces_a_fallback(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderUnavailable("alpha down"), delay=0.1)])
    beta = SlowProvider("beta", seconds=0.6)
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")]) as h:
        sid = await _session(h)
        call = h.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        events, _, _ = await _collect(call)
        phases = [e.phase for e in events]
        assert Phase.PHASE_FALLBACK in phases
        fallback = events[phases.index(Phase.PHASE_FALLBACK)]
        assert (fallback.attempt.provider, fallback.attempt.model) == ("beta", "beta-1")
        assert fallback.attempt.chain_position == 1
        before = [e for e in events[: phases.index(Phase.PHASE_FALLBACK)] if e.phase == Phase.PHASE_RUNNING]
        assert before and all(e.attempt.provider == "alpha" for e in before)
        result = _assert_terminal(events, Phase.PHASE_COMPLETED).result
        assert (result.fallback_used.provider, result.original_request.provider) == ("beta", "alpha")
        assert Phase.PHASE_PERSISTING in phases


async def test_stream_iterate_completes_with_the_result(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Succeed(), Succeed(delay=0.8)])
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        first = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        call = h.generation.StreamIterate(gen_pb2.IterateRequest(session_id=sid, instructions="y"))
        events, _, _ = await _collect(call)
        assert events[0].phase == Phase.PHASE_QUEUED
        assert any(e.phase == Phase.PHASE_RUNNING for e in events)
        result = _assert_terminal(events, Phase.PHASE_COMPLETED).result
        assert result.turn_id
        assert alpha.calls[1].source_image.data == first.data
        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        assert [t.kind for t in history.turns] == [gen_pb2.Turn.KIND_GENERATE, gen_pb2.Turn.KIND_ITERATE]
        assert history.turns[1].image.image_id == result.image_id


async def test_stream_failure_ends_with_a_failed_event_not_a_grpc_error(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Fail(ProviderRejected("bad prompt"), delay=0.2)])
    beta = ScriptedProvider("beta")
    async with running_server(tmp_path, [alpha, beta], fallback_chain=[("beta", "beta-1")]) as h:
        sid = await _session(h)
        call = h.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        events, _, _ = await _collect(call)
        failed = _assert_terminal(events, Phase.PHASE_FAILED)
        assert not failed.HasField("result")
        details = unpack_status(failed.error, grpc.StatusCode.INVALID_ARGUMENT, failed.error.message)
        assert failed.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert details.reason == "PROVIDER_REJECTED"
        assert [(a.provider, a.outcome) for a in details.attempts] == [("alpha", Outcome.ATTEMPT_OUTCOME_FAILED)]
        assert beta.calls == []
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.status == "ready"

        alpha.script = [Fail(ProviderUnavailable("down"))]
        beta.script = [Fail(ProviderRejected("also bad"))]
        call = h.generation.StreamGenerateImage(
            gen_pb2.GenerateImageRequest(prompt="x", fallback=[types_pb2.ModelRef(provider="alpha")])
        )
        events, _, _ = await _collect(call)
        failed = _assert_terminal(events, Phase.PHASE_FAILED)
        assert failed.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
        details = unpack_status(failed.error, grpc.StatusCode.UNAVAILABLE, failed.error.message)
        assert details.reason == "PROVIDER_UNAVAILABLE"
        assert len(details.attempts) == 1


async def test_stream_validation_errors_are_grpc_errors_before_any_event(tmp_path):
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        call = h.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id="sess_missing", prompt="x"))
        events = []
        try:
            async for event in call:
                events.append(event)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("expected NOT_FOUND")
        assert events == []

        call = h.generation.StreamGenerateImage(gen_pb2.GenerateImageRequest(prompt=""))
        try:
            async for _ in call:
                raise AssertionError("no event expected")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.no_server
async def test_a_waiting_progress_event_gives_way_to_a_newer_one():
    from aigen.server.services.generation import _Outbox

    outbox = _Outbox()
    queued = types_pb2.GenerationEvent(phase=Phase.PHASE_QUEUED)
    older, newer = (types_pb2.GenerationEvent(phase=Phase.PHASE_RUNNING, percent=p) for p in (10.0, 20.0))
    preview = types_pb2.GenerationEvent(phase=Phase.PHASE_RUNNING, preview=types_pb2.Image(data=b"png"))
    latest = types_pb2.GenerationEvent(phase=Phase.PHASE_RUNNING, percent=30.0)
    for event in (queued, older, newer, preview, latest, None):
        outbox.put(event)

    assert [await outbox.get() for _ in range(5)] == [queued, newer, preview, latest, None]
