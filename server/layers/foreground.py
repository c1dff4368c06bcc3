"""Foreground regions at a reduced working resolution.

Pixels far from the border-learnt background model (see `background`) seed the foreground,
pixels close to it seed the background, and a marker-based watershed (OpenCV) floods the
uncertain band in between so that boundaries follow colour edges. Each connected foreground
seed grows its own region; touching regions of the same colour are then merged, and a region
spread along most of the frame (three sides or more) is background after all.

Images whose border is mostly transparent (cut-outs) skip the colour model: their visible
shapes are the foreground. Everything here is deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from aigen.server.layers.background import background_distance, border_samples, ring_mask, side_shares

WORK_SIDE = 256  # longest side of the working image
BACKGROUND_DELTA_E = 6.0  # below: background seed (CIE Lab distance to the background model)
FOREGROUND_DELTA_E = 18.0  # above: foreground seed
MERGE_DELTA_E = 12.0  # touching regions closer than this in mean colour are one region
FRAME_SIDE_SHARE = 0.2  # a region covering this much of three sides or more is background
MIN_SEED_PIXELS = 3
VISIBLE_ALPHA = 0.2  # more transparent working pixels are never foreground
_SMOOTH_ABOVE_SCALE = 0.5  # colours of images reduced less than 2x are smoothed before modelling


@dataclass(frozen=True, slots=True)
class WorkImage:
    """The image at working resolution, ready for segmentation."""

    rgb: np.ndarray  # (h, w, 3) uint8, smoothed (watershed input); transparent pixels filled in
    lab: np.ndarray  # (h, w, 3) float32 CIE Lab, smoothed only if the image was reduced less than 2x
    sharp_lab: np.ndarray  # (h, w, 3) float32 CIE Lab, never smoothed
    valid: np.ndarray  # (h, w) bool: pixels visible enough to segment (alpha >= VISIBLE_ALPHA)


def work_image(rgba: np.ndarray) -> WorkImage:
    """Downscale (area-averaged, alpha-weighted), smooth and convert an RGBA image."""
    height, width = rgba.shape[:2]
    scale = min(1.0, WORK_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    alpha = rgba[..., 3]
    if np.all(alpha == 255):
        rgb = _resize(np.ascontiguousarray(rgba[..., :3]), size)
        valid = np.ones(rgb.shape[:2], dtype=bool)
    else:
        rgb, valid = _weighted_resize(rgba, size)
    sharp_lab = _lab(rgb)
    if min(rgb.shape[:2]) < 5:
        return WorkImage(rgb=rgb, lab=sharp_lab, sharp_lab=sharp_lab, valid=valid)
    smooth = cv2.GaussianBlur(rgb, (5, 5), 1.0)
    # Area downscaling already averages noise away; smoothing again would close thin gaps.
    lab = _lab(smooth) if scale > _SMOOTH_ABOVE_SCALE else sharp_lab
    return WorkImage(rgb=smooth, lab=lab, sharp_lab=sharp_lab, valid=valid)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / np.float32(255), cv2.COLOR_RGB2Lab)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (image.shape[1], image.shape[0]) == size:
        return image.copy()
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _weighted_resize(rgba: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-weighted downscale; transparent pixels get the colour of their surroundings."""
    alpha = rgba[..., 3].astype(np.float32) / np.float32(255)
    premultiplied = _resize(rgba[..., :3].astype(np.float32) * alpha[..., None], size)
    small_alpha = _resize(alpha, size)
    color = premultiplied / np.maximum(small_alpha, 1e-3)[..., None]
    valid = small_alpha >= VISIBLE_ALPHA
    weight = valid.astype(np.float32)
    window = (31, 31)
    spread = cv2.blur(weight, window)
    filled = cv2.blur(color * weight[..., None], window) / np.maximum(spread, 1e-6)[..., None]
    mean = color[valid].mean(axis=0) if valid.any() else np.full(3, 127.0, dtype=np.float32)
    filled[spread <= 1e-6] = mean
    color = np.where(valid[..., None], color, filled)
    return np.clip(np.rint(color), 0, 255).astype(np.uint8), valid


def foreground_regions(work: WorkImage) -> np.ndarray:
    """Working-resolution int32 labels: 0 background, 1..n foreground regions."""
    shape = work.valid.shape
    if min(shape) < 8:
        return np.zeros(shape, dtype=np.int32)
    ring = ring_mask(shape)
    if np.count_nonzero(ring & ~work.valid) * 2 >= np.count_nonzero(ring):
        _, labels = cv2.connectedComponents(work.valid.astype(np.uint8), connectivity=8)
        return labels.astype(np.int32)
    distance = background_distance(work.lab, work.valid, border_samples(work.lab, work.valid))
    regions = _merge_touching(_watershed(work, distance), work.sharp_lab)
    return _drop_frame_regions(regions, work.valid)


def _watershed(work: WorkImage, distance: np.ndarray) -> np.ndarray:
    """Flood from background and foreground seeds; every foreground seed gets its own region."""
    strong = ((distance > FOREGROUND_DELTA_E) & work.valid).astype(np.uint8)
    count, seeds, stats, _ = cv2.connectedComponentsWithStats(strong, connectivity=8)
    kept = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_SEED_PIXELS) + 1
    if kept.size == 0:
        return np.zeros(distance.shape, dtype=np.int32)
    relabel = np.zeros(count, dtype=np.int32)
    relabel[kept] = np.arange(2, kept.size + 2)
    markers = relabel[seeds]
    markers[((distance < BACKGROUND_DELTA_E) | ~work.valid) & (markers == 0)] = 1
    cv2.watershed(work.rgb, markers)
    labels = np.maximum(_fill_ridges(markers) - 1, 0)
    labels[~work.valid] = 0
    return labels


def _fill_ridges(markers: np.ndarray) -> np.ndarray:
    """Give watershed ridge pixels (-1) the largest neighbouring label."""
    ridge = markers < 0
    if not ridge.any():
        return markers
    padded = np.pad(markers, 1, mode="edge")
    height, width = markers.shape
    best = np.max([padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)], axis=0)
    filled = np.where(ridge, np.maximum(best, 1), markers)
    return filled


def _merge_touching(regions: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Merge 4-neighbouring regions whose mean colours are within MERGE_DELTA_E."""
    count = int(regions.max()) + 1
    if count <= 2:
        return regions
    flat = regions.reshape(-1)
    areas = np.maximum(np.bincount(flat, minlength=count), 1)
    means = np.stack([np.bincount(flat, lab[..., c].reshape(-1), minlength=count) for c in range(3)], 1)
    means /= areas[:, None]
    pairs = np.concatenate(
        [
            np.stack([regions[:, :-1].reshape(-1), regions[:, 1:].reshape(-1)], 1),
            np.stack([regions[:-1].reshape(-1), regions[1:].reshape(-1)], 1),
        ]
    )
    pairs = np.unique(pairs[(pairs[:, 0] != pairs[:, 1]) & (pairs.min(axis=1) > 0)], axis=0)
    parent = np.arange(count)
    for first, second in pairs:
        if np.linalg.norm(means[first] - means[second]) < MERGE_DELTA_E:
            parent[_root(parent, second)] = _root(parent, first)
    roots = np.array([_root(parent, index) for index in range(count)])
    return roots[regions].astype(np.int32)


def _root(parent: np.ndarray, index: int) -> int:
    while parent[index] != index:
        index = int(parent[index])
    return index


def _drop_frame_regions(regions: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Return regions that run along three sides of the frame or more to the background."""
    for region in range(1, int(regions.max()) + 1):
        member = regions == region
        if np.count_nonzero(side_shares(member, valid) >= FRAME_SIDE_SHARE) >= 3:
            regions[member] = 0
    return regions
