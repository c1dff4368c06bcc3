"""PostgresRateLimiter: per-key window counters shared by replicas, on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from aigen.server.ratelimit import AsyncRateLimiter, LocalRateLimiter, RateLimiter
from aigen.server.ratelimit_postgres import PostgresRateLimiter


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1_699_999_990.0)


@pytest.fixture
async def replicas(dsn: str, clock: Clock) -> AsyncIterator[tuple[PostgresRateLimiter, PostgresRateLimiter]]:
    """Two limiters with their own connection pools on one database, as two replicas would be."""
    pair = (
        PostgresRateLimiter(dsn, 60.0, clock=clock, pool_size=10),
        PostgresRateLimiter(dsn, 60.0, clock=clock, pool_size=10),
    )
    for limiter in pair:
        await limiter.open()
    yield pair
    for limiter in pair:
        await limiter.close()


async def test_concurrent_hits_from_two_replicas_admit_exactly_the_limit(replicas) -> None:
    a, b = replicas
    decisions = await asyncio.gather(*((a, b)[n % 2].hit("key_1", 5) for n in range(40)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 5
    assert sorted(d.remaining for d in allowed) == [0, 1, 2, 3, 4]
    refused = [d for d in decisions if not d.allowed]
    assert len(refused) == 35
    assert all(d.remaining == 0 and d.reset_s == 60 for d in refused)
    assert dict(refused[0].headers())["retry-after"] == "60"
    # refused hits were not counted, and other keys are untouched
    conn = await asyncpg.connect(a._dsn)
    try:
        assert await conn.fetchval("SELECT count FROM rate_limit_windows WHERE key = 'key_1'") == 5
    finally:
        await conn.close()
    assert (await b.hit("key_2", 5)).remaining == 4


async def test_counts_down_across_replicas_and_the_window_resets(replicas, clock: Clock) -> None:
    a, b = replicas
    seen = [await (a, b)[n % 2].hit("key_1", 3) for n in range(5)]
    assert [(d.allowed, d.remaining) for d in seen] == [(True, 2), (True, 1), (True, 0), (False, 0), (False, 0)]
    assert all(d.limit == 3 and d.window_s == 60 and d.reset_s == 60 for d in seen)
    assert dict(seen[0].headers()) == {
        "ratelimit-limit": "3",
        "ratelimit-remaining": "2",
        "ratelimit-reset": "60",
        "ratelimit-policy": "3;w=60",
    }

    clock.now += 59.5
    assert (await b.hit("key_1", 3)).reset_s == 1  # never 0, still refused
    clock.now += 0.5  # the next window starts
    fresh = await b.hit("key_1", 3)
    assert (fresh.allowed, fresh.remaining, fresh.reset_s) == (True, 2, 60)
    assert (await a.hit("key_1", 3)).remaining == 1


async def test_each_key_opens_its_own_window(replicas, clock: Clock) -> None:
    a, b = replicas
    assert (await a.hit("early", 1)).allowed
    clock.now += 30
    assert (await b.hit("late", 1)).allowed
    assert (await a.hit("late", 1)).reset_s == 60
    clock.now += 30  # the early key's window ends, the late key's is half over
    assert (await b.hit("early", 1)).allowed
    late = await a.hit("late", 1)
    assert (late.allowed, late.reset_s) == (False, 30)


async def test_same_decisions_as_the_in_process_limiter(replicas, clock: Clock) -> None:
    shared: AsyncRateLimiter = replicas[0]
    local: AsyncRateLimiter = LocalRateLimiter(RateLimiter(60.0, clock=clock))
    assert local.window_s == shared.window_s == 60.0
    script = [("k", 2), ("k", 2), ("k", 2), ("j", 1), ("k", 5), ("j", 0), ("z", 0), ("j", 1), ("k", 1)]
    for step, advance in ((0, 0.0), (1, 59.0), (2, 1.0), (3, 125.0)):
        clock.now += advance
        got = [(await shared.hit(key, limit)) for key, limit in script]
        want = [(await local.hit(key, limit)) for key, limit in script]
        assert got == want, step


async def test_purge_drops_only_past_windows(replicas, clock: Clock) -> None:
    a, _ = replicas
    await a.hit("old", 5)
    clock.now += 60
    await a.hit("new", 5)
    assert await a.purge() == 1
    conn = await asyncpg.connect(a._dsn)
    try:
        assert [row["key"] for row in await conn.fetch("SELECT key FROM rate_limit_windows")] == ["new"]
    finally:
        await conn.close()
    assert (await a.hit("new", 5)).remaining == 3


async def test_database_clock_and_background_purge(dsn: str) -> None:
    limiter = PostgresRateLimiter(dsn, 1.0)
    await limiter.open()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("INSERT INTO rate_limit_windows (key, count, expires_at) VALUES ('stale', 3, 2.0)")
            first = await limiter.hit("k", 2)
            assert (first.allowed, first.remaining, first.reset_s) == (True, 1, 1)
            await limiter.close()  # waits for the purge the first hit started
            assert await conn.fetchval("SELECT count(*) FROM rate_limit_windows WHERE key = 'stale'") == 0
        finally:
            await conn.close()
    finally:
        await limiter.close()
    with pytest.raises(RuntimeError, match="not open"):
        await limiter.hit("k", 2)


async def test_the_previous_releases_table_stays_for_a_rolling_upgrade(replicas) -> None:
    """Replicas of the previous release count in `rate_limits` (one row per key and aligned
    window) until they are replaced: the upgrade leaves that table as they use it."""
    conn = await asyncpg.connect(replicas[0]._dsn)
    try:
        counted = await conn.fetchval(
            "INSERT INTO rate_limits AS r (key, window_no, count, expires_at) VALUES ('k', 7, 1, 480.0) "
            "ON CONFLICT (key, window_no) DO UPDATE SET count = r.count + 1 RETURNING r.count"
        )
        assert counted == 1
    finally:
        await conn.close()
