"""Bring working-resolution labels to full resolution with edges that follow the image.

Labels are upsampled (nearest, centre-aligned); only pixels near a label boundary are
reconsidered. Each of those takes the label whose local mean colour (measured at working
resolution, preferring pixels away from boundaries) is nearest to the pixel's own colour,
with a penalty for leaving the upsampled label so that flat colour areas keep smooth edges.
"""

from __future__ import annotations

import cv2
import numpy as np

LABEL_PRIOR = 100.0  # squared CIE Lab distance a pixel must gain to switch label
_WINDOW = (9, 9)  # working pixels over which a label's local mean colour is taken
_FALLBACK_WEIGHT = 0.05  # weight of boundary pixels when a label has no interior nearby


def upsample_labels(labels: np.ndarray, rgba: np.ndarray, lab: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Full-resolution uint8 labels from working-resolution `labels` (with its sharp `lab`)."""
    height, width = rgba.shape[:2]
    if labels.shape == (height, width):
        return labels.copy()
    full = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    count = int(labels.max()) + 1
    if count == 1:
        return full
    kernel = np.ones((3, 3), dtype=np.uint8)
    edge = cv2.dilate(labels, kernel) != cv2.erode(labels, kernel)
    near = cv2.dilate(edge.astype(np.uint8), kernel)  # a working pixel either side of each boundary
    band = cv2.resize(near, (width, height), interpolation=cv2.INTER_NEAREST_EXACT) > 0
    ys, xs = np.nonzero(band)
    if ys.size == 0:
        return full
    colours = _band_colours(rgba, ys, xs)
    rows, cols = _nearest_working(ys, xs, labels.shape, (height, width))
    nearest = rows * labels.shape[1] + cols
    prior = _soft_membership(labels, ys, xs, (height, width))
    local = _local_colours(labels, edge, lab, valid)
    full[ys, xs] = _assign(local, nearest, colours, prior)
    return full


def _assign(local: np.ndarray, nearest: np.ndarray, colours: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Best label per band pixel: nearest local label colour, plus the switching penalty."""
    count = local.shape[0]
    local = local.reshape(count, -1, 4)
    scores = np.empty((count, nearest.size), dtype=np.float32)
    for label in range(count):
        sampled = np.take(local[label], nearest, axis=0)  # (n, 4): local mean colour and presence
        distance = np.sum(np.square(colours - sampled[:, :3]), axis=1)
        distance += LABEL_PRIOR * (1 - prior[label])
        scores[label] = np.where(sampled[:, 3] > 0.01, distance, np.inf)
    return np.argmin(scores, axis=0).astype(np.uint8)


def _nearest_working(
    ys: np.ndarray, xs: np.ndarray, small: tuple[int, int], large: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Working pixel holding each full-resolution pixel (centre-aligned nearest)."""
    rows = np.minimum(((ys + 0.5) * (small[0] / large[0])).astype(np.intp), small[0] - 1)
    cols = np.minimum(((xs + 0.5) * (small[1] / large[1])).astype(np.intp), small[1] - 1)
    return rows, cols


def _soft_membership(labels: np.ndarray, ys: np.ndarray, xs: np.ndarray, large: tuple[int, int]) -> np.ndarray:
    """(labels, n): bilinearly interpolated label indicators at the full-resolution pixels."""
    axes = []
    for coords, small_size, large_size in ((ys, labels.shape[0], large[0]), (xs, labels.shape[1], large[1])):
        position = np.clip((coords + 0.5) * (small_size / large_size) - 0.5, 0, small_size - 1)
        low = np.floor(position).astype(np.intp)
        axes.append((low, np.minimum(low + 1, small_size - 1), (position - low).astype(np.float32)))
    (y0, y1, wy), (x0, x1, wx) = axes
    count = int(labels.max()) + 1
    membership = np.zeros((count, ys.size), dtype=np.float32)
    pixels = np.arange(ys.size)
    for rows, cols, weight in (
        (y0, x0, (1 - wy) * (1 - wx)),
        (y0, x1, (1 - wy) * wx),
        (y1, x0, wy * (1 - wx)),
        (y1, x1, wy * wx),
    ):
        membership[labels[rows, cols], pixels] += weight  # one label per pixel and tap: no collisions
    return membership


def _band_colours(rgba: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Lightly denoised CIE Lab colours of the band pixels, shape (n, 3)."""
    top, bottom = max(int(ys.min()) - 1, 0), int(ys.max()) + 2
    left, right = max(int(xs.min()) - 1, 0), int(xs.max()) + 2
    smooth = cv2.blur(rgba[top:bottom, left:right], (3, 3))
    picked = smooth[ys - top, xs - left, :3].astype(np.float32) / np.float32(255)
    return cv2.cvtColor(picked.reshape(1, -1, 3), cv2.COLOR_RGB2Lab).reshape(-1, 3)


def _local_colours(labels: np.ndarray, edge: np.ndarray, lab: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(labels, h, w, 4): each label's local mean colour (interior preferred) and local presence."""
    count = int(labels.max()) + 1
    local = np.empty((count, *labels.shape, 4), dtype=np.float32)
    interior = np.where(edge, np.float32(_FALLBACK_WEIGHT), np.float32(1))
    for label in range(count):
        members = ((labels == label) & valid).astype(np.float32)
        weight = members * interior
        total = cv2.boxFilter(weight, -1, _WINDOW, normalize=False)
        mean = cv2.boxFilter(lab * weight[..., None], -1, _WINDOW, normalize=False)
        local[label, ..., :3] = mean / np.maximum(total, 1e-6)[..., None]
        local[label, ..., 3] = cv2.boxFilter(members, -1, _WINDOW, normalize=True)
    return local
