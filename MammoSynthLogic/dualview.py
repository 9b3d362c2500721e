"""Dual-view RGB encoding of a CC/MLO pair (MammoRGB, Garza-Abdala et al.) and its decoding.

Encoding: both views of one breast are brought to one side (the prepared frame: chest wall on the left, square,
background zero; the papers flip left views to the right, we use the same side as every other model here), resized
to s×s, and stacked as R = CC, G = MLO, B = |CC − MLO| ("diff", the papers' choice), (CC + MLO) / 2 ("sum", halved
so that it stays in [0, 1]) or 0 ("zero"). Decoding: R and G are the views, each clipped at its 0.5th / 99.5th
percentile and rescaled to [0, 1] (the papers' post-processing), then mirrored back for a right breast.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np

from MammoSynthLogic.dicom_io import MammogramImage
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.preparation import PreparedImage, prepare, resize

BLUE_MODES = ("diff", "sum", "zero")
VIEWS = ("CC", "MLO")
CHANNEL = {"CC": 0, "MLO": 1}
CLIP_PERCENTILES = (0.5, 99.5)


def blue_channel(cc: np.ndarray, mlo: np.ndarray, mode: str = "diff") -> np.ndarray:
    """The third channel: |CC − MLO|, (CC + MLO) / 2 or zeros."""
    if mode == "diff":
        return np.abs(cc - mlo).astype(np.float32)
    if mode == "sum":
        return ((cc + mlo) / 2).astype(np.float32)
    if mode == "zero":
        return np.zeros_like(cc, dtype=np.float32)
    raise MammoSynthError(f"blue channel {mode!r}", f"choose one of {', '.join(BLUE_MODES)}")


def encode(cc: np.ndarray, mlo: np.ndarray, mode: str = "diff") -> np.ndarray:
    """(3, H, W) float32 [0, 1]: R = CC, G = MLO, B = blue_channel; both views already on the same side."""
    cc, mlo = np.asarray(cc, dtype=np.float32), np.asarray(mlo, dtype=np.float32)
    if cc.shape != mlo.shape or cc.ndim != 2:
        raise ValueError(f"CC {cc.shape} and MLO {mlo.shape} must be 2D arrays of one shape")
    return np.stack([cc, mlo, blue_channel(cc, mlo, mode)])


def with_consistent_blue(rgb: np.ndarray, mode: str = "diff") -> np.ndarray:
    """The same image with its third channel recomputed from R and G (after completion or clipping)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return encode(rgb[0], rgb[1], mode)


def clip_percentiles(view: np.ndarray, low: float = CLIP_PERCENTILES[0],
                     high: float = CLIP_PERCENTILES[1]) -> np.ndarray:
    """Clip at the low/high percentiles and rescale to [0, 1] (the papers' removal of residual noise)."""
    view = np.asarray(view, dtype=np.float32)
    lo, hi = np.percentile(view, [low, high])
    if hi - lo < 1e-8:
        return np.zeros_like(view)
    return ((np.clip(view, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def to_laterality(view01: np.ndarray, laterality: Optional[str]) -> np.ndarray:
    """A view in the encoding frame (chest wall on the left) as stored for `laterality`: mirrored for R."""
    return np.ascontiguousarray(view01[:, ::-1]) if laterality == "R" else np.asarray(view01)


def decode(rgb: np.ndarray, laterality: Optional[str] = "L", clip: bool = True) -> dict[str, np.ndarray]:
    """{'CC', 'MLO'} float32 [0, 1] from a (3, H, W) image in [0, 1], percentile-clipped, laterality restored."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {rgb.shape}")
    views = {}
    for view in VIEWS:
        channel = np.clip(rgb[CHANNEL[view]], 0, 1)
        views[view] = to_laterality(clip_percentiles(channel) if clip else channel, laterality)
    return views


@dataclasses.dataclass
class EncodedView:
    """One real view in the encoding frame: s×s pixels and the preparation that maps results back to its source."""

    pixels: np.ndarray  # float32 [0, 1], s × s, chest wall on the left, background zero
    prepared: PreparedImage

    def to_source(self, view01: np.ndarray) -> np.ndarray:
        """A result in the encoding frame (any square size) → the source image's frame (size, flip)."""
        return self.prepared.transform.to_source(np.asarray(view01, dtype=np.float32))


def encode_view(image: Union[MammogramImage, np.ndarray], size: int, multiple: int = 256) -> EncodedView:
    """Prepare one view (mask, chest wall to the left, padded to a square side that is a multiple of `multiple`)
    and resize it to size × size."""
    prepared = prepare(image, multiple=multiple)
    return EncodedView(resize(prepared.pixels, (size, size)), prepared)


def encode_images(cc: Union[MammogramImage, np.ndarray], mlo: Union[MammogramImage, np.ndarray], size: int,
                  mode: str = "diff") -> np.ndarray:
    """(3, size, size) RGB encoding of a real pair (either laterality: each view is flipped to the left)."""
    return encode(encode_view(cc, size).pixels, encode_view(mlo, size).pixels, mode)


def to_model(rgb01: np.ndarray) -> np.ndarray:
    """[0, 1] → the models' [-1, 1]."""
    return (np.asarray(rgb01, dtype=np.float32) * 2 - 1).astype(np.float32)


def from_model(x: np.ndarray) -> np.ndarray:
    """The models' [-1, 1] → [0, 1], clipped."""
    return np.clip((np.asarray(x, dtype=np.float32) + 1) / 2, 0, 1).astype(np.float32)
