"""Image preparation as MAMBO supplementary §8–9 gives it, and its exact inverse.

Prepared frame: background zeroed outside the breast, flipped so the chest wall is on the left, padded with
zeros at the bottom and right to a square whose side is a multiple of 256. `PrepareTransform.to_source` maps any
result in that frame (at any square resolution) back to the source pixels.
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Optional, Union

import numpy as np

from MammoSynthLogic.breast_mask import EROSION, _erode, _region_small, _upsample, breast_side
from MammoSynthLogic.dicom_io import MammogramImage


@dataclasses.dataclass(frozen=True)
class PrepareTransform:
    """Source (rows, columns) ↔ prepared square: optional horizontal flip, then zero padding bottom/right."""

    source_shape: tuple[int, int]
    flipped: bool
    size: int

    def to_prepared(self, array: np.ndarray, fill: float = 0) -> np.ndarray:
        """Source-frame array → prepared frame (size × size)."""
        if array.shape[:2] != tuple(self.source_shape):
            raise ValueError(f"array shape {array.shape[:2]} differs from the source {self.source_shape}")
        oriented = array[:, ::-1] if self.flipped else array
        out = np.full((self.size, self.size) + array.shape[2:], fill, dtype=array.dtype)
        out[: self.source_shape[0], : self.source_shape[1]] = oriented
        return out

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """Prepared-frame array (any square size; resized to the prepared size first) → source frame."""
        if array.shape[0] != array.shape[1]:
            raise ValueError(f"prepared-frame arrays are square, got {array.shape}")
        if array.shape[0] != self.size:
            array = resize(array, (self.size, self.size))
        cropped = array[: self.source_shape[0], : self.source_shape[1]]
        return np.ascontiguousarray(cropped[:, ::-1] if self.flipped else cropped)

    def to_json(self) -> str:
        return json.dumps({"source_shape": list(self.source_shape), "flipped": self.flipped, "size": self.size,
                           "padding": "bottom/right with zeros", "flip": "horizontal, before padding"}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "PrepareTransform":
        d = json.loads(text)
        return cls(source_shape=tuple(d["source_shape"]), flipped=bool(d["flipped"]), size=int(d["size"]))


@dataclasses.dataclass
class PreparedImage:
    pixels: np.ndarray  # float32 [0, 1], size × size, background zero
    region: np.ndarray  # bool: the whole breast (skin line included)
    mask: np.ndarray  # bool: MAMBO's eroded inner-tissue mask
    transform: PrepareTransform
    breast_side: str  # side of the chest wall in the source pixels
    source: Optional[MammogramImage] = None

    def to_source_stored(self, array01: np.ndarray) -> np.ndarray:
        """A [0, 1] result in the prepared frame → source frame at the source's bit depth and intensity scale."""
        if self.source is None:
            raise ValueError("prepared from an array: no stored format to go back to")
        return self.source.to_stored(self.transform.to_source(array01))


def resize(array: np.ndarray, shape: tuple[int, int], smooth_enlarge: bool = False) -> np.ndarray:
    """Area-averaged downsizing or bilinear upsizing (bicubic with `smooth_enlarge`) for float images; nearest for
    masks and labels (2D)."""
    from PIL import Image

    if array.shape[:2] == tuple(shape):
        return array
    size = (int(shape[1]), int(shape[0]))
    if array.dtype == bool:
        return np.asarray(Image.fromarray(array.view(np.uint8)).resize(size, Image.NEAREST)).astype(bool)
    if np.issubdtype(array.dtype, np.integer):
        return np.asarray(Image.fromarray(array.astype(np.int32)).resize(size, Image.NEAREST)).astype(array.dtype)
    shrinking = shape[0] < array.shape[0]
    enlarge = Image.BICUBIC if smooth_enlarge else Image.BILINEAR
    resized = Image.fromarray(np.asarray(array, dtype=np.float32)).resize(size, Image.BOX if shrinking else enlarge)
    return np.asarray(resized).astype(array.dtype)


def padded_side(shape: tuple[int, int], multiple: int = 256) -> int:
    return int(math.ceil(max(shape) / multiple) * multiple)


def prepare(image: Union[MammogramImage, np.ndarray], multiple: int = 256) -> PreparedImage:
    """Mask, zero the background, flip the chest wall to the left, pad to a square multiple of `multiple`."""
    source = image if isinstance(image, MammogramImage) else None
    pixels = image.pixels if source is not None else np.asarray(image, dtype=np.float32)
    if source is not None and source.pixel_step != 1:
        raise ValueError("prepare() needs the full image, not a preview read with max_side")
    small = _region_small(pixels)
    side = breast_side(pixels, small)
    region = _upsample(small, pixels.shape)
    mask = _upsample(_erode(small, EROSION), pixels.shape)
    transform = PrepareTransform(source_shape=pixels.shape, flipped=side == "right", size=padded_side(pixels.shape, multiple))
    return PreparedImage(
        pixels=transform.to_prepared(np.where(region, pixels, np.float32(0)).astype(np.float32)),
        region=transform.to_prepared(region, fill=False),
        mask=transform.to_prepared(mask, fill=False),
        transform=transform, breast_side=side, source=source,
    )


def histogram_match(image: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the histogram of `image` to `reference`, both taken inside `mask`; pixels outside stay as they are."""
    from skimage.exposure import match_histograms

    out = np.array(image, dtype=np.float32, copy=True)
    if mask.any():
        out[mask] = match_histograms(image[mask].astype(np.float32), reference[mask].astype(np.float32))
    return out
