"""From foreground regions to subjects: grouping, choosing the main ones, colour splitting.

Small regions of one colour (letters of a word, scattered dots) are grouped into one subject.
By default the stack is the background plus up to three subjects of at least 1 % of the
image. When a layer count is asked for, the largest subjects are kept and, if there are too
few, the layer whose colours separate best (2-means in CIE Lab, largest drop in squared
error) is split in two, the background included, until the count is met or nothing splits.
"""

from __future__ import annotations

import cv2
import numpy as np

from aigen.server.layers.background import ring_mask

DEFAULT_MAX_SUBJECTS = 3
SUBJECT_MIN_COVERAGE = 0.01  # default mode: smaller subjects stay in the background
COUNT_MIN_COVERAGE = 0.001  # explicit count: smallest subject kept
GROUP_DELTA_E = 20.0  # small regions closer than this in mean colour form one subject
SPLIT_MIN_DELTA_E = 10.0  # colour split only between clearly different colours
SPLIT_MIN_SHARE = 0.002  # each half of a split covers at least this much of the image
RIM_SHARE = 0.6  # a split-off part this much on its region's outline is rejected
_SPLIT_SAMPLES = 2048


def select_subjects(regions: np.ndarray, lab: np.ndarray, valid: np.ndarray, subjects: int | None) -> np.ndarray:
    """uint8 labels: 0 background, 1..k subjects, largest first.

    `subjects` is the number of subjects wanted (None: the default choice).
    """
    total = regions.size
    groups = _group_regions(regions, lab, valid)
    areas = np.bincount(groups.reshape(-1), minlength=int(groups.max()) + 1)
    order = [int(g) for g in np.argsort(-areas[1:], kind="stable") + 1 if areas[g] > 0]
    if subjects is None:
        order = [g for g in order if areas[g] >= SUBJECT_MIN_COVERAGE * total][:DEFAULT_MAX_SUBJECTS]
    else:
        order = [g for g in order if areas[g] >= COUNT_MIN_COVERAGE * total][:subjects]
    labels = _relabel(groups, order)
    if subjects is not None:
        labels = _split_until(labels, lab, valid, subjects + 1)
    return _by_area(labels)


def _relabel(groups: np.ndarray, order: list[int]) -> np.ndarray:
    lookup = np.zeros(int(groups.max()) + 1, dtype=np.uint8)
    lookup[order] = np.arange(1, len(order) + 1, dtype=np.uint8)
    return lookup[groups]


def _by_area(labels: np.ndarray) -> np.ndarray:
    """Renumber subjects by decreasing area, dropping empty ones; background stays 0."""
    areas = np.bincount(labels.reshape(-1), minlength=int(labels.max()) + 1)
    order = [int(g) for g in np.argsort(-areas[1:], kind="stable") + 1 if areas[g] > 0]
    return _relabel(labels, order)


def _group_regions(regions: np.ndarray, lab: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Merge small regions of similar mean colour; big regions stay on their own."""
    regions = np.where(valid, regions, 0)
    count = int(regions.max()) + 1
    flat = regions.reshape(-1)
    areas = np.bincount(flat, minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=lab[..., c].reshape(-1), minlength=count) for c in range(3)], 1)
    means = sums / np.maximum(areas, 1)[:, None]
    mapping = np.arange(count)
    big = areas >= SUBJECT_MIN_COVERAGE * regions.size
    groups: list[tuple[int, np.ndarray, float]] = []  # (label, mean colour, area)
    for region in np.argsort(-areas, kind="stable"):
        if region == 0 or big[region] or areas[region] == 0:
            continue
        for index, (label, mean, area) in enumerate(groups):
            if np.linalg.norm(mean - means[region]) <= GROUP_DELTA_E:
                merged = area + areas[region]
                groups[index] = (label, (mean * area + means[region] * areas[region]) / merged, merged)
                mapping[region] = label
                break
        else:
            groups.append((int(region), means[region], float(areas[region])))
    return mapping[regions]


def _split_until(labels: np.ndarray, lab: np.ndarray, valid: np.ndarray, layers: int) -> np.ndarray:
    """Split layers by colour until there are `layers` labels or no split qualifies."""
    ring = ring_mask(labels.shape)
    splits: dict[int, tuple[float, np.ndarray | None]] = {}
    labels = labels.copy()
    while int(labels.max()) + 1 < layers:
        for label in range(int(labels.max()) + 1):
            if label not in splits:
                splits[label] = _best_split(labels == label, lab, valid)
        scored = [(gain, label) for label, (gain, part) in splits.items() if part is not None]
        if not scored:
            break
        _, label = max(scored)
        part = splits[label][1]
        assert part is not None
        region = labels == label
        if label == 0 and np.count_nonzero(part & ring) > np.count_nonzero(region & ~part & ring):
            part = region & ~part  # the half holding more of the border stays the background
        new_label = int(labels.max()) + 1
        labels[part] = new_label
        splits.pop(label)
    return labels


def _best_split(region: np.ndarray, lab: np.ndarray, valid: np.ndarray) -> tuple[float, np.ndarray | None]:
    """Squared-error gain of the best 2-colour split of `region`, and the pixels split off."""
    inside = region & valid
    count = int(np.count_nonzero(inside))
    min_part = max(4, round(SPLIT_MIN_SHARE * region.size))
    if count < 2 * min_part:
        return 0.0, None
    colours = lab[inside]
    centers = _two_means(colours[:: max(1, count // _SPLIT_SAMPLES)])
    if centers is None or np.linalg.norm(centers[0] - centers[1]) < SPLIT_MIN_DELTA_E:
        return 0.0, None
    ys, xs = np.nonzero(region)
    pixels = lab[ys, xs]
    nearer = _nearer_second(pixels, centers)
    chosen = np.zeros(region.shape, dtype=np.uint8)
    chosen[ys[nearer], xs[nearer]] = 255
    part = (cv2.medianBlur(chosen, 5) > 0) & region
    rest = region & ~part
    sizes = (int(np.count_nonzero(part & valid)), int(np.count_nonzero(rest & valid)))
    if min(sizes) < min_part or _is_rim(part, region) or _is_rim(rest, region):
        return 0.0, None
    gap = float(np.sum((lab[part & valid].mean(axis=0) - lab[rest & valid].mean(axis=0)) ** 2))
    return sizes[0] * sizes[1] / (sizes[0] + sizes[1]) * gap, part


def _is_rim(part: np.ndarray, region: np.ndarray) -> bool:
    """Whether `part` is mostly the outline of `region` (an anti-aliased edge, not an object)."""
    core = cv2.erode(region.astype(np.uint8), np.ones((5, 5), dtype=np.uint8)) > 0
    return np.count_nonzero(part & ~core) >= RIM_SHARE * np.count_nonzero(part)


def _two_means(points: np.ndarray, rounds: int = 10) -> np.ndarray | None:
    """Deterministic 2-means: start from a cut across the principal colour axis."""
    if len(points) < 2:
        return None
    centered = points - points.mean(axis=0)
    _, _, axes = np.linalg.svd(centered[:: max(1, len(points) // 1024)], full_matrices=False)
    upper = centered @ axes[0] > 0
    centers = None
    for _ in range(rounds):
        if upper.all() or not upper.any():
            return None
        centers = np.stack([points[~upper].mean(axis=0), points[upper].mean(axis=0)])
        moved = _nearer_second(points, centers)
        if np.array_equal(moved, upper):
            break
        upper = moved
    return centers


def _nearer_second(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Whether each point is nearer the second center than the first (a half-space test)."""
    direction = centers[1] - centers[0]
    threshold = (centers[1] @ centers[1] - centers[0] @ centers[0]) / 2
    return points @ direction > threshold
