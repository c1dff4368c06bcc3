"""Layered sessions: separation, locks, export, and keeping locked pixels across edits.

Image work (segmentation, compositing, PNG encoding) runs in worker threads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass

from aigen.server import access, errors, layers
from aigen.server.ids import new_id
from aigen.server.store.base import Store
from aigen.server.store.records import ImageRecord, LayerRecord, SessionRecord, TurnRecord
from aigen.v1 import types_pb2


@dataclass(frozen=True, slots=True)
class LayeredEdit:
    """A provider's edit after locked layers were restored and the rest re-separated."""

    image_png: bytes
    width: int
    height: int
    stack: list[layers.LayerImage]
    drift: types_pb2.LockDrift


class LayeredSessions:
    """The LayerService use cases and the layered part of iterate."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def layered_session(self, session_id: str) -> SessionRecord:
        """The session, which must be in layered mode (FAILED_PRECONDITION otherwise)."""
        session = await self.store.get_session(session_id, access.current().scope)
        if session.mode != "layered":
            raise errors.FailedPrecondition(
                f"session {session_id} is in single mode; layers need a layered session: "
                'create one with POST /session {"mode": "layered"}',
                reason=types_pb2.ErrorReason.ERROR_REASON_NOT_LAYERED,
            )
        return session

    async def separate(self, session_id: str, layer_count: int) -> list[LayerRecord]:
        """Split the current image into layers and record the separation as a turn."""
        session = await self.layered_session(session_id)
        if not session.current_image_id:
            raise errors.FailedPrecondition(f"session {session_id} has no image to separate; generate one first")
        if layer_count and not layers.MIN_LAYERS <= layer_count <= layers.MAX_LAYERS:
            raise errors.InvalidArgument("layerCount", f"must be between {layers.MIN_LAYERS} and {layers.MAX_LAYERS}")
        if not await self.store.try_begin_generation(session_id, 120.0):
            raise errors.SessionBusy(f"session {session_id} is generating; separate when it is ready")
        try:
            image = await self.store.get_image(session.current_image_id)
            data = await self.store.read_blob(image.sha256)
            stack = await asyncio.to_thread(layers.separate, data, layer_count or None)
            images, records = await self.store_stack(session_id, stack, {})
            turn = TurnRecord(
                turn_id=new_id("turn"),
                session_id=session_id,
                kind="separate",
                status="completed",
                created_at=time.time(),
                image_id=image.image_id,
            )
            await self.store.commit_turn(turn, images, layers=records)
            return records
        finally:
            await asyncio.shield(self.store.end_generation(session_id))

    async def set_locked(self, session_id: str, layer_id: str, locked: bool) -> LayerRecord:
        """Lock or unlock a layer, recorded as a turn."""
        await self.layered_session(session_id)
        if not layer_id:
            raise errors.InvalidArgument("layerId", "is required")
        turn = TurnRecord(
            turn_id=new_id("turn"),
            session_id=session_id,
            kind="lock" if locked else "unlock",
            status="completed",
            created_at=time.time(),
            layer_id=layer_id,
        )
        return await self.store.set_layer_locked(session_id, layer_id, locked, turn)

    async def list_layers(self, session_id: str) -> list[LayerRecord]:
        """The stack, background first."""
        await self.store.get_session(session_id, access.current().scope)
        return await self.store.list_layers(session_id)

    async def export(self, session_id: str) -> bytes:
        """The stack as a zip of PNGs with a manifest."""
        await self.store.get_session(session_id, access.current().scope)
        stack = await self.load_stack(session_id)
        if not stack:
            raise errors.FailedPrecondition(f"session {session_id} has no layers; separate it first")
        return await asyncio.to_thread(layers.export_zip, stack, session_id)

    async def load_stack(self, session_id: str) -> list[layers.LayerImage]:
        """Decode every layer of the session."""
        records = await self.store.list_layers(session_id)
        blobs = [await self.store.read_blob((await self.store.get_image(r.image_id)).sha256) for r in records]
        pixels = await asyncio.to_thread(lambda: [layers.decode_rgba(blob) for blob in blobs])
        return [
            layers.LayerImage(
                pixels=p,
                name=r.name,
                z_order=r.z_order,
                bbox=r.bbox,
                coverage=r.coverage,
                locked=r.locked,
                layer_id=r.layer_id,
            )
            for r, p in zip(records, pixels, strict=True)
        ]

    async def edit_mask(self, session: SessionRecord, size: tuple[int, int]) -> bytes | None:
        """PNG mask of the editable (unlocked) region, when some layer is locked."""
        locked = [layer for layer in await self.load_stack(session.session_id) if layer.locked]
        if not locked:
            return None
        return await asyncio.to_thread(layers.unlocked_mask, size, locked)

    async def apply_edit(self, session: SessionRecord, edited: bytes, size: tuple[int, int]) -> LayeredEdit | None:
        """Restore locked layers over a provider's output and re-separate the rest.

        None when the session has no layers yet (a plain edit).
        """
        stack = await self.load_stack(session.session_id)
        if not stack:
            return None
        locked = [layer for layer in stack if layer.locked]

        def work() -> LayeredEdit:
            restored = layers.restore_locked(edited, size, locked)
            new_stack = layers.reseparate_unlocked(restored.pixels, locked, len(stack))
            drift = types_pb2.LockDrift(
                changed_fraction=restored.changed_fraction,
                changed_pixels=restored.changed_pixels,
                max_channel_delta=restored.max_channel_delta,
            )
            return LayeredEdit(restored.png, size[0], size[1], new_stack, drift)

        return await asyncio.to_thread(work)

    async def store_stack(
        self, session_id: str, stack: list[layers.LayerImage], kept: dict[str, LayerRecord]
    ) -> tuple[list[ImageRecord], list[LayerRecord]]:
        """Write each layer's PNG; locked layers found in `kept` keep their id and image."""
        pngs = await asyncio.to_thread(
            lambda: [None if layer.layer_id in kept else layers.encode_png(layer.pixels) for layer in stack]
        )
        images: list[ImageRecord] = []
        records: list[LayerRecord] = []
        for layer, png in zip(stack, pngs, strict=True):
            if png is None:
                records.append(dataclasses.replace(kept[layer.layer_id], z_order=layer.z_order))
                continue
            sha = await self.store.write_blob(png)
            height, width = layer.pixels.shape[:2]
            image = ImageRecord(
                image_id=new_id("img"),
                sha256=sha,
                content_type="image/png",
                width=width,
                height=height,
                size_bytes=len(png),
                created_at=time.time(),
                session_id=session_id,
                kind="layer",
            )
            images.append(image)
            records.append(
                LayerRecord(
                    layer_id=layer.layer_id or new_id("lyr"),
                    session_id=session_id,
                    name=layer.name,
                    z_order=layer.z_order,
                    image_id=image.image_id,
                    bbox=tuple(layer.bbox),
                    coverage=layer.coverage,
                    locked=layer.locked,
                )
            )
        return images, records
