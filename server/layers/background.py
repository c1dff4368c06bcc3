"""Background colour model learnt from the image border, at working resolution (CIE Lab).

Two complementary models, a pixel's distance being the smaller of the two:

- a quadratic colour surface over the image, robustly fitted (Cauchy weights) to the border
  and then refitted to the pixels that matched it: plain, gradient and vignetted backgrounds;
- the dominant border colours (deterministic k-means), kept only when a colour covers a fair
  share of at least two sides: multi-tone backgrounds such as sky over ground, while a
  subject cut by one edge of the frame does not become background.

Border pixels unlike the running median of their side (a subject crossing the frame) are
left out of both fits.
"""

from __future__ import annotations

import numpy as np

RING_OUTLIER_DELTA_E = 15.0  # border pixels this far from their side's running median are left out
PALETTE_SIDE_SHARE = 0.1  # a border colour must cover this much of a side ...
PALETTE_MIN_SIDES = 2  # ... on this many sides to count as background
_PALETTE_CLUSTERS = 6
_PALETTE_SAMPLES = 1024
_FIT_SAMPLES = 8192
_FAR = 1e3  # distance reported when a model has nothing to say


def ring_mask(shape: tuple[int, int]) -> np.ndarray:
    """The border band (1/40 of the short side, at least one pixel) that models the background."""
    ring = np.zeros(shape, dtype=bool)
    for side in side_bands(shape):
        ring[side] = True
    return ring


def side_bands(shape: tuple[int, int]) -> tuple[tuple[slice, slice], ...]:
    """Index expressions of the top, bottom, left and right border bands."""
    band = max(1, min(shape) // 40)
    whole = slice(None)
    return (
        (slice(0, band), whole),
        (slice(shape[0] - band, shape[0]), whole),
        (whole, slice(0, band)),
        (whole, slice(shape[1] - band, shape[1])),
    )


def side_shares(mask: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
    """Fraction of each side band (top, bottom, left, right) covered by `mask` (among `within`)."""
    shares = np.zeros(4)
    for index, side in enumerate(side_bands(mask.shape)):
        pool = np.ones(mask[side].shape, dtype=bool) if within is None else within[side]
        total = np.count_nonzero(pool)
        shares[index] = np.count_nonzero(mask[side] & pool) / total if total else 0.0
    return shares


def border_samples(lab: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Border pixels usable as background samples: visible and in line with their side."""
    return ring_mask(valid.shape) & valid & ~_ring_outliers(lab)


def background_distance(lab: np.ndarray, valid: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Per-pixel CIE Lab distance to the background model fitted on the `samples` pixels."""
    if np.count_nonzero(samples) < 6:
        samples = ring_mask(samples.shape) & valid
    if np.count_nonzero(samples) < 6:
        return np.full(samples.shape, _FAR, dtype=np.float32)
    design = _quadratic_design(samples.shape)
    flat_lab = lab.reshape(-1, 3)
    first = _surface_distance(design, flat_lab, samples.reshape(-1))
    seeds = (first < _seed_limit(first, samples)) & valid.reshape(-1)
    surface = _surface_distance(design, flat_lab, seeds) if np.count_nonzero(seeds) >= 6 else first
    palette = _palette_distance(lab, samples)
    return np.minimum(surface.reshape(samples.shape), palette).astype(np.float32)


def _seed_limit(distance: np.ndarray, samples: np.ndarray) -> float:
    """Distance under which a pixel is used for the refit: well inside the border's own spread."""
    return max(6.0, 2.0 * float(np.median(distance[samples.reshape(-1)])))


def _quadratic_design(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    x = xs / max(width - 1, 1) * 2 - 1
    y = ys / max(height - 1, 1) * 2 - 1
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)


def _surface_distance(design: np.ndarray, values: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Distance of every pixel to a quadratic colour surface robustly fitted on `chosen` pixels."""
    index = np.flatnonzero(chosen)
    index = index[:: max(1, index.size // _FIT_SAMPLES)]
    coef = _robust_fit(design[index].astype(np.float64), values[index].astype(np.float64))
    return np.linalg.norm(values - np.einsum("ni,ij->nj", design, coef.astype(np.float32)), axis=1)


def _robust_fit(design: np.ndarray, values: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Cauchy-weighted least squares via the normal equations (6 unknowns per channel)."""
    weights = np.ones(len(design))
    coef = np.zeros((design.shape[1], values.shape[1]))
    for _ in range(rounds):
        weighted = design * weights[:, None]
        normal = weighted.T @ design + np.eye(design.shape[1]) * 1e-6
        coef = np.linalg.solve(normal, weighted.T @ values)
        residual = np.linalg.norm(values - design @ coef, axis=1)
        spread = max(float(np.median(residual)) * 1.5, 2.0)
        weights = 1 / (1 + (residual / spread) ** 2)
    return coef


def _palette_distance(lab: np.ndarray, samples: np.ndarray) -> np.ndarray:
    """Distance to the nearest border colour that covers enough of at least two sides."""
    points = lab[samples]
    centers = kmeans(points[:: max(1, len(points) // _PALETTE_SAMPLES)].astype(np.float32), _PALETTE_CLUSTERS)
    nearest = np.full(samples.shape, -1, dtype=np.intp)
    nearest[samples] = np.argmin(np.linalg.norm(points[:, None] - centers[None], axis=2), axis=1)
    kept = [
        center
        for index, center in enumerate(centers)
        if np.count_nonzero(side_shares(nearest == index, samples) >= PALETTE_SIDE_SHARE) >= PALETTE_MIN_SIDES
    ]
    if not kept:
        return np.full(samples.shape, _FAR, dtype=np.float32)
    distance = np.linalg.norm(lab.reshape(-1, 1, 3) - np.asarray(kept)[None], axis=2).min(axis=1)
    return distance.reshape(samples.shape)


def kmeans(points: np.ndarray, k: int, rounds: int = 10) -> np.ndarray:
    """Deterministic Lloyd k-means with a farthest-point start; returns the centers."""
    centers = [points.mean(axis=0)]
    for _ in range(1, min(k, len(points))):
        gap = np.min(np.linalg.norm(points[:, None] - np.asarray(centers)[None], axis=2), axis=1)
        if gap.max() <= 1e-3:
            break
        centers.append(points[int(np.argmax(gap))])
    center_array = np.asarray(centers, dtype=np.float32)
    for _ in range(rounds):
        assignment = np.argmin(np.linalg.norm(points[:, None] - center_array[None], axis=2), axis=1)
        for index in range(len(center_array)):
            members = points[assignment == index]
            if len(members):
                center_array[index] = members.mean(axis=0)
    return center_array


def _ring_outliers(lab: np.ndarray) -> np.ndarray:
    """Border pixels unlike their side's running median colour (subjects crossing the border)."""
    outliers = np.zeros(lab.shape[:2], dtype=bool)
    for index, side in enumerate(side_bands(lab.shape[:2])):
        along = 1 if index < 2 else 0  # top/bottom bands run along x, left/right along y
        profile = lab[side].mean(axis=1 - along)  # one colour per position along the side
        far = np.linalg.norm(profile - _running_median(profile), axis=1) > RING_OUTLIER_DELTA_E
        outliers[side] |= far[None, :] if along == 1 else far[:, None]
    return outliers


def _running_median(profile: np.ndarray) -> np.ndarray:
    window = max(3, (len(profile) // 2) | 1)
    padded = np.pad(profile, ((window // 2, window // 2), (0, 0)), mode="edge")
    views = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    return np.median(views, axis=-1)
