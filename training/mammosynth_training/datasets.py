"""Training samples for the three MAMBO roles (MAMBO §3.2.1 and suppl. §8).

Channel layouts, all s×s, values in [-1, 1]; F is the prepared image at full resolution (N×N), G = F resized to s:
- mambo-global: [G]
- mambo-local:  [k·s crop of F centred on c, resized to s;  G shifted so that c is at its centre;  G]
- mambo-patch:  [s×s crop of F centred on c;  k·s crop of F centred on c, resized to s;  G]
c is a random breast pixel. Outside the image, crops and shifts are filled with the image minimum (0 = background).
The shift is the engine's (`MammoSynthLogic.pipelines.mambo.shifted_global`), so training and sampling agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from MammoSynthLogic.pipelines.mambo import aligned_context, shifted_global
from MammoSynthLogic.preparation import resize

from .cache import CachedImage


def resize_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """The engine's resize (area-averaged down, bilinear up) to size×size, float32."""
    return resize(pixels.astype(np.float32, copy=False), (size, size))


def crop_centered(pixels: np.ndarray, cy: int, cx: int, size: int, fill: float = 0.0) -> np.ndarray:
    """size×size crop whose centre (pixel-edge coordinates) is (cy, cx); outside the image = fill."""
    out = np.full((size, size), fill, dtype=np.float32)
    top, left = cy - size // 2, cx - size // 2
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, pixels.shape[0]), min(left + size, pixels.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = pixels[y0:y1, x0:x1]
    return out


def mambo_channels(full: np.ndarray, global_image: np.ndarray, role: str, cy: int, cx: int, k: int,
                   mid: np.ndarray | None = None) -> np.ndarray:
    """The [C, s, s] channel stack (values [0,1]) for one centre pixel (cy, cx) of the full image; with `mid`
    (the full image resized by 1/k) a 4th channel holds the coarser stage's pixels under the tile, as the engine's
    `context_channels(aligned=True)` builds it at sampling time."""
    s, n = global_image.shape[0], full.shape[0]
    if role == "mambo-global":
        return global_image[None]
    local = resize_square(crop_centered(full, cy, cx, k * s), s)
    if role == "mambo-local":
        shifted = shifted_global(global_image * 2 - 1, cy / full.shape[0], cx / full.shape[1])
        channels = [local, (shifted + 1) / 2, global_image]
        coarse, top, left, side = global_image, (cy - k * s // 2) / k, (cx - k * s // 2) / k, n / k
    elif role == "mambo-patch":
        channels = [crop_centered(full, cy, cx, s), local, global_image]
        coarse, top, left, side = mid, cy - s // 2, cx - s // 2, n
    else:
        raise ValueError(f"unknown role {role!r}")
    if mid is not None:
        channels.append(aligned_context(coarse, top, left, s, side, fill=0.0))
    return np.stack(channels)


def jitter_intensity(channels: np.ndarray, rng: np.random.Generator, amount: float) -> np.ndarray:
    """Same random gamma and gain on every channel; zero (background) stays zero."""
    if amount <= 0:
        return channels
    gamma, gain = rng.uniform(1 - amount, 1 + amount, size=2)
    return np.clip(gain * np.power(np.clip(channels, 0, 1), gamma), 0, 1).astype(np.float32)


@dataclass
class _Prepared:
    full: np.ndarray
    global_image: np.ndarray
    mid: np.ndarray | None  # full resized by 1/k, for the aligned context channel
    breast: np.ndarray  # flat indices of breast pixels in `full`
    view: str


class MamboDataset(torch.utils.data.Dataset):
    """Sample `i` is a deterministic function of (seed, i): resuming or sharding needs no hidden state."""

    def __init__(self, images: list[CachedImage], role: str, image_size: int, k: int, *,
                 full_size: int | None = None, seed: int = 0, intensity_jitter: float = 0.0,
                 vflip_cc: float = 0.0, aligned_context: bool = False):
        self.role, self.s, self.k, self.seed, self.aligned = role, image_size, k, seed, aligned_context
        self.intensity_jitter, self.vflip_cc = intensity_jitter, vflip_cc
        self.items = [self._prepare(im, full_size) for im in images]

    def _prepare(self, image: CachedImage, full_size: int | None) -> _Prepared:
        full, mask = image.pixels.astype(np.float32), image.mask
        if full_size is not None and full.shape != (full_size, full_size):
            full = resize_square(full, full_size)
            mask = resize(mask, (full_size, full_size))
        breast = np.flatnonzero(mask)
        if breast.size == 0:  # no mask: any non-background pixel
            breast = np.flatnonzero(full > 0)
        if breast.size == 0:
            breast = np.arange(full.size)
        view = str(image.meta.get("view") or "").upper()
        mid = resize_square(full, max(self.s, round(full.shape[0] / self.k))) if self.aligned else None
        return _Prepared(full, resize_square(full, self.s), mid, breast, view)

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        rng = np.random.default_rng([self.seed, index])
        item = self.items[rng.integers(len(self.items))]
        cy, cx = divmod(int(item.breast[rng.integers(item.breast.size)]), item.full.shape[1])
        channels = jitter_intensity(mambo_channels(item.full, item.global_image, self.role, cy, cx, self.k,
                                                   item.mid),
                                    rng, self.intensity_jitter)
        if item.view == "CC" and rng.random() < self.vflip_cc:
            channels = channels[:, ::-1]
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(channels) * 2 - 1), "index": index}


class StepSampler(torch.utils.data.Sampler):
    """Endless sample indices for one rank: n-th sample of rank r is n·world + r, starting at n = start."""

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1):
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[int]:
        n = self.start
        while True:
            yield n * self.world_size + self.rank
            n += 1
