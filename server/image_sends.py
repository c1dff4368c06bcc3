"""A bound on the final stream events that carry image bytes and are being sent at once.

When many streams finish together, their completed events (each with its image) can be made
faster than the callers read them. Unbounded, every one of them waits in memory, a few copies
deep (the message, its serialization, the transport's buffers), and the small progress events
of the streams still running queue behind them on the same connections.

`ImageSends` lets `limit` such events be on their way at once. A stream that has to wait for
its turn lets go of the image meanwhile (it is already in the store) and reads it back when its
turn comes; its progress events go on while it waits. A turn ends when the event has been sent,
or after `hold_s` at most, so a caller that reads slowly cannot hold the others up for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aigen.v1 import types_pb2

if TYPE_CHECKING:
    from aigen.server.store.base import Store

HOLD_S = 2.0


class ImageSends:
    """At most `limit` image-bearing final events in flight across every stream."""

    def __init__(self, limit: int, store: Store, hold_s: float = HOLD_S) -> None:
        self._turns = asyncio.Semaphore(limit)
        self._store = store
        self._hold_s = hold_s

    def slot(self) -> SendSlot:
        """One stream's place in the queue; release it once its final event is sent."""
        return SendSlot(self._turns, self._stored_image, self._hold_s)

    async def _stored_image(self, image_id: str) -> bytes:
        return await self._store.read_blob((await self._store.get_image(image_id)).sha256)


class SendSlot:
    """A stream's turn to send its image: taken at most once, released once."""

    def __init__(self, turns: asyncio.Semaphore, read_image: Callable[[str], Awaitable[bytes]], hold_s: float) -> None:
        self._turns = turns
        self._read_image = read_image
        self._hold_s = hold_s
        self._held = False
        self._timer: asyncio.TimerHandle | None = None

    async def take(self, result: types_pb2.GenerationResult) -> types_pb2.GenerationResult:
        """Wait for a turn to send `result`; return the message to send.

        When the turn has to be waited for, the message is rebuilt without its image (clearing
        the field would keep the bytes in the message's arena) and the image is read back from
        the store once the turn comes; pass a result nothing else refers to. A result without
        image bytes needs no turn.
        """
        if not result.data:
            return result
        if not self._turns.locked():
            await self._turns.acquire()  # free: returns at once
            self._hold()
            return result
        result.ClearField("data")
        light = types_pb2.GenerationResult()
        light.CopyFrom(result)
        del result
        await self._turns.acquire()
        self._hold()
        try:
            light.data = await self._read_image(light.image_id)
        except BaseException:
            self.release()
            raise
        return light

    def release(self) -> None:
        """Give the turn back (idempotent; a slot that never took one gives nothing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._held:
            self._held = False
            self._turns.release()

    def _hold(self) -> None:
        self._held = True
        self._timer = asyncio.get_running_loop().call_later(self._hold_s, self.release)
