"""Lesion inpainting at the image's native resolution and bit depth (beyond MAM-E's 512² 8-bit images).

A square crop around the mask (with context, at least the model size) is resized to the model size, inpainted by
a Stable Diffusion inpainting model (9-channel U-Net: latents, mask, masked-image latents; MAM-E §3.5) and
resized back. `blend_into` mixes any synthetic image (this route's, or RePaint's with the MAMBO models) into the
stored pixels with feathered weights: 1 inside the mask, a cosine fall to 0 over `feather` pixels outside; every
pixel of weight 0 (or left unchanged by the synthetic image) is the original stored value, bit for bit.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.masks import EMPTY
from MammoSynthLogic.pipelines.text2mammo import SDSettings, run_sd
from MammoSynthLogic.preparation import resize
from MammoSynthLogic.progress import Reporter
from MammoSynthLogic.sd_bundles import SDBundle


class Box(NamedTuple):
    """A rectangle of the image: top-left corner and size in pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def crop_box(mask: np.ndarray, margin: float = 0.5, min_side: int = 512, pad: int = 0) -> Box:
    """Square box around the mask: its extent plus `margin` of it on each side (and at least `pad` pixels), at
    least `min_side`, shifted to stay inside the image (clipped only where the image is smaller)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise MammoSynthError("mask", EMPTY)
    (r0, r1), (c0, c1) = (rows[0], rows[-1] + 1), (cols[0], cols[-1] + 1)
    extent = max(r1 - r0, c1 - c0)
    side = max(math.ceil(extent * (1 + 2 * margin)), extent + 2 * pad, min_side)
    height, width = min(side, mask.shape[0]), min(side, mask.shape[1])
    top = min(max(r0 - (height - (r1 - r0)) // 2, 0), mask.shape[0] - height)
    left = min(max(c0 - (width - (c1 - c0)) // 2, 0), mask.shape[1] - width)
    return Box(int(top), int(left), int(height), int(width))


def feather_weights(mask: np.ndarray, feather: float) -> np.ndarray:
    """Blend weights: 1 inside the mask, falling as a half cosine to 0 at `feather` pixels outside it."""
    from scipy import ndimage

    weights = mask.astype(np.float32)
    if feather <= 0:
        return weights
    window = crop_box(mask, margin=0.0, min_side=0, pad=math.ceil(feather) + 1).slices
    distance = ndimage.distance_transform_edt(~mask[window])
    weights[window] = 0.5 * (1.0 + np.cos(np.pi * np.clip(distance / feather, 0.0, 1.0)))
    return weights


def encode_like(values01: np.ndarray, stored: np.ndarray, pixels01: np.ndarray) -> np.ndarray:
    """[0, 1] display values → stored integers by inverting the source's own stored → display mapping (modality
    and VOI LUT, MONOCHROME1 included), interpolated between its stored levels; clamped to the image's range."""
    levels = stored.ravel().astype(np.int64)
    base = int(levels.min())
    shown = np.full(int(levels.max()) - base + 1, np.nan, dtype=np.float64)
    shown[levels - base] = pixels01.ravel()
    present = np.flatnonzero(~np.isnan(shown))
    order = np.argsort(shown[present], kind="stable")
    level = np.interp(values01, shown[present][order], present[order].astype(np.float64))
    return np.rint(level + base).astype(stored.dtype)


def blend_into(stored: np.ndarray, original01: np.ndarray, synthetic01: np.ndarray,
               weights: np.ndarray) -> np.ndarray:
    """Stored pixels with the synthetic image mixed in by weight (in stored values); pixels of weight 0, and those
    the synthetic image leaves as they were, are copied bit-identically."""
    if not stored.shape == original01.shape == synthetic01.shape == weights.shape:
        raise ValueError("stored, original, synthetic and weights must have one shape")
    out = stored.copy()
    zone = (weights > 0) & (synthetic01 != original01)
    w = weights[zone].astype(np.float64)
    target = encode_like(synthetic01[zone], stored, original01).astype(np.float64)
    out[zone] = np.rint(w * target + (1.0 - w) * stored[zone]).astype(stored.dtype)
    return out


def inpaint_sd(bundle: SDBundle, pixels: np.ndarray, mask: np.ndarray, settings: SDSettings, seed: int, *,
               margin: float = 0.5, pad: int = 0, side: str = "left",
               reporter: Optional[Reporter] = None) -> tuple[np.ndarray, Box]:
    """The image (float32 [0, 1]) with a Stable Diffusion inpainting of the mask in a crop around it, and the crop.

    The crop is flipped to put the chest wall on the left (as MAM-E trained) when `side` is "right".
    """
    if bundle.role != "mame-inpaint":
        raise MammoSynthError(bundle.path, f"a {bundle.role} model cannot inpaint; pass a mame-inpaint model "
                                           "(9-channel U-Net)")
    size = bundle.image_size
    box = crop_box(mask, margin, size, pad)
    crop, region = pixels[box.slices], mask[box.slices]
    if side == "right":
        crop, region = crop[:, ::-1], region[:, ::-1]
    image = np.repeat(resize(np.ascontiguousarray(crop, dtype=np.float32), (size, size))[None, ..., None], 3, -1)
    hole = resize(np.ascontiguousarray(region, dtype=np.float32), (size, size)) > 0  # a small mask never vanishes
    out = run_sd(bundle.pipeline, settings, seed, "inpaint", reporter, image=image,
                 mask_image=hole[None, ..., None].astype(np.float32), height=size, width=size, strength=1.0)
    back = resize(np.clip(out, 0.0, 1.0), (box.height, box.width))
    synthetic = np.array(pixels, dtype=np.float32, copy=True)
    synthetic[box.slices] = back[:, ::-1] if side == "right" else back
    return synthetic, box
