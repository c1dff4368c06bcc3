"""Progress events for streaming generations, shaped like operation metadata.

From its first attempt to its terminal event, a stream that has been quiet for TICK_S gets an
event, so events come at least once per second: while a provider works, between attempts, and
while the image is stored. One ticker per event loop serves every stream (a timer per stream
costs a task wake-up each, thousands per second with thousands of streams). The percent is
the provider's own when it reports one, otherwise an estimate from the model's observed
latency, flagged as such.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable

from google.protobuf import duration_pb2

from aigen.server.providers.base import InputImage, Progress
from aigen.v1 import types_pb2

log = logging.getLogger(__name__)
Phase = types_pb2.GenerationEvent.Phase
# Enum values looked up once: each lookup through the enum wrapper costs a Python call.
RUNNING, FALLBACK, PERSISTING = Phase.PHASE_RUNNING, Phase.PHASE_FALLBACK, Phase.PHASE_PERSISTING
TERMINAL = frozenset((Phase.PHASE_COMPLETED, Phase.PHASE_FAILED))
TICK_S = 0.5  # a working stream quiet for this long gets an event
SCAN_S = 0.1  # how often the ticker looks for quiet streams


def _set_duration(field: duration_pb2.Duration, seconds: float) -> duration_pb2.Duration:
    """`field` set to `seconds` in place (cheaper than building a Duration and copying it)."""
    field.seconds, field.nanos = divmod(int(max(0.0, seconds) * 1e9), 1_000_000_000)
    return field


class _Ticker:
    """Ticks every registered reporter that has been quiet for TICK_S, from one timer."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._reporters: dict[ProgressReporter, None] = {}  # insertion-ordered set
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0  # when the pending scan is due (loop time)

    def add(self, reporter: ProgressReporter) -> None:
        """Keep `reporter` alive with ticks until `discard`."""
        self._reporters[reporter] = None
        if self._timer is None:
            self._due = self._loop.time() + SCAN_S
            self._timer = self._loop.call_at(self._due, self._scan)

    def discard(self, reporter: ProgressReporter) -> None:
        """Stop ticking `reporter`."""
        self._reporters.pop(reporter, None)

    def tick_quiet(self) -> None:
        """Tick every reporter quiet for TICK_S (what each scan does)."""
        quiet_since = time.monotonic() - TICK_S
        for reporter in list(self._reporters):
            if reporter.last_event_at <= quiet_since:
                try:
                    reporter.tick()
                except Exception:  # one broken stream must not stop the others' ticks
                    log.exception("progress tick failed")
                    self.discard(reporter)

    def _scan(self) -> None:
        self.tick_quiet()
        if not self._reporters:
            self._timer = None
            return
        self._due = next_scan(self._due, self._loop.time())
        self._timer = self._loop.call_at(self._due, self._scan)


def next_scan(due: float, now: float) -> float:
    """The first slot of the SCAN_S grid through `due` that is after `now`: a late scan does not
    push the later ones back (on a busy loop that drift would add up), and missed slots are
    skipped rather than run back to back.
    """
    return due + SCAN_S * max(1, math.floor((now - due) / SCAN_S) + 1)


_tickers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ticker] = weakref.WeakKeyDictionary()


def _ticker() -> _Ticker:
    """The running loop's ticker."""
    loop = asyncio.get_running_loop()
    ticker = _tickers.get(loop)
    if ticker is None:
        ticker = _tickers[loop] = _Ticker(loop)
    return ticker


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
        self._working = ""  # the running attempt's default message
        self._attempt_running = False
        self._phase = Phase.PHASE_QUEUED
        self._attempt_started = self._started
        self._expected = 1.0
        self._measured: float | None = None
        self._ticker: _Ticker | None = None
        self.last_event_at = self._started

    @property
    def active(self) -> bool:
        """True when somebody listens."""
        return self._emit is not None

    def event(self, phase: int, message: str = "", **fields) -> None:
        """Emit one event with the current attempt and timing."""
        if self._emit is not None:
            self._send(types_pb2.GenerationEvent(phase=phase, message=message, **fields))

    def _send(self, event: types_pb2.GenerationEvent) -> None:
        """Stamp `event` (elapsed, time, attempt) and hand it to `emit`."""
        now = time.monotonic()
        phase = event.phase
        _set_duration(event.elapsed, now - self._started)
        stamp = event.time
        stamp.seconds, stamp.nanos = divmod(time.time_ns(), 1_000_000_000)
        if self._attempt is not None and phase not in TERMINAL:
            event.attempt.CopyFrom(self._attempt)
        self.last_event_at = now
        self._phase = phase
        self._emit(event)
        if phase in TERMINAL:
            self.close()

    def start_attempt(self, attempt: types_pb2.Attempt, expected_s: float, fallback: bool) -> None:
        """A provider starts working; the ticker keeps the stream alive until it stops."""
        self._attempt = attempt
        self._working = f"{attempt.provider}/{attempt.model} working"
        self._attempt_running = True
        self._attempt_started = time.monotonic()
        self._expected = expected_s
        self._measured = None
        if fallback:
            self.event(FALLBACK, f"falling back to {attempt.provider}/{attempt.model}")
        self.tick()
        if self._emit is not None and self._ticker is None:
            self._ticker = _ticker()
            self._ticker.add(self)

    def stop_attempt(self) -> None:
        """The provider finished (or failed); ticks go on until the terminal event."""
        self._attempt_running = False

    def close(self) -> None:
        """No more ticks (the terminal event was sent, or the stream went away)."""
        if self._ticker is not None:
            self._ticker.discard(self)
            self._ticker = None

    def on_provider_progress(self, update: Progress) -> None:
        """Callback given to providers."""
        if update.percent is not None:
            self._measured = max(0.0, min(100.0, update.percent))
        self.tick(update.message, update.preview)

    def tick(self, message: str = "", preview: InputImage | None = None) -> None:
        """A RUNNING event with the attempt's percent and ETA (or a PERSISTING one, once storing)."""
        if self._emit is None or self._attempt is None:
            return
        if self._phase == PERSISTING:
            self.event(PERSISTING, "storing the image")
            return
        if not self._attempt_running:
            self.event(RUNNING, "waiting for the next attempt")
            return
        elapsed = time.monotonic() - self._attempt_started
        if self._measured is not None:
            percent, estimated = self._measured, False
            eta = elapsed * (100 - percent) / percent if percent > 0 else self._expected - elapsed
        else:
            percent, estimated = estimate_percent(elapsed, self._expected), True
            eta = self._expected - elapsed
        # Fields set in place: the most frequent event, built without keyword or sub-message copies.
        event = types_pb2.GenerationEvent()
        event.phase = RUNNING
        event.message = message or self._working
        event.percent = round(percent, 1)
        event.percent_estimated = estimated
        if eta > 0:
            _set_duration(event.eta, eta)
        if preview is not None:
            image = event.preview
            image.content_type, image.data, image.size_bytes = preview.mime_type, preview.data, len(preview.data)
        self._send(event)
