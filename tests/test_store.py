"""SqliteStore against a real database and blob directory under tmp_path."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_contract import (  # noqa: F401 - the shared contract tests run with this module's fixtures
    Clock,
    image,
    layer,
    session,
    test_cancelled_commit_is_all_or_nothing,
    test_concurrent_begin_has_exactly_one_winner,
    test_concurrent_commits_get_distinct_indexes,
    test_delete_session_removes_everything_and_collects_unshared_blobs,
    test_generation_lease,
    test_invalid_page_token,
    test_last_completed_turn,
    test_list_sessions_page_size_defaults_and_clamps,
    test_list_sessions_pages_newest_first_with_project_filter,
    test_session_round_trip_and_project_scoping,
    test_set_layer_locked,
    turn,
)

from aigen.server.errors import NotFound, Reason
from aigen.server.store.blobs import BLOB_PIN_S
from aigen.server.store.records import (
    AttemptRecord,
)
from aigen.server.store.sqlite import SCHEMA_VERSION, SqliteStore


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path, clock=clock)
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def blob_dir(tmp_path: Path) -> Path:
    """Where the store keeps blob files."""
    return tmp_path / "blobs"


def blob_path(root: Path, sha: str) -> Path:
    return root / "blobs" / sha[:2] / sha[2:4] / sha


# Sessions -------------------------------------------------------------------------------------


# Generation lease ------------------------------------------------------------------------------


# Blobs and images ------------------------------------------------------------------------------
async def test_blobs_are_content_addressed_and_idempotent(store: SqliteStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000
    sha = await store.write_blob(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert await store.write_blob(data) == sha
    assert blob_path(tmp_path, sha).read_bytes() == data
    assert await store.read_blob(sha) == data
    assert [p.name for p in blob_path(tmp_path, sha).parent.iterdir()] == [sha]  # no temp files left
    for missing in ("0" * 64, "../../aigen.db"):
        with pytest.raises(NotFound) as err:
            await store.read_blob(missing)
        assert err.value.reason == Reason.ERROR_REASON_IMAGE_NOT_FOUND


async def test_images(store: SqliteStore) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"png")
    await store.insert_image(image("img_1", sha, kind="export"))
    await store.insert_image(image("img_2", sha, sid=None))
    assert await store.get_image("img_1") == image("img_1", sha, kind="export")
    assert await store.get_image("img_2") == image("img_2", sha, sid=None)
    with pytest.raises(NotFound) as err:
        await store.get_image("img_missing")
    assert err.value.reason == Reason.ERROR_REASON_IMAGE_NOT_FOUND
    with pytest.raises(NotFound):
        await store.insert_image(image("img_3", sha, sid="sess_missing"))


async def test_blob_written_before_commit_survives_collection(store: SqliteStore, tmp_path: Path) -> None:
    await store.create_session(session("sess_a"))
    await store.create_session(session("sess_b"))
    sha = await store.write_blob(b"same bytes")
    await store.commit_turn(turn("t1"), [image("img_1", sha)])
    pending = await store.write_blob(b"same bytes")  # a second generation produced identical bytes
    await store.delete_session("sess_a")  # drops the only reference while sess_b's commit is pending
    assert blob_path(tmp_path, pending).exists()
    await store.commit_turn(turn("t2", "sess_b"), [image("img_2", pending, "sess_b")], "img_2")
    await store.delete_session("sess_b")
    assert not blob_path(tmp_path, sha).exists()


async def test_unreferenced_pinned_blob_is_collected_on_close(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.create_session(session())
    sha = await store.write_blob(b"x")
    await store.commit_turn(turn("t1"), [image("img_1", sha)])
    await store.write_blob(b"x")  # written again, never committed
    await store.delete_session("sess_a")
    assert blob_path(tmp_path, sha).exists()
    await store.close()
    assert not blob_path(tmp_path, sha).exists()


# Turns and layers ------------------------------------------------------------------------------
async def test_commit_turn(store: SqliteStore, clock: Clock) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    attempts = (
        AttemptRecord("gemini", "m1", 1, 0, outcome=2, reason=4, error="503", duration_s=1.5),
        AttemptRecord("openai", "gpt", 1, 1, outcome=1),
    )
    first = turn(
        "t1", prompt="a cat", attempts=attempts, degradations=("size",), provider_state=b"\x00\x01",
        image_id="img_1", served_provider="openai", credits_used=3,
    )  # fmt: skip
    clock.now = 200.0
    committed = await store.commit_turn(first, [image("img_1", sha)], "img_1")
    assert committed == dataclasses.replace(first, index=1)
    clock.now = 300.0
    layers = [layer("l1", 1, "img_1"), layer("l0", 0, "img_1")]
    second = await store.commit_turn(turn("t2", kind="separate"), layers=layers)
    assert second.index == 2

    s = await store.get_session("sess_a")
    assert (s.turn_count, s.layer_count, s.current_image_id, s.updated_at) == (2, 2, "img_1", 300.0)
    assert await store.list_turns("sess_a") == [committed, second]
    assert [x.layer_id for x in await store.list_layers("sess_a")] == ["l0", "l1"]
    await store.commit_turn(turn("t3", kind="separate"), layers=[layer("l9", 0, "img_1")])
    assert [x.layer_id for x in await store.list_layers("sess_a")] == ["l9"]
    assert (await store.get_session("sess_a")).layer_count == 1


async def test_commit_turn_for_deleted_session_writes_nothing(store: SqliteStore) -> None:
    await store.create_session(session())
    await store.delete_session("sess_a")
    sha = await store.write_blob(b"orphan")
    with pytest.raises(NotFound):
        await store.commit_turn(turn("t1"), [image("img_1", sha)], "img_1", [layer("l0", 0, "img_1")])
    with pytest.raises(NotFound):
        await store.get_image("img_1")


async def test_commit_turn_failing_midway_rolls_back(store: SqliteStore) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    await store.commit_turn(turn("t1"), [image("img_1", sha)], "img_1", [layer("l0", 0, "img_1")])
    before = await store.get_session("sess_a")
    # The images insert fine, then the duplicate turn id fails: nothing may remain.
    with pytest.raises(sqlite3.IntegrityError):
        await store.commit_turn(turn("t1"), [image("img_2", sha)], "img_2", [layer("l5", 0, "img_2")])
    assert await store.get_session("sess_a") == before
    with pytest.raises(NotFound):
        await store.get_image("img_2")
    assert [x.layer_id for x in await store.list_layers("sess_a")] == ["l0"]
    assert [t.turn_id for t in await store.list_turns("sess_a")] == ["t1"]
    assert (await store.commit_turn(turn("t2"))).index == 2  # the connection is still usable


# Restart ---------------------------------------------------------------------------------------
async def test_everything_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    store = SqliteStore(tmp_path, clock=clock)
    await store.open()
    await store.create_session(session("sess_a"))
    await store.create_session(session("sess_b", created_at=200.0))
    sha = await store.write_blob(b"persisted")
    t1 = await store.commit_turn(
        turn("t1", provider_state=b"state"), [image("img_1", sha)], "img_1", [layer("l0", 0, "img_1")]
    )
    assert await store.try_begin_generation("sess_a", 3600)
    before = [await store.get_session("sess_a"), await store.get_session("sess_b")]
    await store.close()

    reopened = SqliteStore(tmp_path, clock=clock)
    await reopened.open()
    try:
        after = await reopened.get_session("sess_a")
        assert after == dataclasses.replace(before[0], status="ready", busy_until=0.0)
        assert await reopened.get_session("sess_b") == before[1]
        assert await reopened.list_turns("sess_a") == [t1]
        assert await reopened.list_layers("sess_a") == [layer("l0", 0, "img_1")]
        assert await reopened.read_blob((await reopened.get_image("img_1")).sha256) == b"persisted"
        assert await reopened.try_begin_generation("sess_a", 60)
    finally:
        await reopened.close()

    with sqlite3.connect(tmp_path / "aigen.db") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "aigen.db") as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        await SqliteStore(tmp_path).open()


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with pytest.raises(RuntimeError, match="not open"):
        await store.get_session("sess_a")
    await store.close()  # closing an unopened store is harmless


# Orphans ---------------------------------------------------------------------------------------
def _age(path: Path, seconds: float) -> None:
    """Set `path`'s modification time `seconds` in the past."""
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


async def test_a_restart_collects_old_orphans_and_keeps_everything_else(tmp_path: Path, clock: Clock) -> None:
    store = SqliteStore(tmp_path, clock=clock)
    await store.open()
    await store.create_session(session("sess_a"))
    kept = await store.write_blob(b"committed")
    await store.commit_turn(turn("t1"), [image("img_1", kept)], "img_1")
    orphan = await store.write_blob(b"written, never committed")  # what a crash leaves behind
    young = await store.write_blob(b"written just now")
    await store.close()
    paths = {sha: blob_path(tmp_path, sha) for sha in (kept, orphan, young)}
    temp = paths[orphan].parent / ".tmp-unfinished"
    temp.write_bytes(b"half a blob")
    for path in (paths[kept], paths[orphan], temp):
        _age(path, BLOB_PIN_S + 60)

    reopened = SqliteStore(tmp_path, clock=clock)
    await reopened.open()
    try:
        await reopened._orphan_sweep
        assert not paths[orphan].exists()
        assert not temp.exists()
        assert paths[young].exists()  # it may still be on its way to a commit (another writer)
        assert await reopened.read_blob(kept) == b"committed"
    finally:
        await reopened.close()


async def test_orphan_sweep_leaves_foreign_files_alone(tmp_path: Path, clock: Clock) -> None:
    blobs = tmp_path / "blobs"
    foreign = [blobs / "README", blobs / "ab" / "cd" / "notes.txt", blobs / "zz" / "zz" / ("0" * 64)]
    misplaced = blobs / "ab" / "cd" / hashlib.sha256(b"elsewhere").hexdigest()
    for path in (*foreign, misplaced):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not ours")
        _age(path, BLOB_PIN_S + 60)
    store = SqliteStore(tmp_path, clock=clock)
    await store.open()
    try:
        await store._orphan_sweep
        assert all(path.exists() for path in (*foreign, misplaced))
    finally:
        await store.close()
