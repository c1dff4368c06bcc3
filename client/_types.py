"""Typed results: frozen dataclasses built from the API's messages.

Each main result keeps the message it came from in `proto` (excluded from equality and repr).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from aigen.v1 import generation_service_pb2, session_service_pb2, types_pb2

Phase = types_pb2.GenerationEvent.Phase


def seconds(duration: duration_pb2.Duration) -> float:
    """A Duration as float seconds."""
    return duration.ToNanoseconds() / 1e9


def timestamp(message: Any, name: str) -> datetime.datetime | None:
    """The named Timestamp field as an aware datetime, None when unset."""
    if not message.HasField(name):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, name)
    return value.ToDatetime(tzinfo=datetime.UTC)


def enum_name(enum: Any, value: int, prefix: str) -> str:
    """An enum value's name without its prefix, lower case ("" when unspecified)."""
    return "" if value == 0 else enum.Name(value).removeprefix(prefix).lower()


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A provider/model pair."""

    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Parse "provider/model"."""
        provider, sep, model = text.partition("/")
        if not sep or not provider or not model:
            raise ValueError(f"expected provider/model, got {text!r}")
        return cls(provider, model)

    @classmethod
    def from_proto(cls, message: types_pb2.ModelRef) -> ModelRef:
        """From the message."""
        return cls(message.provider, message.model)

    def to_proto(self) -> types_pb2.ModelRef:
        """As the message."""
        return types_pb2.ModelRef(provider=self.provider, model=self.model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


def optional_ref(message: Any, name: str) -> ModelRef | None:
    """The named ModelRef field, None when unset."""
    return ModelRef.from_proto(getattr(message, name)) if message.HasField(name) else None


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """A stored image; `data` is filled only where a response carries the bytes."""

    image_id: str
    url: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    data: bytes = field(default=b"", repr=False)

    @classmethod
    def from_proto(cls, message: types_pb2.Image) -> ImageInfo:
        """From the message."""
        return cls(
            message.image_id,
            message.url,
            message.content_type,
            message.width,
            message.height,
            message.size_bytes,
            message.data,
        )


def optional_image(message: Any, name: str) -> ImageInfo | None:
    """The named Image field, None when unset."""
    return ImageInfo.from_proto(getattr(message, name)) if message.HasField(name) else None


@dataclass(frozen=True, slots=True)
class ImageBytes:
    """Fetched image bytes with their content type."""

    data: bytes = field(repr=False)
    content_type: str

    def save(self, path: str | Path) -> Path:
        """Write the bytes to `path` (parents created); returns the path."""
        return write_file(path, self.data)


def write_file(path: str | Path, data: bytes) -> Path:
    """Write bytes to a file, creating its directory."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of the fallback chain; `outcome` and `reason` are lower-case names."""

    provider: str
    model: str
    attempt_number: int
    chain_position: int
    outcome: str
    reason: str
    error: str
    duration: float

    @classmethod
    def from_proto(cls, message: types_pb2.Attempt) -> Attempt:
        """From the message."""
        return cls(
            message.provider,
            message.model,
            message.attempt_number,
            message.chain_position,
            enum_name(types_pb2.AttemptOutcome, message.outcome, "ATTEMPT_OUTCOME_"),
            enum_name(types_pb2.ErrorReason, message.reason, "ERROR_REASON_"),
            message.error,
            seconds(message.duration),
        )


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """A session's generation defaults."""

    aspect_ratio: str = ""
    image_size: str = ""
    provider: str = ""
    model: str = ""
    fallback_chain: tuple[ModelRef, ...] = ()

    @classmethod
    def from_proto(cls, message: types_pb2.SessionConfig) -> SessionConfig:
        """From the message."""
        chain = tuple(ModelRef.from_proto(ref) for ref in message.fallback_chain)
        return cls(message.aspect_ratio, message.image_size, message.provider, message.model, chain)

    def to_proto(self) -> types_pb2.SessionConfig:
        """As the message."""
        return types_pb2.SessionConfig(
            aspect_ratio=self.aspect_ratio,
            image_size=self.image_size,
            provider=self.provider,
            model=self.model,
            fallback_chain=[ref.to_proto() for ref in self.fallback_chain],
        )


@dataclass(frozen=True, slots=True)
class Session:
    """A session: status ("ready" or "generating"), config, current image, counts."""

    session_id: str
    status: str
    project: str
    mode: str
    config: SessionConfig
    current_image: ImageInfo | None
    turn_count: int
    layer_count: int
    create_time: datetime.datetime | None
    update_time: datetime.datetime | None
    proto: session_service_pb2.Session | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: session_service_pb2.Session) -> Session:
        """From the message."""
        return cls(
            message.session_id,
            message.status,
            message.project,
            message.mode,
            SessionConfig.from_proto(message.config),
            optional_image(message, "current_image"),
            message.turn_count,
            message.layer_count,
            timestamp(message, "create_time"),
            timestamp(message, "update_time"),
            message,
        )


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of ListSessions."""

    sessions: tuple[Session, ...]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """Pixel rectangle."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Layer:
    """One RGBA layer of a layered session."""

    layer_id: str
    name: str
    z_order: int
    bounding_box: BoundingBox
    coverage: float
    locked: bool
    url: str
    image_id: str

    @classmethod
    def from_proto(cls, message: types_pb2.Layer) -> Layer:
        """From the message."""
        box = message.bounding_box
        return cls(
            message.layer_id,
            message.name,
            message.z_order,
            BoundingBox(box.x, box.y, box.width, box.height),
            message.coverage,
            message.locked,
            message.url,
            message.image_id,
        )


@dataclass(frozen=True, slots=True)
class LayerStack:
    """A session's layers, background first, with the export URL when known."""

    session_id: str
    layers: tuple[Layer, ...]
    export_url: str = ""


@dataclass(frozen=True, slots=True)
class LockDrift:
    """Pixels a provider changed inside locked layers before they were restored."""

    changed_fraction: float
    changed_pixels: int
    max_channel_delta: int


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """A generated image and how it was served."""

    image_id: str
    url: str
    content_type: str
    width: int
    height: int
    data: bytes = field(repr=False)
    provider: str
    model: str
    revised_prompt: str
    credits_used: int
    fallback_used: ModelRef | None
    original_request: ModelRef | None
    attempts: tuple[Attempt, ...]
    degradations: tuple[str, ...]
    session_id: str
    turn_id: str
    duration: float
    aspect_ratio: str
    layers: tuple[Layer, ...]
    lock_drift: LockDrift | None
    proto: types_pb2.GenerationResult | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: types_pb2.GenerationResult) -> GenerationResult:
        """From the message."""
        drift = None
        if message.HasField("lock_drift"):
            d = message.lock_drift
            drift = LockDrift(d.changed_fraction, d.changed_pixels, d.max_channel_delta)
        return cls(
            image_id=message.image_id,
            url=message.url,
            content_type=message.content_type,
            width=message.width,
            height=message.height,
            data=message.data,
            provider=message.provider,
            model=message.model,
            revised_prompt=message.revised_prompt,
            credits_used=message.credits_used,
            fallback_used=optional_ref(message, "fallback_used"),
            original_request=optional_ref(message, "original_request"),
            attempts=tuple(Attempt.from_proto(a) for a in message.attempts),
            degradations=tuple(message.degradations),
            session_id=message.session_id,
            turn_id=message.turn_id,
            duration=seconds(message.duration),
            aspect_ratio=message.aspect_ratio,
            layers=tuple(Layer.from_proto(layer) for layer in message.layers),
            lock_drift=drift,
            proto=message,
        )

    def save(self, path: str | Path) -> Path:
        """Write the image bytes to `path`; the request must not have omitted them."""
        if not self.data:
            raise ValueError("the result carries no image bytes (omit_image_data); use Client.save_image")
        return write_file(path, self.data)


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One event of a streaming generation.

    `phase` is "queued", "running", "fallback", "persisting", "completed" or "failed";
    `percent_estimated` is true when `percent` is an estimate from typical latency.
    """

    phase: str
    percent: float
    percent_estimated: bool
    eta: float | None
    elapsed: float
    attempt: Attempt | None
    message: str
    preview: ImageInfo | None
    result: GenerationResult | None
    time: datetime.datetime | None
    proto: types_pb2.GenerationEvent | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, message: types_pb2.GenerationEvent) -> ProgressEvent:
        """From the message (a FAILED event's error stays in `proto.error`)."""
        return cls(
            phase=enum_name(Phase, message.phase, "PHASE_"),
            percent=message.percent,
            percent_estimated=message.percent_estimated,
            eta=seconds(message.eta) if message.HasField("eta") else None,
            elapsed=seconds(message.elapsed),
            attempt=Attempt.from_proto(message.attempt) if message.HasField("attempt") else None,
            message=message.message,
            preview=optional_image(message, "preview"),
            result=GenerationResult.from_proto(message.result) if message.HasField("result") else None,
            time=timestamp(message, "time"),
            proto=message,
        )

    @property
    def terminal(self) -> bool:
        """True for the last event of a stream."""
        return self.phase in ("completed", "failed")


@dataclass(frozen=True, slots=True)
class Turn:
    """One entry of a session's history."""

    turn_id: str
    index: int
    kind: str
    status: str
    prompt: str
    instructions: str
    requested: ModelRef | None
    served: ModelRef | None
    attempts: tuple[Attempt, ...]
    duration: float
    image: ImageInfo | None
    credits_used: int
    error: str
    layer_id: str
    create_time: datetime.datetime | None
    degradations: tuple[str, ...]
    aspect_ratio: str
    image_size: str

    @classmethod
    def from_proto(cls, message: generation_service_pb2.Turn) -> Turn:
        """From the message."""
        return cls(
            turn_id=message.turn_id,
            index=message.index,
            kind=enum_name(generation_service_pb2.Turn.Kind, message.kind, "KIND_"),
            status=enum_name(generation_service_pb2.Turn.Status, message.status, "STATUS_"),
            prompt=message.prompt,
            instructions=message.instructions,
            requested=optional_ref(message, "requested"),
            served=optional_ref(message, "served"),
            attempts=tuple(Attempt.from_proto(a) for a in message.attempts),
            duration=seconds(message.duration),
            image=optional_image(message, "image"),
            credits_used=message.credits_used,
            error=message.error,
            layer_id=message.layer_id,
            create_time=timestamp(message, "create_time"),
            degradations=tuple(message.degradations),
            aspect_ratio=message.aspect_ratio,
            image_size=message.image_size,
        )


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """A provider and whether it is configured."""

    name: str
    configured: bool
    credential_env: str
    models: tuple[str, ...]
    description: str
    models_in_cooldown: tuple[str, ...]

    @classmethod
    def from_proto(cls, message: generation_service_pb2.ProviderInfo) -> ProviderInfo:
        """From the message."""
        return cls(
            message.name,
            message.configured,
            message.credential_env,
            tuple(message.models),
            message.description,
            tuple(message.models_in_cooldown),
        )


@dataclass(frozen=True, slots=True)
class ModelCapabilities:
    """What a model can do."""

    aspect_ratios: tuple[str, ...]
    image_sizes: tuple[str, ...]
    max_reference_images: int
    can_edit: bool
    supports_mask: bool
    reports_progress: bool
    streams_previews: bool


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model, its capabilities and its price."""

    provider: str
    model: str
    internal_id: str
    aliases: tuple[str, ...]
    configured: bool
    notes: str
    capabilities: ModelCapabilities
    typical_latency: float
    credits_per_image: int
    in_cooldown: bool
    local: bool

    @classmethod
    def from_proto(cls, message: generation_service_pb2.ModelInfo) -> ModelInfo:
        """From the message."""
        caps = message.capabilities
        return cls(
            provider=message.provider,
            model=message.model,
            internal_id=message.internal_id,
            aliases=tuple(message.aliases),
            configured=message.configured,
            notes=message.notes,
            capabilities=ModelCapabilities(
                tuple(caps.aspect_ratios),
                tuple(caps.image_sizes),
                caps.max_reference_images,
                caps.can_edit,
                caps.supports_mask,
                caps.reports_progress,
                caps.streams_previews,
            ),
            typical_latency=seconds(message.typical_latency),
            credits_per_image=message.credits_per_image,
            in_cooldown=message.in_cooldown,
            local=message.local,
        )
