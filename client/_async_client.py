"""AsyncClient: the gRPC API with typed results and typed errors."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypedDict, TypeVar, Unpack

import grpc

from aigen.client._errors import from_call
from aigen.client._references import ReferenceImage, to_image_data_list
from aigen.client._stream import GenerationStream
from aigen.client._types import (
    GenerationResult,
    ImageBytes,
    Layer,
    LayerStack,
    ModelInfo,
    ModelRef,
    ProviderInfo,
    Session,
    SessionConfig,
    SessionPage,
    Turn,
    write_file,
)
from aigen.v1 import (
    generation_service_pb2,
    generation_service_pb2_grpc,
    image_service_pb2,
    image_service_pb2_grpc,
    layer_service_pb2,
    layer_service_pb2_grpc,
    session_service_pb2,
    session_service_pb2_grpc,
)

DEFAULT_ADDRESS = "localhost:19002"
ADDRESS_ENV = "AIGEN_ADDRESS"
_CHANNEL_OPTIONS = (("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1))
T = TypeVar("T")
FallbackEntry = ModelRef | str | tuple[str, str]


class GenerationOptions(TypedDict, total=False):
    """Optional fields of generate, iterate and sessionless generation."""

    provider: str
    model: str
    fallback: Sequence[FallbackEntry]
    aspect_ratio: str
    image_size: str
    size: str
    quality: str
    seed: int
    reference_images: Sequence[ReferenceImage]
    omit_image_data: bool


def default_address() -> str:
    """`AIGEN_ADDRESS`, else localhost:19002."""
    return os.environ.get(ADDRESS_ENV) or DEFAULT_ADDRESS


def to_model_ref(entry: FallbackEntry) -> ModelRef:
    """A fallback entry given as ModelRef, "provider/model" or a (provider, model) pair."""
    if isinstance(entry, ModelRef):
        return entry
    if isinstance(entry, str):
        return ModelRef.parse(entry)
    provider, model = entry
    return ModelRef(provider, model)


def fill_request(request: Any, options: GenerationOptions) -> Any:
    """Copy the options into a GenerateRequest, IterateRequest or GenerateImageRequest."""
    for name, value in options.items():
        if name == "fallback":
            request.fallback.extend(to_model_ref(entry).to_proto() for entry in value)
        elif name == "reference_images":
            request.reference_image_data.extend(to_image_data_list(value))
        elif value is not None:
            setattr(request, name, value)
    return request


def credentials_metadata(api_key: str | None, app_token: str | None) -> tuple[tuple[str, str], ...]:
    """`authorization: Bearer <api_key>` and `x-app-token: <app_token>` when given."""
    metadata = []
    if api_key:
        metadata.append(("authorization", f"Bearer {api_key}"))
    if app_token:
        metadata.append(("x-app-token", app_token))
    return tuple(metadata)


class AsyncClient:
    """Asynchronous client of the aigen gateway.

    `address` defaults to `$AIGEN_ADDRESS` or localhost:19002. `api_key` is sent as
    `authorization: Bearer …`, `app_token` as `x-app-token`. `deadline` (seconds) is the
    default deadline of unary calls; every method takes its own `deadline` too (streams
    have none unless given).
    Use as `async with AsyncClient() as client: ...`, or call `close()`.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        api_key: str | None = None,
        app_token: str | None = None,
        deadline: float | None = None,
        tls: bool = False,
    ) -> None:
        self.address = address or default_address()
        self.deadline = deadline
        self._metadata = credentials_metadata(api_key, app_token)
        if tls:
            self._channel = grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(), _CHANNEL_OPTIONS)
        else:
            self._channel = grpc.aio.insecure_channel(self.address, _CHANNEL_OPTIONS)
        self._sessions = session_service_pb2_grpc.SessionServiceStub(self._channel)
        self._generation = generation_service_pb2_grpc.GenerationServiceStub(self._channel)
        self._layers = layer_service_pb2_grpc.LayerServiceStub(self._channel)
        self._images = image_service_pb2_grpc.ImageServiceStub(self._channel)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; calls still running are cancelled."""
        await self._channel.close()

    def _options(self, deadline: float | None) -> dict[str, Any]:
        return {"metadata": self._metadata, "timeout": self.deadline if deadline is None else deadline}

    async def _unary(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as error:
            raise from_call(error) from None

    # Sessions

    async def create_session(
        self,
        project: str = "",
        mode: str = "single",
        config: SessionConfig | None = None,
        *,
        deadline: float | None = None,
    ) -> Session:
        """Create a session ("single" or "layered") with optional generation defaults."""
        request = session_service_pb2.CreateSessionRequest(project=project, mode=mode)
        if config is not None:
            request.config.CopyFrom(config.to_proto())
        return Session.from_proto(await self._unary(self._sessions.CreateSession(request, **self._options(deadline))))

    async def get_session(self, session_id: str, *, deadline: float | None = None) -> Session:
        """A session's status, config and current image."""
        request = session_service_pb2.GetSessionRequest(session_id=session_id)
        return Session.from_proto(await self._unary(self._sessions.GetSession(request, **self._options(deadline))))

    async def list_sessions(
        self, project: str = "", *, page_size: int = 0, page_token: str = "", deadline: float | None = None
    ) -> SessionPage:
        """One page of sessions, newest first."""
        request = session_service_pb2.ListSessionsRequest(project=project, page_size=page_size, page_token=page_token)
        reply = await self._unary(self._sessions.ListSessions(request, **self._options(deadline)))
        return SessionPage(tuple(Session.from_proto(s) for s in reply.sessions), reply.next_page_token)

    async def delete_session(self, session_id: str, *, deadline: float | None = None) -> None:
        """Delete a session with its history and images."""
        request = session_service_pb2.DeleteSessionRequest(session_id=session_id)
        await self._unary(self._sessions.DeleteSession(request, **self._options(deadline)))

    # Generation

    async def generate(
        self, session_id: str, prompt: str, *, deadline: float | None = None, **options: Unpack[GenerationOptions]
    ) -> GenerationResult:
        """The session's next image from a prompt."""
        request = fill_request(generation_service_pb2.GenerateRequest(session_id=session_id, prompt=prompt), options)
        call = self._generation.Generate(request, **self._options(deadline))
        return GenerationResult.from_proto(await self._unary(call))

    async def iterate(
        self, session_id: str, instructions: str, *, deadline: float | None = None, **options: Unpack[GenerationOptions]
    ) -> GenerationResult:
        """Edit the session's current image."""
        request = generation_service_pb2.IterateRequest(session_id=session_id, instructions=instructions)
        fill_request(request, options)
        call = self._generation.Iterate(request, **self._options(deadline))
        return GenerationResult.from_proto(await self._unary(call))

    async def generate_image(
        self, prompt: str, *, project: str = "", deadline: float | None = None, **options: Unpack[GenerationOptions]
    ) -> GenerationResult:
        """An image without a session."""
        request = fill_request(generation_service_pb2.GenerateImageRequest(project=project, prompt=prompt), options)
        call = self._generation.GenerateImage(request, **self._options(deadline))
        return GenerationResult.from_proto(await self._unary(call))

    def stream_generate(
        self, session_id: str, prompt: str, *, deadline: float | None = None, **options: Unpack[GenerationOptions]
    ) -> GenerationStream:
        """`generate` with progress events."""
        request = fill_request(generation_service_pb2.GenerateRequest(session_id=session_id, prompt=prompt), options)
        return GenerationStream(self._generation.StreamGenerate(request, metadata=self._metadata, timeout=deadline))

    def stream_iterate(
        self, session_id: str, instructions: str, *, deadline: float | None = None, **options: Unpack[GenerationOptions]
    ) -> GenerationStream:
        """`iterate` with progress events."""
        request = generation_service_pb2.IterateRequest(session_id=session_id, instructions=instructions)
        fill_request(request, options)
        return GenerationStream(self._generation.StreamIterate(request, metadata=self._metadata, timeout=deadline))

    def stream_generate_image(
        self, prompt: str, *, project: str = "", deadline: float | None = None, **options: Unpack[GenerationOptions]
    ) -> GenerationStream:
        """`generate_image` with progress events."""
        request = fill_request(generation_service_pb2.GenerateImageRequest(project=project, prompt=prompt), options)
        call = self._generation.StreamGenerateImage(request, metadata=self._metadata, timeout=deadline)
        return GenerationStream(call)

    async def history(self, session_id: str, *, deadline: float | None = None) -> tuple[Turn, ...]:
        """Every turn of a session, oldest first."""
        request = generation_service_pb2.GetHistoryRequest(session_id=session_id)
        reply = await self._unary(self._generation.GetHistory(request, **self._options(deadline)))
        return tuple(Turn.from_proto(turn) for turn in reply.turns)

    # Catalogue

    async def list_providers(self, *, deadline: float | None = None) -> tuple[ProviderInfo, ...]:
        """Every provider and whether it is configured."""
        request = generation_service_pb2.ListProvidersRequest()
        reply = await self._unary(self._generation.ListProviders(request, **self._options(deadline)))
        return tuple(ProviderInfo.from_proto(p) for p in reply.providers)

    async def list_models(self, provider: str = "", *, deadline: float | None = None) -> tuple[ModelInfo, ...]:
        """Every model (of one provider when given), default fallback order first."""
        request = generation_service_pb2.ListModelsRequest(provider=provider)
        reply = await self._unary(self._generation.ListModels(request, **self._options(deadline)))
        return tuple(ModelInfo.from_proto(m) for m in reply.models)

    # Layers

    async def separate_layers(
        self, session_id: str, layer_count: int = 0, *, deadline: float | None = None
    ) -> LayerStack:
        """Split the current image of a layered session into layers."""
        request = layer_service_pb2.SeparateLayersRequest(session_id=session_id, layer_count=layer_count)
        reply = await self._unary(self._layers.SeparateLayers(request, **self._options(deadline)))
        return LayerStack(reply.session_id, tuple(Layer.from_proto(layer) for layer in reply.layers))

    async def lock_layer(self, session_id: str, layer_id: str, *, deadline: float | None = None) -> Layer:
        """Lock a layer: iterations keep its pixels."""
        request = layer_service_pb2.LockLayerRequest(session_id=session_id, layer_id=layer_id)
        reply = await self._unary(self._layers.LockLayer(request, **self._options(deadline)))
        return Layer.from_proto(reply.layer)

    async def unlock_layer(self, session_id: str, layer_id: str, *, deadline: float | None = None) -> Layer:
        """Unlock a layer."""
        request = layer_service_pb2.UnlockLayerRequest(session_id=session_id, layer_id=layer_id)
        reply = await self._unary(self._layers.UnlockLayer(request, **self._options(deadline)))
        return Layer.from_proto(reply.layer)

    async def list_layers(self, session_id: str, *, deadline: float | None = None) -> LayerStack:
        """The layer stack, background first, with its export URL."""
        request = layer_service_pb2.ListLayersRequest(session_id=session_id)
        reply = await self._unary(self._layers.ListLayers(request, **self._options(deadline)))
        layers = tuple(Layer.from_proto(layer) for layer in reply.layers)
        return LayerStack(reply.session_id, layers, reply.export_url)

    async def export_layers(
        self, session_id: str, path: str | Path | None = None, *, deadline: float | None = None
    ) -> bytes:
        """The layer stack as a zip of PNGs with a manifest; also written to `path` when given."""
        request = layer_service_pb2.ExportLayersRequest(session_id=session_id)
        reply = await self._unary(self._layers.ExportLayers(request, **self._options(deadline)))
        if path is not None:
            write_file(path, reply.data)
        return reply.data

    # Images

    async def get_image(self, image: str | GenerationResult, *, deadline: float | None = None) -> ImageBytes:
        """An image's bytes by id (or of a result)."""
        image_id = image if isinstance(image, str) else image.image_id
        request = image_service_pb2.GetImageRequest(image_id=image_id)
        reply = await self._unary(self._images.GetImage(request, **self._options(deadline)))
        return ImageBytes(reply.data, reply.content_type)

    async def save_image(
        self, image: str | GenerationResult, path: str | Path, *, deadline: float | None = None
    ) -> Path:
        """Write an image to `path`: a result's own bytes when it has them, else fetched by id."""
        if isinstance(image, GenerationResult) and image.data:
            return image.save(path)
        return (await self.get_image(image, deadline=deadline)).save(path)
