"""Assembly: providers, store, engine and servicers on one grpc.aio server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from aigen.server.access import AccessControl
from aigen.server.config import Settings
from aigen.server.engine import FallbackEngine
from aigen.server.generation import Generations
from aigen.server.health import ModelHealth
from aigen.server.image_sends import ImageSends
from aigen.server.interceptor import ErrorInterceptor
from aigen.server.layered import LayeredSessions
from aigen.server.models import ModelResolver
from aigen.server.observability.interceptor import ObservabilityInterceptor
from aigen.server.observability.telemetry import Telemetry
from aigen.server.projects import Projects
from aigen.server.providers.base import ProviderRegistry, registered_provider_classes
from aigen.server.ratelimit import AsyncRateLimiter
from aigen.server.services.generation import GenerationServicer
from aigen.server.services.image import ImageServicer
from aigen.server.services.layers import LayerServicer
from aigen.server.services.ops import OpsServicer
from aigen.server.services.projects import AccessServicer, ProjectServicer
from aigen.server.services.session import SessionServicer
from aigen.server.services.ui import UiServicer
from aigen.server.store.base import Store
from aigen.server.store.factory import build_rate_limiter, build_store
from aigen.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    generation_service_pb2,
    generation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    layer_service_pb2,
    layer_service_pb2_grpc,
    ops_service_pb2,
    ops_service_pb2_grpc,
    project_service_pb2,
    project_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
    ui_service_pb2,
    ui_service_pb2_grpc,
)

log = logging.getLogger(__name__)
TRANSPORT_CEILING = 1024 * 1024 * 1024
# Calls that arrived but that the event loop has not taken up yet. Past the soft limit gRPC
# cancels new arrivals at random (certainly at the hard limit): the defaults (1,000 / 3,000)
# cancel a few hundred of 2,000 streams opened at once.
PENDING_CALLS_SOFT_LIMIT = 20_000
PENDING_CALLS_HARD_LIMIT = 40_000
# How long such a call may wait before gRPC cancels it (default 30 s); its own deadline still applies.
PENDING_CALL_MAX_S = 120
SERVICE_NAMES = (
    project_service_pb2.DESCRIPTOR.services_by_name["ProjectService"].full_name,
    access_service_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name,
    session_service_pb2.DESCRIPTOR.services_by_name["SessionService"].full_name,
    generation_service_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name,
    image_service_pb2.DESCRIPTOR.services_by_name["ImageService"].full_name,
    layer_service_pb2.DESCRIPTOR.services_by_name["LayerService"].full_name,
    ops_service_pb2.DESCRIPTOR.services_by_name["OpsService"].full_name,
    ui_service_pb2.DESCRIPTOR.services_by_name["UiService"].full_name,
)


@dataclass
class RunningServer:
    """A started server and what it owns."""

    server: grpc.aio.Server
    port: int
    settings: Settings
    store: Store
    registry: ProviderRegistry
    health: health.HealthServicer
    resolver: ModelResolver
    limiter: AsyncRateLimiter
    model_health: ModelHealth | None = None
    image_sends: ImageSends | None = None

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish within `grace`, close everything."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(self.settings.grace_period_s if grace is None else grace)
        await self.registry.aclose()
        await self.limiter.close()
        if hasattr(self.model_health, "close"):  # the shared cooldowns' refresher and pool
            await self.model_health.close()
        await self.store.close()


def build_registry(settings: Settings) -> ProviderRegistry:
    """Every registered provider, built from settings."""
    import aigen.server.providers  # noqa: F401  (registers the built-in providers)

    registry = ProviderRegistry()
    for provider_class in registered_provider_classes().values():
        registry.add(provider_class.from_settings(settings))
    return registry


def public_base_url(settings: Settings) -> str:
    """Prefix of image URLs: the configured public URL, else the local REST port."""
    return (settings.public_url or f"http://localhost:{settings.http_port}").rstrip("/")


async def start_server(
    settings: Settings, registry: ProviderRegistry | None = None, store: Store | None = None
) -> RunningServer:
    """Build and start the server; `registry` and `store` may be given (tests)."""
    registry = registry if registry is not None else build_registry(settings)
    store = store if store is not None else build_store(settings)
    await store.open()
    if settings.store == "postgres":  # cooldowns shared by every replica
        from aigen.server.health_shared import SharedModelHealth

        shared_health = SharedModelHealth(
            settings.database_url, cooldown_failures=settings.cooldown_failures, cooldown_s=settings.cooldown_s
        )
        await shared_health.open()
        model_health: ModelHealth = shared_health
    else:
        model_health = ModelHealth(cooldown_failures=settings.cooldown_failures, cooldown_s=settings.cooldown_s)
    resolver = ModelResolver(registry, settings, model_health)
    telemetry = Telemetry.from_environment(
        model_health.cooling_down, lambda provider, model: registry.find_model(provider, model) is not None
    )
    engine = FallbackEngine(registry, settings, model_health, telemetry)
    base_url = public_base_url(settings)
    layered = LayeredSessions(store)
    generations = Generations(settings, resolver, store, engine, layered, base_url, telemetry)
    image_sends = ImageSends(settings.stream_image_sends, store, settings.stream_image_hold_s)
    limiter = build_rate_limiter(settings)
    await limiter.open()
    access_control = AccessControl(store, settings, limiter)

    # The interceptor reports requests past the cap as INVALID_ARGUMENT; the transport's own
    # limit only bounds memory, far above it.
    hard_cap = max(4 * settings.max_message_bytes, TRANSPORT_CEILING)
    server = grpc.aio.server(
        # Observability first: it wraps the error interceptor and so sees the final status codes.
        interceptors=[
            ObservabilityInterceptor(telemetry),
            ErrorInterceptor(settings.max_message_bytes, access_control),
        ],
        options=[
            ("grpc.max_receive_message_length", hard_cap),
            ("grpc.max_send_message_length", hard_cap),
            ("grpc.so_reuseport", 0),
            ("grpc.server.max_pending_requests", PENDING_CALLS_SOFT_LIMIT),
            ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS_HARD_LIMIT),
            ("grpc.server_max_unrequested_time_in_server", PENDING_CALL_MAX_S),
        ],
    )
    session_service_pb2_grpc.add_SessionServiceServicer_to_server(SessionServicer(store, resolver, base_url), server)
    generation_service_pb2_grpc.add_GenerationServiceServicer_to_server(
        GenerationServicer(generations, resolver, image_sends), server
    )
    presign_s = settings.s3_presign_expiry_s if settings.s3_presigned_redirect else 0
    image_service_pb2_grpc.add_ImageServiceServicer_to_server(ImageServicer(store, presign_s), server)
    layer_service_pb2_grpc.add_LayerServiceServicer_to_server(LayerServicer(layered, base_url), server)
    ui_service_pb2_grpc.add_UiServiceServicer_to_server(UiServicer(), server)
    ops_service_pb2_grpc.add_OpsServiceServicer_to_server(OpsServicer(telemetry.metrics), server)
    project_service_pb2_grpc.add_ProjectServiceServicer_to_server(
        ProjectServicer(Projects(store, resolver), access_control), server
    )
    access_service_pb2_grpc.add_AccessServiceServicer_to_server(AccessServicer(access_control), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

    port = server.add_insecure_port(f"{settings.host}:{settings.grpc_port}")
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("aigen gRPC server listening on %s:%d", settings.host, port)
    return RunningServer(
        server,
        port,
        settings,
        store,
        registry,
        health_servicer,
        resolver,
        limiter,
        model_health=model_health,
        image_sends=image_sends,
    )
