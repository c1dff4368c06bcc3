"""The store interface: sessions, turns, layers and image blobs.

The embedded implementation is SQLite (WAL) plus content-addressed files; other backends
implement the same interface. Every method raises aigen.server.errors.NotFound for an
unknown session or image, never returns a half-written state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aigen.server.ids import new_id
from aigen.server.store.records import (
    CredentialRecord,
    ImageRecord,
    LayerRecord,
    Page,
    ProjectRecord,
    SessionRecord,
    TurnRecord,
    UsageRecord,
)


class Store(ABC):
    """Persistent state of the gateway."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema, then recover: sessions left "generating" by a
        crash become "ready" again, each with an "interrupted" turn for the generation it
        was running (see try_begin_generation).
        """

    @abstractmethod
    async def close(self) -> None:
        """Flush and close."""

    # Sessions -----------------------------------------------------------------------------
    @abstractmethod
    async def create_session(self, session: SessionRecord) -> None:
        """Insert a new session."""

    @abstractmethod
    async def get_session(self, session_id: str, project: str | None = None) -> SessionRecord:
        """The session; NotFound when absent or (with `project`) in another project."""

    @abstractmethod
    async def list_sessions(self, project: str | None, page_size: int, page_token: str) -> Page:
        """Sessions newest first; `page_token` is opaque (from a previous Page)."""

    @abstractmethod
    async def delete_session(self, session_id: str) -> None:
        """Delete the session, its turns, layers and images; blobs no image uses any more
        are removed from disk. NotFound when absent.
        """

    @abstractmethod
    async def try_begin_generation(
        self, session_id: str, lease_s: float, pending: Mapping[str, Any] | None = None
    ) -> bool:
        """Atomically mark the session "generating" with a lease of `lease_s` seconds.

        `pending` describes the generation (keys of PENDING_KEYS) and is kept on the session
        with its start time until end_generation. A lease that expired, or that a restart of
        the embedded store finds, was cut off: in the transaction that takes over or frees
        it, its pending generation is recorded as an "interrupted" turn (interrupted_turn).

        False when another generation holds an unexpired lease. NotFound when absent.
        """

    @abstractmethod
    async def end_generation(self, session_id: str) -> None:
        """Mark the session "ready" and forget its pending generation (no-op when it was
        deleted meanwhile).
        """

    # Images -------------------------------------------------------------------------------
    @abstractmethod
    async def write_blob(self, data: bytes) -> str:
        """Store bytes content-addressed (atomic, idempotent); return their sha256 hex."""

    def blob_writer(self) -> Callable[[bytes], str] | None:
        """write_blob as a blocking function for a worker thread already running, or None."""
        return None

    @abstractmethod
    async def read_blob(self, sha256: str) -> bytes:
        """The bytes of a blob."""

    async def blob_url(self, sha256: str, expires_s: int, content_type: str = "") -> str | None:
        """A time-limited URL that serves the blob without the gateway; None when the store has none."""
        return None

    @abstractmethod
    async def insert_image(self, image: ImageRecord, usage: UsageRecord | None = None) -> None:
        """Record an image whose blob was already written, and the usage it was charged, together."""

    @abstractmethod
    async def get_image(self, image_id: str) -> ImageRecord:
        """An image's metadata; NotFound when absent."""

    # Turns and layers ---------------------------------------------------------------------
    @abstractmethod
    async def commit_turn(
        self,
        turn: TurnRecord,
        images: Sequence[ImageRecord] = (),
        current_image_id: str | None = None,
        layers: Sequence[LayerRecord] | None = None,
        usage: UsageRecord | None = None,
    ) -> TurnRecord:
        """In one transaction: insert `images` (blobs already written), insert the turn with
        the next index, set the session's current image when given, replace the session's
        layer stack when `layers` is not None, add `usage` to the project's usage, bump
        turn_count and updated_at. Returns the turn with its index. NotFound when the session is gone.
        """

    @abstractmethod
    async def list_turns(self, session_id: str) -> list[TurnRecord]:
        """Every turn, oldest first."""

    @abstractmethod
    async def last_completed_turn(self, session_id: str) -> TurnRecord | None:
        """The newest completed generate/iterate turn, if any."""

    @abstractmethod
    async def list_layers(self, session_id: str) -> list[LayerRecord]:
        """The layer stack, background (z_order 0) first."""

    @abstractmethod
    async def set_layer_locked(self, session_id: str, layer_id: str, locked: bool, turn: TurnRecord) -> LayerRecord:
        """Set a layer's locked flag and record the lock/unlock turn in one transaction.
        NotFound (reason LAYER_NOT_FOUND) for an unknown layer.
        """

    # Projects, credentials, usage ---------------------------------------------------------
    @abstractmethod
    async def put_project(self, project: ProjectRecord) -> ProjectRecord:
        """Create or replace a project (keeping its creation time); returns what is stored."""

    @abstractmethod
    async def get_project(self, project_id: str) -> ProjectRecord:
        """A project; NotFound when absent."""

    @abstractmethod
    async def list_projects(self) -> list[ProjectRecord]:
        """Every project."""

    @abstractmethod
    async def delete_project(self, project_id: str) -> None:
        """Delete a project and its credentials; NotFound when absent."""

    @abstractmethod
    async def add_credential(self, credential: CredentialRecord) -> None:
        """Store a hashed credential; NotFound when its project is absent."""

    @abstractmethod
    async def find_credential(self, secret_hash: str) -> CredentialRecord | None:
        """The credential whose secret hashes to `secret_hash`."""

    @abstractmethod
    async def revoke_credential(self, project_id: str, credential_id: str) -> None:
        """Delete a credential; NotFound when absent."""

    @abstractmethod
    async def delete_expired_credentials(self, now: float) -> int:
        """Forget expired app tokens."""

    @abstractmethod
    async def list_usage(self, project_id: str, start_day: str = "", end_day: str = "") -> list[UsageRecord]:
        """A project's usage rows by day, provider, model and billing mode."""


# Interrupted generations ----------------------------------------------------------------------
PENDING_KEYS = ("kind", "text", "requested_provider", "requested_model", "aspect_ratio", "image_size")
INTERRUPTED_ERROR = "the server stopped before the generation finished"


def pending_record(pending: Mapping[str, Any] | None, started_at: float) -> dict[str, Any] | None:
    """What a store keeps on the session while a generation runs (None: nothing to record)."""
    if pending is None:
        return None
    record = {key: str(pending.get(key, "")) for key in PENDING_KEYS}
    record["started_at"] = float(started_at)
    return record


def interrupted_turn(session_id: str, pending: Mapping[str, Any], now: float) -> TurnRecord:
    """The "interrupted" turn of a generation whose lease expired or whose process died,
    recorded at `now` (when the store noticed; how long it ran is unknown).
    """
    kind = str(pending.get("kind", "")) or "generate"
    text = str(pending.get("text", ""))
    return TurnRecord(
        turn_id=new_id("turn"),
        session_id=session_id,
        kind=kind,
        status="interrupted",
        created_at=now,
        prompt=text if kind != "iterate" else "",
        instructions=text if kind == "iterate" else "",
        requested_provider=str(pending.get("requested_provider", "")),
        requested_model=str(pending.get("requested_model", "")),
        error=INTERRUPTED_ERROR,
        aspect_ratio=str(pending.get("aspect_ratio", "")),
        image_size=str(pending.get("image_size", "")),
    )
