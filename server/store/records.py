"""Plain records the store persists. Frozen: change them with dataclasses.replace."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """Metadata of one stored image; the bytes live in a content-addressed blob."""

    image_id: str
    sha256: str
    content_type: str
    width: int
    height: int
    size_bytes: int
    created_at: float
    session_id: str | None = None
    kind: str = "image"  # "image" | "layer" | "export"


@dataclass(frozen=True, slots=True)
class SessionConfigRecord:
    """Session generation defaults as stored (empty strings mean "server default")."""

    aspect_ratio: str = ""
    image_size: str = ""
    provider: str = ""
    model: str = ""
    fallback_chain: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session."""

    session_id: str
    project: str
    mode: str  # "single" | "layered"
    config: SessionConfigRecord
    created_at: float
    updated_at: float
    status: str = "ready"  # "ready" | "generating"
    busy_until: float = 0.0  # lease expiry while generating (epoch seconds)
    current_image_id: str | None = None
    turn_count: int = 0
    layer_count: int = 0


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt of a turn (mirrors aigen.v1.Attempt)."""

    provider: str
    model: str
    attempt_number: int
    chain_position: int
    outcome: int  # aigen.v1.AttemptOutcome value
    reason: int = 0  # aigen.v1.ErrorReason value
    error: str = ""
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One history entry of a session."""

    turn_id: str
    session_id: str
    kind: str  # "generate" | "iterate" | "separate" | "lock" | "unlock"
    status: str  # "completed" | "failed" | "cancelled" | "interrupted"
    created_at: float
    index: int = 0  # assigned by the store when committed (1-based)
    prompt: str = ""
    instructions: str = ""
    requested_provider: str = ""
    requested_model: str = ""
    served_provider: str = ""
    served_model: str = ""
    attempts: tuple[AttemptRecord, ...] = ()
    duration_s: float = 0.0
    image_id: str | None = None
    credits_used: int = 0
    error: str = ""
    layer_id: str = ""
    degradations: tuple[str, ...] = ()
    aspect_ratio: str = ""
    image_size: str = ""
    provider_state: bytes | None = None  # opaque multi-turn state of the serving provider


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """One RGBA layer of a layered session."""

    layer_id: str
    session_id: str
    name: str
    z_order: int
    image_id: str
    bbox: tuple[int, int, int, int]  # x, y, width, height
    coverage: float
    locked: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of sessions."""

    sessions: list[SessionRecord] = field(default_factory=list)
    next_page_token: str = ""


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    """A tenant: settings that shape its generations, limits and billing."""

    project_id: str
    allowed_providers: tuple[str, ...] = ()  # empty: every provider
    default_provider: str = ""
    default_model: str = ""
    billing_mode: str = "owner_pays"  # "owner_pays" | "user_pays"
    rate_limit: int = 0  # requests per window; 0: the server default
    allow_public_clients: bool = False
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """A project API key or app token, stored by the SHA-256 of its secret."""

    credential_id: str  # "key_..." or "tok_..."
    project_id: str
    kind: str  # "api_key" | "app_token"
    secret_hash: str
    created_at: float
    expires_at: float = 0.0  # epoch seconds; 0 never expires


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """Images served and credits charged, aggregated per project, day, model and billing mode."""

    project_id: str
    day: str  # "YYYY-MM-DD" UTC
    provider: str
    model: str
    billing_mode: str
    images: int = 1
    credits: int = 0
