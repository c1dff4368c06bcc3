"""Telemetry: the observer that feeds metrics, the request log and spans."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aigen.server.observability import context, logs, tracing
from aigen.server.observability.metrics import Metrics
from aigen.server.observability.observer import GenerationObserver
from aigen.server.store.records import AttemptRecord


class Telemetry(GenerationObserver):
    """Records what the engine, the use cases and the streams report."""

    def __init__(
        self,
        metrics: Metrics,
        request_log: logging.Logger | None = None,
        log_prompts: bool = False,
    ) -> None:
        self.metrics = metrics
        self.request_log = request_log or logs.configure_request_log()
        self.log_prompts = log_prompts

    @classmethod
    def from_environment(
        cls,
        cooling_down: Callable[[], Iterable[tuple[str, str]]],
        known_pair: Callable[[str, str], bool],
        env: Mapping[str, str] | None = None,
    ) -> Telemetry:
        """Metrics for one server; log format, prompt logging and tracing from the environment."""
        tracing.configure_from_environment(env)
        return cls(
            Metrics(cooling_down, known_pair),
            logs.configure_request_log(env),
            log_prompts=logs.prompts_requested(env),
        )

    def attempt_ended(self, record: AttemptRecord) -> None:
        """Count it, add it to the request's log line, and trace it."""
        self.metrics.record_attempt(record)
        request = context.current()
        if request is not None:
            request.attempts.append(record)
        tracing.record_attempt_span(request.span if request else None, record)

    def generation_started(self, prepared: Any) -> None:
        """One more generation in flight; the session's project goes into the log line."""
        self.metrics.in_flight.inc()
        request = context.current()
        if request is None:
            return
        session = prepared.session
        request.project = request.project or (session.project if session else getattr(prepared, "project", ""))
        request.session_id = request.session_id or (session.session_id if session else "")

    def generation_ended(self, prepared: Any) -> None:
        """One generation fewer in flight."""
        self.metrics.in_flight.dec()

    def generation_served(self, prepared: Any, served: Any, image: Any, credits: int) -> None:
        """Latency, fallback, credits and stored bytes of a served generation."""
        metrics = self.metrics
        provider, model = metrics.pair(served.profile.provider, served.profile.name)
        metrics.generation_duration.labels(provider, model, "completed").observe(time.monotonic() - prepared.started)
        metrics.credits.labels(provider, model).inc(credits)
        metrics.image_bytes.labels(provider, model).inc(image.size_bytes)
        if (served.profile.provider, served.profile.name) != tuple(prepared.requested):
            metrics.fallbacks.labels(*metrics.pair(*prepared.requested), provider, model).inc()
        request = context.current()
        if request is not None:
            request.generation = "completed"
            request.served = f"{served.profile.provider}/{served.profile.name}"

    def generation_failed(self, prepared: Any, status: str) -> None:
        """Latency of a generation that ended without an image, on the requested pair."""
        provider, model = self.metrics.pair(*prepared.requested)
        self.metrics.generation_duration.labels(provider, model, status).observe(time.monotonic() - prepared.started)
        request = context.current()
        if request is not None:
            request.generation = status

    def stream_opened(self) -> None:
        """One more open progress stream."""
        self.metrics.streams_open.inc()

    def stream_closed(self) -> None:
        """One open progress stream fewer."""
        self.metrics.streams_open.dec()
