"""Analytic lesion models for inpainting with exact ground truth: masses and calcification clusters in millimetres.

Masses follow the BI-RADS lexicon's shapes (round, oval, irregular) and margins (circumscribed, obscured,
microlobulated, indistinct, spiculated), built the way virtual-clinical-trial lesion models build them in 2D: a
star-shaped outline r(θ) = R·(1 + Σ aₙ cos(nθ + φₙ)) (low orders for irregular shapes, high orders for
microlobulated margins; de Sisternes et al., "A computational model to generate simulated three-dimensional breast
masses", Med. Phys. 42(2), 2015), a projected thickness profile √(1 − (r/r(θ))²) (the chord through an ellipsoid),
tapered spicules radiating from the outline (Carton et al., "Development of a physical 3D anthropomorphic breast
phantom", Med. Phys. 38(2), 2011, and the spiculated-mass models used in VCTs), and a Gaussian blur of the outline for
obscured and indistinct margins. Calcification clusters: `count` small dense particles (punctate: round; pleomorphic:
irregular and varied in size) scattered in an ellipse of `spread_mm`, never touching.

Everything is drawn in millimetres and converted with the image's pixel spacing, so a 10 mm mass is 10 mm on any
detector. `draw` returns the attenuation profile (0–1, 1 at the thickest point) and the exact lesion mask on a patch;
`insert` adds it to an image in [0, 1] at a position.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np

from MammoSynthLogic.errors import MammoSynthError

SHAPES = ("round", "oval", "irregular")
MARGINS = ("circumscribed", "obscured", "microlobulated", "indistinct", "spiculated")
CALCIFICATION_FORMS = ("punctate", "pleomorphic")
KINDS = ("mass", "calcification")
MASK_LEVEL = 0.05  # profile above this (5 % of the lesion's peak thickness) belongs to the lesion mask


@dataclasses.dataclass(frozen=True)
class LesionSpec:
    """One lesion; `size_mm` is a mass's diameter or a calcification's mean diameter."""

    kind: str = "mass"
    shape: str = "oval"
    margin: str = "circumscribed"
    size_mm: Optional[float] = None  # None: 12 mm for a mass, 0.4 mm per calcification
    contrast: float = 0.12  # added brightness at the thickest point, in [0, 1] units of the image
    count: int = 12  # calcifications in the cluster
    spread_mm: float = 10.0  # cluster diameter
    form: str = "punctate"

    def __post_init__(self):
        checks = [(self.kind, KINDS, "--lesion"), (self.shape, SHAPES, "--shape"), (self.margin, MARGINS, "--margin"),
                  (self.form, CALCIFICATION_FORMS, "--form")]
        for value, allowed, flag in checks:
            if value not in allowed:
                raise MammoSynthError(f"{flag} {value}", "choose " + ", ".join(allowed))
        if self.size_mm is not None and self.size_mm <= 0:
            raise MammoSynthError(f"--size-mm {self.size_mm}", "must be positive")
        if not 0 < self.contrast <= 1:
            raise MammoSynthError(f"--lesion-contrast {self.contrast}", "must be in (0, 1]")
        if self.count < 1 or self.spread_mm <= 0:
            raise MammoSynthError("--count/--spread-mm", "need at least one calcification and a positive spread")

    @property
    def diameter_mm(self) -> float:
        if self.size_mm is not None:
            return self.size_mm
        return 12.0 if self.kind == "mass" else 0.4


def _outline(shape: str, margin: str, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """Relative radius r(θ)/R of a drawn outline (mean about 1), as a function of θ."""
    aspect, tilt = (rng.uniform(1.4, 1.8), rng.uniform(0, np.pi)) if shape == "oval" else (1.0, 0.0)
    harmonics = [(n, rng.uniform(0.08, 0.2) / (n - 1) ** 0.8, rng.uniform(0, 2 * np.pi))
                 for n in range(2, 7)] if shape == "irregular" else []
    if margin == "microlobulated":
        harmonics += [(int(n), 0.02, rng.uniform(0, 2 * np.pi)) for n in rng.choice(np.arange(10, 20), 3, replace=False)]

    def relative(theta: np.ndarray) -> np.ndarray:
        # An ellipse of the unit circle's area, axes √aspect : 1/√aspect, plus the harmonics.
        a, b = math.sqrt(aspect), 1 / math.sqrt(aspect)
        r = a * b / np.sqrt((b * np.cos(theta - tilt)) ** 2 + (a * np.sin(theta - tilt)) ** 2)
        for n, amplitude, phase in harmonics:
            r = r + amplitude * np.cos(n * theta + phase)
        return np.maximum(r, 0.3)

    return relative


def _spicules(radius_px: float, rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float],
              outline: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Thin tapered lines from the outline outwards (thickness profile, max 0.6)."""
    out = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    for angle in rng.uniform(0, 2 * np.pi, int(rng.integers(8, 15))):
        start = float(outline(np.array([angle]))[0]) * radius_px * 0.9
        length = radius_px * rng.uniform(0.6, 1.4)
        width = max(0.6, radius_px * rng.uniform(0.04, 0.08))
        dy, dx = math.sin(angle), math.cos(angle)
        along = (yy - centre[0]) * dy + (xx - centre[1]) * dx - start
        across = np.abs(-(yy - centre[0]) * dx + (xx - centre[1]) * dy)
        taper = np.clip(1 - along / length, 0, 1) * (along >= 0)
        out = np.maximum(out, 0.6 * taper * np.clip(1 - across / np.maximum(width * taper, 1e-6), 0, 1))
    return out


def _mass(spec: LesionSpec, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    radius_px = spec.diameter_mm / 2 / spacing_mm
    reach = 1.0 + (1.5 if spec.margin == "spiculated" else 0.5)
    half = int(math.ceil(radius_px * reach * 1.25)) + 3
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    outline = _outline(spec.shape, spec.margin, rng)
    rho = np.hypot(yy, xx) / (radius_px * outline(np.arctan2(yy, xx)))
    profile = np.sqrt(np.clip(1 - rho ** 2, 0, 1)).astype(np.float32)
    if spec.margin == "spiculated":
        profile = np.maximum(profile, _spicules(radius_px, rng, profile.shape, (half, half), outline))
    elif spec.margin in ("obscured", "indistinct"):
        # Obscured: hidden by overlying tissue at the edge; indistinct: the lesion itself fades into tissue.
        from scipy.ndimage import gaussian_filter

        sigma = radius_px * (0.08 if spec.margin == "obscured" else 0.18)
        profile = gaussian_filter(profile, sigma)
        profile /= max(float(profile.max()), 1e-6)
    return profile


def _calcifications(spec: LesionSpec, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    spread_px = spec.spread_mm / 2 / spacing_mm
    mean_radius = spec.diameter_mm / 2 / spacing_mm
    half = int(math.ceil(spread_px + 3 * mean_radius)) + 3
    side = 2 * half + 1
    profile = np.zeros((side, side), np.float32)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    aspect = rng.uniform(1.0, 1.6)
    placed: list[tuple[float, float, float]] = []
    for _ in range(200 * spec.count):
        if len(placed) == spec.count:
            break
        radius = mean_radius * (rng.uniform(0.5, 1.6) if spec.form == "pleomorphic" else rng.uniform(0.8, 1.2))
        radius = max(radius, 0.5)
        # Uniform in an ellipse: sqrt of a uniform radius.
        r, a = spread_px * math.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        cy, cx = half + r * math.sin(a) / math.sqrt(aspect), half + r * math.cos(a) * math.sqrt(aspect)
        if all(math.hypot(cy - y, cx - x) > radius + rr + 2 for y, x, rr in placed):
            placed.append((cy, cx, radius))
    if len(placed) < spec.count:
        raise MammoSynthError(f"--count {spec.count}", f"{spec.count} calcifications of {spec.diameter_mm} mm do not "
                                                       f"fit apart in {spec.spread_mm} mm; raise --spread-mm")
    for cy, cx, radius in placed:
        theta = np.arctan2(yy - cy, xx - cx)
        wobble = 1.0
        if spec.form == "pleomorphic":
            for n in (2, 3, 5):
                wobble = wobble + rng.uniform(0.1, 0.25) * np.cos(n * theta + rng.uniform(0, 2 * np.pi))
        rho = np.hypot(yy - cy, xx - cx) / (radius * np.maximum(wobble, 0.4))
        profile = np.maximum(profile, np.sqrt(np.clip(1 - rho ** 2, 0, 1)))
    return profile


def draw(spec: LesionSpec, spacing_mm: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(profile in [0, 1], exact lesion mask) on a square patch centred on the lesion."""
    if not spacing_mm > 0:
        raise MammoSynthError("pixel spacing", "unknown or not positive; lesion sizes are in mm")
    rng = np.random.default_rng([seed, KINDS.index(spec.kind)])
    profile = _mass(spec, spacing_mm, rng) if spec.kind == "mass" else _calcifications(spec, spacing_mm, rng)
    return profile, profile > MASK_LEVEL


def insert(image01: np.ndarray, profile: np.ndarray, centre: tuple[int, int], contrast: float,
           region: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """The image with the lesion added at `centre` (row, col) and the lesion mask on the image's grid.

    Denser tissue attenuates more: the lesion adds `contrast`·profile, scaled down where the image is already bright
    so it never saturates. Pixels outside `region` (the breast) are left alone."""
    h, w = image01.shape
    half = profile.shape[0] // 2
    top, left = centre[0] - half, centre[1] - half
    window = (slice(max(0, top), min(h, top + profile.shape[0])), slice(max(0, left), min(w, left + profile.shape[1])))
    crop = profile[window[0].start - top:window[0].stop - top, window[1].start - left:window[1].stop - left]
    full = np.zeros(image01.shape, np.float32)
    full[window] = crop
    if region is not None:
        full = np.where(region, full, 0).astype(np.float32)
    out = image01 + contrast * full * (1.0 - 0.5 * image01)
    return np.clip(out, 0.0, 1.0).astype(np.float32), full > MASK_LEVEL
