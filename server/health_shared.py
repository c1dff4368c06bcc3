"""Cooldowns shared by every replica through PostgreSQL, with local state for the sync checks.

`SharedModelHealth` is a `ModelHealth`: the engine's `in_cooldown`, `record_failure` and
`record_success` stay synchronous and only touch local state. What other replicas must learn
travels through the `cooldowns` table, one row per provider/model:

- a local failure that starts (or extends) a cooldown queues an upsert of
  `until_epoch = database now + remaining`, keeping the later `until_epoch` on conflict;
- a success on a pair that was cooling down (here or, as far as this replica knows, anywhere)
  queues a delete of its row;
- every `refresh_s` the rows are read back; a row still running puts its pair in cooldown
  here too (its remaining time, measured by the database clock, is moved onto the local
  monotonic clock), and a pair whose row disappeared (a success elsewhere) leaves cooldown.

One background task does the writes (in the order they were queued) and the reads, so a
read never races a write of this replica. Database errors are logged and retried on the next
round; they never reach the engine, which then simply works from local state.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Literal

import asyncpg

from aigen.server.health import ModelHealth

log = logging.getLogger(__name__)

# $1 provider, $2 model, $3 seconds of cooldown left (from now, by the database clock).
_UPSERT = """
INSERT INTO cooldowns AS c (provider, model, until_epoch)
VALUES ($1, $2, extract(epoch FROM clock_timestamp())::float8 + $3::float8)
ON CONFLICT (provider, model) DO UPDATE SET until_epoch = GREATEST(c.until_epoch, EXCLUDED.until_epoch)
"""
_DELETE = "DELETE FROM cooldowns WHERE provider = $1 AND model = $2"
# Every row with the seconds it has left (negative once over), by the database clock.
_READ = """
SELECT provider, model, until_epoch - extract(epoch FROM clock_timestamp())::float8 AS remaining
FROM cooldowns
"""
MAX_QUEUED = 1000
_UNKNOWN_LATENCY = -1.0  # a pair known only from the table, before any profile asked about it

Pair = tuple[str, str]
_Op = tuple[Literal["cool", "clear"], Pair, float]


class SharedModelHealth(ModelHealth):
    """ModelHealth whose cooldowns every replica on the same database shares."""

    def __init__(
        self,
        dsn: str,
        *,
        cooldown_failures: int = 3,
        cooldown_s: float = 60.0,
        refresh_s: float = 0.5,
        migrate: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(cooldown_failures=cooldown_failures, cooldown_s=cooldown_s, **kwargs)
        if refresh_s <= 0:
            raise ValueError("refresh_s must be positive")
        self.refresh_s = refresh_s
        self._dsn = dsn
        self._migrate = migrate
        self._pool: asyncpg.Pool | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._ops: collections.deque[_Op] = collections.deque(maxlen=MAX_QUEUED)
        # Pairs that have a row in the table as far as this replica knows (written or read).
        self._shared: set[Pair] = set()

    # Lifecycle -------------------------------------------------------------------------------
    async def open(self) -> None:
        """Bring the schema up to date (unless told not to), connect, start the refresher."""
        if self._pool is not None:
            return
        if self._migrate:
            from aigen.server.store.postgres import upgrade_schema

            await asyncio.to_thread(upgrade_schema, self._dsn)
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="shared-cooldowns")

    async def close(self, drain_s: float = 2.0) -> None:
        """Write what is still queued (within `drain_s`), stop the refresher, disconnect."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), drain_s)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    # Engine hooks (synchronous, local) -------------------------------------------------------
    def record_failure(self, pair: tuple[str, str], typical_latency_s: float) -> None:
        """A retryable failure; when it starts or extends a cooldown, tell the other replicas."""
        before = self._states[pair].cooldown_until if pair in self._states else 0.0
        super().record_failure(pair, typical_latency_s)
        until = self._states[pair].cooldown_until
        if until > before:
            self._queue(("cool", pair, until))

    def record_success(self, pair: tuple[str, str], latency_s: float, typical_latency_s: float) -> None:
        """A served image; a pair that was cooling down is cleared for every replica."""
        state = self._states.get(pair)
        had_cooldown = state is not None and state.cooldown_until > 0.0
        super().record_success(pair, latency_s, typical_latency_s)
        if had_cooldown or pair in self._shared:
            self._queue(("clear", pair, 0.0))

    def _queue(self, op: _Op) -> None:
        if len(self._ops) == self._ops.maxlen:
            log.warning("shared cooldowns: %d updates queued, dropping the oldest", len(self._ops))
        self._ops.append(op)
        self._wake.set()

    # Background ------------------------------------------------------------------------------
    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time()
        while True:
            try:
                await self._write_queued()
                if self._stopping:
                    return
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.refresh_s
                    await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be away for a while; local state goes on
                log.warning("shared cooldowns: %s: %s", type(exc).__name__, exc)
                if self._stopping:
                    return
                next_refresh = loop.time() + self.refresh_s
                await self._sleep_until(next_refresh, wake=False)
                continue
            await self._sleep_until(next_refresh, wake=True)

    async def _sleep_until(self, when: float, *, wake: bool) -> None:
        """Sleep until `when`, or (with `wake`) until an update is queued or close() is called."""
        delay = when - asyncio.get_running_loop().time()
        if delay <= 0:
            return
        if not wake:
            await asyncio.sleep(delay)
            return
        self._wake.clear()
        if self._ops or self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _pool_(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("shared model health is not open")
        return self._pool

    async def _write_queued(self) -> None:
        """Write the queued updates in order; one that fails stays first in line for the next round."""
        pool = self._pool_()
        while self._ops:
            kind, pair, until = self._ops[0]
            if kind == "cool":
                remaining = until - self.clock()
                if remaining > 0:
                    await pool.execute(_UPSERT, pair[0], pair[1], remaining)
                    self._shared.add(pair)
            else:
                await pool.execute(_DELETE, pair[0], pair[1])
                self._shared.discard(pair)
            self._ops.popleft()

    async def refresh(self) -> None:
        """Read every row and apply it to local state (also run every `refresh_s` in the background)."""
        rows = await self._pool_().fetch(_READ)
        now = self.clock()  # taken when the answer came back: the remaining times are this fresh
        queued = {pair for _, pair, _ in self._ops}  # queued while reading: newer than the rows
        present: set[Pair] = set()
        for row in rows:
            pair = (row["provider"], row["model"])
            present.add(pair)
            if pair in queued or row["remaining"] <= 0:
                continue
            state = self._state(pair, _UNKNOWN_LATENCY)
            state.cooldown_until = max(state.cooldown_until, now + row["remaining"])
            state.consecutive_failures = max(state.consecutive_failures, self.cooldown_failures)
        for pair in self._shared - present - queued:
            # Its row is gone: a success on some replica cleared the pair.
            state = self._states.get(pair)
            if state is not None:
                state.cooldown_until = 0.0
                state.consecutive_failures = 0
        self._shared = (self._shared & queued) | present

    def _state(self, pair: tuple[str, str], typical_latency_s: float):
        """Local state of `pair`; one first learnt from the table takes the profile's latency later."""
        state = self._states.get(pair)
        if state is None:
            state = super()._state(pair, typical_latency_s if typical_latency_s > 0.0 else _UNKNOWN_LATENCY)
        elif state.latency_s == _UNKNOWN_LATENCY and typical_latency_s > 0.0:
            state.latency_s = typical_latency_s
        return state
