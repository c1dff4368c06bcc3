"""The Store contract every implementation honours: sessions, paging, leases, turns, layers.

Test modules import these tests; pytest then runs them with that module's `store`, `clock`
and `blob_dir` fixtures, so every store is held to exactly the same assertions.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from pathlib import Path

import pytest

from aigen.server.errors import InvalidArgument, NotFound, Reason
from aigen.server.store.base import Store
from aigen.server.store.blobs import blob_path
from aigen.server.store.records import (
    ImageRecord,
    LayerRecord,
    SessionConfigRecord,
    SessionRecord,
    TurnRecord,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def session(sid: str = "sess_a", project: str = "default", created_at: float = 100.0, **kw) -> SessionRecord:
    config = SessionConfigRecord(
        aspect_ratio="16:9", image_size="2K", provider="gemini", model="m1", fallback_chain=(("openai", "gpt"),)
    )
    return SessionRecord(
        session_id=sid,
        project=project,
        mode="layered",
        config=config,
        created_at=created_at,
        updated_at=created_at,
        **kw,
    )


def image(iid: str, sha: str, sid: str | None = "sess_a", kind: str = "image") -> ImageRecord:
    return ImageRecord(
        image_id=iid, sha256=sha, content_type="image/png", width=64, height=32, size_bytes=10,
        created_at=1.0, session_id=sid, kind=kind,
    )  # fmt: skip


def turn(tid: str, sid: str = "sess_a", kind: str = "generate", status: str = "completed", **kw) -> TurnRecord:
    return TurnRecord(turn_id=tid, session_id=sid, kind=kind, status=status, created_at=5.0, **kw)


def layer(lid: str, z: int, iid: str, sid: str = "sess_a") -> LayerRecord:
    return LayerRecord(
        layer_id=lid, session_id=sid, name=f"layer {z}", z_order=z, image_id=iid, bbox=(1, 2, 3, 4), coverage=0.5
    )


async def test_session_round_trip_and_project_scoping(store: Store) -> None:
    await store.create_session(session())
    assert await store.get_session("sess_a") == session()
    assert await store.get_session("sess_a", project="default") == session()
    assert await store.get_session("sess_a", project="") == session()
    for args in (("sess_missing",), ("sess_a", "other")):
        with pytest.raises(NotFound) as err:
            await store.get_session(*args)
        assert err.value.reason == Reason.ERROR_REASON_SESSION_NOT_FOUND
        assert err.value.message == f"session {args[0]} not found"


async def test_list_sessions_pages_newest_first_with_project_filter(store: Store) -> None:
    for n in range(7):
        await store.create_session(session(f"sess_p{n}", project="p", created_at=float(n // 2)))
        await store.create_session(session(f"sess_q{n}", project="q", created_at=float(n)))
    seen, token = [], ""
    while True:
        page = await store.list_sessions("p", 3, token)
        assert len(page.sessions) <= 3
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    # created_at ties (n // 2) are ordered by session_id descending.
    assert seen == ["sess_p6", "sess_p5", "sess_p4", "sess_p3", "sess_p2", "sess_p1", "sess_p0"]
    everything = await store.list_sessions(None, 0, "")
    assert len(everything.sessions) == 14 and everything.next_page_token == ""
    assert everything.sessions[0].session_id == "sess_q6"
    exact = await store.list_sessions("q", 7, "")
    assert len(exact.sessions) == 7 and exact.next_page_token == ""


async def test_list_sessions_page_size_defaults_and_clamps(store: Store) -> None:
    for n in range(501):
        await store.create_session(session(f"sess_{n:04d}", created_at=float(n)))
    assert len((await store.list_sessions(None, 0, "")).sessions) == 50
    assert len((await store.list_sessions(None, 10_000, "")).sessions) == 500
    assert len((await store.list_sessions(None, 1, "")).sessions) == 1
    with pytest.raises(InvalidArgument):
        await store.list_sessions(None, -1, "")


@pytest.mark.parametrize(
    "token",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"created_at": 1}').decode(),
        base64.urlsafe_b64encode(b'{"created_at": "x", "session_id": "s"}').decode(),
        base64.urlsafe_b64encode(b'{"created_at": 1, "session_id": 2}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
async def test_invalid_page_token(store: Store, token: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        await store.list_sessions(None, 10, token)
    assert err.value.field_violations[0][0] == "page_token"


async def test_generation_lease(store: Store, clock: Clock) -> None:
    await store.create_session(session())
    assert await store.try_begin_generation("sess_a", 60)
    busy = await store.get_session("sess_a")
    assert (busy.status, busy.busy_until) == ("generating", clock.now + 60)
    assert not await store.try_begin_generation("sess_a", 60)
    clock.now += 61
    assert await store.try_begin_generation("sess_a", 60)  # the expired lease is taken over
    await store.end_generation("sess_a")
    ready = await store.get_session("sess_a")
    assert (ready.status, ready.busy_until) == ("ready", 0.0)
    assert await store.try_begin_generation("sess_a", 60)
    with pytest.raises(NotFound):
        await store.try_begin_generation("sess_missing", 60)
    await store.end_generation("sess_missing")  # no-op


async def test_concurrent_begin_has_exactly_one_winner(store: Store) -> None:
    await store.create_session(session())
    results = await asyncio.gather(*(store.try_begin_generation("sess_a", 60) for _ in range(20)))
    assert results.count(True) == 1


async def test_cancelled_commit_is_all_or_nothing(store: Store) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    for step in range(30):
        task = asyncio.create_task(store.commit_turn(turn(f"t{step}"), [image(f"img_{step}", sha)], f"img_{step}"))
        for _ in range(step):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        turns = await store.list_turns("sess_a")
        turn_committed = any(t.turn_id == f"t{step}" for t in turns)
        try:
            await store.get_image(f"img_{step}")
            assert turn_committed
        except NotFound:
            assert not turn_committed
        assert (await store.get_session("sess_a")).turn_count == len(turns)


async def test_concurrent_commits_get_distinct_indexes(store: Store) -> None:
    await store.create_session(session())
    committed = await asyncio.gather(*(store.commit_turn(turn(f"t{n}")) for n in range(20)))
    assert sorted(t.index for t in committed) == list(range(1, 21))
    assert (await store.get_session("sess_a")).turn_count == 20


async def test_last_completed_turn(store: Store) -> None:
    await store.create_session(session())
    assert await store.last_completed_turn("sess_a") is None
    await store.commit_turn(turn("t1"))
    await store.commit_turn(turn("t2", kind="iterate"))
    await store.commit_turn(turn("t3", kind="iterate", status="failed"))
    await store.commit_turn(turn("t4", kind="separate"))
    await store.commit_turn(turn("t5", kind="lock"))
    last = await store.last_completed_turn("sess_a")
    assert (last.turn_id, last.index) == ("t2", 2)
    with pytest.raises(NotFound):
        await store.last_completed_turn("sess_missing")


async def test_set_layer_locked(store: Store) -> None:
    await store.create_session(session())
    await store.commit_turn(turn("t1", kind="separate"), layers=[layer("l0", 0, "img"), layer("l1", 1, "img")])
    locked = await store.set_layer_locked("sess_a", "l1", True, turn("t2", kind="lock", layer_id="l1"))
    assert locked == dataclasses.replace(layer("l1", 1, "img"), locked=True)
    assert [x.locked for x in await store.list_layers("sess_a")] == [False, True]
    unlocked = await store.set_layer_locked("sess_a", "l1", False, turn("t3", kind="unlock", layer_id="l1"))
    assert not unlocked.locked
    assert [(t.kind, t.index) for t in await store.list_turns("sess_a")] == [
        ("separate", 1),
        ("lock", 2),
        ("unlock", 3),
    ]

    with pytest.raises(NotFound) as err:
        await store.set_layer_locked("sess_a", "l_missing", True, turn("t4", kind="lock"))
    assert err.value.reason == Reason.ERROR_REASON_LAYER_NOT_FOUND
    assert (await store.get_session("sess_a")).turn_count == 3
    with pytest.raises(NotFound) as err:
        await store.set_layer_locked("sess_missing", "l0", True, turn("t5", "sess_missing", kind="lock"))
    assert err.value.reason == Reason.ERROR_REASON_SESSION_NOT_FOUND


async def test_delete_session_removes_everything_and_collects_unshared_blobs(store: Store, blob_dir: Path) -> None:
    await store.create_session(session("sess_a"))
    await store.create_session(session("sess_b"))
    shared = await store.write_blob(b"shared bytes")
    own = await store.write_blob(b"only in a")
    await store.commit_turn(
        turn("t1"), [image("img_1", shared), image("img_2", own)], "img_1", [layer("l0", 0, "img_2")]
    )
    await store.commit_turn(turn("t2", "sess_b"), [image("img_3", shared, "sess_b")], "img_3")

    await store.delete_session("sess_a")

    assert not blob_path(blob_dir, own).exists()
    assert await store.read_blob(shared) == b"shared bytes"
    for call in (store.get_session, store.list_turns, store.list_layers, store.delete_session):
        with pytest.raises(NotFound):
            await call("sess_a")
    for iid in ("img_1", "img_2"):
        with pytest.raises(NotFound):
            await store.get_image(iid)
    assert (await store.get_image("img_3")).sha256 == shared
    await store.delete_session("sess_b")
    assert not blob_path(blob_dir, shared).exists()
