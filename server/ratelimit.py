"""Fixed-window request limits per client, O(1) per request.

Each client's window opens with its first request and lasts `window_s`; the next request after
it ends opens a new one. Clients therefore reset at their own times, not all on one boundary
(no herd of refused clients retrying at the same instant).

The event loop runs one coroutine at a time and `hit` never awaits, so counting is exact
under any number of concurrent requests in this process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request against its limit, with the values for RateLimit-* headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the window resets
    window_s: int

    def headers(self) -> tuple[tuple[str, str], ...]:
        """RateLimit-Limit/-Remaining/-Reset/-Policy, and Retry-After when refused."""
        pairs = (
            ("ratelimit-limit", str(self.limit)),
            ("ratelimit-remaining", str(self.remaining)),
            ("ratelimit-reset", str(self.reset_s)),
            ("ratelimit-policy", f"{self.limit};w={self.window_s}"),
        )
        return (*pairs, ("retry-after", str(self.reset_s))) if not self.allowed else pairs


class RateLimiter:
    """Counts requests per key in windows of `window_s` opened by each key's first request."""

    def __init__(
        self, window_s: float = 300.0, clock: Callable[[], float] = time.time, max_keys: int = 100_000
    ) -> None:
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window end, count)

    def hit(self, key: str, limit: int) -> Decision:
        """Count one request for `key`; refused (and not counted) once `limit` is reached."""
        now = self.clock()
        ends, count = self._windows.get(key, (now, 0))
        if ends <= now:
            ends, count = now + self.window_s, 0
        allowed = count < limit
        if allowed:
            count += 1
            if key not in self._windows and len(self._windows) >= self.max_keys:
                self._evict(now)
            self._windows[key] = (ends, count)
        reset = max(1, math.ceil(ends - now))
        return Decision(allowed, limit, max(0, limit - count), reset, int(self.window_s))

    def _evict(self, now: float) -> None:
        """Drop keys whose window has ended (amortised: runs only when the table is full)."""
        for key in [k for k, (ends, _) in self._windows.items() if ends <= now]:
            del self._windows[key]


class AsyncRateLimiter(Protocol):
    """What AccessControl needs from a limiter."""

    window_s: float

    async def open(self) -> None:
        """Connect (shared counters) or nothing (in process)."""
        ...

    async def close(self) -> None:
        """Disconnect."""
        ...

    async def hit(self, key: str, limit: int) -> Decision:
        """Count one request for `key`; refused (and not counted) once `limit` is reached."""
        ...


class LocalRateLimiter:
    """The in-process RateLimiter behind the async interface (one process, one replica)."""

    def __init__(self, limiter: RateLimiter | None = None, window_s: float = 300.0) -> None:
        self.limiter = limiter or RateLimiter(window_s)

    @property
    def window_s(self) -> float:
        """The window length in seconds."""
        return self.limiter.window_s

    async def open(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def hit(self, key: str, limit: int) -> Decision:
        """Count one request for `key` (never awaits, so counting stays exact in this process)."""
        return self.limiter.hit(key, limit)
