"""RGBA layer values and pixel helpers: decoding, PNG encoding, "over" compositing.

Arrays are NumPy uint8 in (height, width, channels) order with straight (not premultiplied)
alpha. Compositing works in premultiplied float32 and rounds to nearest once at the end, so
a pixel that is opaque in the top-most layer that covers it comes out byte-identical.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BBox = tuple[int, int, int, int]  # x, y, width, height
EMPTY_BBOX: BBox = (0, 0, 0, 0)


@dataclass(frozen=True, slots=True, eq=False)
class LayerImage:
    """One RGBA layer, the size of the session image.

    `pixels` is (height, width, 4) uint8; `bbox` and `coverage` describe its alpha > 0 pixels.
    Compared by identity, so a caller can recognise the very layers it passed in.
    """

    pixels: np.ndarray
    name: str
    z_order: int
    bbox: BBox
    coverage: float
    locked: bool = False
    layer_id: str = ""


def decode_rgba(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/WebP/... bytes to a writable (H, W, 4) uint8 array, EXIF-rotated.

    Raises ValueError when the bytes are not a decodable image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image) or image
            rgba = upright.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError("the image could not be decoded") from exc
    return np.array(rgba, dtype=np.uint8)


def encode_png(array: np.ndarray) -> bytes:
    """Encode a (H, W), (H, W, 3) or (H, W, 4) uint8 array as PNG bytes."""
    pixels = np.ascontiguousarray(array, dtype=np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
        raise ValueError(f"cannot encode an array of shape {array.shape} as PNG")
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def as_rgba(array: np.ndarray) -> np.ndarray:
    """Return an (H, W, 4) uint8 view or copy of an RGB(A) or grey array (opaque if no alpha)."""
    pixels = np.asarray(array, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image array, got shape {pixels.shape}")
    if pixels.shape[2] == 4:
        return pixels
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    alpha = np.full((*pixels.shape[:2], 1), 255, dtype=np.uint8)
    return np.concatenate([pixels, alpha], axis=2)


def layer_pixels(layer: LayerImage | np.ndarray) -> np.ndarray:
    """The (H, W, 4) uint8 pixels of a LayerImage or of an RGBA array."""
    return as_rgba(layer.pixels if isinstance(layer, LayerImage) else layer)


def alpha_extent(alpha: np.ndarray) -> tuple[BBox, float]:
    """Bounding box and covered fraction of the alpha > 0 pixels."""
    visible = alpha > 0
    rows = np.flatnonzero(visible.any(axis=1))
    if rows.size == 0:
        return EMPTY_BBOX, 0.0
    cols = np.flatnonzero(visible.any(axis=0))
    bbox = (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))
    return bbox, float(np.count_nonzero(visible)) / visible.size


def make_layer(rgba: np.ndarray, mask: np.ndarray, name: str, z_order: int, **extra: object) -> LayerImage:
    """A layer holding `rgba`'s pixels where `mask` is true and alpha > 0, transparent elsewhere."""
    keep = mask & (rgba[..., 3] > 0)
    packed = np.ascontiguousarray(rgba).view(np.uint32)[..., 0]  # one 32-bit word per pixel
    pixels = np.where(keep, packed, np.uint32(0))[..., None].view(np.uint8)
    bbox, coverage = alpha_extent(pixels[..., 3])
    return LayerImage(pixels=pixels, name=name, z_order=z_order, bbox=bbox, coverage=coverage, **extra)


def _premultiplied(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    alpha = layer[..., 3:4].astype(np.float32) / np.float32(255)
    return layer[..., :3].astype(np.float32) * alpha, alpha


def _straight(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Round premultiplied float colour (0..255 scale) and alpha (0..1) back to straight uint8."""
    rgb = np.divide(color, alpha, out=np.zeros_like(color), where=alpha > 0)
    out = np.empty((*color.shape[:2], 4), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(rgb, out=rgb), 0, 255, out=rgb)
    scaled = alpha * np.float32(255)
    out[..., 3:] = np.clip(np.rint(scaled, out=scaled), 0, 255, out=scaled)
    return out


def composite_premultiplied(layers: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied colour (0..255 scale) and alpha (0..1) of RGBA layers stacked with "over"."""
    height, width = layers[0].shape[:2]
    color = np.zeros((height, width, 3), dtype=np.float32)
    alpha = np.zeros((height, width, 1), dtype=np.float32)
    for layer in layers:
        if layer.shape[:2] != (height, width):
            raise ValueError("all layers must have the same size")
        src_color, src_alpha = _premultiplied(layer)
        keep = 1 - src_alpha
        color = src_color + color * keep
        alpha = src_alpha + alpha * keep
    return color, alpha


def composite(layers: Sequence[np.ndarray | LayerImage]) -> np.ndarray:
    """Porter-Duff "over" of RGBA layers in order (first = bottom); returns (H, W, 4) uint8."""
    if not layers:
        raise ValueError("nothing to composite")
    color, alpha = composite_premultiplied([layer_pixels(layer) for layer in layers])
    return _straight(color, alpha)


def unmix(result: np.ndarray, over: np.ndarray) -> np.ndarray:
    """The pixels `base` such that `over` composited on `base` gives `result` (both RGBA).

    Exact up to rounding where `result` is opaque; where `over` is opaque nothing shows
    through and the base is left transparent.
    """
    res_color, res_alpha = _premultiplied(result)
    top_color, top_alpha = _premultiplied(over)
    through = 1 - top_alpha
    seen = through > 1e-6
    safe = np.where(seen, through, 1)
    alpha = np.where(seen, np.clip((res_alpha - top_alpha) / safe, 0, 1), 0)
    color = np.where(seen, np.clip((res_color - top_color) / safe, 0, 255 * alpha), 0)
    return _straight(color.astype(np.float32), alpha.astype(np.float32))
