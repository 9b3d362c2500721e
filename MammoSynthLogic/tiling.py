"""Tile grids over a square or rectangular canvas: positions, wavefronts, background skip, blending weights, and
`TileIndex`, which moves a batch of tiles to and from a device canvas with a few strided copies per tile row."""
from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import numpy as np
import torch


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


def positions(length: int, size: int, overlap: int, shifted: bool = False) -> list[int]:
    """Tile starts along one axis: step `size - overlap`, the last tile flush with the end (no missing rows).
    `shifted`: every start but the first moved on by half a step (held at the end): the grid whose tile borders
    lie in the middle of the other's tiles."""
    if not 0 <= overlap < size:
        raise ValueError(f"overlap {overlap} must be in [0, {size})")
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride)) + [length - size]
    if shifted:
        starts = sorted({0, *(min(p + stride // 2, length - size) for p in starts)})
    return starts


def grid(height: int, width: int, size: int, overlap: int, shifted: bool = False) -> list[Tile]:
    """All tiles of a canvas in row order (MAMBO's sequential order); `shifted`: see `positions`."""
    ys, xs = positions(height, size, overlap, shifted), positions(width, size, overlap, shifted)
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


def weight_sum(tiles: list[Tile], shape: tuple[int, int], weights: np.ndarray) -> np.ndarray:
    """Sum of the tiles' blending weights over the canvas (0 where no tile covers)."""
    return TileIndex(tiles).weight_sum(torch.from_numpy(weights), shape).numpy()


def blend_weights(tiles: list[Tile], shape: tuple[int, int], overlap: int) -> tuple[np.ndarray, np.ndarray]:
    """The tiles' window (`ramp_weights`) and 1 / (sum of the windows) over the canvas, 0 where no tile covers:
    a weighted mean of overlapping tile outputs is sum(window · tile) · inverse."""
    weights = ramp_weights(tiles[0].size, overlap)
    return weights, TileIndex(tiles).inverse(torch.from_numpy(weights), shape).numpy()


class TileIndex:
    """Canvas ↔ (N, s, s) batch for tiles of one grid (any subset, in row order), on the canvas's device.

    The tiles are split into blocks: runs of a row whose left edges are evenly spaced, stacked over rows that are
    evenly spaced and hold the same run (a full grid is four blocks: the evenly spaced tiles, the last column, the
    last row and the corner, as the last tiles sit flush with the edge). A block is one strided view of the canvas
    (rows, s, columns, s) and of the batch, so `gather` is one copy per block. `scatter_add` adds a block in classes
    of tiles that do not overlap (every m-th row and every m-th column of tiles, m·spacing ≥ s): one strided in-place
    add per class, no index tensors, the same order of sums on every run and device (no atomics), views, not copies.
    """

    def __init__(self, tiles: list[Tile]):
        if [(t.y, t.x) for t in tiles] != sorted((t.y, t.x) for t in tiles):
            raise ValueError("tiles must be in row order")
        self.size = s = tiles[0].size
        self.count = len(tiles)
        runs: list[list[int]] = []  # y, x of the first tile, spacing, first index, count
        for i, t in enumerate(tiles):
            if runs:
                y, x, step, b0, n = runs[-1]
                if y == t.y and (n == 1 or t.x - x == step * n):
                    runs[-1] = [y, x, t.x - x if n == 1 else step, b0, n + 1]
                    continue
            runs.append([t.y, t.x, s, i, 1])
        # y, row spacing, rows, x, column spacing, columns, first index, index step between rows
        self.blocks: list[tuple[int, int, int, int, int, int, int, int]] = []
        open_blocks: dict[tuple[int, int, int], int] = {}  # (x, spacing, count) -> the block a next row may extend
        for y, x, step, b0, n in runs:
            k = open_blocks.get((x, step, n))
            if k is not None:
                by, ystep, rows, _, _, _, bb, bstep = self.blocks[k]
                if rows == 1 or (y - by == ystep * rows and b0 - bb == bstep * rows):
                    ystep, bstep = (y - by, b0 - bb) if rows == 1 else (ystep, bstep)
                    self.blocks[k] = (by, ystep, rows + 1, x, step, n, bb, bstep)
                    continue
            open_blocks[(x, step, n)] = len(self.blocks)
            self.blocks.append((y, s, 1, x, step, n, b0, n))

    def _views(self, canvas: torch.Tensor, batch: torch.Tensor, block: tuple, cy: int = 0, cx: int = 0,
               my: int = 1, mx: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Every my-th row from cy and every mx-th column from cx of a block's tiles: the canvas view
        (rows, s, columns, s) and the batch view in the same order."""
        y, ystep, rows, x, xstep, cols, b0, bstep = block
        s, (rs, cs), (n0, n1, n2) = self.size, canvas.stride(), batch.stride()
        rows, cols = len(range(cy, rows, my)), len(range(cx, cols, mx))
        view = canvas.as_strided((rows, s, cols, s), (my * ystep * rs, rs, mx * xstep * cs, cs),
                                 canvas.storage_offset() + (y + cy * ystep) * rs + (x + cx * xstep) * cs)
        part = batch.as_strided((rows, s, cols, s), (my * bstep * n0, n1, mx * n0, n2),
                                batch.storage_offset() + (b0 + cy * bstep + cx) * n0)
        return view, part

    def gather(self, canvas: torch.Tensor, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The tiles' pixels of a 2-D canvas as an (N, s, s) batch (written into `out` if given)."""
        s = self.size
        if out is None:
            out = torch.empty((self.count, s, s), dtype=canvas.dtype, device=canvas.device)
        for block in self.blocks:
            view, part = self._views(canvas, out, block)
            part.copy_(view)
        return out

    def scatter_add(self, canvas: torch.Tensor, batch: torch.Tensor,
                    window: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Add each tile of an (N, s, s) batch (times the (s, s) `window`, if given) onto the 2-D canvas at its place
        (in place; returned for chaining)."""
        s = self.size
        for block in self.blocks:
            _, ystep, rows, _, xstep, cols, _, _ = block
            my, mx = min(rows, -(-s // ystep)), min(cols, -(-s // xstep))  # rows (columns) c, c + m, … do not overlap
            for cy in range(my):
                for cx in range(mx):
                    view, part = self._views(canvas, batch, block, cy, cx, my, mx)
                    if window is None:
                        view.add_(part)
                    else:
                        view.addcmul_(part, window[:, None])
        return canvas

    def weight_sum(self, weights: torch.Tensor, shape: tuple[int, int],
                   out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Sum of every tile's (s, s) `weights` over a canvas of `shape` (0 where no tile covers; into `out`)."""
        total = torch.zeros(shape, dtype=weights.dtype, device=weights.device) if out is None else out.zero_()
        return self.scatter_add(total, weights.expand(self.count, -1, -1))

    def inverse(self, weights: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """1 / `weight_sum`, 0 where no tile covers."""
        return reciprocal(self.weight_sum(weights, shape))


def reciprocal(total: torch.Tensor) -> torch.Tensor:
    """1 / total where total > 0, else 0 (total ≥ 0, a sum of windows); in place, two passes: 1/0 is inf there."""
    return total.reciprocal_().nan_to_num_(posinf=0.0)


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

