"""Anomaly maps as MAMBO §3.3 gives them: noise a real image to λ, denoise with a model of healthy tissue,
compare.

The recipe on arrays: histogram-match the reconstruction to the original inside the breast mask, subtract
(original − reconstruction; reversed for dark lesions), keep positive values, drop values below 30 % of the
maximum, Gaussian blur. The label map is the blurred map above a fraction of its maximum. Beyond the paper: an
absolute floor (`min_difference`) so that an image the model reconstructs well gives an empty map instead of
the top 70 % of its noise, and the same recipe on full-resolution tiles with the patch model (`level="native"`).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np
from scipy import ndimage

from MammoSynthLogic.preparation import histogram_match


@dataclasses.dataclass(frozen=True)
class AnomalySettings:
    lam: int = 700  # noising steps of T = 1000 (MAMBO's λ*)
    draws: int = 1  # noise draws averaged
    steps: int = 50  # denoising steps from λ to 0 (strided DDPM; λ steps = the paper's full chain)
    cut: float = 0.3  # MAMBO: drop changes below 30 % of the maximum
    min_difference: float = 0.0  # absolute floor in [0, 1] intensity (beyond the paper; 0 = off)
    sigma_fraction: float = 1 / 128  # Gaussian blur sigma as a fraction of the image side
    threshold: float = 0.3  # label map: blurred map above this fraction of its maximum
    invert: bool = False  # dark lesions: reconstruction − original
    level: str = "global"  # "global" (the paper, model size) or "native" (patch model, full resolution)


def positive_difference(original: np.ndarray, reconstruction: np.ndarray, mask: np.ndarray,
                        invert: bool = False) -> np.ndarray:
    """original − reconstruction (reversed with `invert`) inside `mask`, negative values set to zero."""
    diff = (reconstruction - original) if invert else (original - reconstruction)
    return np.where(mask, np.maximum(diff, 0.0), 0.0).astype(np.float32)


def drop_weak(diff: np.ndarray, cut: float = 0.3, min_difference: float = 0.0) -> np.ndarray:
    """Zero the values below `cut` × the maximum (MAMBO: 30 %) and below the absolute floor."""
    out = diff.copy()
    out[out < max(cut * float(diff.max()), min_difference)] = 0.0
    return out


def difference_map(original: np.ndarray, reconstruction: np.ndarray, mask: np.ndarray, *, invert: bool = False,
                   cut: float = 0.3, min_difference: float = 0.0) -> np.ndarray:
    """Histogram match inside `mask`, positive difference, weak changes dropped."""
    matched = histogram_match(reconstruction, original, mask)
    return drop_weak(positive_difference(original, matched, mask, invert), cut, min_difference)


def heat_map(original: np.ndarray, reconstruction: np.ndarray, mask: np.ndarray,
             settings: AnomalySettings = AnomalySettings()) -> np.ndarray:
    """The final anomaly map: the difference map blurred (sigma a fraction of the image side)."""
    diff = difference_map(original, reconstruction, mask, invert=settings.invert, cut=settings.cut,
                          min_difference=settings.min_difference)
    sigma = max(0.5, settings.sigma_fraction * max(diff.shape))
    return ndimage.gaussian_filter(diff, sigma).astype(np.float32)


def label_map(heat: np.ndarray, threshold: float = 0.3, min_difference: float = 0.0) -> np.ndarray:
    """Binary findings: the heat map above `threshold` × its maximum (and above the floor)."""
    peak = float(heat.max())
    if peak <= 0:
        return np.zeros(heat.shape, dtype=bool)
    return heat >= max(threshold * peak, min_difference, 1e-12)


def findings(labels: np.ndarray) -> list[np.ndarray]:
    """One bool mask per connected finding, largest first."""
    components, n = ndimage.label(labels)
    masks = [components == i for i in range(1, n + 1)]
    return sorted(masks, key=lambda m: -int(m.sum()))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def insert_mass(image: np.ndarray, centre: tuple[int, int], radius: float, contrast: float,
                rng: Optional[np.random.Generator] = None) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic mass (soft-edged, lobulated disc) added to `image`; returns (image, ground-truth mask)."""
    rng = rng or np.random.default_rng(0)
    h, w = image.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = np.arctan2(y - centre[0], x - centre[1])
    lobes = 1 + 0.15 * np.sin(3 * angle + rng.uniform(0, 2 * np.pi)) + 0.08 * np.sin(5 * angle + rng.uniform(0, 2 * np.pi))
    r = np.hypot(y - centre[0], x - centre[1]) / (radius * lobes)
    profile = np.clip(1.0 - r ** 2, 0.0, 1.0) ** 0.5
    out = np.clip(image + contrast * profile, 0.0, 1.0).astype(np.float32)
    return out, r < 1.0
