"""SqliteStore's group commit: transactions queued together share one thread call and one COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_contract import Clock, image, session, turn

from aigen.server.errors import NotFound
from aigen.server.store.records import UsageRecord
from aigen.server.store.sqlite import SqliteStore, _transact_group


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path, clock=Clock())
    await s.open()
    yield s
    await s.close()


def usage(images: int = 1) -> UsageRecord:
    return UsageRecord(
        project_id="default", day="2026-01-01", provider="openai", model="gpt-image", billing_mode="pooled",
        images=images, credits=10 * images,
    )  # fmt: skip


def count_thread_calls(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one for every function run on the connection's thread."""
    calls: list[int] = []
    db = store._conn()
    execute = db._execute

    async def counted(function, *args, **kwargs):
        calls.append(1)
        return await execute(function, *args, **kwargs)

    monkeypatch.setattr(db, "_execute", counted)
    return calls


async def test_concurrent_inserts_share_thread_calls(store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    calls = count_thread_calls(store, monkeypatch)

    await asyncio.gather(*(store.insert_image(image(f"img_{n}", sha), usage()) for n in range(20)))

    assert len(calls) <= 2
    assert [record.images for record in await store.list_usage("default")] == [20]
    for n in range(20):
        assert (await store.get_image(f"img_{n}")).sha256 == sha


async def test_a_failing_insert_fails_alone_and_leaves_nothing_behind(store: SqliteStore) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    await store.insert_image(image("img_taken", sha))

    outcomes = await asyncio.gather(
        store.insert_image(image("img_1", sha), usage()),
        store.insert_image(image("img_taken", sha), usage(100)),  # usage written, then the image fails
        store.insert_image(image("img_2", sha, sid="sess_missing"), usage(1000)),
        store.insert_image(image("img_3", sha), usage()),
        return_exceptions=True,
    )

    assert outcomes[0] is None and outcomes[3] is None
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert isinstance(outcomes[2], NotFound)
    assert [record.images for record in await store.list_usage("default")] == [2]  # only the two that succeeded
    for iid in ("img_1", "img_3"):
        assert (await store.get_image(iid)).image_id == iid
    with pytest.raises(NotFound):
        await store.get_image("img_2")


async def test_turns_and_lease_release_in_one_group(store: SqliteStore) -> None:
    await store.create_session(session())
    assert await store.try_begin_generation("sess_a", 60)
    committed, released, missing = await asyncio.gather(
        store.commit_turn(turn("t1")),
        store.end_generation("sess_a"),
        store.commit_turn(turn("t2", sid="sess_missing")),
        return_exceptions=True,
    )
    assert committed.index == 1 and released is None and isinstance(missing, NotFound)
    assert (await store.get_session("sess_a")).status == "ready"
    assert [t.turn_id for t in await store.list_turns("sess_a")] == ["t1"]


async def test_a_cancelled_caller_still_gets_its_write(store: SqliteStore) -> None:
    await store.create_session(session())
    sha = await store.write_blob(b"img")
    others = [asyncio.create_task(store.insert_image(image(f"img_{n}", sha))) for n in range(3)]
    await asyncio.sleep(0)
    others[1].cancel()
    await asyncio.gather(*others, return_exceptions=True)
    for n in range(3):
        assert (await store.get_image(f"img_{n}")).image_id == f"img_{n}"


async def test_a_closed_store_fails_every_queued_caller(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, clock=Clock())
    await store.open()
    await store.create_session(session())
    await store.close()
    outcomes = await asyncio.gather(*(store.end_generation("sess_a") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


def test_a_broken_group_transaction_falls_back_to_one_by_one() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")

    def insert(n: int):
        return lambda c: c.execute("INSERT INTO t VALUES (?)", (n,)).lastrowid

    def ends_the_transaction(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (99)")
        c.execute("ROLLBACK")  # breaks the group's SAVEPOINT and COMMIT

    outcomes = _transact_group(conn, [(insert(1), False), (ends_the_transaction, False), (insert(2), True)])

    assert outcomes[0] == 1 and outcomes[2] == 2
    assert isinstance(outcomes[1], sqlite3.OperationalError)
    assert [row[0] for row in conn.execute("SELECT n FROM t ORDER BY n")] == [1, 2]
    assert not conn.in_transaction
