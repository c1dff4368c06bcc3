"""Split an image into an ordered stack of RGBA layers: the background, then the subjects.

Layers partition the pixels: every pixel belongs to exactly one layer, which holds it with
its original colour and alpha, and is transparent in all the others. Compositing the stack
with "over" (background first) therefore gives back the original exactly, whatever the
order. Images with transparency keep it: a half-transparent pixel stays half-transparent in
its layer and fully transparent pixels are transparent in every layer (their hidden colour
is not kept). Cut-outs (a mostly transparent border) use the opaque shapes as subjects and
may get an empty background.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from aigen.server.errors import InvalidArgument
from aigen.server.layers.foreground import foreground_regions, work_image
from aigen.server.layers.images import LayerImage, as_rgba, composite, decode_rgba, make_layer, unmix
from aigen.server.layers.refine import upsample_labels
from aigen.server.layers.regions import select_subjects

MIN_LAYERS = 2
MAX_LAYERS = 8
BACKGROUND = "background"


def separate(image: bytes, layer_count: int | None = None) -> list[LayerImage]:
    """Decode an image and split it into layers (see `separate_rgba`)."""
    _check_count(layer_count)
    return separate_rgba(decode_rgba(image), layer_count)


def separate_rgba(rgba: np.ndarray, layer_count: int | None = None) -> list[LayerImage]:
    """Split an (H, W, 4) uint8 image into layers, background first.

    `layer_count` (2..8, background included) asks for that many layers; fewer come back
    only when the image does not hold that many distinct regions (e.g. a single flat
    colour). None gives the background plus up to three main subjects.
    """
    _check_count(layer_count)
    pixels = as_rgba(rgba)
    labels = segment(pixels, None if layer_count is None else layer_count - 1)
    layers = [make_layer(pixels, labels == label, "", 0) for label in range(int(labels.max()) + 1)]
    kept = [layers[0]] + [layer for layer in layers[1:] if layer.coverage > 0]
    return [
        dataclasses.replace(layer, name=BACKGROUND if index == 0 else f"subject {index}", z_order=index)
        for index, layer in enumerate(kept)
    ]


def segment(rgba: np.ndarray, subjects: int | None) -> np.ndarray:
    """Full-resolution uint8 labels: 0 background, 1..k subjects (largest first)."""
    work = work_image(rgba)
    regions = foreground_regions(work)
    small = select_subjects(regions, work.lab, work.valid, subjects)
    return upsample_labels(small, rgba, work.sharp_lab, work.valid)


def reseparate_unlocked(
    restored: np.ndarray, locked: Sequence[LayerImage], layer_count: int | None = None
) -> list[LayerImage]:
    """Re-split what the locked layers leave visible, keeping the locked layers in the stack.

    `restored` is the image after `restore_locked` (so the locked pixels are in it). The
    locked layers keep their z_order where the new stack size allows (returned as the same
    objects then, otherwise as copies with the new z_order) and their relative order always;
    new layers fill the other positions, the new background lowest. `layer_count` is the
    size of the whole stack, locked layers included (when they already fill it, whatever
    they leave visible becomes one new layer). A new background is always made unless a
    locked layer is the bottom one. Compositing the result gives back `restored` (up to
    rounding, for an opaque `restored`). Unlike `separate`, any `layer_count` of at least 1
    is accepted, so that a stack can be kept at its current size whatever it is.
    """
    if layer_count is not None and layer_count < 1:
        raise InvalidArgument("layer_count", "must be at least 1")
    result = as_rgba(restored)
    if not locked:
        count = None if layer_count is None else min(max(layer_count, MIN_LAYERS), MAX_LAYERS)
        return separate_rgba(result, count)
    ordered = sorted(locked, key=lambda layer: layer.z_order)
    if any(layer.pixels.shape != result.shape for layer in ordered):
        raise ValueError("locked layers must have the size of the restored image")
    alphas = np.stack([layer.pixels[..., 3] for layer in ordered])
    hidden = np.any(alphas == 255, axis=0)
    under = _content(result, [layer.pixels for layer in ordered], hidden, alphas).copy()  # seen through the locks
    under[hidden] = 0
    new_count = None if layer_count is None else max(1, layer_count - len(ordered))
    labels = segment(under, None if new_count is None else new_count - 1)
    present = [label for label in range(int(labels.max()) + 1) if np.any((labels == label) & (under[..., 3] > 0))]
    if ordered[0].z_order != 0 and 0 not in present:
        present.insert(0, 0)  # the stack keeps a (possibly empty) background at the bottom
    slots = _locked_slots([layer.z_order for layer in ordered], len(ordered) + len(present))
    free_slots = [slot for slot in range(len(ordered) + len(present)) if slot not in slots]
    names = _new_names([layer.name for layer in ordered], free_slots)
    stack: dict[int, LayerImage] = {}
    for layer, slot in zip(ordered, slots, strict=True):
        stack[slot] = layer if layer.z_order == slot else dataclasses.replace(layer, z_order=slot)
    for label, slot, name in zip(present, free_slots, names, strict=True):
        above = [layer.pixels for layer, where in zip(ordered, slots, strict=True) if where > slot]
        content = _content(result, above, hidden, alphas)
        stack[slot] = make_layer(content, (labels == label) & ~hidden, name, slot)
    return [stack[slot] for slot in sorted(stack)]


def _content(result: np.ndarray, above: list[np.ndarray], hidden: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """What a new layer must hold so that the locked layers `above` it give back `result`."""
    partial = np.any(alphas > 0, axis=0) & ~hidden
    if not above or not partial.any():
        return result
    content = result.copy()
    rows = result[partial][:, None]
    content[partial] = unmix(rows, composite([layer[partial][:, None] for layer in above]))[:, 0]
    return content


def _locked_slots(z_orders: list[int], total: int) -> list[int]:
    """Positions of the locked layers: their z_order when possible, in order, inside the stack."""
    slots: list[int] = []
    for index, z_order in enumerate(z_orders):
        low = slots[-1] + 1 if slots else 0
        high = total - (len(z_orders) - index)
        slots.append(min(max(z_order, low), high))
    return slots


def _new_names(taken: list[str], free_slots: list[int]) -> list[str]:
    """BACKGROUND for a new layer at the bottom, otherwise the first unused "subject N"."""
    used = set(taken)
    names: list[str] = []
    number = 1
    for slot in free_slots:
        if slot == 0 and BACKGROUND not in used:
            names.append(BACKGROUND)
            used.add(BACKGROUND)
            continue
        while f"subject {number}" in used:
            number += 1
        names.append(f"subject {number}")
        used.add(names[-1])
    return names


def _check_count(layer_count: int | None) -> None:
    if layer_count is not None and not MIN_LAYERS <= layer_count <= MAX_LAYERS:
        raise InvalidArgument("layer_count", f"must be between {MIN_LAYERS} and {MAX_LAYERS}")
