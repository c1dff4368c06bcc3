"""Prometheus metrics of one server, in their own registry (served by `GET /metrics`).

Every name starts with `aigen_`. Provider and model labels only take names the provider
registry knows ("other" otherwise), so callers cannot grow the label sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from aigen.server.store.records import AttemptRecord
from aigen.v1 import types_pb2

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
GENERATION_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
RPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
OTHER = "other"


def outcome_label(outcome: int) -> str:
    """AttemptOutcome as a label value: "succeeded", "failed_retryable", "skipped_cooldown", ..."""
    try:
        return types_pb2.AttemptOutcome.Name(outcome).removeprefix("ATTEMPT_OUTCOME_").lower()
    except ValueError:
        return "unspecified"


class CooldownCollector:
    """`aigen_provider_cooldown` per pair and `aigen_providers_in_cooldown`, read at scrape time."""

    def __init__(self, cooling_down: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self.cooling_down = cooling_down

    def collect(self):
        """One sample per pair in cooldown, and their count."""
        pairs = sorted(set(self.cooling_down()))
        per_pair = GaugeMetricFamily(
            "aigen_provider_cooldown",
            "1 while a provider/model pair is skipped after repeated failures",
            labels=["provider", "model"],
        )
        for provider, model in pairs:
            per_pair.add_metric([provider, model], 1)
        yield per_pair
        yield GaugeMetricFamily("aigen_providers_in_cooldown", "Provider/model pairs in cooldown", value=len(pairs))


class Metrics:
    """Every aigen metric, registered in a registry of its own."""

    def __init__(
        self,
        cooling_down: Callable[[], Iterable[tuple[str, str]]] = tuple,
        known_pair: Callable[[str, str], bool] = lambda provider, model: True,
        process_metrics: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.known_pair = known_pair
        registry = self.registry
        self.rpc_requests = Counter(
            "aigen_rpc_requests", "RPCs handled, by method and gRPC status code", ["rpc", "code"], registry=registry
        )
        self.rpc_duration = Histogram(
            "aigen_rpc_duration_seconds", "RPC handling time", ["rpc"], buckets=RPC_BUCKETS, registry=registry
        )
        self.generation_duration = Histogram(
            "aigen_generation_duration_seconds",
            "Generation time from start to stored image (served pair) or failure (requested pair)",
            ["provider", "model", "outcome"],
            buckets=GENERATION_BUCKETS,
            registry=registry,
        )
        self.attempts = Counter(
            "aigen_provider_attempts",
            "Provider attempts and skipped pairs, by outcome",
            ["provider", "model", "outcome"],
            registry=registry,
        )
        self.attempt_duration = Histogram(
            "aigen_provider_attempt_duration_seconds",
            "Time of each provider call (skips excluded)",
            ["provider", "model", "outcome"],
            buckets=GENERATION_BUCKETS,
            registry=registry,
        )
        self.fallbacks = Counter(
            "aigen_fallbacks",
            "Generations served by another pair than the requested one",
            ["requested_provider", "requested_model", "served_provider", "served_model"],
            registry=registry,
        )
        self.in_flight = Gauge("aigen_generations_in_flight", "Generations running their chain", registry=registry)
        self.streams_open = Gauge("aigen_progress_streams_open", "Open progress streams", registry=registry)
        self.credits = Counter(
            "aigen_credits_charged", "Credits charged for served images", ["provider", "model"], registry=registry
        )
        self.image_bytes = Counter(
            "aigen_image_bytes_stored", "Bytes of generated images stored", ["provider", "model"], registry=registry
        )
        registry.register(CooldownCollector(cooling_down))
        if process_metrics:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)

    def pair(self, provider: str, model: str) -> tuple[str, str]:
        """Label values for a pair: the names when known, "other" otherwise."""
        return (provider, model) if self.known_pair(provider, model) else (OTHER, OTHER)

    def record_attempt(self, record: AttemptRecord) -> None:
        """Count an attempt (or skip); time real calls."""
        provider, model = self.pair(record.provider, record.model)
        outcome = outcome_label(record.outcome)
        self.attempts.labels(provider, model, outcome).inc()
        if record.attempt_number > 0:
            self.attempt_duration.labels(provider, model, outcome).observe(record.duration_s)

    def record_rpc(self, rpc: str, code: str, duration_s: float) -> None:
        """Count a finished RPC."""
        self.rpc_requests.labels(rpc, code).inc()
        self.rpc_duration.labels(rpc).observe(duration_s)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
