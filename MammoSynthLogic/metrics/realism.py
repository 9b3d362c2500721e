"""Realism of synthetic mammograms against real ones, at one pixel scale, without network weights.

- Texture: the power-law exponent β of the breast tissue's power spectrum, P(f) ∝ 1/f^β (Burgess, Jacobson & Judy,
  "Human observer detection experiments with mammograms and power-law noise", Med. Phys. 28(4), 2001: β ≈ 2.5–3.5
  for real mammograms). Square ROIs wholly inside the inner breast mask, each mean- and plane-detrended and Hann
  windowed; their 2D power spectra are averaged per image, averaged radially, and a line is fitted to log P vs log f
  over a mid band (below it: too few frequencies per ROI; above it: detector and film noise).
- Shape: breast-region area fraction of the prepared square and its height/width extents.
- Intensity: pooled pixel values inside the breast region, two-sample Kolmogorov–Smirnov test real vs synthetic.
- Tile seams: for each MAMBO stage, the squared neighbour difference on the lines where the stage's tiles meet over
  that on the lines flanking them, inside the breast, median over the seams (1 = invisible; a seam raises it).
- Inpainting: β of the ROI on a mask's bounding square vs β of same-size ROIs around it in the breast.
Every image is prepared as the models see it (breast on the left, background zeroed, square) and resized to one side.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from MammoSynthLogic.errors import MammoSynthError

BAND = (0.03, 0.25)  # cycles per pixel of the fit: 4 to 32 cycles across a 128-px ROI
ROI_SIDE = 128  # px; smaller ROIs overestimate steep spectra (β 3.5 read as 3.63 with 64-px ROIs)
MIN_ROI = 32  # halved down to this where no ROI of ROI_SIDE fits in the breast


@dataclasses.dataclass(frozen=True)
class RealismOptions:
    """Common pixel scale and the MAMBO tile geometry used for the seam measure when an image does not record it."""

    size: int = 1024
    tile_size: int = 64
    k: int = 4
    overlap: Optional[int] = None  # None: tile_size / 8, as MamboSettings
    intensity_samples: int = 20000
    seed: int = 0


def hann_window(side: int) -> np.ndarray:
    w = np.hanning(side).astype(np.float64)
    return np.outer(w, w)


def _detrend(roi: np.ndarray) -> np.ndarray:
    """The ROI minus its least-squares plane: a brightness ramp (thickness fall-off) is not texture."""
    h, w = roi.shape
    yy, xx = np.mgrid[0:h, 0:w]
    design = np.stack([np.ones(roi.size), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, roi.ravel().astype(np.float64), rcond=None)
    return roi - (design @ coef).reshape(h, w)


def radial_power(power2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radial mean of a centred 2D power spectrum: (frequency in cycles/pixel, power), DC left out."""
    side = power2d.shape[0]
    f = np.fft.fftshift(np.fft.fftfreq(side))
    radius = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    bins = np.round(radius * side).astype(int)
    sums = np.bincount(bins.ravel(), power2d.ravel())
    counts = np.bincount(bins.ravel())
    keep = np.arange(1, side // 2)
    return keep / side, sums[keep] / np.maximum(counts[keep], 1)


def roi_power(roi: np.ndarray) -> np.ndarray:
    """Centred 2D power spectrum of one detrended, Hann-windowed ROI."""
    windowed = _detrend(roi) * hann_window(roi.shape[0])
    return np.abs(np.fft.fftshift(np.fft.fft2(windowed))) ** 2


def roi_corners(mask: np.ndarray, side: int) -> list[tuple[int, int]]:
    """Top-left corners of side² ROIs on a half-overlapping grid that lie wholly inside `mask`."""
    from skimage.util import view_as_windows

    h, w = mask.shape
    if h < side or w < side:
        return []
    step = max(1, side // 2)
    inside = view_as_windows(mask.astype(np.uint8), (side, side), step).all(axis=(2, 3))
    return [(int(i * step), int(j * step)) for i, j in zip(*np.nonzero(inside))]


def fit_beta(freqs: np.ndarray, power: np.ndarray, band: tuple[float, float] = BAND) -> float:
    """β of P(f) ∝ 1/f^β by a least-squares line in log–log over `band` (cycles/pixel)."""
    keep = (freqs >= band[0]) & (freqs <= band[1]) & (power > 0)
    if keep.sum() < 3:
        return float("nan")
    slope, _ = np.polyfit(np.log(freqs[keep]), np.log(power[keep]), 1)
    return float(-slope)


def texture_spectrum(pixels: np.ndarray, mask: np.ndarray, side: int) -> Optional[tuple[np.ndarray, np.ndarray, int]]:
    """Radial power spectrum averaged over the ROIs inside `mask` (ROI side halved until some fit; None if none)."""
    while side >= MIN_ROI:
        corners = roi_corners(mask, side)
        if corners:
            power = np.mean([roi_power(pixels[y:y + side, x:x + side]) for y, x in corners], axis=0)
            freqs, radial = radial_power(power)
            return freqs, radial, len(corners)
        side //= 2
    return None


def beta(pixels: np.ndarray, mask: np.ndarray, roi_side: Optional[int] = None) -> float:
    """Power-law exponent of the texture inside `mask` (NaN when no ROI fits)."""
    side = roi_side or ROI_SIDE
    found = texture_spectrum(pixels, mask, side)
    return float("nan") if found is None else fit_beta(found[0], found[1])


def seam_zones(side: int, tile_size: int, k: int, overlap: Optional[int],
               shifted: bool = False) -> dict[str, list[tuple[int, int]]]:
    """Per MAMBO stage, the runs of boundaries [first, last) of a side² image where two tiles meet: each overlap band
    of the stage's grid (the tile edge itself where tiles do not overlap), scaled from the stage's canvas; with
    `shifted` (parallel tiling, whose steps alternate between two grids), those of the shifted grid too.

    Boundary i lies between pixel rows (or columns) i and i + 1."""
    from MammoSynthLogic.tiling import positions

    overlap = tile_size // 8 if overlap is None else overlap
    zones = {}
    for stage, canvas in (("local", side // k), ("patch", side)):
        scale = side / canvas
        zones[stage] = []
        for grid in (False, True) if shifted else (False,):
            starts = positions(canvas, tile_size, overlap, grid) if canvas > tile_size else [0]
            zones[stage] += [(max(0, round(start * scale) - 1),
                              max(round(start * scale), round((prev + tile_size) * scale) - 1))
                             for prev, start in zip(starts, starts[1:])]
    return zones


def _line_energy(image: np.ndarray, mask: np.ndarray, axis: int, min_pairs: int) -> np.ndarray:
    """Mean squared neighbour difference per boundary between lines along `axis` (NaN with fewer than `min_pairs`)."""
    diff = np.diff(image.astype(np.float64), axis=axis) ** 2
    both = (mask[1:, :] & mask[:-1, :]) if axis == 0 else (mask[:, 1:] & mask[:, :-1])
    other = 1 - axis
    count = both.sum(axis=other)
    energy = (diff * both).sum(axis=other)
    return np.where(count >= min_pairs, energy / np.maximum(count, 1), np.nan)


def seam_ratio(image: np.ndarray, mask: np.ndarray, zones: Sequence[tuple[int, int]], min_pairs: int = 16) -> float:
    """Median over the zones (rows and columns) of the neighbour-difference energy inside a zone over that of the
    lines flanking it on both sides: about 1 where tiles leave no trace, above 1 where they meet visibly. The image is
    first smoothed at a quarter of the zone width: blended tiles spread a brightness step over the overlap, and fine
    texture would hide it. The flanks make it local (dense and fatty tissue differ in texture energy); the median keeps
    a vessel or calcification that crosses one zone from deciding it."""
    from scipy.ndimage import gaussian_filter

    if not zones:
        return float("nan")
    sigma = max(1.0, float(np.median([last - first for first, last in zones])) / 4)
    image = gaussian_filter(image.astype(np.float64), sigma)
    ratios = []
    for axis in (0, 1):
        energy = _line_energy(image, mask, axis, min_pairs)
        for first, last in zones:
            width = max(last - first, 2)
            inside = energy[first:last]
            flanks = np.concatenate([energy[max(0, first - width):first], energy[last:last + width]])
            inside, flanks = inside[np.isfinite(inside)], flanks[np.isfinite(flanks)]
            if len(inside) and len(flanks) and flanks.mean() > 0:
                ratios.append(inside.mean() / flanks.mean())
    return float(np.median(ratios)) if ratios else float("nan")


@dataclasses.dataclass
class ImageRealism:
    name: str
    beta: float
    rois: int
    area: float
    height: float
    width: float
    mean_intensity: float
    seams: dict[str, float]
    spectrum: tuple[list[float], list[float]]
    intensities: np.ndarray = dataclasses.field(repr=False)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("intensities")
        d.pop("spectrum")
        return d


def _geometry(path: Path, options: RealismOptions) -> tuple[int, int, Optional[int], bool]:
    """Tile size, k, overlap and whether the tiling was parallel (two alternating grids) recorded in a synthetic
    DICOM's provenance, else the options' (one grid)."""
    if path.suffix.lower() not in (".png", ".nrrd"):
        from MammoSynthLogic.dicom_io import read_provenance

        try:
            prov = read_provenance(path)
        except (MammoSynthError, ValueError, KeyError, json.JSONDecodeError):
            prov = {}
        if prov.get("pipeline") == "mambo" and "s" in prov:
            settings = prov.get("settings", {})
            return int(prov["s"]), int(prov["k"]), settings.get("overlap"), settings.get("tiling") == "parallel"
    return options.tile_size, options.k, options.overlap, False


def measure_image(path: Path, options: RealismOptions, key: int) -> ImageRealism:
    """Prepare one image at the common side and measure everything the report needs."""
    from MammoSynthLogic.metrics.images import read_pixels
    from MammoSynthLogic.preparation import prepare, resize

    # Padded to a square of its own longest side only: the usual multiple of 256 would shrink a 64² dual-view image
    # into a corner of a 256² square.
    prepared = prepare(read_pixels(path), multiple=1)
    shape = (options.size, options.size)
    square = resize(prepared.pixels, shape)
    region, mask = resize(prepared.region, shape) > 0.5, resize(prepared.mask, shape) > 0.5
    tile, k, overlap, shifted = _geometry(path, options)
    found = texture_spectrum(square, mask, ROI_SIDE)
    rows, cols = np.nonzero(region)
    rng = np.random.default_rng([options.seed, key])
    values = square[region]
    if len(values) > options.intensity_samples:
        values = rng.choice(values, options.intensity_samples, replace=False)
    return ImageRealism(
        name=path.name,
        beta=float("nan") if found is None else fit_beta(found[0], found[1]),
        rois=0 if found is None else found[2],
        area=float(region.mean()),
        height=float((rows.max() - rows.min() + 1) / options.size) if len(rows) else 0.0,
        width=float((cols.max() - cols.min() + 1) / options.size) if len(cols) else 0.0,
        mean_intensity=float(values.mean()) if len(values) else 0.0,
        seams={stage: seam_ratio(square, mask, zones)
               for stage, zones in seam_zones(options.size, tile, k, overlap, shifted).items()},
        spectrum=([], []) if found is None else (found[0].tolist(), found[1].tolist()),
        intensities=values.astype(np.float32),
    )


def _stats(values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if not len(v):
        return {"n": 0}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {"n": int(len(v)), "median": float(med), "iqr": [float(q1), float(q3)], "min": float(v.min()),
            "max": float(v.max()), "mean": float(v.mean())}


def summarize_set(images: Sequence[ImageRealism]) -> dict:
    stages = sorted({s for im in images for s in im.seams})
    return {
        "images": len(images),
        "beta": _stats([im.beta for im in images]),
        "area": _stats([im.area for im in images]),
        "height": _stats([im.height for im in images]),
        "width": _stats([im.width for im in images]),
        "mean_intensity": _stats([im.mean_intensity for im in images]),
        "seams": {s: _stats([im.seams.get(s, float("nan")) for im in images]) for s in stages},
        "per_image": [im.to_json() for im in images],
    }


def mean_spectrum(images: Sequence[ImageRealism]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Geometric mean of the images' radial spectra (those of the most common length)."""
    spectra = [im.spectrum for im in images if im.spectrum[0]]
    if not spectra:
        return None
    n = max({len(s[0]) for s in spectra}, key=lambda m: sum(len(s[0]) == m for s in spectra))
    chosen = [s for s in spectra if len(s[0]) == n]
    return np.asarray(chosen[0][0]), np.exp(np.mean([np.log(np.maximum(s[1], 1e-30)) for s in chosen], axis=0))


def compare(real: Sequence[Path], synthetic: Sequence[Path], options: RealismOptions = RealismOptions(),
            reporter=None) -> tuple[dict, list[ImageRealism], list[ImageRealism]]:
    """The realism report of `synthetic` against `real`, with each image's measurements."""
    from scipy.stats import ks_2samp

    measured: dict[str, list[ImageRealism]] = {"real": [], "synthetic": []}
    todo = [("real", p) for p in real] + [("synthetic", p) for p in synthetic]
    for i, (kind, path) in enumerate(todo):
        measured[kind].append(measure_image(path, options, i))
        if reporter is not None:
            reporter.update("realism", i + 1, len(todo))
    r, s = measured["real"], measured["synthetic"]
    report = {"options": dataclasses.asdict(options), "real": summarize_set(r), "synthetic": summarize_set(s)}
    if r and s:
        test = ks_2samp(*(np.concatenate([im.intensities for im in group]) for group in (r, s)))
        report["intensity_ks"] = {"D": float(test.statistic), "p": float(test.pvalue)}
    rb, sb = report["real"]["beta"], report["synthetic"]["beta"]
    ra, sa = report["real"]["area"], report["synthetic"]["area"]
    if rb.get("n") and sb.get("n"):
        report["beta_median_difference"] = sb["median"] - rb["median"]
    if ra.get("n") and sa.get("n"):
        inside = [ra["min"] <= im.area <= ra["max"] for im in s]
        report["area_within_real_range"] = f"{sum(inside)}/{len(inside)}"
    report["max_seam_ratio"] = {stage: stats.get("max") for stage, stats in report["synthetic"]["seams"].items()}
    return report, r, s


def lesion_texture(pixels: np.ndarray, lesion: np.ndarray, region: np.ndarray) -> dict:
    """β of the square ROI on the lesion mask's bounding box vs the median β of same-size ROIs around it in `region`."""
    rows, cols = np.nonzero(lesion)
    if not len(rows):
        raise MammoSynthError("mask", "is empty")
    cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
    side = max(MIN_ROI, int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1))
    side += side % 2
    h, w = pixels.shape

    def roi_at(y: float, x: float) -> Optional[tuple[int, int]]:
        top, left = int(round(y - side / 2)), int(round(x - side / 2))
        if top < 0 or left < 0 or top + side > h or left + side > w:
            return None
        return top, left

    def beta_at(corner: tuple[int, int]) -> float:
        y, x = corner
        freqs, power = radial_power(roi_power(pixels[y:y + side, x:x + side]))
        return fit_beta(freqs, power)

    centre = roi_at(cy, cx)
    around = []
    for angle in np.arange(8) * math.pi / 4:
        corner = roi_at(cy + 1.25 * side * math.sin(angle), cx + 1.25 * side * math.cos(angle))
        if corner and region[corner[0]:corner[0] + side, corner[1]:corner[1] + side].all():
            around.append(beta_at(corner))
    return {"roi_side": side, "beta_inside": None if centre is None else beta_at(centre),
            "beta_around": float(np.median(around)) if around else None, "rois_around": len(around)}


def realism_markdown(report: dict) -> str:
    """The report's table."""
    def fmt(stats: dict, digits: int = 2) -> str:
        if not stats.get("n"):
            return "–"
        return f"{stats['median']:.{digits}f} ({stats['iqr'][0]:.{digits}f}–{stats['iqr'][1]:.{digits}f})"

    r, s = report["real"], report["synthetic"]
    lines = [f"# Realism report ({report['options']['size']}² prepared squares)", "",
             f"| measure | real ({r['images']}) | synthetic ({s['images']}) |", "|---|---|---|",
             f"| β, median (IQR) | {fmt(r['beta'])} | {fmt(s['beta'])} |",
             f"| breast area fraction | {fmt(r['area'], 3)} | {fmt(s['area'], 3)} |",
             f"| breast height / side | {fmt(r['height'])} | {fmt(s['height'])} |",
             f"| breast width / side | {fmt(r['width'])} | {fmt(s['width'])} |",
             f"| mean intensity in breast | {fmt(r['mean_intensity'], 3)} | {fmt(s['mean_intensity'], 3)} |"]
    for stage in s["seams"]:
        lines.append(f"| seam ratio, {stage} stage (max) | {fmt(r['seams'].get(stage, {}))} | {fmt(s['seams'][stage])}"
                     f" ({s['seams'][stage].get('max', float('nan')):.2f}) |")
    lines.append("")
    if "beta_median_difference" in report:
        lines.append(f"- β median difference (synthetic − real): {report['beta_median_difference']:+.2f}")
    if "area_within_real_range" in report:
        lines.append(f"- synthetic area fractions within the real range: {report['area_within_real_range']}")
    if "intensity_ks" in report:
        ks = report["intensity_ks"]
        lines.append(f"- intensity inside the breast, KS: D = {ks['D']:.3f}, p = {ks['p']:.3g}")
    if report.get("lesions"):
        lines += ["", "| image | ROI side | β inside mask | β around (median) |", "|---|---|---|---|"]
        for item in report["lesions"]:
            inside = "–" if item["beta_inside"] is None else f"{item['beta_inside']:.2f}"
            around = "–" if item["beta_around"] is None else f"{item['beta_around']:.2f}"
            lines.append(f"| {item['name']} | {item['roi_side']} | {inside} | {around} |")
    return "\n".join(lines) + "\n"


def plot_report(real: Sequence[ImageRealism], synthetic: Sequence[ImageRealism], path: Path) -> Path:
    """Radial power spectra (geometric means) and β per image, real vs synthetic, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from MammoSynthLogic.fileio import atomic_path

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for label, group, colour in (("real", real, "tab:blue"), ("synthetic", synthetic, "tab:orange")):
        spectrum = mean_spectrum(group)
        if spectrum is not None:
            ax1.loglog(spectrum[0], spectrum[1], color=colour, label=label)
        betas = [im.beta for im in group if np.isfinite(im.beta)]
        ax2.scatter(np.full(len(betas), 0 if label == "real" else 1), betas, color=colour, label=label)
    for edge in BAND:
        ax1.axvline(edge, color="grey", linestyle=":", linewidth=1)
    ax1.set(xlabel="frequency (cycles/pixel)", ylabel="power", title="radial power spectrum in the breast")
    if ax1.get_lines():
        ax1.legend()
    ax2.set(xticks=[0, 1], xticklabels=["real", "synthetic"], ylabel="β", title="β per image", xlim=(-0.5, 1.5))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
