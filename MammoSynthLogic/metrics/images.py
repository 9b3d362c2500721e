"""Image sets for evaluation: find and read them, and keep per image only what the metrics need.

Every image is prepared as the models see it (breast on the left, background zeroed, square; MAMBO suppl. §8–9),
optionally resized to a common side, then summarised: a small whole-image version, full-resolution patches at random
centres inside the breast mask (MAMBO Table 1's "random" patches), the breast-area fraction and intensity samples.
A summary is small, so sets of thousands of full-resolution images stream through in constant memory.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from MammoSynthLogic.errors import MammoSynthError

OTHER_SUFFIXES = (".png", ".nrrd")


@dataclasses.dataclass(frozen=True)
class SummaryOptions:
    """How images are summarised; `size` resizes every prepared square first (None: native resolution)."""

    size: Optional[int] = None
    global_size: int = 256
    patch_size: int = 256
    patches: int = 4
    intensity_samples: int = 10000
    seed: int = 0


@dataclasses.dataclass
class Summary:
    name: str  # file stem: pairs a synthetic image with the real one it was made from
    thumb: np.ndarray  # global_size² prepared square, [0, 1]
    patches: np.ndarray  # (patches, p, p) at random centres inside the breast mask
    centres: np.ndarray  # (patches, 2) those centres as fractions of the side
    area: float  # breast-region fraction of the prepared square
    mean_intensity: float  # mean inside the breast region
    intensities: np.ndarray  # random sample of pixel values inside the breast region
    roi: Optional[np.ndarray] = None  # patches at the paired real image's centres


def find_images(folder: str | os.PathLike) -> list[Path]:
    """DICOM, PNG and NRRD files in a folder, recursively, sorted; hidden and partial files are left out."""
    from MammoSynthLogic.dicom_io import find_dicoms

    folder = Path(folder)
    if not folder.is_dir():
        raise MammoSynthError(folder, "not a folder; pass a folder of .dcm, .png or .nrrd images")
    dicoms, _ = find_dicoms([folder])
    others = [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in OTHER_SUFFIXES]
    files = sorted({p for p in dicoms + others if not p.name.startswith(".")})  # atomic writes: .NAME.part
    if not files:
        raise MammoSynthError(folder, "no images found (.dcm, .png or .nrrd, searched recursively)")
    return files


def read_pixels(path: Path) -> np.ndarray:
    """Grey pixels in [0, 1] (tissue bright) of a DICOM, 8/16-bit PNG or NRRD file."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            arr = np.asarray(im)
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=2).astype(np.uint8)
        return _unit(arr, path)
    if suffix == ".nrrd":
        import nrrd

        arr, _ = nrrd.read(str(path), index_order="C")
        return _unit(np.squeeze(arr), path)
    from MammoSynthLogic.dicom_io import read_mammogram

    return read_mammogram(path).pixels


def _unit(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim != 2:
        raise MammoSynthError(path, f"expected a 2D grey image, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return (arr.astype(np.float32) / np.iinfo(arr.dtype).max).astype(np.float32)
    return np.clip(arr.astype(np.float32), 0.0, 1.0)


def random_centres(mask: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n (row, col) points drawn uniformly from the True pixels of `mask` (the image centre if it has none)."""
    h, w = mask.shape
    found: list[np.ndarray] = []
    for _ in range(64):
        cand = np.stack([rng.integers(0, h, 64 * n), rng.integers(0, w, 64 * n)], axis=1)
        found.extend(cand[mask[cand[:, 0], cand[:, 1]]])
        if len(found) >= n:
            return np.asarray(found[:n])
    return np.asarray((found + [np.array([h // 2, w // 2])] * n)[:n])


def crops(square: np.ndarray, centres_frac: np.ndarray, size: int) -> np.ndarray:
    """size² crops centred on fractional positions; outside the image is background (0)."""
    from MammoSynthLogic.pipelines.mambo import crop_padded

    side = square.shape[0]
    return np.stack([crop_padded(square, round(cy * side - size / 2), round(cx * side - size / 2), size, fill=0.0)
                     for cy, cx in centres_frac]) if len(centres_frac) else np.zeros((0, size, size), np.float32)


def _sample_inside(square: np.ndarray, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to n pixel values inside `region`, from a strided grid (no full-size index arrays)."""
    step = max(1, int(np.sqrt(region.size / (4 * max(n, 1)))))
    values = square[::step, ::step][region[::step, ::step]]
    if len(values) > n:
        values = rng.choice(values, n, replace=False)
    return values.astype(np.float32)


def summarize(pixels: np.ndarray, name: str, options: SummaryOptions, key: Sequence[int],
              partner_centres: Optional[np.ndarray] = None) -> Summary:
    """Prepare one image and keep what the metrics need; `partner_centres` also crops the paired (ROI) patches."""
    from MammoSynthLogic.breast_mask import describe
    from MammoSynthLogic.preparation import prepare, resize

    rng = np.random.default_rng([options.seed, *key])
    prepared = prepare(pixels)
    square, mask, region = prepared.pixels, prepared.mask, prepared.region
    if options.size is not None and square.shape[0] != options.size:
        shape = (options.size, options.size)
        square, mask, region = resize(square, shape), resize(mask, shape), resize(region, shape)
    side = square.shape[0]
    centres = (random_centres(mask, options.patches, rng) + 0.5) / side
    inside = _sample_inside(square, region, options.intensity_samples, rng)
    return Summary(
        name=name,
        thumb=resize(square, (options.global_size, options.global_size)),
        patches=crops(square, centres, options.patch_size),
        centres=centres,
        area=describe(square)[1],
        mean_intensity=float(inside.mean()) if len(inside) else 0.0,
        intensities=inside,
        roi=None if partner_centres is None else crops(square, partner_centres, options.patch_size),
    )
