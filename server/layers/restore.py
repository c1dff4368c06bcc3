"""Put locked layers back over a provider's edit, measure how much the provider moved them.

A provider's output whose size differs from the session image is first fitted to the
session size by "cover": scaled (Lanczos, preserving aspect ratio) until it covers the
session frame, then centre-cropped. Providers that answer at another aspect ratio keep the
subject centred, so cover keeps locked content aligned without bars or distortion; an
integer-aligned crop of the same scale is exact (no resampling at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from aigen.server.layers.images import LayerImage, composite, decode_rgba, encode_png, layer_pixels

DRIFT_TOLERANCE = 2  # per-channel difference (0..255) still counted as unchanged


@dataclass(frozen=True, slots=True, eq=False)
class RestoreResult:
    """The restored image and the lock drift measured on the provider's output."""

    png: bytes  # RGB PNG when opaque, RGBA otherwise
    pixels: np.ndarray  # (H, W, 4) uint8
    changed_pixels: int  # locked pixels (alpha > 0) with a channel off by more than DRIFT_TOLERANCE
    changed_fraction: float  # changed_pixels / locked pixels (0 when nothing is locked)
    max_channel_delta: int  # largest per-channel difference inside locked pixels
    provider_size: tuple[int, int]  # (width, height) the provider answered with


def fit_to_size(rgba: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale-to-cover and centre-crop an RGBA array to `size` (width, height)."""
    width, height = size
    src_height, src_width = rgba.shape[:2]
    if (src_width, src_height) == (width, height):
        return rgba
    if src_width * height > width * src_height:  # wider than the target: crop the sides
        crop_width, crop_height = src_height * width / height, float(src_height)
    else:
        crop_width, crop_height = float(src_width), src_width * height / width
    left, top = (src_width - crop_width) / 2, (src_height - crop_height) / 2
    box = (left, top, left + crop_width, top + crop_height)
    if (crop_width, crop_height) == (width, height) and left.is_integer() and top.is_integer():
        return rgba[int(top) : int(top) + height, int(left) : int(left) + width].copy()
    image = Image.fromarray(np.ascontiguousarray(rgba))
    return np.array(image.resize((width, height), Image.Resampling.LANCZOS, box=box), dtype=np.uint8)


def restore_locked(
    edited: bytes, original_size: tuple[int, int], locked: Sequence[np.ndarray | LayerImage]
) -> RestoreResult:
    """Composite the locked layers (in stacking order) back over a provider's edited image.

    `original_size` is the session image's (width, height). Where a locked layer is opaque
    the result is byte-identical to it; elsewhere it is blended over the edit by its alpha.
    Drift compares the fitted edit with the restored image inside the locked pixels.
    """
    width, height = original_size
    if width < 1 or height < 1:
        raise ValueError("the session image size must be positive")
    layers = [layer_pixels(layer) for layer in locked]
    if any(layer.shape[:2] != (height, width) for layer in layers):
        raise ValueError("locked layers must have the session image size")
    provider = decode_rgba(edited)
    fitted = fit_to_size(provider, (width, height))
    restored = composite([fitted, *layers]) if layers else fitted.copy()
    changed, fraction, delta = _drift(fitted, restored, layers)
    opaque = bool(np.all(restored[..., 3] == 255))
    png = encode_png(restored[..., :3] if opaque else restored)
    return RestoreResult(
        png=png,
        pixels=restored,
        changed_pixels=changed,
        changed_fraction=fraction,
        max_channel_delta=delta,
        provider_size=(provider.shape[1], provider.shape[0]),
    )


def _drift(fitted: np.ndarray, restored: np.ndarray, layers: list[np.ndarray]) -> tuple[int, float, int]:
    """Changed pixel count, changed fraction and largest channel delta under the locks."""
    if not layers:
        return 0, 0.0, 0
    locked = np.any(np.stack([layer[..., 3] > 0 for layer in layers]), axis=0)
    total = int(np.count_nonzero(locked))
    if total == 0:
        return 0, 0.0, 0
    delta = np.abs(fitted[locked].astype(np.int16) - restored[locked].astype(np.int16)).max(axis=1)
    changed = int(np.count_nonzero(delta > DRIFT_TOLERANCE))
    return changed, changed / total, int(delta.max())


def unlocked_mask(size: tuple[int, int], locked_layers: Sequence[np.ndarray | LayerImage]) -> bytes:
    """PNG mask of `size` (width, height): white = editable, black = under an opaque locked pixel."""
    width, height = size
    mask = np.full((height, width), 255, dtype=np.uint8)
    for layer in locked_layers:
        pixels = layer_pixels(layer)
        if pixels.shape[:2] != (height, width):
            raise ValueError("locked layers must have the mask size")
        mask[pixels[..., 3] == 255] = 0
    return encode_png(mask)
