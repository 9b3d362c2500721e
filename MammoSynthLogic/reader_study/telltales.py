"""Can a trivial classifier tell real from synthetic in an exported study? One feature at a time, by its AUC.

Each feature is one number per reader copy that says nothing about the anatomy: what is outside the breast, how
much of the canvas the image fills, the noise floor at full and at half resolution (how strong the grain is, and how
coarse: shrinking averages grain away, enlarging spreads it over neighbouring pixels), the side of the chest wall
(all synthetic images of one laterality among films of both tell by their side alone). A one-threshold classifier on it separates real from synthetic
as well as its ROC area says (AUC, folded to at least ½: a feature that is low for synthetic images tells as much as
one that is high). ½ is chance; with few cases chance itself wanders (about ±0.15 for 8 against 8).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from MammoSynthLogic.breast_mask import breast_side
from MammoSynthLogic.deidentify import outside_breast
from MammoSynthLogic.reader_study.scoring import auc

PRECISION = 3  # differences below a thousandth of the range (a quarter of an 8-bit grey level) are not seen
TELLING_AUC = 0.75  # above this the export is reported as not blinded by its pixels
WHY = {  # what a telling feature means and what the coordinator can do; the export itself has done what it can
    "mean_outside_breast": "the background differs: leave --keep-background off",
    "std_outside_breast": "the background differs: leave --keep-background off",
    "filled_height": "the breasts' own proportions differ (the crop leaves nothing else to fill the canvas)",
    "filled_width": "the breasts' own proportions differ (the crop leaves nothing else to fill the canvas)",
    "noise_floor": "the grain differs (each image's own noise, shrunk or enlarged to the canvas): leave --keep-noise "
                   "off",
    "noise_floor_half": "the grain's coarseness differs (enlarged images spread it over neighbouring pixels): leave "
                        "--keep-noise off",
    "chest_wall_right": "the lateralities are unbalanced: make as many R as L synthetic images "
                        "(generate --laterality R)",
}


def noise_floor(image01: np.ndarray, inside: np.ndarray) -> float:
    """The noise floor inside the breast: a robust σ (MAD) of neighbouring pixels' differences along rows, divided
    by √2, i.e. the σ of white noise on a smooth image."""
    steps = np.diff(image01, axis=1)[inside[:, 1:] & inside[:, :-1]]
    return float(np.median(np.abs(steps - np.median(steps))) / 0.6745 / np.sqrt(2)) if steps.size else 0.0


def noise_floors(image01: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """The noise floor at full resolution and of the 2 x 2 block means (blocks wholly inside the breast): white
    noise of σ gives (σ, σ/2); noise spread over neighbouring pixels by enlarging gives relatively more at half."""
    rows, cols = image01.shape[0] // 2 * 2, image01.shape[1] // 2 * 2
    half = image01[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    half_inside = inside[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2).all(axis=(1, 3))
    return np.array([noise_floor(image01, inside), noise_floor(half, half_inside)])


def features(pixels: np.ndarray, bits: int) -> dict[str, float]:
    """The trivial features of one reader copy (stored values below 2**bits)."""
    image = pixels.astype(np.float32) / float((1 << bits) - 1)
    outside = outside_breast(image)
    inside = ~outside
    filled_rows, filled_cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    noise, noise_half = noise_floors(image, inside)
    values = {"mean_outside_breast": float(image[outside].mean()) if outside.any() else 0.0,
              "std_outside_breast": float(image[outside].std()) if outside.any() else 0.0,
              "filled_height": (filled_rows[-1] - filled_rows[0] + 1) / image.shape[0] if filled_rows.size else 0.0,
              "filled_width": (filled_cols[-1] - filled_cols[0] + 1) / image.shape[1] if filled_cols.size else 0.0,
              "noise_floor": noise,
              "noise_floor_half": noise_half,
              "chest_wall_right": float(inside.any() and breast_side(image, inside) == "right")}
    return {name: round(float(value), PRECISION) for name, value in values.items()}


def telltales(rows: Sequence[dict[str, float]], is_synthetic: Sequence[bool]) -> dict:
    """Per feature the folded AUC of real vs synthetic, the most telling one, and whether it stays near chance."""
    truth = np.asarray(is_synthetic, bool)
    areas = {}
    for name in rows[0]:
        area = auc(truth, np.array([row[name] for row in rows]))
        areas[name] = round(max(area, 1.0 - area), 3) if np.isfinite(area) else None
    known = {k: v for k, v in areas.items() if v is not None}
    best = max(known, key=known.get) if known else None
    telling = {name: WHY[name] for name, area in sorted(known.items(), key=lambda kv: -kv[1]) if area > TELLING_AUC}
    return {"classifier": "one threshold on one feature; AUC folded to >= 0.5 (0.5 = chance)", "auc": areas,
            "most_telling": best, "best_auc": known.get(best), "n_real": int((~truth).sum()),
            "n_synthetic": int(truth.sum()), "blinded": not telling, "telling": telling}
