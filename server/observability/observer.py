"""What the engine and the generation use cases report while they work.

The base class does nothing, so code that runs without telemetry (tools, unit tests)
needs no setup; `aigen.server.observability.telemetry.Telemetry` records everything.
"""

from __future__ import annotations

from typing import Any

from aigen.server.store.records import AttemptRecord


class GenerationObserver:
    """Hooks called by FallbackEngine, Generations and the streaming servicer; no-ops here."""

    def attempt_ended(self, record: AttemptRecord) -> None:
        """A provider attempt ended, or a pair of the chain was skipped."""

    def generation_started(self, prepared: Any) -> None:
        """A prepared generation starts running its chain."""

    def generation_ended(self, prepared: Any) -> None:
        """A generation stopped running, whatever the outcome."""

    def generation_served(self, prepared: Any, served: Any, image: Any, credits: int) -> None:
        """A generation stored its image and charged its credits."""

    def generation_failed(self, prepared: Any, status: str) -> None:
        """A generation ended without an image ("failed" or "cancelled")."""

    def stream_opened(self) -> None:
        """A progress stream started."""

    def stream_closed(self) -> None:
        """A progress stream ended."""


NULL_OBSERVER = GenerationObserver()
