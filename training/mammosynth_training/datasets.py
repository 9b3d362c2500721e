"""Training samples for the three MAMBO roles (MAMBO §3.2.1 and suppl. §8).

Channel layouts, all s×s, values in [-1, 1]; F is the prepared image at full resolution (N×N), G = F resized to s:
- mambo-global: [G]
- mambo-local:  [k·s crop of F centred on c, resized to s;  G shifted so that c is at its centre;  G]
- mambo-patch:  [s×s crop of F centred on c;  k·s crop of F centred on c, resized to s;  G]
c is a random breast pixel (a non-zero pixel of the prepared image, whose background is zero). Outside the image,
crops and shifts are filled with the image minimum (0 = background).
The shift is the engine's (`MammoSynthLogic.pipelines.mambo.shifted_global`), so training and sampling agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from MammoSynthLogic.pipelines.mambo import aligned_context, shifted_global
from MammoSynthLogic.preparation import resize

from .cache import Unit, derived, open_array, selected_entries, to_uint16


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


def working_image(root: Path, entry: dict, side: int) -> Path:
    """The entry's prepared image at `side` px as a uint16 .npy: the cached one, or resized once into
    derived/full-<side>/."""
    native = root / entry["image"]
    if side == open_array(native).shape[0]:
        return native
    return derived(root, f"full-{side}", entry, lambda: to_uint16(resize_square(Unit(open_array(native))[:], side)))


def global_image(root: Path, entry: dict, s: int) -> Path:
    """The entry's prepared image resized to s×s (float32 .npy, made once into derived/global-<s>/)."""
    return derived(root, f"global-{s}", entry, lambda: resize_square(Unit(open_array(root / entry["image"]))[:], s))


def read_unit(path: Path) -> np.ndarray:
    """A whole cached or derived image as float32 [0, 1] (uint16 arrays scaled)."""
    array = np.load(path)
    return Unit(array)[:] if array.dtype == np.uint16 else array


@dataclass(frozen=True)
class _Item:
    """Where one image's arrays are (read per sample through memory maps) and the box its crop centres come from."""

    full: Path  # uint16 prepared image at the working resolution (native, or data.full_size)
    global_image: Path  # float32 s×s: the prepared image resized to s
    mid: Path | None  # float32, the working image resized by 1/k (aligned context only)
    box: tuple[int, int, int, int]  # non-zero pixels' bounding box at the working resolution
    view: str


def _working_box(entry: dict, native: int, side: int) -> tuple[int, int, int, int]:
    """The entry's breast box (native pixels) at a working side (outward rounding)."""
    y0, x0, y1, x1 = entry.get("breast_box") or (0, 0, native, native)
    scale = side / native
    return (int(y0 * scale), int(x0 * scale), min(side, int(np.ceil(y1 * scale))), min(side, int(np.ceil(x1 * scale))))


class MamboDataset(torch.utils.data.Dataset):
    """MAMBO samples from a prepared cache. Sample `i` is a deterministic function of (seed, i): resuming or
    sharding needs no hidden state. Images are taken in a fresh random order each epoch (len(images) samples), so
    the interleaved indices of `StepSampler` give each rank its own part of every epoch. Only a small index is kept
    per image; crops are read through memory maps, so memory does not grow with the data set."""

    def __init__(self, cache: str | Path, role: str, image_size: int, k: int, *, views=(), healthy_only=False,
                 full_size: int | None = None, seed: int = 0, intensity_jitter: float = 0.0, vflip_cc: float = 0.0,
                 aligned_context: bool = False):
        self.role, self.s, self.k, self.seed, self.aligned = role, image_size, k, seed, aligned_context
        self.intensity_jitter, self.vflip_cc = intensity_jitter, vflip_cc
        root = Path(cache)
        self.items = [self._index(root, entry, full_size) for entry in selected_entries(root, views, healthy_only)]
        self._order: tuple[int, np.ndarray] = (-1, np.arange(0))

    def _index(self, root: Path, entry: dict, full_size: int | None) -> _Item:
        native = open_array(root / entry["image"]).shape[0]
        side = full_size or native
        mid = None
        if self.aligned:
            mid_side = max(self.s, round(side / self.k))
            mid = derived(root, f"mid-{mid_side}", entry,
                          lambda: resize_square(Unit(open_array(root / entry["image"]))[:], mid_side))
        return _Item(working_image(root, entry, side), global_image(root, entry, self.s), mid,
                     _working_box(entry, native, side), str(entry.get("view") or "").upper())

    def image_of(self, index: int) -> int:
        """The image sample `index` is cut from: position index mod n of epoch index // n's permutation."""
        epoch, position = divmod(index, len(self.items))
        if self._order[0] != epoch:
            n = len(self.items)
            self._order = (epoch, np.random.default_rng([self.seed, epoch, n]).permutation(n))
        return int(self._order[1][position])

    @staticmethod
    def centre(item: _Item, full: Unit, rng: np.random.Generator) -> tuple[int, int]:
        """A uniformly random non-zero pixel (the prepared image is zero outside the breast) by rejection inside
        the breast box: each try reads one pixel, nothing is kept per image."""
        y0, x0, y1, x1 = item.box
        for _ in range(1000):
            cy, cx = int(rng.integers(y0, y1)), int(rng.integers(x0, x1))
            if full.array[cy, cx] > 0:
                return cy, cx
        return (y0 + y1) // 2, (x0 + x1) // 2

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        rng = np.random.default_rng([self.seed, index])
        item = self.items[self.image_of(index)]
        g = np.load(item.global_image)
        full = Unit(open_array(item.full))
        cy, cx = (0, 0) if self.role == "mambo-global" else self.centre(item, full, rng)
        mid = None if item.mid is None else np.load(item.mid, mmap_mode="r")
        channels = jitter_intensity(mambo_channels(full, g, self.role, cy, cx, self.k, mid),
                                    rng, self.intensity_jitter)
        if item.view == "CC" and rng.random() < self.vflip_cc:
            channels = channels[:, ::-1]
        return {"pixel_values": torch.from_numpy(np.ascontiguousarray(channels) * 2 - 1), "index": index,
                "centre": torch.tensor([cy, cx])}


class StepSampler(torch.utils.data.Sampler):
    """Endless sample indices for one rank: n-th sample of rank r is n·world + r, starting at n = start."""

    def __init__(self, start: int = 0, rank: int = 0, world_size: int = 1):
        self.start, self.rank, self.world_size = start, rank, world_size

    def __iter__(self) -> Iterator[int]:
        n = self.start
        while True:
            yield n * self.world_size + self.rank
            n += 1
