"""PostgresStore against a real PostgreSQL server (tests/postgres_harness.py) and file blobs.

The same contract as tests/test_store.py (SqliteStore), plus what only a shared database
has: several replicas racing for a session's lease, and restarts beside live replicas.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
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
from aigen.server.store.blobs import LocalBlobs, blob_path
from aigen.server.store.postgres import PostgresStore
from aigen.server.store.records import (
    AttemptRecord,
    CredentialRecord,
    ProjectRecord,
    UsageRecord,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def blob_root(tmp_path: Path) -> Path:
    return tmp_path / "blobs"


@pytest.fixture
def blob_dir(blob_root: Path) -> Path:
    """Where the store's blobs keep their files."""
    return blob_root


@pytest.fixture
async def store(dsn: str, blob_root: Path, clock: Clock) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(dsn, LocalBlobs(blob_root), clock=clock)
    await s.open()
    yield s
    await s.close()


def usage(day: str = "2026-01-01", images: int = 1, credits: int = 3) -> UsageRecord:
    return UsageRecord("default", day, "gemini", "m1", "owner_pays", images=images, credits=credits)


# Sessions -------------------------------------------------------------------------------------


# Generation lease ------------------------------------------------------------------------------


# Replicas --------------------------------------------------------------------------------------
async def _replicas(dsn: str, root: Path, count: int = 2) -> list[PostgresStore]:
    """Stores on one database and one blob directory, on the database's clock, opened together."""
    stores = [PostgresStore(dsn, LocalBlobs(root), pool_size=12) for _ in range(count)]
    await asyncio.gather(*(s.open() for s in stores))  # concurrent migrations apply once
    return stores


async def test_replicas_racing_for_a_session_have_exactly_one_winner(dsn: str, blob_root: Path) -> None:
    replicas = await _replicas(dsn, blob_root)
    try:
        for n in range(10):
            await replicas[0].create_session(session(f"sess_{n}"))
            attempts = [replica.try_begin_generation(f"sess_{n}", 60) for replica in replicas for _ in range(10)]
            results = await asyncio.gather(*attempts)
            assert results.count(True) == 1, results
            assert (await replicas[1].get_session(f"sess_{n}")).status == "generating"
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


async def test_an_expired_lease_passes_to_another_replica(dsn: str, blob_root: Path, clock: Clock) -> None:
    first, second = (PostgresStore(dsn, LocalBlobs(blob_root), clock=clock) for _ in range(2))
    await asyncio.gather(first.open(), second.open())
    try:
        await first.create_session(session())
        assert await first.try_begin_generation("sess_a", 5)
        assert not await second.try_begin_generation("sess_a", 60)
        clock.now += 4.9
        assert not await second.try_begin_generation("sess_a", 60)
        clock.now += 0.2  # past the lease's end
        assert await second.try_begin_generation("sess_a", 60)
        assert not await first.try_begin_generation("sess_a", 60)
    finally:
        await first.close()
        await second.close()


async def test_reopening_releases_only_expired_leases(dsn: str, blob_root: Path) -> None:
    live, crashed = await _replicas(dsn, blob_root)
    await live.create_session(session("sess_held"))
    await live.create_session(session("sess_dead"))
    assert await live.try_begin_generation("sess_held", 3600)  # a live replica still generates
    assert await crashed.try_begin_generation("sess_dead", 0.3)  # its replica was killed
    await crashed.close()
    await asyncio.sleep(0.4)
    restarted = PostgresStore(dsn, LocalBlobs(blob_root))
    await restarted.open()
    try:
        held = await restarted.get_session("sess_held")
        assert held.status == "generating" and held.busy_until > 0
        dead = await restarted.get_session("sess_dead")
        assert (dead.status, dead.busy_until) == ("ready", 0.0)
        assert not await restarted.try_begin_generation("sess_held", 60)
        assert await restarted.try_begin_generation("sess_dead", 60)
    finally:
        await restarted.close()
        await live.close()


async def test_a_pin_from_another_replica_protects_its_blob(dsn: str, blob_root: Path) -> None:
    deleting, writing = await _replicas(dsn, blob_root)
    try:
        await deleting.create_session(session("sess_a"))
        await deleting.create_session(session("sess_b"))
        sha = await deleting.write_blob(b"same bytes")
        await deleting.commit_turn(turn("t1"), [image("img_1", sha)])
        assert await writing.write_blob(b"same bytes") == sha  # pending in the other replica
        await deleting.delete_session("sess_a")
        assert blob_path(blob_root, sha).exists()
        await writing.commit_turn(turn("t2", "sess_b"), [image("img_2", sha, "sess_b")], "img_2")
        await deleting.delete_session("sess_b")
        assert not blob_path(blob_root, sha).exists()
    finally:
        await deleting.close()
        await writing.close()


async def test_concurrent_writes_and_deletes_of_identical_bytes_never_lose_a_committed_blob(
    dsn: str, blob_root: Path
) -> None:
    replicas = await _replicas(dsn, blob_root)
    try:

        async def cycle(replica: PostgresStore, n: int) -> str:
            sid = f"sess_{n}"
            await replica.create_session(session(sid))
            sha = await replica.write_blob(b"popular bytes")
            await replica.commit_turn(turn(f"t{n}", sid), [image(f"img_{n}", sha, sid)], f"img_{n}")
            if n % 2:
                await replica.delete_session(sid)
            return sid

        sids = await asyncio.gather(*(cycle(replicas[n % 2], n) for n in range(30)))
        survivors = [sid for n, sid in enumerate(sids) if n % 2 == 0]
        for sid in survivors:
            current = (await replicas[1].get_session(sid)).current_image_id
            sha = (await replicas[0].get_image(current)).sha256
            assert await replicas[1].read_blob(sha) == b"popular bytes"
    finally:
        await asyncio.gather(*(r.close() for r in replicas))


# Blobs and images ------------------------------------------------------------------------------
async def test_blobs_are_content_addressed_and_idempotent(store: PostgresStore, blob_root: Path) -> None:
    data = bytes(range(256)) * 5000  # big enough to be hashed off the event loop
    sha = await store.write_blob(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert await store.write_blob(data) == sha
    assert blob_path(blob_root, sha).read_bytes() == data
    assert await store.read_blob(sha) == data
    for missing in ("0" * 64, "../../aigen.db"):
        with pytest.raises(NotFound) as err:
            await store.read_blob(missing)
        assert err.value.reason == Reason.ERROR_REASON_IMAGE_NOT_FOUND


async def test_images(store: PostgresStore) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"png")
    await store.insert_image(image("img_1", sha, kind="export"), usage(credits=2))
    await store.insert_image(image("img_2", sha, sid=None))
    assert await store.get_image("img_1") == image("img_1", sha, kind="export")
    assert await store.get_image("img_2") == image("img_2", sha, sid=None)
    assert await store.list_usage("default") == [usage(credits=2)]
    with pytest.raises(NotFound) as err:
        await store.get_image("img_missing")
    assert err.value.reason == Reason.ERROR_REASON_IMAGE_NOT_FOUND
    with pytest.raises(NotFound):
        await store.insert_image(image("img_3", sha, sid="sess_missing"), usage())
    assert await store.list_usage("default") == [usage(credits=2)]  # rolled back with the image


async def test_blob_written_before_commit_survives_collection(store: PostgresStore, blob_root: Path) -> None:
    await store.create_session(session("sess_a"))
    await store.create_session(session("sess_b"))
    sha = await store.write_blob(b"same bytes")
    await store.commit_turn(turn("t1"), [image("img_1", sha)])
    pending = await store.write_blob(b"same bytes")
    await store.delete_session("sess_a")
    assert blob_path(blob_root, pending).exists()
    await store.commit_turn(turn("t2", "sess_b"), [image("img_2", pending, "sess_b")], "img_2")
    await store.delete_session("sess_b")
    assert not blob_path(blob_root, sha).exists()


async def test_unreferenced_pinned_blob_is_collected_on_close(dsn: str, blob_root: Path) -> None:
    store = PostgresStore(dsn, LocalBlobs(blob_root))
    await store.open()
    await store.create_session(session())
    sha = await store.write_blob(b"x")
    await store.commit_turn(turn("t1"), [image("img_1", sha)])
    await store.write_blob(b"x")  # written again, never committed
    await store.delete_session("sess_a")
    assert blob_path(blob_root, sha).exists()
    await store.close()
    assert not blob_path(blob_root, sha).exists()


async def test_an_expired_pin_is_collected(dsn: str, blob_root: Path, clock: Clock) -> None:
    writer = PostgresStore(dsn, LocalBlobs(blob_root), clock=clock)
    await writer.open()
    sha = await writer.write_blob(b"abandoned")  # its writer never commits (nor closes cleanly)
    other = PostgresStore(dsn, LocalBlobs(blob_root), clock=clock)
    await other.open()
    try:
        assert blob_path(blob_root, sha).exists()
        clock.now += 901
        await other.create_session(session())
        await other.delete_session("sess_a")  # any collection sweeps expired pins
        assert not blob_path(blob_root, sha).exists()
    finally:
        await other.close()
        await writer.close()


# Turns and layers ------------------------------------------------------------------------------
async def test_commit_turn(store: PostgresStore, clock: Clock) -> None:
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
    committed = await store.commit_turn(first, [image("img_1", sha)], "img_1", usage=usage())
    assert committed == dataclasses.replace(first, index=1)
    clock.now = 300.0
    layers = [layer("l1", 1, "img_1"), layer("l0", 0, "img_1")]
    second = await store.commit_turn(turn("t2", kind="separate"), layers=layers, usage=usage(images=2, credits=4))
    assert second.index == 2

    s = await store.get_session("sess_a")
    assert (s.turn_count, s.layer_count, s.current_image_id, s.updated_at) == (2, 2, "img_1", 300.0)
    assert await store.list_turns("sess_a") == [committed, second]
    assert [x.layer_id for x in await store.list_layers("sess_a")] == ["l0", "l1"]
    await store.commit_turn(turn("t3", kind="separate"), layers=[layer("l9", 0, "img_1")])
    assert [x.layer_id for x in await store.list_layers("sess_a")] == ["l9"]
    assert (await store.get_session("sess_a")).layer_count == 1
    assert await store.list_usage("default") == [usage(images=3, credits=7)]


async def test_commit_turn_for_deleted_session_writes_nothing(store: PostgresStore) -> None:
    await store.create_session(session())
    await store.delete_session("sess_a")
    sha = await store.write_blob(b"orphan")
    with pytest.raises(NotFound):
        await store.commit_turn(turn("t1"), [image("img_1", sha)], "img_1", [layer("l0", 0, "img_1")], usage=usage())
    with pytest.raises(NotFound):
        await store.get_image("img_1")
    assert await store.list_usage("default") == []


async def test_commit_turn_failing_midway_rolls_back(store: PostgresStore) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    await store.commit_turn(turn("t1"), [image("img_1", sha)], "img_1", [layer("l0", 0, "img_1")])
    before = await store.get_session("sess_a")
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.commit_turn(turn("t1"), [image("img_2", sha)], "img_2", [layer("l5", 0, "img_2")], usage=usage())
    assert await store.get_session("sess_a") == before
    with pytest.raises(NotFound):
        await store.get_image("img_2")
    assert [x.layer_id for x in await store.list_layers("sess_a")] == ["l0"]
    assert [t.turn_id for t in await store.list_turns("sess_a")] == ["t1"]
    assert await store.list_usage("default") == []
    assert (await store.commit_turn(turn("t2"))).index == 2


# Projects, credentials, usage ------------------------------------------------------------------
async def test_projects_and_credentials(store: PostgresStore) -> None:
    project = ProjectRecord("acme", allowed_providers=("gemini", "openai"), rate_limit=5, created_at=10.0)
    assert await store.put_project(project) == project
    changed = dataclasses.replace(project, billing_mode="user_pays", allow_public_clients=True, created_at=99.0)
    assert await store.put_project(changed) == dataclasses.replace(changed, created_at=10.0)
    await store.put_project(ProjectRecord("beta", created_at=1.0))
    assert [p.project_id for p in await store.list_projects()] == ["acme", "beta"]
    assert (await store.get_project("acme")).allowed_providers == ("gemini", "openai")

    key = CredentialRecord("key_1", "acme", "api_key", "h1", created_at=1.0)
    token = CredentialRecord("tok_1", "acme", "app_token", "h2", created_at=1.0, expires_at=50.0)
    await store.add_credential(key)
    await store.add_credential(token)
    assert await store.find_credential("h1") == key
    assert await store.find_credential("nope") is None
    with pytest.raises(NotFound):
        await store.add_credential(CredentialRecord("key_2", "missing", "api_key", "h3", created_at=1.0))
    assert await store.delete_expired_credentials(now=100.0) == 1
    assert await store.find_credential("h2") is None
    await store.put_project(changed)  # replacing settings keeps the credentials
    assert await store.find_credential("h1") == key
    with pytest.raises(NotFound):
        await store.revoke_credential("beta", "key_1")
    await store.revoke_credential("acme", "key_1")
    assert await store.find_credential("h1") is None

    await store.add_credential(key)
    await store.delete_project("acme")
    assert await store.find_credential("h1") is None
    for call in (store.get_project, store.delete_project):
        with pytest.raises(NotFound):
            await call("acme")


async def test_usage_by_day(store: PostgresStore) -> None:
    for n, day in enumerate(("2026-01-01", "2026-01-02", "2026-01-02", "2026-01-03")):
        await store.insert_image(image(f"img_{n}", "0" * 64, sid=None), usage(day))
    rows = await store.list_usage("default", "2026-01-02", "2026-01-03")
    assert [(r.day, r.images, r.credits) for r in rows] == [("2026-01-02", 2, 6), ("2026-01-03", 1, 3)]
    assert len(await store.list_usage("default")) == 3
    assert await store.list_usage("other") == []


# Restart and schema ----------------------------------------------------------------------------
async def test_everything_survives_a_restart(dsn: str, blob_root: Path, clock: Clock) -> None:
    store = PostgresStore(dsn, LocalBlobs(blob_root), clock=clock)
    await store.open()
    await store.create_session(session("sess_a"))
    await store.create_session(session("sess_b", created_at=200.0))
    sha = await store.write_blob(b"persisted")
    t1 = await store.commit_turn(
        turn("t1", provider_state=b"state"), [image("img_1", sha)], "img_1", [layer("l0", 0, "img_1")]
    )
    assert await store.try_begin_generation("sess_a", 60)
    before = [await store.get_session("sess_a"), await store.get_session("sess_b")]
    await store.close()

    clock.now += 61  # the lease expired while the server was down
    reopened = PostgresStore(dsn, LocalBlobs(blob_root), clock=clock)
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

    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT version_num FROM alembic_version") == "0005"
    finally:
        await conn.close()


async def test_refuses_a_newer_schema(dsn: str, blob_root: Path) -> None:
    store = PostgresStore(dsn, LocalBlobs(blob_root))
    await store.open()
    await store.close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE alembic_version SET version_num = '9999'")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await PostgresStore(dsn, LocalBlobs(blob_root)).open()


async def test_closed_store_refuses_calls(dsn: str, blob_root: Path) -> None:
    store = PostgresStore(dsn, LocalBlobs(blob_root))
    with pytest.raises(RuntimeError, match="not open"):
        await store.get_session("sess_a")
    await store.close()  # closing an unopened store is harmless
