"""Tile grids over a square or rectangular canvas: positions, wavefronts, background skip, blending weights."""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tile:
    """One s×s tile: grid row/column, top-left pixel (y, x), index in row order."""

    row: int
    col: int
    y: int
    x: int
    size: int
    index: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y, self.y + self.size), slice(self.x, self.x + self.size)

    @property
    def centre(self) -> tuple[float, float]:
        return self.y + self.size / 2, self.x + self.size / 2


def positions(length: int, size: int, overlap: int) -> list[int]:
    """Tile starts along one axis: step `size - overlap`, the last tile flush with the end (no missing rows)."""
    if not 0 <= overlap < size:
        raise ValueError(f"overlap {overlap} must be in [0, {size})")
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


def grid(height: int, width: int, size: int, overlap: int) -> list[Tile]:
    """All tiles of a canvas in row order (MAMBO's sequential order)."""
    ys, xs = positions(height, size, overlap), positions(width, size, overlap)
    return [Tile(i, j, y, x, size, i * len(xs) + j) for i, y in enumerate(ys) for j, x in enumerate(xs)]


def wavefronts(tiles: Iterable[Tile]) -> list[list[Tile]]:
    """Tiles grouped by anti-diagonal (row + col): each wave's top/left neighbours are all in earlier waves."""
    waves: dict[int, list[Tile]] = {}
    for t in tiles:
        waves.setdefault(t.row + t.col, []).append(t)
    return [sorted(waves[d], key=lambda t: t.index) for d in sorted(waves)]


def active(tiles: Iterable[Tile], mask: np.ndarray) -> list[Tile]:
    """Tiles whose crop of `mask` (bool, canvas-sized) holds any breast pixel."""
    return [t for t in tiles if mask[t.slices].any()]


def ramp_weights(size: int, overlap: int) -> np.ndarray:
    """Separable raised-cosine window: 1 inside, falling smoothly (never to 0) across `overlap` px at each edge."""
    w = np.ones(size, dtype=np.float32)
    if overlap > 0:
        r = np.sin(0.5 * np.pi * (np.arange(overlap, dtype=np.float32) + 0.5) / overlap) ** 2
        w[:overlap] = r
        w[size - overlap:] = np.minimum(w[size - overlap:], r[::-1])
    return np.outer(w, w)


def weight_sum(tiles: Iterable[Tile], shape: tuple[int, int], weights: np.ndarray) -> np.ndarray:
    """Sum of the tiles' blending weights over the canvas (0 where no tile covers)."""
    total = np.zeros(shape, dtype=np.float32)
    for t in tiles:
        total[t.slices] += weights
    return total


def blend_weights(tiles: list[Tile], shape: tuple[int, int], overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """The tiles' window (`ramp_weights`) and 1 / (sum of the windows) over the canvas, 0 where no tile covers:
    a weighted mean of overlapping tile outputs is sum(window · tile) · inverse."""
    weights = ramp_weights(tiles[0].size, overlap)
    total = weight_sum(tiles, shape, weights)
    return weights, np.where(total > 0, 1 / np.maximum(total, 1e-12), 0).astype(np.float32)


def chunks(items: list, n: int) -> Iterable[list]:
    for i in range(0, len(items), max(1, n)):
        yield items[i:i + max(1, n)]


def seam_mse(image: np.ndarray, tiles: Iterable[Tile], inside: bool = False, mask: Optional[np.ndarray] = None) -> float:
    """MAMBO Fig. 7: MSE between neighbouring pixels across tile borders (or, with `inside`, across the tiles' middle
    lines as a reference of ordinary neighbour differences), counted where both pixels lie in `mask`."""
    rows, cols = set(), set()
    for t in tiles:
        if inside:
            rows.add(t.y + t.size // 2)
            cols.add(t.x + t.size // 2)
        else:
            rows.add(t.y + t.size)
            cols.add(t.x + t.size)
    h, w = image.shape
    m = np.ones(image.shape, dtype=bool) if mask is None else mask
    diffs = [(image[r - 1, :] - image[r, :])[m[r - 1, :] & m[r, :]] for r in rows if 0 < r < h]
    diffs += [(image[:, c - 1] - image[:, c])[m[:, c - 1] & m[:, c]] for c in cols if 0 < c < w]
    values = np.concatenate(diffs) if diffs else np.zeros(0)
    return float(np.mean(values ** 2)) if values.size else 0.0

