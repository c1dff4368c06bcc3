"""Fixed-window request limits shared by every replica, counted in PostgreSQL.

The same semantics as aigen.server.ratelimit.RateLimiter (a key's window opens with its first
request and lasts `window_s`; a refused request is not counted), with an async `hit` that runs
one statement per request on the key's row:

    INSERT ... ON CONFLICT (key) DO UPDATE
        SET count = 1 or count + 1, expires_at = a new or the same end
        WHERE the window has ended OR count < limit

PostgreSQL locks the conflicting row and evaluates the WHERE against its newest committed
version, so concurrent hits from any number of replicas are counted exactly; the statement
touches one primary-key row, so a hit is O(1). Rows of ended windows are purged by `purge()`,
which `hit` also schedules in the background about once per window.

`LocalRateLimiter` puts the in-process limiter behind the same async interface, so a caller
can take either (`AsyncRateLimiter`).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import asyncpg

from aigen.server.ratelimit import Decision
from aigen.server.store.postgres import upgrade_schema

# $1 key, $2 limit, $3 window length (s), $4 the injected clock's time or NULL (database clock).
# A fresh key is inserted only when the limit admits one request. Returns the time used, the
# count after this hit (NULL when refused) and the end of the key's window (NULL when refused:
# then read from the statement's snapshot, or a full window when there is no row at all).
_HIT = """
WITH clock AS (
    SELECT COALESCE($4::float8, extract(epoch FROM clock_timestamp())::float8) AS now
), counted AS (
    INSERT INTO rate_limit_windows AS r (key, count, expires_at)
    SELECT $1, 1, now + $3::float8 FROM clock WHERE $2::int > 0
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN r.expires_at <= (SELECT now FROM clock) THEN 1 ELSE r.count + 1 END,
        expires_at = CASE WHEN r.expires_at <= (SELECT now FROM clock)
            THEN excluded.expires_at ELSE r.expires_at END
    WHERE r.expires_at <= (SELECT now FROM clock) OR r.count < $2::int
    RETURNING r.count, r.expires_at
)
SELECT clock.now, counted.count, COALESCE(
    counted.expires_at,
    (SELECT expires_at FROM rate_limit_windows WHERE key = $1 AND expires_at > clock.now),
    clock.now + $3::float8
) AS expires_at
FROM clock LEFT JOIN counted ON true
"""
_PURGE = (
    "DELETE FROM rate_limit_windows WHERE expires_at <= COALESCE($1::float8, extract(epoch FROM clock_timestamp()))"
)


class PostgresRateLimiter:
    """Counts requests per key in windows opened by its first request, in a table replicas share.

    Times are epoch seconds from `clock` when given, otherwise from the database's clock (one
    clock for every replica). Every replica must use the same `window_s`.
    """

    def __init__(
        self,
        dsn: str,
        window_s: float = 300.0,
        *,
        clock: Callable[[], float] | None = None,
        pool_size: int = 5,
        migrate: bool = True,
    ) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be positive")
        self.window_s = window_s
        self._dsn = dsn
        self._clock = clock
        self._pool_size = pool_size
        self._migrate = migrate
        self._pool: asyncpg.Pool | None = None
        self._next_purge: float = -math.inf
        self._purging: asyncio.Task[int] | None = None

    async def open(self) -> None:
        """Bring the schema up to date (unless told not to), then connect."""
        if self._pool is not None:
            return
        if self._migrate:
            await asyncio.to_thread(upgrade_schema, self._dsn)
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size)

    async def close(self) -> None:
        """Wait for a background purge, then disconnect."""
        if self._purging is not None:
            await asyncio.gather(self._purging, return_exceptions=True)
            self._purging = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _pool_(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("rate limiter is not open")
        return self._pool

    async def hit(self, key: str, limit: int) -> Decision:
        """Count one request for `key`; refused (and not counted) once `limit` is reached."""
        clock_now = self._clock() if self._clock is not None else None
        row = await self._pool_().fetchrow(_HIT, key, int(limit), float(self.window_s), clock_now)
        now, count = row["now"], row["count"]
        allowed = count is not None
        reset = max(1, math.ceil(row["expires_at"] - now))
        self._maybe_purge(now)
        remaining = max(0, limit - count) if allowed else 0
        return Decision(allowed, limit, remaining, reset, int(self.window_s))

    async def purge(self, before: float | None = None) -> int:
        """Delete counters whose window ended by `before` (default: now); returns how many."""
        if before is None and self._clock is not None:
            before = self._clock()
        status = await self._pool_().execute(_PURGE, before)
        return int(status.rsplit(" ", 1)[-1])

    def _maybe_purge(self, now: float) -> None:
        """Start a background purge about once per window (skipped while one runs)."""
        if now < self._next_purge or (self._purging is not None and not self._purging.done()):
            return
        self._next_purge = now + self.window_s
        self._purging = asyncio.get_running_loop().create_task(self.purge(now))
        self._purging.add_done_callback(_ignore_result)


def _ignore_result(task: asyncio.Task[int]) -> None:
    """A failed background purge is retried a window later; the next hits are unaffected."""
    if not task.cancelled():
        task.exception()
