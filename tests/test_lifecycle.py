"""Deadlines, cancellation, busy sessions, restarts and the request size cap."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import duration_pb2
from providers import Hang, ScriptedProvider, Succeed, png_bytes
from server_harness import expect_error, running_server, wait_ready

from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

Phase = types_pb2.GenerationEvent.Phase
Outcome = types_pb2.AttemptOutcome
Turn = gen_pb2.Turn
MiB = 1024 * 1024


async def _session(h) -> str:
    return (await h.sessions.CreateSession(session_pb2.CreateSessionRequest(project="p"))).session_id


async def _history(h, sid: str, count: int, within: float = 5.0) -> list[gen_pb2.Turn]:
    """The history once it holds `count` turns (a cancelled turn is recorded just after the call ends)."""
    async with asyncio.timeout(within):
        while True:
            history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
            if len(history.turns) >= count:
                return list(history.turns)
            await asyncio.sleep(0.02)


async def test_client_deadline_shorter_than_the_provider(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang(), Succeed()])
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        error = await expect_error(
            h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"), timeout=1.5)
        )
        assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
        await alpha.wait_cancelled()
        await wait_ready(h, sid)
        turns = await _history(h, sid, 1)
        assert turns[0].status == Turn.STATUS_CANCELLED
        assert [(a.provider, a.outcome) for a in turns[0].attempts] == [("alpha", Outcome.ATTEMPT_OUTCOME_CANCELLED)]

        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="again"))
        assert result.provider == "alpha"
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.current_image.image_id == result.image_id


async def test_request_timeout_shorter_than_the_provider(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang(), Succeed()])
    timeout = duration_pb2.Duration()
    timeout.FromMilliseconds(1500)  # room to reach the provider on a loaded machine; it hangs anyway
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        error = await expect_error(
            h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x", timeout=timeout))
        )
        assert error.code == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.reason == "DEADLINE_EXCEEDED"
        assert [(a.provider, a.outcome) for a in error.attempts] == [("alpha", Outcome.ATTEMPT_OUTCOME_CANCELLED)]
        assert error.attempts[0].reason == types_pb2.ERROR_REASON_DEADLINE_EXCEEDED
        assert len(alpha.cancelled) == 1
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.status == "ready"
        turns = await _history(h, sid, 1)
        assert turns[0].status == Turn.STATUS_CANCELLED
        assert [a.outcome for a in turns[0].attempts] == [Outcome.ATTEMPT_OUTCOME_CANCELLED]
        assert (await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="y"))).image_id


async def test_cancelling_a_stream_cancels_the_provider(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Hang(), Succeed()])
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        call = h.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        async for event in call:
            if event.phase == Phase.PHASE_RUNNING:
                break
        busy = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert busy.status == "generating"
        call.cancel()

        await alpha.wait_cancelled()
        assert len(alpha.cancelled) == 1
        await wait_ready(h, sid)
        turns = await _history(h, sid, 1)
        assert turns[0].status == Turn.STATUS_CANCELLED
        assert turns[0].kind == Turn.KIND_GENERATE
        assert [a.outcome for a in turns[0].attempts] == [Outcome.ATTEMPT_OUTCOME_CANCELLED]

        result = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="again"))
        assert result.image_id
        turns = await _history(h, sid, 2)
        assert [t.status for t in turns] == [Turn.STATUS_CANCELLED, Turn.STATUS_COMPLETED]


async def test_cancelling_a_unary_call_cancels_the_provider(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Succeed(), Hang(), Succeed()])
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        call = h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="y"))
        await alpha.wait_called(2)
        call.cancel()
        await alpha.wait_cancelled()
        await wait_ready(h, sid)
        turns = await _history(h, sid, 2)
        assert [(t.kind, t.status) for t in turns] == [
            (Turn.KIND_GENERATE, Turn.STATUS_COMPLETED),
            (Turn.KIND_ITERATE, Turn.STATUS_CANCELLED),
        ]
        assert (await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="z"))).image_id


async def test_a_second_generation_on_a_busy_session_is_aborted(tmp_path):
    alpha = ScriptedProvider("alpha", script=[Succeed(), Hang(), Succeed()])
    async with running_server(tmp_path, [alpha]) as h:
        sid = await _session(h)
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x"))
        running = h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="slow"))
        await alpha.wait_called(2)

        for call in (
            h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="again")),
            h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="again")),
        ):
            error = await expect_error(call)
            assert error.code == grpc.StatusCode.ABORTED
            assert error.reason == "SESSION_BUSY"
        stream = h.generation.StreamGenerate(gen_pb2.GenerateRequest(session_id=sid, prompt="again"))
        try:
            async for _ in stream:
                raise AssertionError("no event expected")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.ABORTED
        assert len(alpha.calls) == 2
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.status == "generating"
        error = await expect_error(h.sessions.DeleteSession(session_pb2.DeleteSessionRequest(session_id=sid)))
        assert error.code == grpc.StatusCode.ABORTED

        other = await _session(h)
        assert (await h.generation.Generate(gen_pb2.GenerateRequest(session_id=other, prompt="free"))).image_id

        running.cancel()
        await alpha.wait_cancelled()
        await wait_ready(h, sid)
        assert (await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions="now"))).image_id


async def test_sessions_history_and_images_survive_a_restart(tmp_path):
    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        first = await _session(h)
        second = await _session(h)
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=first, prompt="one"))
        await h.generation.Iterate(gen_pb2.IterateRequest(session_id=first, instructions="two", aspect_ratio="16:9"))
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=second, prompt="three", aspect_ratio="9:16"))
        loose = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="loose", image_size="512"))
        before = {}
        for sid in (first, second):
            session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
            history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
            before[sid] = (session, history)
        image_ids = [t.image.image_id for _, history in before.values() for t in history.turns] + [loose.image_id]
        blobs = {
            image_id: (await h.images.GetImage(image_pb2.GetImageRequest(image_id=image_id))).data
            for image_id in image_ids
        }
        listed = await h.sessions.ListSessions(session_pb2.ListSessionsRequest())

    async with running_server(tmp_path, [ScriptedProvider("alpha")]) as h:
        for sid, (session, history) in before.items():
            assert await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid)) == session
            assert await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid)) == history
        for image_id, data in blobs.items():
            body = await h.images.GetImage(image_pb2.GetImageRequest(image_id=image_id))
            assert body.data == data
            assert body.content_type == "image/png"
        assert await h.sessions.ListSessions(session_pb2.ListSessionsRequest()) == listed
        assert before[first][0].turn_count == 2
        result = await h.generation.Iterate(gen_pb2.IterateRequest(session_id=first, instructions="after"))
        assert result.image_id


async def test_a_request_over_the_size_cap_is_invalid_argument(tmp_path):
    big = types_pb2.ImageData(data=b"\0" * (MiB + MiB // 4), mime_type="image/png")
    async with running_server(tmp_path, [ScriptedProvider("alpha")], max_message_bytes=MiB) as h:
        sid = await _session(h)
        for call in (
            h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x", reference_image_data=[big])),
            h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="x", reference_image_data=[big])),
        ):
            error = await expect_error(call)
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert error.reason == "PAYLOAD_TOO_LARGE"
            assert error.fields == ("request",)
            assert str(MiB) in error.message
        stream = h.generation.StreamGenerateImage(gen_pb2.GenerateImageRequest(prompt="x", reference_image_data=[big]))
        try:
            async for _ in stream:
                raise AssertionError("no event expected")
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

        small = types_pb2.ImageData(data=png_bytes(64, 64))
        ok = await h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x", reference_image_data=[small]))
        assert ok.image_id


async def test_a_request_far_over_the_size_cap_is_invalid_argument(tmp_path):
    far_too_big = types_pb2.ImageData(data=b"\0" * (3 * MiB))
    async with running_server(tmp_path, [ScriptedProvider("alpha")], max_message_bytes=MiB) as h:
        error = await expect_error(
            h.generation.GenerateImage(gen_pb2.GenerateImageRequest(prompt="x", reference_image_data=[far_too_big]))
        )
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
