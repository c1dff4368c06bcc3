"""Layered sessions end to end: LayerService and layered iterate over gRPC, and the same through Envoy.

Images come from the built-in local renderer (scenes with subjects, honours masks) or from a
repainting provider ("repaint") that returns given images and, asked for an edit, inverts
every colour of the source image whatever mask it is sent. Layer PNGs are always fetched by
their id or URL and composited here with a straight-alpha "over" of our own.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlparse

import grpc
import httpx
import numpy as np
import pytest
from envoy_harness import Stack, running_stack
from PIL import Image, ImageDraw
from providers import RepaintingProvider, profile
from server_harness import Harness, expect_error, running_server

from aigen.server.imaging import target_dimensions
from aigen.server.providers.base import ImageRequest, ImageResult, ProgressCallback, ProviderRegistry
from aigen.server.providers.local import LocalProvider
from aigen.v1 import generation_service_pb2 as gen_pb2
from aigen.v1 import image_service_pb2 as image_pb2
from aigen.v1 import layer_service_pb2 as layer_pb2
from aigen.v1 import layer_service_pb2_grpc as layer_grpc
from aigen.v1 import session_service_pb2 as session_pb2
from aigen.v1 import types_pb2

pytestmark = pytest.mark.both_stores

Turn = gen_pb2.Turn
DEFAULTS = {"default_provider": "local", "default_model": "local"}


# Providers and images ---------------------------------------------------------------------
class RecordingLocal(LocalProvider):
    """The local renderer, keeping every request it receives."""

    def __init__(self) -> None:
        self.calls: list[ImageRequest] = []

    async def generate(self, request: ImageRequest, progress: ProgressCallback) -> ImageResult:
        self.calls.append(request)
        return await super().generate(request, progress)


def repainter(**kwargs) -> RepaintingProvider:
    """The repainting provider: can edit, has no mask support."""
    provider = RepaintingProvider("repaint", (profile("repaint", "repaint-1", supports_mask=False),), **kwargs)
    assert provider.models()[0].can_edit and not provider.models()[0].supports_mask
    return provider


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def flat_graphic(width: int, height: int) -> bytes:
    """A flat logo-like graphic: plain background, two discs, a bar and a word."""
    image = Image.new("RGB", (width, height), (242, 236, 220))
    draw = ImageDraw.Draw(image)
    draw.ellipse((0.1 * width, 0.15 * height, 0.45 * width, 0.5 * height), fill=(200, 30, 40))
    draw.ellipse((0.65 * width, 0.1 * height, 0.85 * width, 0.3 * height), fill=(40, 160, 60))
    draw.rectangle((0.55 * width, 0.55 * height, 0.9 * width, 0.85 * height), fill=(30, 90, 200))
    draw.text((0.08 * width, 0.75 * height), "HELLO", fill=(20, 20, 20), font_size=height // 10)
    return png(np.array(image))


def photo_like(width: int, height: int) -> bytes:
    """A colour gradient with soft shaded blobs and sensor-like noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([60 + 120 * ys / height, 110 + 60 * xs / width, 200 - 90 * ys / height], axis=-1)
    side = min(width, height)
    for cx, cy, radius, colour in ((0.35, 0.45, 0.2, (230, 180, 60)), (0.7, 0.6, 0.14, (90, 40, 120))):
        dx, dy = xs - cx * width, ys - cy * height
        alpha = np.clip((1.15 - np.sqrt(dx**2 + dy**2) / (radius * side)) / 0.3, 0, 1)[..., None]
        shade = (1 - 0.35 * np.clip((dx + dy) / (radius * side), -1, 1))[..., None]
        image = image * (1 - alpha) + np.array(colour, np.float32) * shade * alpha
    image += np.random.default_rng(3).normal(0, 6, image.shape)
    return png(np.clip(image + 0.5, 0, 255).astype(np.uint8))


# Pixels -----------------------------------------------------------------------------------
def rgba(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGBA"))


def over(layers: Sequence[np.ndarray]) -> np.ndarray:
    """Straight-alpha Porter-Duff "over", first layer at the bottom, rounded once at the end."""
    color = np.zeros((*layers[0].shape[:2], 3))
    alpha = np.zeros((*layers[0].shape[:2], 1))
    for layer in layers:
        assert layer.shape == layers[0].shape
        a = layer[..., 3:].astype(np.float64) / 255
        color = layer[..., :3] * a + color * (1 - a)
        alpha = a + alpha * (1 - a)
    rgb = np.divide(color, alpha, out=np.zeros_like(color), where=alpha > 0)
    return np.concatenate([np.rint(rgb), np.rint(alpha * 255)], axis=-1).clip(0, 255).astype(np.uint8)


def max_delta(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# gRPC helpers -----------------------------------------------------------------------------
def layer_stub(h: Harness) -> layer_grpc.LayerServiceStub:
    return layer_grpc.LayerServiceStub(h.channel)


async def layered_session(h: Harness, mode: str = "layered", **config) -> str:
    request = session_pb2.CreateSessionRequest(project="p", mode=mode, config=types_pb2.SessionConfig(**config))
    return (await h.sessions.CreateSession(request)).session_id


async def image_bytes(h: Harness, image_id: str) -> bytes:
    return (await h.images.GetImage(image_pb2.GetImageRequest(image_id=image_id))).data


async def current_image(h: Harness, sid: str) -> types_pb2.Image:
    session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
    return session.current_image


async def current_pixels(h: Harness, sid: str) -> np.ndarray:
    return rgba(await image_bytes(h, (await current_image(h, sid)).image_id))


async def layer_pixels(h: Harness, layers: Sequence[types_pb2.Layer]) -> list[np.ndarray]:
    return [rgba(await image_bytes(h, layer.image_id)) for layer in layers]


async def list_layers(h: Harness, sid: str) -> layer_pb2.ListLayersResponse:
    return await layer_stub(h).ListLayers(layer_pb2.ListLayersRequest(session_id=sid))


async def separate(h: Harness, sid: str, count: int = 0) -> list[types_pb2.Layer]:
    response = await layer_stub(h).SeparateLayers(layer_pb2.SeparateLayersRequest(session_id=sid, layer_count=count))
    assert response.session_id == sid
    return list(response.layers)


async def lock(h: Harness, sid: str, layer_id: str) -> types_pb2.Layer:
    return (await layer_stub(h).LockLayer(layer_pb2.LockLayerRequest(session_id=sid, layer_id=layer_id))).layer


async def unlock(h: Harness, sid: str, layer_id: str) -> types_pb2.Layer:
    return (await layer_stub(h).UnlockLayer(layer_pb2.UnlockLayerRequest(session_id=sid, layer_id=layer_id))).layer


async def iterate(h: Harness, sid: str, instructions: str, **fields) -> types_pb2.GenerationResult:
    return await h.generation.Iterate(gen_pb2.IterateRequest(session_id=sid, instructions=instructions, **fields))


def assert_well_formed(layers: Sequence[types_pb2.Layer], pixels: Sequence[np.ndarray], size: tuple[int, int]) -> None:
    """Background first, z-order 0..n-1, unique ids and names, bbox and coverage true to the PNGs."""
    width, height = size
    assert layers[0].name == "background"
    assert [layer.z_order for layer in layers] == list(range(len(layers)))
    assert len({layer.layer_id for layer in layers}) == len(layers)
    assert all(layer.layer_id.startswith("lyr_") for layer in layers)
    assert len({layer.name for layer in layers}) == len(layers)
    for layer, rgba_pixels in zip(layers, pixels, strict=True):
        assert layer.image_id.startswith("img_")
        assert layer.url.endswith(f"/images/{layer.image_id}")
        assert rgba_pixels.shape == (height, width, 4)
        visible = rgba_pixels[..., 3] > 0
        assert layer.coverage == pytest.approx(visible.mean(), abs=1e-6)
        box = layer.bounding_box
        if visible.any():
            rows, cols = np.nonzero(visible)
            assert (box.x, box.y, box.width, box.height) == (
                cols.min(),
                rows.min(),
                cols.max() - cols.min() + 1,
                rows.max() - rows.min() + 1,
            )
        else:
            assert (box.width, box.height) == (0, 0)
    assert sum(layer.coverage for layer in layers[1:]) > 0  # there are subjects
    assert np.sum([p[..., 3] > 0 for p in pixels], axis=0).max() <= 1  # each pixel in one layer


def assert_composites_to(pixels: Sequence[np.ndarray], image: np.ndarray) -> None:
    """The stack, composited in order, is the image within 1 per channel."""
    assert max_delta(over(pixels), image) <= 1


# Separation -------------------------------------------------------------------------------
SOURCES = {  # provider, session config, image size, image the provider returns
    "local scene": ("local", {}, (1024, 1024), None),
    "local scene 16:9": (
        "local",
        {"aspect_ratio": "16:9", "image_size": "512"},
        target_dimensions("16:9", "512"),
        None,
    ),
    "flat graphic": ("repaint", {}, (1024, 1024), flat_graphic),
    "photo-like": (
        "repaint",
        {"aspect_ratio": "4:5", "image_size": "512"},
        target_dimensions("4:5", "512"),
        photo_like,
    ),
}


@pytest.mark.parametrize("source", SOURCES)
async def test_separation_composites_back_to_the_current_image(tmp_path, source: str) -> None:
    provider, config, size, draw = SOURCES[source]
    repaint = repainter(images=[draw(*size)] if draw else [])
    async with running_server(tmp_path, [LocalProvider(), repaint], **DEFAULTS) as h:
        sid = await layered_session(h, **config)
        generated = await h.generation.Generate(
            gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet with rings", provider=provider)
        )
        assert (generated.width, generated.height) == size
        assert list(generated.layers) == [] and not generated.HasField("lock_drift")
        if draw:
            assert np.array_equal(rgba(generated.data), rgba(draw(*size)))

        layers = await separate(h, sid)
        pixels = await layer_pixels(h, layers)
        assert_well_formed(layers, pixels, size)
        assert not any(layer.locked for layer in layers)
        assert_composites_to(pixels, rgba(generated.data))
        assert_composites_to(pixels, await current_pixels(h, sid))

        listed = await list_layers(h, sid)
        assert list(listed.layers) == layers
        assert listed.export_url == f"http://images.test/session/{sid}/layers:export"
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.layer_count == len(layers)
        assert session.current_image.image_id == generated.image_id  # separating keeps the image


async def test_layer_count_is_honoured(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        generated = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="red cat"))
        image = rgba(generated.data)
        for count in range(2, 9):
            layers = await separate(h, sid, count)
            assert len(layers) == count
            pixels = await layer_pixels(h, layers)
            assert_well_formed(layers, pixels, (512, 512))
            assert_composites_to(pixels, image)
            assert list((await list_layers(h, sid)).layers) == layers

        before = list((await list_layers(h, sid)).layers)
        for count in (1, 9, -1, 100):
            error = await expect_error(separate(h, sid, count))
            assert error.code == grpc.StatusCode.INVALID_ARGUMENT
            assert error.fields == ("layerCount",)
            assert "layerCount" in error.message
        assert list((await list_layers(h, sid)).layers) == before


async def test_separating_again_replaces_the_stack_unlocked(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="red cat"))
        first = await separate(h, sid, 3)
        await lock(h, sid, first[1].layer_id)
        second = await separate(h, sid, 4)
        assert len(second) == 4 and not any(layer.locked for layer in second)
        assert {layer.layer_id for layer in second}.isdisjoint(layer.layer_id for layer in first)
        assert list((await list_layers(h, sid)).layers) == second


# Locks ------------------------------------------------------------------------------------
async def test_locked_layer_survives_a_repaint_and_unlocking_frees_it(tmp_path) -> None:
    repaint = repainter()
    async with running_server(tmp_path, [LocalProvider(), repaint], **DEFAULTS) as h:
        sid = await layered_session(h)
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet with rings"))
        before = await current_pixels(h, sid)
        layers = await separate(h, sid)
        subject = max(layers[1:], key=lambda layer: layer.coverage)
        locked = await lock(h, sid, subject.layer_id)
        assert (locked.layer_id, locked.locked, locked.image_id) == (subject.layer_id, True, subject.image_id)
        subject_pixels = rgba(await image_bytes(h, subject.image_id))
        inside = subject_pixels[..., 3] > 0
        assert np.all(subject_pixels[inside, 3] == 255)  # an opaque image gives opaque layers
        assert 0.05 < inside.mean() < 0.95

        result = await iterate(h, sid, "repaint everything", provider="repaint")
        assert repaint.calls[-1].source_image is not None
        assert repaint.calls[-1].mask is None  # the provider has no mask support
        after = rgba(result.data)
        assert after.shape == before.shape == (1024, 1024, 4)
        assert np.array_equal(after[inside], before[inside])  # the locked layer, byte for byte
        assert np.array_equal(after[~inside, :3], 255 - before[~inside, :3])  # the rest was repainted
        assert np.array_equal(after, await current_pixels(h, sid))

        drift = result.lock_drift
        assert 0.9 < drift.changed_fraction <= 1.0
        assert drift.changed_pixels == pytest.approx(drift.changed_fraction * np.count_nonzero(inside), abs=1)
        assert drift.max_channel_delta > 100

        assert len(result.layers) == len(layers)
        kept = [layer for layer in result.layers if layer.layer_id == subject.layer_id]
        assert len(kept) == 1 and kept[0].locked and kept[0].image_id == subject.image_id
        assert [layer.layer_id for layer in result.layers if layer.locked] == [subject.layer_id]
        new_pixels = await layer_pixels(h, result.layers)
        assert_well_formed(result.layers, new_pixels, (1024, 1024))
        assert_composites_to(new_pixels, after)
        assert list((await list_layers(h, sid)).layers) == list(result.layers)

        # A second repaint still keeps it, with no drift since the first one.
        again = await iterate(h, sid, "and again", provider="repaint")
        assert np.array_equal(rgba(again.data)[inside], before[inside])
        assert np.array_equal(rgba(again.data)[~inside, :3], before[~inside, :3])  # inverted twice
        assert [layer.layer_id for layer in again.layers if layer.locked] == [subject.layer_id]

        freed = await unlock(h, sid, subject.layer_id)
        assert (freed.layer_id, freed.locked) == (subject.layer_id, False)
        assert not any(layer.locked for layer in (await list_layers(h, sid)).layers)
        unlocked = await iterate(h, sid, "repaint the subject too", provider="repaint")
        assert repaint.calls[-1].mask is None
        changed = rgba(unlocked.data)
        assert np.array_equal(changed[..., :3], 255 - rgba(again.data)[..., :3])  # every pixel repainted
        assert np.mean(np.any(changed[inside] != before[inside], axis=-1)) > 0.9
        drift = unlocked.lock_drift
        assert (drift.changed_fraction, drift.changed_pixels, drift.max_channel_delta) == (0, 0, 0)
        assert len(unlocked.layers) == len(layers) and not any(layer.locked for layer in unlocked.layers)
        assert_composites_to(await layer_pixels(h, unlocked.layers), changed)


async def test_providers_with_mask_support_get_the_unlocked_region(tmp_path) -> None:
    local = RecordingLocal()
    async with running_server(tmp_path, [local, repainter()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="A lighthouse at dusk"))
        layers = await separate(h, sid, 4)
        await iterate(h, sid, "no locks yet")
        assert local.calls[-1].mask is None

        before = await current_pixels(h, sid)
        layers = list((await list_layers(h, sid)).layers)
        chosen = [layers[1], layers[3]]
        for layer in chosen:
            await lock(h, sid, layer.layer_id)
        locked_region = np.any([rgba(await image_bytes(h, layer.image_id))[..., 3] == 255 for layer in chosen], axis=0)

        result = await iterate(h, sid, "add a red square")
        request = local.calls[-1]
        assert request.mask is not None and request.mask.mime_type == "image/png"
        with Image.open(io.BytesIO(request.mask.data)) as mask_image:
            assert mask_image.size == (512, 512)
            mask = np.array(mask_image.convert("L"))
        assert set(np.unique(mask)) == {0, 255}
        assert np.array_equal(mask == 0, locked_region)  # black exactly where a locked layer is opaque

        after = rgba(result.data)
        assert np.array_equal(after[locked_region], before[locked_region])
        assert result.lock_drift.changed_pixels == 0  # the renderer kept the masked pixels itself
        assert result.lock_drift.max_channel_delta == 0
        assert np.any(after[~locked_region] != before[~locked_region])
        assert sorted(layer.layer_id for layer in result.layers if layer.locked) == sorted(
            layer.layer_id for layer in chosen
        )


@pytest.mark.parametrize("output_size", [(1536, 1024), (1024, 1536), (640, 640)])
async def test_provider_output_of_another_size(tmp_path, output_size: tuple[int, int]) -> None:
    repaint = repainter(output_size=output_size)
    async with running_server(tmp_path, [LocalProvider(), repaint], **DEFAULTS) as h:
        sid = await layered_session(h)
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet with rings"))
        before = await current_pixels(h, sid)
        layers = await separate(h, sid)
        subject = max(layers[1:], key=lambda layer: layer.coverage)
        await lock(h, sid, subject.layer_id)
        inside = rgba(await image_bytes(h, subject.image_id))[..., 3] > 0

        result = await iterate(h, sid, "repaint at another size", provider="repaint")
        assert (result.width, result.height) == (1024, 1024)
        after = rgba(result.data)
        assert after.shape == (1024, 1024, 4)
        assert np.array_equal(after[inside], before[inside])
        assert np.mean(np.any(after[~inside, :3] != before[~inside, :3], axis=-1)) > 0.9
        assert result.lock_drift.changed_fraction > 0.5
        current = await current_image(h, sid)
        assert (current.image_id, current.width, current.height) == (result.image_id, 1024, 1024)
        pixels = await layer_pixels(h, result.layers)
        assert_well_formed(result.layers, pixels, (1024, 1024))
        assert_composites_to(pixels, after)
        assert [layer.layer_id for layer in result.layers if layer.locked] == [subject.layer_id]


async def test_edits_are_requested_at_the_size_of_the_layers(tmp_path) -> None:
    local = RecordingLocal()
    async with running_server(tmp_path, [local], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")  # the session's default ratio is 1:1
        generated = await h.generation.Generate(
            gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet with rings", aspect_ratio="16:9")
        )
        size = (generated.width, generated.height)
        assert size == target_dimensions("16:9", "512")
        layers = await separate(h, sid)
        await lock(h, sid, layers[1].layer_id)
        inside = rgba(await image_bytes(h, layers[1].image_id))[..., 3] > 0

        result = await iterate(h, sid, "add a square")
        request = local.calls[-1]
        assert (request.width, request.height, request.aspect_ratio) == (*size, "16:9")
        with Image.open(io.BytesIO(request.mask.data)) as mask:
            assert mask.size == size
        assert (result.width, result.height, result.aspect_ratio) == (*size, "16:9")
        assert result.lock_drift.changed_pixels == 0  # the renderer kept the masked pixels
        assert np.array_equal(rgba(result.data)[inside], rgba(generated.data)[inside])

        turns = len((await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))).turns)
        for field, value in (("aspectRatio", {"aspect_ratio": "9:16"}), ("imageSize", {"image_size": "1K"})):
            error = await expect_error(iterate(h, sid, "another size", **value))
            assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, (field,))
            assert f"{size[0]}x{size[1]}" in error.message
        error = await expect_error(iterate(h, sid, "another size", size="640x640"))
        assert (error.code, error.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("size",))
        matching = await iterate(h, sid, "same size, said explicitly", aspect_ratio="16:9", image_size="512")
        assert (matching.width, matching.height) == size
        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        assert len(history.turns) == turns + 1  # refused edits left no turn
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.status == "ready"


async def test_streamed_iterate_keeps_locks_too(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider(), repainter()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        generated = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="red cat"))
        layers = await separate(h, sid)
        await lock(h, sid, layers[1].layer_id)
        inside = rgba(await image_bytes(h, layers[1].image_id))[..., 3] > 0
        request = gen_pb2.IterateRequest(session_id=sid, instructions="repaint", provider="repaint")
        events = [event async for event in h.generation.StreamIterate(request)]
        final = events[-1]
        assert final.phase == types_pb2.GenerationEvent.PHASE_COMPLETED
        result = final.result
        assert np.array_equal(rgba(result.data)[inside], rgba(generated.data)[inside])
        assert result.lock_drift.changed_fraction > 0.5
        assert [layer.layer_id for layer in result.layers if layer.locked] == [layers[1].layer_id]
        assert list((await list_layers(h, sid)).layers) == list(result.layers)


async def test_generate_starts_a_new_image_without_layers(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="red cat"))
        layers = await separate(h, sid)
        await lock(h, sid, layers[1].layer_id)
        fresh = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet"))
        assert list(fresh.layers) == [] and not fresh.HasField("lock_drift")
        assert list((await list_layers(h, sid)).layers) == []
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.layer_count == 0
        edited = await iterate(h, sid, "a plain edit")
        assert list(edited.layers) == [] and not edited.HasField("lock_drift")  # an ordinary edit
        assert list((await list_layers(h, sid)).layers) == []


# History and persistence ------------------------------------------------------------------
async def test_history_records_layer_turns(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider(), repainter()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        generated = await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="red cat"))
        layers = await separate(h, sid, 3)
        await lock(h, sid, layers[2].layer_id)
        edited = await iterate(h, sid, "repaint", provider="repaint")
        await unlock(h, sid, layers[2].layer_id)
        await separate(h, sid)

        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        turns = list(history.turns)
        assert [t.kind for t in turns] == [
            Turn.KIND_GENERATE,
            Turn.KIND_SEPARATE,
            Turn.KIND_LOCK,
            Turn.KIND_ITERATE,
            Turn.KIND_UNLOCK,
            Turn.KIND_SEPARATE,
        ]
        assert [t.index for t in turns] == list(range(1, 7))
        assert all(t.status == Turn.STATUS_COMPLETED for t in turns)
        assert len({t.turn_id for t in turns}) == 6
        assert [t.layer_id for t in turns] == ["", "", layers[2].layer_id, "", layers[2].layer_id, ""]
        assert turns[1].image.image_id == generated.image_id  # the image that was separated
        assert turns[3].image.image_id == edited.image_id
        assert turns[5].image.image_id == edited.image_id
        session = await h.sessions.GetSession(session_pb2.GetSessionRequest(session_id=sid))
        assert session.turn_count == 6


async def test_layers_locks_and_history_survive_a_restart(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider(), repainter()], **DEFAULTS) as h:
        sid = await layered_session(h, image_size="512")
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="Blue planet with rings"))
        layers = await separate(h, sid)
        await lock(h, sid, layers[1].layer_id)
        listed = await list_layers(h, sid)
        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        pixels = await layer_pixels(h, listed.layers)
        before = await current_pixels(h, sid)
        export = await layer_stub(h).ExportLayers(layer_pb2.ExportLayersRequest(session_id=sid))

    repaint = repainter()
    async with running_server(tmp_path, [LocalProvider(), repaint], **DEFAULTS) as h:
        assert await list_layers(h, sid) == listed
        assert [layer.locked for layer in listed.layers] == [False, True] + [False] * (len(layers) - 2)
        assert await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid)) == history
        restored = await layer_pixels(h, listed.layers)
        assert all(np.array_equal(a, b) for a, b in zip(pixels, restored, strict=True))
        assert (await layer_stub(h).ExportLayers(layer_pb2.ExportLayersRequest(session_id=sid))).data == export.data

        # The lock still holds after the restart.
        result = await iterate(h, sid, "repaint", provider="repaint")
        inside = pixels[1][..., 3] > 0
        assert np.array_equal(rgba(result.data)[inside], before[inside])
        assert result.lock_drift.changed_pixels > 0
        assert [layer.layer_id for layer in result.layers if layer.locked] == [layers[1].layer_id]


# Errors -----------------------------------------------------------------------------------
async def test_layer_errors(tmp_path) -> None:
    async with running_server(tmp_path, [LocalProvider()], **DEFAULTS) as h:
        stub = layer_stub(h)
        sid = await layered_session(h, image_size="512")
        error = await expect_error(separate(h, sid))
        assert error.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "generate" in error.message
        export = await expect_error(stub.ExportLayers(layer_pb2.ExportLayersRequest(session_id=sid)))
        assert export.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "separate" in export.message

        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=sid, prompt="red cat"))
        for call in (lock, unlock):
            missing = await expect_error(call(h, sid, "lyr_doesnotexist"))
            assert missing.code == grpc.StatusCode.NOT_FOUND
            assert missing.reason == "LAYER_NOT_FOUND"
            assert "lyr_doesnotexist" in missing.message
            empty = await expect_error(call(h, sid, ""))
            assert (empty.code, empty.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ("layerId",))
        layers = await separate(h, sid)
        other = await layered_session(h)
        foreign = await expect_error(lock(h, other, layers[1].layer_id))  # a layer of another session
        assert foreign.code == grpc.StatusCode.NOT_FOUND

        single = await layered_session(h, mode="single", image_size="512")
        await h.generation.Generate(gen_pb2.GenerateRequest(session_id=single, prompt="red cat"))
        for attempt in (separate(h, single), lock(h, single, layers[1].layer_id), unlock(h, single, "lyr_x")):
            error = await expect_error(attempt)
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION
            assert error.reason == "NOT_LAYERED"
            assert '"mode": "layered"' in error.message and "POST /session" in error.message

        gone = await expect_error(separate(h, "sess_doesnotexist"))
        assert gone.code == grpc.StatusCode.NOT_FOUND
        history = await h.generation.GetHistory(gen_pb2.GetHistoryRequest(session_id=sid))
        assert [t.kind for t in history.turns] == [Turn.KIND_GENERATE, Turn.KIND_SEPARATE]  # failures left no turn


# Through Envoy ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, store_mode: str) -> AsyncIterator[Stack]:
    """One stack per storage mode."""
    registry = ProviderRegistry()
    registry.add(LocalProvider())
    registry.add(repainter())
    async with running_stack(
        tmp_path_factory.mktemp("layered"), registry, local_fallback="never", **DEFAULTS
    ) as running:
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.client() as http:
        yield http


async def fetch_url(client: httpx.AsyncClient, url: str) -> bytes:
    """GET an image by its permanent URL, through Envoy."""
    response = await client.get(urlparse(url).path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return response.content


def assert_json_error(response: httpx.Response, status: int, code: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == code and body["message"]
    return body


async def test_rest_separate_lock_iterate_and_export(client: httpx.AsyncClient) -> None:
    created = await client.post("/session", json={"project": "test", "mode": "layered"})
    sid = created.json()["sessionId"]
    generated = await client.post(f"/session/{sid}/generate", json={"prompt": "Blue planet with rings"})
    assert generated.status_code == 200, generated.text
    before = rgba(await fetch_url(client, generated.json()["url"]))

    separated = await client.post(f"/session/{sid}/separate", json={"layerCount": 4})
    assert separated.status_code == 200, separated.text
    layers = separated.json()["layers"]
    assert len(layers) == 4
    assert layers[0]["name"] == "background"
    assert [layer.get("zOrder", 0) for layer in layers] == [0, 1, 2, 3]
    for layer in layers:
        assert layer["layerId"].startswith("lyr_") and layer["url"] and "boundingBox" in layer
        assert layer.get("locked", False) is False and 0 < layer["coverage"] <= 1
    pixels = [rgba(await fetch_url(client, layer["url"])) for layer in layers]
    assert_composites_to(pixels, before)

    subject = max(layers[1:], key=lambda layer: layer["coverage"])
    locked = await client.post(f"/session/{sid}/lock", json={"layerId": subject["layerId"]})
    assert locked.status_code == 200, locked.text
    assert locked.json()["layer"]["locked"] is True
    inside = pixels[layers.index(subject)][..., 3] > 0

    edited = await client.post(f"/session/{sid}/iterate", json={"instructions": "repaint", "provider": "repaint"})
    assert edited.status_code == 200, edited.text
    body = edited.json()
    after = rgba(await fetch_url(client, body["url"]))
    assert np.array_equal(after[inside], before[inside])
    assert float(body["lockDrift"]["changedFraction"]) > 0.5
    assert int(body["lockDrift"]["changedPixels"]) > 0  # int64: a JSON string
    assert [layer["layerId"] for layer in body["layers"] if layer.get("locked")] == [subject["layerId"]]

    listed = (await client.get(f"/session/{sid}/layers")).json()
    assert listed["layers"] == body["layers"]
    assert urlparse(listed["exportUrl"]).path == f"/session/{sid}/layers:export"
    export = await client.get(urlparse(listed["exportUrl"]).path)
    assert export.status_code == 200
    assert export.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        entries = manifest["layers"]
        assert [entry["order"] for entry in entries] == list(range(len(listed["layers"])))
        assert [entry["name"] for entry in entries] == [layer["name"] for layer in listed["layers"]]
        assert [entry["layer_id"] for entry in entries] == [layer["layerId"] for layer in listed["layers"]]
        assert [entry["locked"] for entry in entries] == [layer.get("locked", False) for layer in listed["layers"]]
        assert manifest["image_size"] == {"width": 1024, "height": 1024}
        assert sorted(names) == sorted(["manifest.json", *(entry["file"] for entry in entries)])
        zipped = [rgba(archive.read(entry["file"])) for entry in entries]
    for entry, layer, layer_rgba in zip(entries, listed["layers"], zipped, strict=True):
        assert entry["file"].endswith(".png")
        assert np.array_equal(layer_rgba, rgba(await fetch_url(client, layer["url"])))
    assert_composites_to(zipped, after)

    history = (await client.get(f"/session/{sid}/history")).json()["turns"]
    assert [turn["kind"] for turn in history] == ["KIND_GENERATE", "KIND_SEPARATE", "KIND_LOCK", "KIND_ITERATE"]
    assert history[2]["layerId"] == subject["layerId"]


async def test_rest_layer_errors(client: httpx.AsyncClient) -> None:
    sid = (await client.post("/session", json={"mode": "layered"})).json()["sessionId"]
    body = assert_json_error(await client.post(f"/session/{sid}/separate", json={}), 400, 9)
    assert "generate" in body["message"]
    assert_json_error(await client.get(f"/session/{sid}/layers:export"), 400, 9)
    made = await client.post(f"/session/{sid}/generate", json={"prompt": "red cat", "imageSize": "512"})
    assert made.status_code == 200, made.text
    for count in (1, 9):
        body = assert_json_error(await client.post(f"/session/{sid}/separate", json={"layerCount": count}), 400, 3)
        violations = [d for d in body["details"] if d["@type"].endswith("/google.rpc.BadRequest")]
        assert [v["field"] for v in violations[0]["fieldViolations"]] == ["layerCount"]
    for route in ("lock", "unlock"):
        body = assert_json_error(await client.post(f"/session/{sid}/{route}", json={"layerId": "lyr_nope"}), 404, 5)
        assert "lyr_nope" in body["message"]

    single = (await client.post("/session", json={"mode": "single"})).json()["sessionId"]
    made = await client.post(f"/session/{single}/generate", json={"prompt": "red cat", "imageSize": "512"})
    assert made.status_code == 200, made.text
    for route, payload in (("separate", {}), ("lock", {"layerId": "lyr_x"}), ("unlock", {"layerId": "lyr_x"})):
        body = assert_json_error(await client.post(f"/session/{single}/{route}", json=payload), 400, 9)
        assert '"mode": "layered"' in body["message"]
    assert_json_error(await client.post("/session/sess_doesnotexist/separate", json={}), 404, 5)
