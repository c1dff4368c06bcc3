"""Per provider/model health: observed latency (for progress estimates) and cooldown."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class _ModelState:
    latency_s: float
    consecutive_failures: int = 0
    cooldown_until: float = 0.0


@dataclass
class ModelHealth:
    """Tracks each pair's latency (EWMA) and skips pairs that keep failing for a while."""

    cooldown_failures: int = 3
    cooldown_s: float = 60.0
    smoothing: float = 0.3
    clock: object = field(default=time.monotonic)
    _states: dict[tuple[str, str], _ModelState] = field(default_factory=dict)

    def _state(self, pair: tuple[str, str], typical_latency_s: float) -> _ModelState:
        state = self._states.get(pair)
        if state is None:
            state = self._states[pair] = _ModelState(latency_s=typical_latency_s)
        return state

    def expected_latency(self, pair: tuple[str, str], typical_latency_s: float) -> float:
        """Seconds an attempt on `pair` usually takes (the profile's figure until observed)."""
        return self._state(pair, typical_latency_s).latency_s

    def in_cooldown(self, pair: tuple[str, str]) -> bool:
        """True while `pair` is skipped after repeated failures."""
        state = self._states.get(pair)
        return state is not None and state.cooldown_until > self.clock()

    def record_success(self, pair: tuple[str, str], latency_s: float, typical_latency_s: float) -> None:
        """A served image: reset failures, fold the latency into the average."""
        state = self._state(pair, typical_latency_s)
        state.consecutive_failures = 0
        state.cooldown_until = 0.0
        state.latency_s += self.smoothing * (latency_s - state.latency_s)

    def record_failure(self, pair: tuple[str, str], typical_latency_s: float) -> None:
        """A retryable failure; enough in a row start a cooldown."""
        state = self._state(pair, typical_latency_s)
        state.consecutive_failures += 1
        if self.cooldown_failures > 0 and state.consecutive_failures >= self.cooldown_failures:
            state.cooldown_until = self.clock() + self.cooldown_s

    def cooling_down(self) -> list[tuple[str, str]]:
        """Every pair currently in cooldown."""
        now = self.clock()
        return [pair for pair, state in self._states.items() if state.cooldown_until > now]
