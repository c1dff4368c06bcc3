"""The in-process RateLimiter: windows opened per key, refusals not counted, bounded memory."""

from __future__ import annotations

from aigen.server.ratelimit import RateLimiter


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_window_opens_with_the_first_request_and_refusals_are_not_counted() -> None:
    clock = Clock()
    limiter = RateLimiter(300.0, clock=clock)
    clock.now += 17.3  # no alignment to any boundary
    seen = [limiter.hit("k", 2) for _ in range(4)]
    assert [(d.allowed, d.remaining, d.reset_s) for d in seen] == [
        (True, 1, 300),
        (True, 0, 300),
        (False, 0, 300),
        (False, 0, 300),
    ]
    clock.now += 299.5
    assert (limiter.hit("k", 2).allowed, limiter.hit("k", 2).reset_s) == (False, 1)
    clock.now += 0.5
    fresh = limiter.hit("k", 2)
    assert (fresh.allowed, fresh.remaining, fresh.reset_s) == (True, 1, 300)


def test_keys_reset_at_their_own_times() -> None:
    clock = Clock()
    limiter = RateLimiter(60.0, clock=clock)
    assert limiter.hit("early", 1).allowed
    clock.now += 45
    assert limiter.hit("late", 1).allowed
    clock.now += 15
    assert limiter.hit("early", 1).allowed
    late = limiter.hit("late", 1)
    assert (late.allowed, late.reset_s) == (False, 45)


def test_a_zero_limit_refuses_without_opening_a_window() -> None:
    limiter = RateLimiter(60.0, clock=Clock())
    refused = limiter.hit("k", 0)
    assert (refused.allowed, refused.remaining, refused.reset_s) == (False, 0, 60)
    assert dict(refused.headers())["retry-after"] == "60"
    assert limiter._windows == {}


def test_a_full_table_drops_only_ended_windows() -> None:
    clock = Clock()
    limiter = RateLimiter(60.0, clock=clock, max_keys=3)
    limiter.hit("old", 5)
    clock.now += 30
    limiter.hit("mid", 5)
    limiter.hit("mid", 5)
    clock.now += 30  # "old" ended, "mid" is half way
    limiter.hit("new", 5)
    limiter.hit("newer", 5)  # the table is full: ended windows go
    assert set(limiter._windows) == {"mid", "new", "newer"}
    assert limiter.hit("mid", 5).remaining == 2
