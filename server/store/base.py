"""The store interface: sessions, turns, layers and image blobs.

The embedded implementation is SQLite (WAL) plus content-addressed files; other backends
implement the same interface. Every method raises aigen.server.errors.NotFound for an
unknown session or image, never returns a half-written state.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from aigen.server.store.records import ImageRecord, LayerRecord, Page, SessionRecord, TurnRecord


class Store(ABC):
    """Persistent state of the gateway."""

    @abstractmethod
    async def open(self) -> None:
        """Create or migrate the schema, then recover: sessions left "generating" by a
        crash become "ready" again.
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
    async def try_begin_generation(self, session_id: str, lease_s: float) -> bool:
        """Atomically mark the session "generating" with a lease of `lease_s` seconds.

        False when another generation holds an unexpired lease. NotFound when absent.
        """

    @abstractmethod
    async def end_generation(self, session_id: str) -> None:
        """Mark the session "ready" (no-op when it was deleted meanwhile)."""

    # Images -------------------------------------------------------------------------------
    @abstractmethod
    async def write_blob(self, data: bytes) -> str:
        """Store bytes content-addressed (atomic, idempotent); return their sha256 hex."""

    @abstractmethod
    async def read_blob(self, sha256: str) -> bytes:
        """The bytes of a blob."""

    @abstractmethod
    async def insert_image(self, image: ImageRecord) -> None:
        """Record an image whose blob was already written."""

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
    ) -> TurnRecord:
        """In one transaction: insert `images` (blobs already written), insert the turn with
        the next index, set the session's current image when given, replace the session's
        layer stack when `layers` is not None, bump turn_count and updated_at. Returns the
        turn with its index. NotFound when the session is gone.
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
