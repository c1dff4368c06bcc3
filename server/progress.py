"""Progress events for streaming generations, shaped like operation metadata.

While a provider works, a ticker emits an event at least once per second. The percent is
the provider's own when it reports one, otherwise an estimate from the model's observed
latency, flagged as such.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from google.protobuf import duration_pb2

from aigen.server.providers.base import Progress
from aigen.v1 import types_pb2

Phase = types_pb2.GenerationEvent.Phase
TICK_S = 0.5


def _duration(seconds: float) -> duration_pb2.Duration:
    message = duration_pb2.Duration()
    message.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return message


def estimate_percent(elapsed: float, expected: float) -> float:
    """Linear to 95 % at the expected time, then creeping towards 99 %."""
    fraction = elapsed / max(expected, 0.001)
    if fraction < 1:
        return 95.0 * fraction
    return 95.0 + 4.0 * (1 - math.exp(-(fraction - 1)))


class ProgressReporter:
    """Builds GenerationEvent messages and hands them to `emit`; silent when `emit` is None."""

    def __init__(self, emit: Callable[[types_pb2.GenerationEvent], None] | None) -> None:
        self._emit = emit
        self._started = time.monotonic()
        self._attempt: types_pb2.Attempt | None = None
        self._attempt_started = self._started
        self._expected = 1.0
        self._measured: float | None = None
        self._ticker: asyncio.Task | None = None

    @property
    def active(self) -> bool:
        """True when somebody listens."""
        return self._emit is not None

    def event(self, phase: int, message: str = "", **fields) -> None:
        """Emit one event with the current attempt and timing."""
        if self._emit is None:
            return
        event = types_pb2.GenerationEvent(phase=phase, message=message, **fields)
        event.elapsed.CopyFrom(_duration(time.monotonic() - self._started))
        event.time.FromNanoseconds(time.time_ns())
        if self._attempt is not None and phase not in (Phase.PHASE_COMPLETED, Phase.PHASE_FAILED):
            event.attempt.CopyFrom(self._attempt)
        self._emit(event)

    def start_attempt(self, attempt: types_pb2.Attempt, expected_s: float, fallback: bool) -> None:
        """A provider starts working; the ticker keeps the stream alive until it stops."""
        self._attempt = attempt
        self._attempt_started = time.monotonic()
        self._expected = expected_s
        self._measured = None
        if fallback:
            self.event(Phase.PHASE_FALLBACK, f"falling back to {attempt.provider}/{attempt.model}")
        self._tick()
        if self._emit is not None and self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._run_ticker())

    def stop_attempt(self) -> None:
        """The provider finished (or failed)."""
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def on_provider_progress(self, update: Progress) -> None:
        """Callback given to providers."""
        if update.percent is not None:
            self._measured = max(0.0, min(100.0, update.percent))
        preview = None
        if update.preview is not None:
            preview = types_pb2.Image(
                content_type=update.preview.mime_type,
                data=update.preview.data,
                size_bytes=len(update.preview.data),
            )
        self._tick(update.message, preview)

    def _tick(self, message: str = "", preview: types_pb2.Image | None = None) -> None:
        if self._emit is None or self._attempt is None:
            return
        elapsed = time.monotonic() - self._attempt_started
        if self._measured is not None:
            percent, estimated = self._measured, False
            eta = elapsed * (100 - percent) / percent if percent > 0 else self._expected - elapsed
        else:
            percent, estimated = estimate_percent(elapsed, self._expected), True
            eta = self._expected - elapsed
        fields = {"percent": round(percent, 1), "percent_estimated": estimated}
        if eta > 0:
            fields["eta"] = _duration(eta)
        if preview is not None:
            fields["preview"] = preview
        text = message or f"{self._attempt.provider}/{self._attempt.model} working"
        self.event(Phase.PHASE_RUNNING, text, **fields)

    async def _run_ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._tick()
