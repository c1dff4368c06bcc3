"""Layered mode image algorithms: separation, compositing, lock restoration, masks, export."""

from __future__ import annotations

import dataclasses
import io
import json
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from aigen.server.errors import InvalidArgument
from aigen.server.layers import (
    DRIFT_TOLERANCE,
    LayerImage,
    composite,
    decode_rgba,
    encode_png,
    export_zip,
    fit_to_size,
    reseparate_unlocked,
    restore_locked,
    separate,
    separate_rgba,
    unlocked_mask,
)

# ---------------------------------------------------------------- test images


def flat_graphic(width: int = 1024, height: int = 1024) -> np.ndarray:
    """Solid background, two circles, a rectangle and a word, in several colours (RGB)."""
    image = np.full((height, width, 3), (240, 235, 220), np.uint8)
    side = min(width, height)
    cv2.circle(image, (int(width * 0.3), int(height * 0.35)), int(side * 0.18), (200, 30, 40), -1, cv2.LINE_AA)
    cv2.rectangle(
        image, (int(width * 0.55), int(height * 0.5)), (int(width * 0.9), int(height * 0.85)), (30, 90, 200), -1
    )
    cv2.circle(image, (int(width * 0.75), int(height * 0.25)), int(side * 0.1), (40, 160, 60), -1, cv2.LINE_AA)
    org = (int(width * 0.08), int(height * 0.8))
    cv2.putText(
        image, "HELLO", org, cv2.FONT_HERSHEY_SIMPLEX, side / 300, (20, 20, 20), max(2, side // 100), cv2.LINE_AA
    )
    return image


def photo_like(width: int = 1024, height: int = 1024, seed: int = 1) -> np.ndarray:
    """A two-axis colour gradient, three soft-edged shaded blobs, Gaussian noise (RGB)."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    image[..., 0] = 60 + 120 * ys / height
    image[..., 1] = 110 + 60 * xs / width
    image[..., 2] = 200 - 90 * ys / height
    side = min(width, height)
    for cx, cy, radius, colour in (
        (0.35, 0.45, 0.2, (230, 180, 60)),
        (0.7, 0.6, 0.14, (90, 40, 120)),
        (0.6, 0.25, 0.08, (250, 250, 250)),
    ):
        dx, dy = xs - cx * width, ys - cy * height
        distance = np.sqrt(dx**2 + dy**2) / (radius * side)
        alpha = np.clip((1.15 - distance) / 0.3, 0, 1)[..., None]
        shade = (1 - 0.35 * np.clip((dx + dy) / (radius * side), -1, 1))[..., None]
        image = image * (1 - alpha) + np.array(colour, np.float32) * shade * alpha
    image += np.random.default_rng(seed).normal(0, 6, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def with_alpha(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.dstack([rgb, alpha.astype(np.uint8)])


def opaque(rgb: np.ndarray) -> np.ndarray:
    return with_alpha(rgb, np.full(rgb.shape[:2], 255))


def sticker(size: int = 384) -> np.ndarray:
    """A cut-out: opaque circle and half-transparent square on a transparent background."""
    image = np.zeros((size, size, 4), np.uint8)
    image[..., :3] = (13, 200, 77)  # hidden colour of the transparent pixels
    cv2.circle(image, (int(size * 0.35), size // 2), int(size * 0.22), (220, 40, 40, 255), -1, cv2.LINE_AA)
    cv2.rectangle(
        image, (int(size * 0.68), int(size * 0.2)), (int(size * 0.92), int(size * 0.45)), (40, 40, 220, 140), -1
    )
    return image


def faded_photo(width: int = 400, height: int = 300) -> np.ndarray:
    """Photo-like pixels with a left-to-right alpha ramp and transparent corners."""
    alpha = np.tile(np.linspace(30, 255, width), (height, 1))
    alpha[:20, :20] = 0
    alpha[-20:, -20:] = 0
    return with_alpha(photo_like(width, height, seed=4), alpha)


def max_error(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def assert_reproduces(layers: list[LayerImage], original: np.ndarray) -> None:
    """Compositing gives back `original`: alpha everywhere, colour wherever it is visible."""
    result = composite(layers)
    assert result.shape == original.shape
    assert max_error(result[..., 3], original[..., 3]) <= 1
    visible = original[..., 3] > 0
    if visible.any():
        assert max_error(result[..., :3][visible], original[..., :3][visible]) <= 1


def assert_well_formed(layers: list[LayerImage], shape: tuple[int, ...]) -> None:
    assert layers[0].name == "background"
    assert [layer.z_order for layer in layers] == list(range(len(layers)))
    assert len({layer.name for layer in layers}) == len(layers)
    for layer in layers:
        assert layer.pixels.shape == shape and layer.pixels.dtype == np.uint8
        visible = layer.pixels[..., 3] > 0
        assert layer.coverage == pytest.approx(visible.mean())
        if visible.any():
            rows, cols = np.nonzero(visible)
            x, y = cols.min(), rows.min()
            assert layer.bbox == (x, y, cols.max() - x + 1, rows.max() - y + 1)
        else:
            assert layer.bbox == (0, 0, 0, 0)
    owners = np.sum([layer.pixels[..., 3] > 0 for layer in layers], axis=0)
    assert owners.max() <= 1  # a partition: no pixel is in two layers


IMAGES = {
    "flat": lambda: opaque(flat_graphic()),
    "photo": lambda: opaque(photo_like()),
    "small_flat": lambda: opaque(flat_graphic(300, 180)),
    "small_photo": lambda: opaque(photo_like(197, 131, seed=2)),
    "sticker": sticker,
    "faded": faded_photo,
}


@pytest.fixture(scope="module")
def flat_rgba() -> np.ndarray:
    return opaque(flat_graphic())


@pytest.fixture(scope="module")
def flat_layers(flat_rgba: np.ndarray) -> list[LayerImage]:
    return separate(encode_png(flat_rgba))


# ---------------------------------------------------------------- separation


@pytest.mark.parametrize("name", IMAGES)
def test_default_separation_reproduces_the_image(name: str) -> None:
    rgba = IMAGES[name]()
    layers = separate(encode_png(rgba))
    assert_well_formed(layers, rgba.shape)
    assert_reproduces(layers, rgba)
    assert 2 <= len(layers) <= 4


@pytest.mark.parametrize("name", ["flat", "photo", "small_flat", "small_photo", "faded"])
@pytest.mark.parametrize("count", [2, 3, 4, 6, 8])
def test_layer_count(name: str, count: int) -> None:
    rgba = IMAGES[name]()
    layers = separate_rgba(rgba, count)
    assert_well_formed(layers, rgba.shape)
    assert_reproduces(layers, rgba)
    assert len(layers) <= count
    if count <= 4:
        assert len(layers) == count


def test_flat_graphic_subjects_are_the_shapes(flat_layers: list[LayerImage]) -> None:
    background, *subjects = flat_layers
    assert background.bbox == (0, 0, 1024, 1024)
    boxes = {layer.bbox for layer in subjects}
    assert (563, 512, 359, 359) in boxes  # the rectangle, to the pixel
    red = next(layer for layer in subjects if layer.pixels[358, 307, 3] == 255)
    assert red.bbox == pytest.approx((123, 174, 369, 369), abs=2)
    green = next(layer for layer in subjects if layer.pixels[256, 768, 3] == 255)
    assert green.bbox == pytest.approx((666, 154, 205, 205), abs=2)
    # every subject pixel has its shape's colour: no background leaks into a subject
    for layer in subjects:
        inner = cv2.erode((layer.pixels[..., 3] > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        colours = np.unique(layer.pixels[inner][:, :3], axis=0)
        assert len(colours) == 1


def test_text_becomes_one_subject_when_asked_for_enough_layers() -> None:
    layers = separate_rgba(opaque(flat_graphic()), 5)
    text = [layer for layer in layers if layer.bbox[1] > 700 and layer.bbox[0] < 150]
    assert len(text) == 1  # the five letters, grouped by colour
    assert text[0].coverage > 0.005


def test_photo_like_subjects_are_the_blobs() -> None:
    layers = separate_rgba(opaque(photo_like()))
    assert len(layers) == 4
    centres = [(358, 460), (716, 614), (614, 256)]  # (x, y) of the three blobs
    for x, y in centres:
        owner = next(layer for layer in layers if layer.pixels[y, x, 3] > 0)
        assert owner.name != "background"
    assert layers[0].coverage > 0.7


def portrait(size: int = 512) -> np.ndarray:
    """A head and shoulders cut by the bottom edge, over a two-axis gradient (RGB)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    image = np.dstack([100 + 80 * xs / size, 140 + 40 * ys / size, 180 - 60 * xs / size])
    image[(xs - size / 2) ** 2 / (0.3 * size) ** 2 + (ys - size) ** 2 / (0.45 * size) ** 2 < 1] = (60, 60, 140)
    image[(xs - size / 2) ** 2 + (ys - 0.38 * size) ** 2 < (0.12 * size) ** 2] = (230, 190, 160)
    image += np.random.default_rng(3).normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_subject_cut_by_the_frame_is_a_subject() -> None:
    rgba = opaque(portrait())
    layers = separate_rgba(rgba)
    assert len(layers) == 3
    body = next(layer for layer in layers if layer.pixels[500, 256, 3] > 0)
    head = next(layer for layer in layers if layer.pixels[195, 256, 3] > 0)
    assert body.name != "background" and head.name != "background" and body is not head
    assert body.bbox[1] + body.bbox[3] == 512  # reaches the bottom edge
    assert_reproduces(layers, rgba)


def test_two_tone_background_stays_background() -> None:
    image = np.zeros((400, 600, 3), np.uint8)
    image[:200] = (120, 170, 230)  # sky
    image[200:] = (90, 140, 60)  # ground
    cv2.rectangle(image, (250, 150), (350, 300), (180, 40, 40), -1)
    layers = separate_rgba(opaque(image))
    assert len(layers) == 2
    assert layers[1].bbox == (250, 150, 101, 151)


def test_transparency_is_kept() -> None:
    rgba = sticker()
    layers = separate_rgba(rgba)
    transparent = rgba[..., 3] == 0
    for layer in layers:
        assert not layer.pixels[transparent].any()
    half = next(layer for layer in layers if layer.pixels[110, 300, 3] > 0)
    assert half.pixels[110, 300, 3] == 140 and half.name != "background"
    assert layers[0].coverage < 0.01  # a cut-out has (almost) nothing behind its shapes


def test_separation_is_deterministic_across_threads() -> None:
    data = encode_png(opaque(photo_like(512, 384)))
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda count: separate(data, count), [6, 6, 6]))
    for other in runs[1:]:
        assert len(other) == len(runs[0])
        for a, b in zip(runs[0], other, strict=True):
            assert np.array_equal(a.pixels, b.pixels) and a.bbox == b.bbox and a.name == b.name


def test_uniform_and_tiny_images() -> None:
    uniform = opaque(np.full((64, 80, 3), (10, 120, 200), np.uint8))
    layers = separate_rgba(uniform, 3)
    assert [layer.name for layer in layers] == ["background"]
    assert_reproduces(layers, uniform)
    for shape in [(1, 1), (3, 5), (20, 2)]:
        tiny = opaque(np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8))
        tiny_layers = separate_rgba(tiny, 3)
        assert_well_formed(tiny_layers, tiny.shape)
        assert_reproduces(tiny_layers, tiny)


@pytest.mark.parametrize("count", [1, 9, 0, -2])
def test_layer_count_out_of_range(count: int) -> None:
    with pytest.raises(InvalidArgument) as raised:
        separate(encode_png(opaque(flat_graphic(64, 64))), count)
    assert raised.value.field_violations[0][0] == "layer_count"


def test_undecodable_image() -> None:
    with pytest.raises(ValueError, match="decoded"):
        separate(b"not an image")


# ---------------------------------------------------------------- compositing and codecs


def test_composite_over() -> None:
    bottom = np.array([[[0, 0, 255, 255]]], np.uint8)
    half_red = np.array([[[255, 0, 0, 128]]], np.uint8)
    assert composite([bottom, half_red]).tolist() == [[[128, 0, 127, 255]]]
    assert composite([half_red]).tolist() == [[[255, 0, 0, 128]]]
    two_halves = composite([half_red, np.array([[[0, 255, 0, 128]]], np.uint8)])
    # alpha: 0.502 + 0.502 * 0.498 = 0.752 -> 192; colour premultiplied then divided back
    assert two_halves.tolist() == [[[85, 170, 0, 192]]]
    top = np.array([[[7, 8, 9, 255]]], np.uint8)
    assert composite([bottom, half_red, top]).tolist() == [[[7, 8, 9, 255]]]
    with pytest.raises(ValueError):
        composite([])


def test_png_round_trip() -> None:
    rgba = sticker(64)
    assert np.array_equal(decode_rgba(encode_png(rgba)), rgba)
    rgb = flat_graphic(40, 30)
    assert np.array_equal(decode_rgba(encode_png(rgb)), opaque(rgb))
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    assert np.array_equal(decode_rgba(encode_png(grey))[..., 0], grey)


# ---------------------------------------------------------------- restoring locked layers


def lock(layer: LayerImage, layer_id: str) -> LayerImage:
    return dataclasses.replace(layer, locked=True, layer_id=layer_id)


@pytest.fixture(scope="module")
def locked_pair(flat_layers: list[LayerImage]) -> list[LayerImage]:
    return [lock(flat_layers[1], "lyr_1"), lock(flat_layers[3], "lyr_3")]


def locked_area(layers: list[LayerImage]) -> np.ndarray:
    return np.any([layer.pixels[..., 3] == 255 for layer in layers], axis=0)


def test_restore_keeps_locked_pixels_when_everything_is_repainted(flat_rgba, locked_pair) -> None:
    inverted = flat_rgba.copy()
    inverted[..., :3] = 255 - inverted[..., :3]
    result = restore_locked(encode_png(inverted), (1024, 1024), locked_pair)
    area = locked_area(locked_pair)
    assert np.array_equal(result.pixels[area], flat_rgba[area])
    assert np.array_equal(result.pixels[~area], inverted[~area])
    delta = np.abs(inverted.astype(int) - flat_rgba.astype(int)).max(axis=2)[area]
    assert result.changed_pixels == np.count_nonzero(delta > DRIFT_TOLERANCE) > 0
    assert result.changed_fraction == pytest.approx(result.changed_pixels / np.count_nonzero(area))
    assert result.max_channel_delta == delta.max()
    assert result.provider_size == (1024, 1024)
    with Image.open(io.BytesIO(result.png)) as png:
        assert png.mode == "RGB" and png.size == (1024, 1024)
        assert np.array_equal(np.array(png), result.pixels[..., :3])


def test_no_drift_when_the_provider_leaves_locks_alone(flat_rgba, locked_pair) -> None:
    edited = flat_rgba.copy()
    edited[~locked_area(locked_pair), :3] //= 2  # repaint only what is unlocked
    result = restore_locked(encode_png(edited), (1024, 1024), [layer.pixels for layer in locked_pair])
    assert (result.changed_pixels, result.changed_fraction, result.max_channel_delta) == (0, 0.0, 0)
    assert np.array_equal(result.pixels, edited)


def test_drift_tolerance(flat_rgba, locked_pair) -> None:
    for step, changed in ((DRIFT_TOLERANCE, False), (DRIFT_TOLERANCE + 1, True)):
        edited = flat_rgba.copy()
        edited[..., 2] = np.clip(edited[..., 2].astype(int) + step, 0, 255).astype(np.uint8)
        result = restore_locked(encode_png(edited), (1024, 1024), locked_pair)
        assert (result.changed_pixels > 0) is changed
        assert result.max_channel_delta == step


def test_wider_provider_output_is_cover_cropped(flat_rgba, locked_pair) -> None:
    wide = np.zeros((1024, 1536, 4), np.uint8)
    wide[..., 3] = 255
    wide[:, :256, 1] = 255
    wide[:, 1280:, 0] = 255
    wide[:, 256:1280] = flat_rgba  # a provider that widened the frame around the same picture
    result = restore_locked(encode_png(wide), (1024, 1024), locked_pair)
    assert result.provider_size == (1536, 1024)
    assert result.pixels.shape == (1024, 1024, 4)
    assert result.changed_pixels == 0
    assert np.array_equal(result.pixels, flat_rgba)


def test_smaller_provider_output_is_upscaled_and_aligned(flat_rgba, locked_pair) -> None:
    small = cv2.resize(flat_rgba, (512, 512), interpolation=cv2.INTER_AREA)
    result = restore_locked(encode_png(small), (1024, 1024), locked_pair)
    assert result.pixels.shape == (1024, 1024, 4)
    area = locked_area(locked_pair)
    assert np.array_equal(result.pixels[area], flat_rgba[area])
    assert 0 < result.changed_fraction < 0.15  # only anti-aliased edges moved
    assert np.abs(result.pixels.astype(int) - flat_rgba.astype(int)).mean() < 2  # no shift, no distortion


def test_fit_to_size_geometry() -> None:
    tall = np.zeros((300, 100, 4), np.uint8)
    tall[..., 3] = 255
    tall[100:200, :, 0] = 255  # the centre third is red
    fitted = fit_to_size(tall, (100, 100))
    assert fitted.shape == (100, 100, 4) and (fitted[..., 0] == 255).all()
    landscape = fit_to_size(opaque(flat_graphic(200, 200)), (300, 150))  # scale 1.5, crop rows
    assert landscape.shape == (150, 300, 4)
    reference = cv2.resize(flat_graphic(200, 200), (300, 300), interpolation=cv2.INTER_CUBIC)[75:225]
    assert np.abs(landscape[..., :3].astype(int) - reference.astype(int)).mean() < 3


def test_restore_accepts_jpeg_and_non_square_sessions() -> None:
    session = opaque(flat_graphic(600, 400))
    layers = separate_rgba(session)
    locked = [lock(layers[1], "lyr")]
    buffer = io.BytesIO()
    Image.fromarray(np.full((512, 512, 3), 90, np.uint8)).save(buffer, format="JPEG")
    result = restore_locked(buffer.getvalue(), (600, 400), locked)
    area = locked_area(locked)
    assert result.pixels.shape == (400, 600, 4)
    assert np.array_equal(result.pixels[area], session[area])
    assert result.changed_fraction == 1.0
    with pytest.raises(ValueError):
        restore_locked(buffer.getvalue(), (400, 600), locked)


# ---------------------------------------------------------------- masks


def test_unlocked_mask(locked_pair) -> None:
    half = np.zeros((1024, 1024, 4), np.uint8)
    half[:10, :10] = (1, 2, 3, 100)  # a half-transparent locked pixel stays editable
    mask = np.array(Image.open(io.BytesIO(unlocked_mask((1024, 1024), [*locked_pair, half]))))
    assert mask.shape == (1024, 1024) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) == {0, 255}
    assert np.array_equal(mask == 0, locked_area(locked_pair))
    assert (mask[:10, :10] == 255).all()
    empty = np.array(Image.open(io.BytesIO(unlocked_mask((30, 20), []))))
    assert empty.shape == (20, 30) and (empty == 255).all()
    with pytest.raises(ValueError):
        unlocked_mask((512, 512), locked_pair)


# ---------------------------------------------------------------- re-separation


def repainted(rgba: np.ndarray) -> bytes:
    edited = rgba.copy()
    edited[..., :3] = 255 - edited[..., :3]
    return encode_png(edited)


@pytest.mark.parametrize("count", [None, 4, 6, 8])
def test_reseparate_keeps_locked_subjects(flat_rgba, locked_pair, count) -> None:
    restored = restore_locked(repainted(flat_rgba), (1024, 1024), locked_pair).pixels
    stack = reseparate_unlocked(restored, locked_pair, count)
    assert_well_formed(stack, restored.shape)
    assert_reproduces(stack, restored)
    for layer in locked_pair:
        assert any(item is layer for item in stack)  # same objects, same z_order (1 and 3)
    new = [layer for layer in stack if not any(layer is item for item in locked_pair)]
    assert all(not layer.locked and layer.layer_id == "" for layer in new)
    covered = np.any([layer.pixels[..., 3] > 0 for layer in new], axis=0)
    assert not (covered & locked_area(locked_pair)).any()
    if count is not None:
        assert len(stack) <= count


def test_reseparate_with_locked_background(flat_rgba, flat_layers) -> None:
    locked = [lock(flat_layers[0], "lyr_bg")]
    restored = restore_locked(repainted(flat_rgba), (1024, 1024), locked).pixels
    stack = reseparate_unlocked(restored, locked, 4)
    assert stack[0] is locked[0]
    assert len(stack) == 4 and stack[1].name.startswith("subject")
    assert_well_formed(stack, restored.shape)
    assert_reproduces(stack, restored)


def test_reseparate_moves_locked_layers_that_no_longer_fit(flat_layers, flat_rgba) -> None:
    top = lock(flat_layers[3], "lyr_top")
    restored = restore_locked(repainted(flat_rgba), (1024, 1024), [top]).pixels
    stack = reseparate_unlocked(restored, [top], 2)
    assert len(stack) == 2 and stack[1].layer_id == "lyr_top" and stack[1].z_order == 1
    assert stack[1].pixels is top.pixels
    assert_reproduces(stack, restored)


def test_reseparate_with_half_transparent_locked_pixels() -> None:
    session = faded_photo()
    layers = separate_rgba(session)
    locked = [lock(layers[1], "lyr_faded")]
    assert ((locked[0].pixels[..., 3] > 0) & (locked[0].pixels[..., 3] < 255)).any()
    edited = opaque(photo_like(400, 300, seed=9)[:, ::-1].copy())
    restored = restore_locked(encode_png(edited), (400, 300), locked).pixels
    stack = reseparate_unlocked(restored, locked, 3)
    assert [layer.z_order for layer in stack] == list(range(len(stack)))
    assert any(item is locked[0] for item in stack)
    assert max_error(composite(stack), restored) <= 1


def test_reseparate_accepts_the_current_stack_size(flat_rgba, flat_layers) -> None:
    locked = [lock(layer, f"lyr_{index}") for index, layer in enumerate(flat_layers)]
    restored = restore_locked(repainted(flat_rgba), (1024, 1024), locked).pixels
    assert np.array_equal(restored, flat_rgba)  # everything locked: nothing changes
    stack = reseparate_unlocked(restored, locked, 12)
    assert [layer.layer_id for layer in stack] == [layer.layer_id for layer in locked]
    assert all(a is b for a, b in zip(stack, locked, strict=True))
    with pytest.raises(InvalidArgument):
        reseparate_unlocked(restored, locked, 0)


def test_reseparate_without_locks_is_a_separation(flat_rgba) -> None:
    stack = reseparate_unlocked(flat_rgba, [], 3)
    assert len(stack) == 3
    assert_reproduces(stack, flat_rgba)


# ---------------------------------------------------------------- export


def test_export_zip(flat_layers) -> None:
    stack = [flat_layers[0], lock(flat_layers[1], "lyr_1"), *flat_layers[2:]]
    data = export_zip(stack, "ses_123")
    assert export_zip(stack, "ses_123") == data  # reproducible bytes
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        manifest = json.loads(archive.read("manifest.json"))
        pngs = {name: decode_rgba(archive.read(name)) for name in names if name.endswith(".png")}
    assert names == ["00_background.png", "01_subject-1.png", "02_subject-2.png", "03_subject-3.png", "manifest.json"]
    assert manifest["session_id"] == "ses_123"
    assert manifest["image_size"] == {"width": 1024, "height": 1024}
    for entry, layer in zip(manifest["layers"], stack, strict=True):
        assert entry["name"] == layer.name and entry["z_order"] == layer.z_order == entry["order"]
        assert entry["locked"] is layer.locked and entry["layer_id"] == layer.layer_id
        x, y, w, h = layer.bbox
        assert entry["bbox"] == {"x": x, "y": y, "width": w, "height": h}
        assert entry["coverage"] == pytest.approx(layer.coverage, abs=1e-6)
        assert np.array_equal(pngs[entry["file"]], layer.pixels)
    assert manifest["layers"][1]["locked"] is True
    with pytest.raises(ValueError):
        export_zip([], "ses_123")


# ---------------------------------------------------------------- speed (reported, not asserted)


def test_report_separation_time() -> None:
    for name, rgb in (("flat graphic", flat_graphic()), ("photo-like", photo_like())):
        data = encode_png(rgb)
        separate(data)  # warm-up
        for count in (None, 8):
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                separate(data, count)
                runs.append(time.perf_counter() - started)
            print(f"separate 1024x1024 {name}, layer_count={count}: best {min(runs) * 1000:.0f} ms")
