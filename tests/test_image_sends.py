"""Final events carrying images: a bounded number on their way at once, the rest wait without the bytes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from providers import ScriptedProvider, Succeed, profile
from server_harness import running_server

from aigen.server.errors import NotFound
from aigen.server.image_sends import ImageSends
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import types_pb2

Phase = types_pb2.GenerationEvent.Phase
IMAGE = b"\x89PNG image bytes" * 1000


def result(image_id: str = "img_1") -> types_pb2.GenerationResult:
    return types_pb2.GenerationResult(image_id=image_id, width=64, data=IMAGE)


class Store:
    """Every image has the same bytes; "gone" was deleted. Records which images were read back."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    async def get_image(self, image_id: str) -> SimpleNamespace:
        if image_id == "gone":
            raise NotFound("image gone not found")
        return SimpleNamespace(sha256=f"sha-of-{image_id}")

    async def read_blob(self, sha256: str) -> bytes:
        self.reads.append(sha256.removeprefix("sha-of-"))
        return IMAGE


@pytest.mark.no_server
async def test_a_free_turn_keeps_the_message_and_its_bytes():
    store = Store()
    sends = ImageSends(1, store)
    first = result()
    slot = sends.slot()
    assert await slot.take(first) is first
    assert first.data == IMAGE and store.reads == []
    slot.release()
    slot.release()  # idempotent: the turn is given back once
    second = sends.slot()
    assert (await asyncio.wait_for(second.take(result()), 1)).data == IMAGE


@pytest.mark.no_server
async def test_a_waiting_stream_lets_go_of_the_bytes_and_reads_them_back_in_its_turn():
    store = Store()
    sends = ImageSends(1, store)
    holder = sends.slot()
    await holder.take(result("img_1"))
    waiter = sends.slot()
    waiting = asyncio.create_task(waiter.take(result("img_2")))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    holder.release()
    sent = await asyncio.wait_for(waiting, 1)
    assert sent.image_id == "img_2" and sent.width == 64 and sent.data == IMAGE
    assert store.reads == ["img_2"]
    waiter.release()


@pytest.mark.no_server
async def test_a_turn_not_given_back_ends_after_the_hold_time():
    sends = ImageSends(1, Store(), hold_s=0.1)
    await sends.slot().take(result())  # a caller that never finishes reading
    sent = await asyncio.wait_for(sends.slot().take(result("img_2")), 1)
    assert sent.data == IMAGE


@pytest.mark.no_server
async def test_results_without_bytes_take_no_turn():
    sends = ImageSends(1, Store())
    await sends.slot().take(result())
    light = types_pb2.GenerationResult(image_id="img_2")
    assert await asyncio.wait_for(sends.slot().take(light), 1) is light


@pytest.mark.no_server
async def test_a_cancelled_wait_or_a_failed_read_gives_every_turn_back():
    sends = ImageSends(1, Store())
    holder = sends.slot()
    await holder.take(result())
    cancelled = asyncio.create_task(sends.slot().take(result("img_2")))
    failing = asyncio.create_task(sends.slot().take(result("gone")))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    holder.release()
    with pytest.raises(NotFound):
        await asyncio.wait_for(failing, 1)
    assert cancelled.cancelled()
    assert (await asyncio.wait_for(sends.slot().take(result("img_3")), 1)).data == IMAGE


@pytest.mark.both_stores
async def test_streams_that_wait_for_their_turn_get_their_own_image_read_back(tmp_path):
    provider = ScriptedProvider("alpha", [profile("alpha", "alpha-1")], [Succeed(delay=0.2)])
    async with running_server(tmp_path, [provider], stream_image_sends=1, stream_image_hold_s=60) as h:
        turn = h.server.image_sends.slot()
        await turn.take(result())  # the only turn is taken (for a minute at most): every stream below waits

        async def stream(width: int) -> types_pb2.GenerationEvent:
            request = gen_pb2.GenerateImageRequest(prompt="a lighthouse", size=f"{width}x64")
            return [event async for event in h.generation.StreamGenerateImage(request)][-1]

        widths = [64 + 16 * i for i in range(6)]
        streams = asyncio.gather(*(stream(width) for width in widths))
        await provider.wait_called(len(widths))
        await asyncio.sleep(0.5)
        assert not streams.done()
        turn.release()
        finals = await asyncio.wait_for(streams, 10)
        for width, final in zip(widths, finals, strict=True):
            assert final.phase == Phase.PHASE_COMPLETED
            assert final.result.width == width
            stored = await h.images.GetImage(image_pb2.GetImageRequest(image_id=final.result.image_id))
            assert final.result.data == stored.data
