"""The reader-study size policy: every copy, real or synthetic, is its breast cropped and fitted to one canvas.

Films are tall and padded by the scanner, synthetic images are square and padded by the model; after a crop to the
breast's bounding box neither padding is left to tell them apart. The crop is fitted, aspect kept, into one fixed
canvas (2,048 rows, 0.8 as wide by default), vertically centred, chest wall against the side the laterality
dictates (L left, R right, as films are hung back to back). Resampling averages areas when it shrinks and is bicubic
when it enlarges, so that neither leaves aliasing or blocks a reader could go by.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage

from MammoSynthLogic.breast_mask import Side, breast_region, breast_side
from MammoSynthLogic.deidentify import outside_breast
from MammoSynthLogic.dicom_io import MammogramImage
from MammoSynthLogic.errors import MammoSynthError

DEFAULT_ROWS = 2048  # a reading-room size that keeps a film's detail (a 1024² generated image needs --rows <= ~1500)
ASPECT = 0.8  # columns per row: the 24 x 30 cm detector and film format, upright
MAX_UPSCALE = 2.0  # beyond this an enlarged image looks soft next to the others: refused unless allowed
MARGIN = 0.02  # background kept around the breast's box, as a fraction of its longer side
STRIP_CUT = 0.07  # opening radius, as a fraction of the breast's size (root of its area), that cuts off thin strips
CLEAN_PASSES = 4  # the canvas cleaning settles in one or two passes
PREVIEW_SIDE = 512  # the crop is planned on a preview: the breast region is found at this size anyway
LATERALITY_SIDE: dict[str, Side] = {"L": "left", "R": "right"}
GRAIN_TOLERANCE = 0.002  # a copy's noise floors end within 0.2 % of the set's targets
GRAIN_ROUNDS = 6  # the grain is refined this many times at most (three or four suffice)
GRAIN_SMOOTHING = 1.0  # pixels: σ of the Gaussian that spreads the coarse grain component


@dataclasses.dataclass(frozen=True)
class Canvas:
    """The one matrix and bit depth every reader copy has."""

    rows: int
    columns: int
    bits: int


@dataclasses.dataclass(frozen=True)
class Crop:
    """The window cut from a source image (full-resolution pixels, end excluded; it reaches past the image where the
    margin needs room, and that part is black) and how it goes on the canvas."""

    top: int
    bottom: int
    left: int
    right: int
    mirror: bool  # the stored chest wall is on the other side than the laterality says
    side: Side  # chest wall side on the canvas

    @property
    def shape(self) -> tuple[int, int]:
        return self.bottom - self.top, self.right - self.left

    def scale(self, canvas: Canvas) -> float:
        """The factor that fits the window into the canvas, aspect kept."""
        return min(canvas.rows / self.shape[0], canvas.columns / self.shape[1])

    def placement(self, canvas: Canvas) -> tuple[float, tuple[int, int], int, int]:
        """(scale, fitted shape, top, left) of the window on the canvas: centred vertically, against its side."""
        scale = self.scale(canvas)
        shape = (min(canvas.rows, max(1, round(self.shape[0] * scale))),
                 min(canvas.columns, max(1, round(self.shape[1] * scale))))
        return scale, shape, (canvas.rows - shape[0]) // 2, 0 if self.side == "left" else canvas.columns - shape[1]


def _breast_proper(region: np.ndarray) -> np.ndarray:
    """The region without thin parts such as a film's border strip (an opening; the image edge counts as outside).
    The radius follows the breast, not the image, so a breast gets the same box whatever padding surrounds it."""
    radius = STRIP_CUT * np.sqrt(region.sum())
    pad = int(radius) + 2
    padded = np.pad(region, pad)
    core = ndimage.distance_transform_edt(padded) > radius
    opened = (ndimage.distance_transform_edt(~core) <= radius)[pad:-pad, pad:-pad] & region
    return opened if opened.any() else region


def plan_crop(preview: MammogramImage) -> Crop:
    """The breast's box with a margin (none at the chest wall), and the chest-wall side, from a preview read with
    `PREVIEW_SIDE`. The box is the breast itself, not grown: a grown rim would be wider around a breast that fills
    less of its image."""
    region = breast_region(preview.pixels)
    if not region.any():
        raise MammoSynthError(preview.path, "no breast found in the image; leave it out of the study")
    found = breast_side(preview.pixels, region)
    proper = _breast_proper(region)
    step = preview.pixel_step
    rows, cols = np.flatnonzero(proper.any(axis=1)) * step, np.flatnonzero(proper.any(axis=0)) * step
    top, bottom, left, right = rows[0], rows[-1] + step, cols[0], cols[-1] + step
    margin = round(MARGIN * max(bottom - top, right - left))
    left, right = (left, right + margin) if found == "left" else (left - margin, right)
    side = LATERALITY_SIDE.get(preview.laterality or "", found)
    return Crop(top=int(top - margin), bottom=int(bottom + margin), left=int(left), right=int(right),
                mirror=side != found, side=side)


def canvas_shape(rows: Optional[int] = None, columns: Optional[int] = None) -> tuple[int, int]:
    """The canvas' rows and columns: `rows` (default 2,048) by `columns` (default 0.8 x rows)."""
    rows = int(rows or DEFAULT_ROWS)
    return rows, int(columns or round(ASPECT * rows))


def common_canvas(crops: dict[Path, Crop], bits: int, rows: Optional[int] = None, columns: Optional[int] = None,
                  allow_upscale: bool = False) -> Canvas:
    """`rows` (default 2,048) by `columns` (default 0.8 x rows); refuses an image whose breast would be enlarged
    more than `MAX_UPSCALE` times unless `allow_upscale`."""
    rows, columns = canvas_shape(rows, columns)
    canvas = Canvas(rows=rows, columns=columns, bits=int(min(16, max(8, bits))))
    scales = {path: crop.scale(canvas) for path, crop in crops.items()}
    too_large = [path for path, scale in scales.items() if scale > MAX_UPSCALE]
    if too_large and not allow_upscale:  # the most enlarged one sets the largest --rows that suits the whole mix
        path = max(too_large, key=scales.get)
        (h, w), others = crops[path].shape, len(too_large) - 1
        most = int(MAX_UPSCALE * max(h, w * canvas.rows / canvas.columns))
        raise MammoSynthError(path, f"its breast spans {h}x{w} pixels: fitting it to {canvas.rows}x{canvas.columns} "
                                    f"enlarges it {scales[path]:.1f}x (more than {MAX_UPSCALE:g}x makes it stand out"
                                    + (f"; {others} other image(s) too" if others else "") + f"); lower --rows to at "
                                    f"most {most}, leave it out, or pass --allow-upscale")
    return canvas


def size_policy(allow_upscale: bool) -> dict[str, object]:
    """How every copy was sized, for the manifest."""
    return {"crop": f"breast bounding box + {MARGIN:.0%} of its longer side (none at the chest wall)",
            "placement": "fitted, aspect kept, centred vertically, chest wall on the laterality's side "
                         "(L left, R right)",
            "resampling": "area average when shrinking, bicubic when enlarging (Pillow BOX / BICUBIC)",
            "max_upscale": None if allow_upscale else MAX_UPSCALE}


def resample(pixels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area averaging when shrinking (no aliasing), bicubic when enlarging (no blocks); float32."""
    from MammoSynthLogic.preparation import resize

    return resize(np.ascontiguousarray(pixels, dtype=np.float32), shape, smooth_enlarge=True)


def _window(pixels: np.ndarray, crop: Crop, fill: float | bool) -> np.ndarray:
    """The crop's window of `pixels`, `fill` where it reaches past the image."""
    out = np.full(crop.shape, fill, dtype=np.float32 if pixels.dtype != bool else bool)
    top, left = max(crop.top, 0), max(crop.left, 0)
    bottom, right = min(crop.bottom, pixels.shape[0]), min(crop.right, pixels.shape[1])
    out[top - crop.top:bottom - crop.top, left - crop.left:right - crop.left] = pixels[top:bottom, left:right]
    return out


def fit_to_canvas(pixels: np.ndarray, crop: Crop, canvas: Canvas, zero_background: bool) -> tuple[np.ndarray, float]:
    """The breast cropped, fitted and placed on the canvas (uint16 below 2**bits), and the scale; with
    `zero_background`, black outside the breast and the background level taken off inside (film base)."""
    cut = _window(pixels, crop, 0.0)
    if zero_background:  # film base is grey, a synthetic background black: both become black, skin margin too
        outside = outside_breast(pixels)
        base = float(np.median(pixels[outside])) if outside.any() else 0.0
        cut = np.where(_window(outside, crop, True), 0.0, np.clip((cut - base) / max(1.0 - base, 1e-6), 0.0, 1.0))
    if crop.mirror:
        cut = cut[:, ::-1]
    scale, shape, top, left = crop.placement(canvas)
    out = np.zeros((canvas.rows, canvas.columns), np.float32)
    out[top:top + shape[0], left:left + shape[1]] = resample(cut, shape)
    stored = np.rint(np.clip(out, 0.0, 1.0) * ((1 << canvas.bits) - 1)).astype(np.uint16)
    return clean_canvas(stored, canvas.bits) if zero_background else stored, scale


def clean_canvas(stored: np.ndarray, bits: int) -> np.ndarray:
    """The `outside_breast` rule once more on the canvas (in place), so the rim left around the skin line is alike in
    every copy; the region found on a cleaned image can lose a pixel of rim, so clean until nothing is left."""
    peak = float((1 << bits) - 1)
    for _ in range(CLEAN_PASSES):
        left_over = outside_breast(stored.astype(np.float32) / peak) & (stored > 0)
        if not left_over.any():
            break
        stored[left_over] = 0
    return stored


def copy_noise_floors(stored: np.ndarray, bits: int) -> np.ndarray:
    """A canvas copy's noise floors (values below 2**bits) at full and half resolution: the classifier's estimator."""
    from MammoSynthLogic.reader_study.telltales import noise_floors

    image = stored.astype(np.float32) / float((1 << bits) - 1)
    return noise_floors(image, ~outside_breast(image))


def _grain_components(shape: tuple[int, int], rng: np.random.Generator) -> list[np.ndarray]:
    """Unit-variance grain: white (fine, like a film shrunk to the canvas) and smoothed over neighbouring pixels
    (coarse, like an image enlarged to it)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), GRAIN_SMOOTHING)
    return [white, smooth / smooth.std()]


@functools.cache
def grain_gains() -> np.ndarray:
    """How much a unit variance of each grain component (columns) adds to each squared noise floor (rows), measured
    on pure grain."""
    from MammoSynthLogic.reader_study.telltales import noise_floors

    inside = np.ones((512, 512), bool)
    return np.stack([noise_floors(z, inside) ** 2 for z in _grain_components(inside.shape, np.random.default_rng(0))],
                    axis=1)


def grain_units(floors: np.ndarray) -> np.ndarray:
    """Noise floors (..., 2) as variances of the two grain components that would give them. The set's target is
    the largest of each over its copies: every copy can reach it by adding grain, none needs any taken away."""
    return np.linalg.solve(grain_gains(), (np.asarray(floors, np.float64) ** 2).reshape(-1, 2).T).T.reshape(
        np.shape(floors))


def equalise_grain(stored: np.ndarray, bits: int, target: np.ndarray,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The copy with zero-mean Gaussian grain added on the breast (background stays black), white and smoothed, just
    enough that its noise floors at full and half resolution reach those of `target` (`grain_units`); and the σ of
    each component in [0, 1] units (zeros: the copy is there already, unchanged). Variances add, so the grain is
    the difference in grain units, refined against the measured floors (the MAD estimator on tissue, clipping and
    quantisation do not add exactly)."""
    from MammoSynthLogic.reader_study.telltales import noise_floors

    peak = float((1 << bits) - 1)
    image = stored.astype(np.float32) / peak
    inside = ~outside_breast(image)
    wanted = np.sqrt(grain_gains() @ target)
    grain = np.maximum(target - grain_units(noise_floors(image, inside)), 0.0)
    if np.all(grain <= 2 * GRAIN_TOLERANCE * np.abs(target)):  # there already (a floor within x is 2x in variance)
        return stored, np.zeros(2)
    tissue = inside & (stored > 0)
    components = [z[tissue] for z in _grain_components(stored.shape, rng)]
    out, applied = stored, grain
    for _ in range(GRAIN_ROUNDS):
        out, applied = stored.copy(), grain
        added = sum(np.float32(np.sqrt(v)) * z for v, z in zip(applied, components))
        out[tissue] = np.rint(np.clip(image[tissue] + added, 0.0, 1.0) * peak)
        reached = noise_floors(out.astype(np.float32) / peak, inside)
        if np.all(np.abs(reached - wanted) <= GRAIN_TOLERANCE * wanted):
            break
        grain = np.maximum(applied + target - grain_units(reached), 0.0)
    return out, np.sqrt(applied)
