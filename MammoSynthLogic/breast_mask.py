"""Breast segmentation as MAMBO supplementary §9 gives it, and the side of the chest wall.

Blur with a kernel ~1/50 of the image size, threshold at 0.175 × Otsu, keep the largest blob, erode.
Beyond the paper: the work is done on a copy of at most `WORK_SIDE` pixels a side (the blur makes finer
detail meaningless and it keeps `info` fast), and a morphological opening first cuts thin film borders,
burned-in labels and markers from the blob they may touch.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import numpy as np
from scipy import ndimage

WORK_SIDE = 512
OTSU_FACTOR = 0.175
BORDER_CUT = 0.015  # opening radius as a fraction of the longer side: strips narrower than twice this go
EROSION = 20 / 3500  # MAMBO's 20×20 kernel on ~3500-pixel images, as a fraction of the longer side

Side = Literal["left", "right"]


def _downsample(pixels: np.ndarray, work_side: int = WORK_SIDE) -> np.ndarray:
    """Strided copy of at most ~`work_side` pixels on the longer side (the blur that follows does the averaging)."""
    factor = max(1, math.ceil(max(pixels.shape) / work_side))
    return np.ascontiguousarray(pixels[::factor, ::factor], dtype=np.float32)


def _erode_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels farther than `radius` from every background pixel (what `distance_transform_edt(mask) > radius` keeps;
    outside the image is not background). The disk is taken row by row: a pixel survives if, in each row dy of the
    disk, the run of half-width ⌊√(r² - dy²)⌋ around it holds no background, a difference of running counts. At the
    radii used here (a few pixels) this is a few times faster than the distance transform."""
    h, w = mask.shape
    reach = int(radius)
    rows = min(reach, h - 1)  # rows of the disk beyond the image hold no background
    # the half-widths with the distance transform's own test (sqrt in float64, <= radius) on every offset
    halves = {dy: max(dx for dx in range(reach + 1) if math.sqrt(dx * dx + dy * dy) <= radius)
              for dy in range(-rows, rows + 1)}
    holes = np.zeros((h, w + 2 * reach + 1), np.int32)
    np.cumsum(~mask, axis=1, out=holes[:, reach + 1:reach + 1 + w])
    holes[:, reach + 1 + w:] = holes[:, reach + w:reach + 1 + w]
    runs = {half: holes[:, reach + half + 1:reach + half + 1 + w] == holes[:, reach - half:reach - half + w]
            for half in set(halves.values())}
    out = np.ones((h, w), bool)
    for dy, half in halves.items():
        if dy >= 0:
            out[:h - dy] &= runs[half][dy:]
        else:
            out[-dy:] &= runs[half][:h + dy]
    return out


def _dilate_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within `radius` of the mask (`distance_transform_edt(~mask) <= radius`; nothing for an empty mask)."""
    return ~_erode_disk(~mask, radius)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`ndimage.binary_fill_holes` (4-connected background not reaching the border) by one labelling, not by
    dilating until nothing changes."""
    labels, n = ndimage.label(~mask)
    keep = np.ones(n + 1, bool)
    keep[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = False
    keep[0] = True  # the mask itself
    return keep[labels]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _region_small(pixels: np.ndarray) -> np.ndarray:
    """Breast region (not eroded) at working resolution."""
    from skimage.filters import threshold_otsu

    small = _downsample(pixels)
    ksize = max(3.0, max(small.shape) / 50.0)
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8  # OpenCV's sigma for a kernel of that size
    blurred = ndimage.gaussian_filter(small, sigma)
    if float(blurred.max() - blurred.min()) < 1e-6:
        return np.zeros(small.shape, dtype=bool)
    thresholded = blurred > threshold_otsu(blurred) * OTSU_FACTOR
    radius = max(1, round(BORDER_CUT * max(small.shape)))
    core = _largest_component(_dilate_disk(_erode_disk(thresholded, radius), radius))
    if not core.any():
        core = _largest_component(thresholded)
    region = _largest_component(thresholded & _dilate_disk(core, radius + 1))
    return _fill_holes(region)


def _upsample(mask_small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of the mask, thresholded at one half (smooth edges, no staircase)."""
    from PIL import Image

    if mask_small.shape == tuple(shape):
        return mask_small.copy()
    small = Image.fromarray(mask_small.astype(np.uint8) * 255)
    return np.asarray(small.resize((shape[1], shape[0]), Image.BILINEAR)) > 127


def _erode(mask: np.ndarray, fraction: float) -> np.ndarray:
    return _erode_disk(mask, max(1.0, fraction * max(mask.shape) / 2))


def breast_region(pixels: np.ndarray, grow: float = 0.0) -> np.ndarray:
    """The whole breast, skin line included, without labels, film borders or markers (bool, same shape); with
    `grow`, dilated by that fraction of the longer side (at working resolution, so in linear time)."""
    region = _region_small(pixels)
    if grow > 0 and region.any():
        region = _dilate_disk(region, grow * max(region.shape))
    return _upsample(region, pixels.shape)


def breast_mask(pixels: np.ndarray) -> np.ndarray:
    """MAMBO's mask of the inner breast tissue: the region eroded by a 20×20 kernel at ~3500 px (bool, same shape)."""
    return _upsample(_erode(_region_small(pixels), EROSION), pixels.shape)


def breast_area_fraction(pixels: np.ndarray, region: Optional[np.ndarray] = None) -> float:
    """Fraction of the image covered by the breast region."""
    mask = _region_small(pixels) if region is None else region
    return float(mask.mean())


def breast_side(pixels: np.ndarray, region: Optional[np.ndarray] = None) -> Side:
    """Which side of the stored pixels holds the chest wall: the one where the breast is widest."""
    mask = _region_small(pixels) if region is None else region
    third = max(1, mask.shape[1] // 3)
    left, right = mask[:, :third].sum(), mask[:, -third:].sum()
    if left == right:  # no mask to go by: fall back to where the brightness is
        small = _downsample(pixels)
        left, right = small[:, :third].sum(), small[:, -third:].sum()
    return "left" if left >= right else "right"


def describe(pixels: np.ndarray) -> tuple[Side, float]:
    """Breast side and area fraction from one segmentation (what `info` reports)."""
    region = _region_small(pixels)
    return breast_side(pixels, region), breast_area_fraction(pixels, region)
