"""A generation cut off by a crash is recorded as an "interrupted" turn.

Both stores keep what a lease is for (the pending generation) until the lease ends; a lease
found expired (taken over, or freed when a store opens) records it as an interrupted turn,
once. The server-level drill kill -9s an embedded server mid-generation and restarts it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import store_modes
from fakes.openai import FakeOpenAI
from postgres_harness import PostgresServer
from test_drills import ServerProcess, channel_to

from aigen.server.store.base import INTERRUPTED_ERROR, Store
from aigen.server.store.blobs import LocalBlobs
from aigen.server.store.postgres import PostgresStore
from aigen.server.store.records import SessionConfigRecord, SessionRecord, TurnRecord
from aigen.server.store.sqlite import SqliteStore
from aigen.v1 import generation_service_pb2, generation_service_pb2_grpc, session_service_pb2, session_service_pb2_grpc

PENDING = {
    "kind": "generate",
    "text": "a lighthouse at dusk",
    "requested_provider": "gemini",
    "requested_model": "m1",
    "aspect_ratio": "16:9",
    "image_size": "2K",
}
ITERATE = {**PENDING, "kind": "iterate", "text": "make it night", "requested_provider": "openai"}
CONFIG = SessionConfigRecord(aspect_ratio="16:9", provider="gemini", model="m1", fallback_chain=(("openai", "gpt"),))


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", "postgres"])
async def make_store(request, tmp_path: Path, clock: Clock) -> AsyncIterator[Callable[[], Store]]:
    """A factory of stores on one database: each call is a (re)started process's store."""
    if request.param == "sqlite":
        yield lambda: SqliteStore(tmp_path, clock=clock)
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    dsn = await server.create_database()
    try:
        yield lambda: PostgresStore(dsn, LocalBlobs(tmp_path / "blobs"), clock=clock)
    finally:
        await server.drop_database(dsn)


@pytest.fixture
async def store(make_store: Callable[[], Store]) -> AsyncIterator[Store]:
    s = make_store()
    await s.open()
    yield s
    await s.close()


def session(sid: str = "sess_a") -> SessionRecord:
    return SessionRecord(
        session_id=sid, project="default", mode="single", config=CONFIG, created_at=1.0, updated_at=1.0
    )


def assert_interrupted(turn: TurnRecord, pending: dict, index: int) -> None:
    assert (turn.kind, turn.status, turn.index) == (pending["kind"], "interrupted", index)
    text = pending["text"]
    assert (turn.prompt, turn.instructions) == ((text, "") if pending["kind"] == "generate" else ("", text))
    assert (turn.requested_provider, turn.requested_model) == (
        pending["requested_provider"],
        pending["requested_model"],
    )
    assert (turn.aspect_ratio, turn.image_size) == (pending["aspect_ratio"], pending["image_size"])
    assert (turn.served_provider, turn.image_id, turn.credits_used, turn.attempts) == ("", None, 0, ())
    assert turn.error == INTERRUPTED_ERROR


# Stores ----------------------------------------------------------------------------------------
async def test_restart_after_a_crash_records_the_interrupted_generation_once(
    make_store: Callable[[], Store], clock: Clock
) -> None:
    crashed = make_store()
    await crashed.open()
    await crashed.create_session(session())
    await crashed.create_session(session("sess_b"))
    await crashed.commit_turn(TurnRecord(turn_id="turn_1", session_id="sess_a", kind="generate", status="completed",
                                         created_at=2.0, prompt="first"))  # fmt: skip
    assert await crashed.try_begin_generation("sess_a", 60, PENDING)
    assert await crashed.try_begin_generation("sess_b", 60, ITERATE)
    busy = await crashed.get_session("sess_a")
    assert (busy.status, busy.config) == ("generating", CONFIG)  # the pending generation is not a setting
    await crashed.close()  # the process died: nobody ends the leases
    clock.now += 61
    for _ in range(2):  # a second restart finds nothing more to record
        restarted = make_store()
        await restarted.open()
        try:
            first, interrupted = await restarted.list_turns("sess_a")
            assert (first.turn_id, first.status) == ("turn_1", "completed")
            assert_interrupted(interrupted, PENDING, index=2)
            assert interrupted.created_at == clock.now
            (other,) = await restarted.list_turns("sess_b")
            assert_interrupted(other, ITERATE, index=1)
            ready = await restarted.get_session("sess_a")
            assert (ready.status, ready.busy_until, ready.turn_count, ready.config) == ("ready", 0.0, 2, CONFIG)
            assert await restarted.last_completed_turn("sess_a") == first
            assert await restarted.try_begin_generation("sess_a", 60)
            await restarted.end_generation("sess_a")
        finally:
            await restarted.close()


async def test_a_generation_that_ends_leaves_no_interrupted_turn(
    make_store: Callable[[], Store], store: Store, clock: Clock
) -> None:
    await store.create_session(session())
    assert await store.try_begin_generation("sess_a", 60, PENDING)
    await store.end_generation("sess_a")
    assert (await store.get_session("sess_a")).config == CONFIG
    clock.now += 61
    assert await store.try_begin_generation("sess_a", 1)  # a lease without a pending generation
    clock.now += 2
    assert await store.try_begin_generation("sess_a", 60, PENDING)  # took over; nothing was pending
    await store.end_generation("sess_a")
    clock.now += 61
    restarted = make_store()
    await restarted.open()
    try:
        assert await restarted.list_turns("sess_a") == []
        assert (await restarted.get_session("sess_a")).turn_count == 0
    finally:
        await restarted.close()


async def test_an_expired_lease_taken_over_records_the_interrupted_turn_once(store: Store, clock: Clock) -> None:
    await store.create_session(session())
    assert await store.try_begin_generation("sess_a", 5, PENDING)
    assert not await store.try_begin_generation("sess_a", 60, ITERATE)  # still held
    assert await store.list_turns("sess_a") == []
    clock.now += 6
    results = await asyncio.gather(*(store.try_begin_generation("sess_a", 60, ITERATE) for _ in range(10)))
    assert results.count(True) == 1
    (interrupted,) = await store.list_turns("sess_a")
    assert_interrupted(interrupted, PENDING, index=1)
    await store.end_generation("sess_a")  # the new generation finished
    assert await store.try_begin_generation("sess_a", 60, PENDING)
    await store.end_generation("sess_a")
    assert len(await store.list_turns("sess_a")) == 1
    assert (await store.get_session("sess_a")).turn_count == 1


async def test_deleting_a_generating_session_forgets_its_pending_generation(store: Store, clock: Clock) -> None:
    await store.create_session(session())
    assert await store.try_begin_generation("sess_a", 5, PENDING)
    await store.delete_session("sess_a")
    await store.end_generation("sess_a")  # no-op
    await store.create_session(session())
    assert await store.try_begin_generation("sess_a", 60, ITERATE)
    await store.end_generation("sess_a")
    assert await store.list_turns("sess_a") == []


async def test_a_live_lease_survives_another_replica_opening(postgres: PostgresServer, tmp_path: Path) -> None:
    dsn = await postgres.create_database()
    live = PostgresStore(dsn, LocalBlobs(tmp_path / "blobs"))
    await live.open()
    try:
        await live.create_session(session())
        assert await live.try_begin_generation("sess_a", 3600, PENDING)
        other = PostgresStore(dsn, LocalBlobs(tmp_path / "blobs"))
        await other.open()
        await other.close()
        assert await live.list_turns("sess_a") == []
        assert (await live.get_session("sess_a")).status == "generating"
    finally:
        await live.close()
        await postgres.drop_database(dsn)


# Server ----------------------------------------------------------------------------------------
# In the shared mode a dead server's leases are freed once they run out: keep them short there.
SHARED_LEASE_S = 3.0


@pytest.mark.both_stores
async def test_killed_server_shows_the_interrupted_generation_after_restart(tmp_path: Path, store_mode: str) -> None:
    data_dir = tmp_path / "data"
    Turn = generation_service_pb2.Turn
    shared = store_mode == store_modes.SHARED
    async with FakeOpenAI() as fake:
        env = {
            "OPENAI_API_KEY": "crash-key",
            "OPENAI_BASE_URL": fake.base_url,
            "AIGEN_DEFAULT_PROVIDER": "openai",
            "AIGEN_DEFAULT_MODEL": "gpt-image",
            "AIGEN_FALLBACK_CHAIN": "[]",
            "AIGEN_LOCAL_FALLBACK": "never",
            "AIGEN_RETRY_ATTEMPTS": "0",
            **store_modes.environment(data_dir),
        }
        if shared:
            env |= {"AIGEN_GENERATION_TIMEOUT_S": str(SHARED_LEASE_S), "AIGEN_LEASE_MARGIN_S": "0"}
        server = ServerProcess(data_dir, env, tmp_path / "server.log")
        await server.start()
        try:
            async with channel_to(server.port) as channel:
                sessions = session_service_pb2_grpc.SessionServiceStub(channel)
                generation = generation_service_pb2_grpc.GenerationServiceStub(channel)
                create = session_service_pb2.CreateSessionRequest(project="crash")
                generating, iterating = [(await sessions.CreateSession(create)).session_id for _ in range(2)]
                await generation.Generate(
                    generation_service_pb2.GenerateRequest(session_id=iterating, prompt="a harbour"), timeout=60
                )
                fake.slow(120.0).slow(120.0)
                leases_end = time.monotonic() + SHARED_LEASE_S
                calls = [
                    asyncio.ensure_future(
                        generation.Generate(
                            generation_service_pb2.GenerateRequest(session_id=generating, prompt="a lighthouse"),
                            timeout=180,
                        )
                    ),
                    asyncio.ensure_future(
                        generation.Iterate(
                            generation_service_pb2.IterateRequest(session_id=iterating, instructions="at night"),
                            timeout=180,
                        )
                    ),
                ]
                async with asyncio.timeout(60):
                    await fake.wait_for_requests(3)
                await server.kill()
                outcomes = await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await server.stop()
        assert all(isinstance(outcome, grpc.aio.AioRpcError) for outcome in outcomes)
        if shared:
            await asyncio.sleep(max(0.0, leases_end - time.monotonic()))

        restarted = ServerProcess(data_dir, env, tmp_path / "server.log")
        await restarted.start()
        try:
            async with channel_to(restarted.port) as channel:
                sessions = session_service_pb2_grpc.SessionServiceStub(channel)
                generation = generation_service_pb2_grpc.GenerationServiceStub(channel)
                history = generation_service_pb2.GetHistoryRequest
                (turn,) = (await generation.GetHistory(history(session_id=generating))).turns
                assert (turn.index, turn.kind, turn.status) == (1, Turn.KIND_GENERATE, Turn.STATUS_INTERRUPTED)
                assert (turn.prompt, turn.requested.provider, turn.requested.model) == (
                    "a lighthouse",
                    "openai",
                    "gpt-image",
                )
                assert not turn.HasField("image")
                done, cut = (await generation.GetHistory(history(session_id=iterating))).turns
                assert (done.kind, done.status) == (Turn.KIND_GENERATE, Turn.STATUS_COMPLETED)
                assert (cut.index, cut.kind, cut.status) == (2, Turn.KIND_ITERATE, Turn.STATUS_INTERRUPTED)
                assert (cut.instructions, cut.prompt, cut.requested.provider) == ("at night", "", "openai")
                for session_id in (generating, iterating):
                    got = await sessions.GetSession(session_service_pb2.GetSessionRequest(session_id=session_id))
                    assert got.status == "ready"
                # The session is usable again, and the interrupted iterate did not replace its image.
                assert got.current_image.image_id == done.image.image_id
                result = await generation.Iterate(
                    generation_service_pb2.IterateRequest(session_id=iterating, instructions="at dawn"), timeout=60
                )
                assert result.image_id
                assert len((await generation.GetHistory(history(session_id=iterating))).turns) == 3
        finally:
            await restarted.stop()
