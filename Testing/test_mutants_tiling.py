"""Tiling: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — the dtype of a gathered
batch, seam lines next to the canvas edge and a canvas without seams — each with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from MammoSynthLogic import tiling


def test_gather_keeps_the_canvas_dtype():
    canvas = torch.arange(36, dtype=torch.float64).reshape(6, 6) / 7  # values float32 cannot hold exactly
    tiles = tiling.grid(6, 6, 4, 2)
    batch = tiling.TileIndex(tiles).gather(canvas)
    assert batch.dtype == torch.float64
    assert torch.equal(batch, torch.stack([canvas[t.slices] for t in tiles]))


def test_seam_lines_next_to_the_first_row_and_column_count_and_none_wrap_around():
    image = np.arange(16, dtype=np.float32).reshape(4, 4) ** 2
    # 2 px tiles: the middle lines (`inside`) are between rows 0|1 and 2|3 (and the same columns)
    tiles = tiling.grid(4, 4, 2, 0)
    pairs = [image[0] - image[1], image[2] - image[3], image[:, 0] - image[:, 1], image[:, 2] - image[:, 3]]
    assert tiling.seam_mse(image, tiles, inside=True) == pytest.approx(float(np.mean(np.concatenate(pairs) ** 2)))
    # 1 px tiles: their middle lines are the tiles' own first rows; row 0 has no row above it to compare with
    ones = tiling.grid(2, 2, 1, 0)
    small = np.array([[0, 1], [3, 7]], np.float32)
    expected = np.mean(np.array([0 - 3, 1 - 7, 0 - 1, 3 - 7], np.float32) ** 2)
    assert tiling.seam_mse(small, ones, inside=True) == pytest.approx(float(expected))


def test_one_tile_over_the_whole_canvas_has_no_seams():
    image = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    assert tiling.seam_mse(image, tiling.grid(8, 8, 8, 0)) == 0.0


def test_weight_sum_keeps_the_weights_dtype():
    tiles = tiling.grid(6, 6, 4, 2)
    weights = torch.full((4, 4), 1 / 3, dtype=torch.float64)
    total = tiling.TileIndex(tiles).weight_sum(weights, (6, 6))
    assert total.dtype == torch.float64
    # rows/columns 0-1 and 4-5 lie under one tile along that axis, 2-3 under two
    per_axis = torch.tensor([1, 1, 2, 2, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(total, torch.outer(per_axis, per_axis) / 3)


def test_a_grid_is_four_blocks_and_rows_must_be_in_order():
    """The docstring's promise: one strided copy per block, a block being a row's evenly spaced tiles (the last,
    flush tile of a row is spaced differently and starts a run of its own) stacked over evenly spaced rows that
    hold the same run; runs are grown greedily from the left. A block: y, row spacing, rows, x, column spacing,
    columns, first index, index step between rows (a one-row block keeps the tile size and its count there)."""
    tiles = tiling.grid(100, 100, 32, 8)  # starts 0, 24, 48, 68 along each axis
    assert tiling.TileIndex(tiles).blocks == [(0, 24, 3, 0, 24, 3, 0, 4), (0, 24, 3, 68, 32, 1, 3, 4),
                                              (68, 32, 1, 0, 24, 3, 12, 3), (68, 32, 1, 68, 32, 1, 15, 1)]
    kept = [t for t in tiles if t.col != 1]  # columns 0, 2, 3 of each row: 0, 48 (spacing 48) | 68
    assert tiling.TileIndex(kept).blocks == [(0, 24, 3, 0, 48, 2, 0, 3), (0, 24, 3, 68, 32, 1, 2, 3),
                                             (68, 32, 1, 0, 48, 2, 9, 2), (68, 32, 1, 68, 32, 1, 11, 1)]
    rows_0_1_3 = [t for t in tiles if t.row != 2]  # row spacing 24, then 44: the third row starts new blocks
    assert [b[:3] for b in tiling.TileIndex(rows_0_1_3).blocks] == [(0, 24, 2), (0, 24, 2), (68, 32, 1), (68, 32, 1)]
    with pytest.raises(ValueError, match="^tiles must be in row order$"):
        tiling.TileIndex(tiles[::-1])


@pytest.mark.parametrize("overlap", [-1, 32, 40])
def test_an_overlap_outside_zero_to_the_tile_size_is_refused(overlap):
    with pytest.raises(ValueError, match=rf"^overlap {overlap} must be in \[0, 32\)$"):
        tiling.positions(100, 32, overlap)


def test_batches_and_sums_stay_on_the_canvas_device():
    """Without a GPU, the "meta" device (shapes only, no data) shows that nothing is created on the CPU by default."""
    tiles = tiling.grid(6, 6, 4, 2)
    index = tiling.TileIndex(tiles)
    assert index.gather(torch.empty(6, 6, device="meta")).device.type == "meta"
    assert index.weight_sum(torch.empty(4, 4, device="meta"), (6, 6)).device.type == "meta"


def test_rows_whose_tiles_are_unevenly_numbered_start_a_new_block():
    """Evenly spaced rows holding the same run, but another run missing from one row between them (as a background
    skip leaves): the batch indices of the run are no longer evenly spaced, so the block must end there."""
    tiles = [t for t in tiling.grid(100, 100, 32, 8) if not (t.row == 1 and t.col == 3)]
    index = tiling.TileIndex(tiles)
    # the first column run: rows 0-1 (indices 0, 4), then rows 2-3 (7, 11); the last column: rows 0 and 2, row 3
    assert index.blocks == [(0, 24, 2, 0, 24, 3, 0, 4), (0, 48, 2, 68, 32, 1, 3, 7), (48, 20, 2, 0, 24, 3, 7, 4),
                            (68, 32, 1, 68, 32, 1, 14, 1)]
    canvas = torch.rand(100, 100)
    assert torch.equal(index.gather(canvas), torch.stack([canvas[t.slices] for t in tiles]))
    batch = torch.rand(len(tiles), 32, 32)
    expected = torch.zeros(100, 100)
    for t, b in zip(tiles, batch):
        expected[t.slices] += b
    torch.testing.assert_close(index.scatter_add(torch.zeros(100, 100), batch), expected, rtol=0, atol=1e-6)


def element_offsets(view: torch.Tensor) -> torch.Tensor:
    """The storage offset of every element of a strided view."""
    offsets = torch.tensor(view.storage_offset())
    for size, stride in zip(view.shape, view.stride()):
        offsets = offsets[..., None] + torch.arange(size) * stride
    return offsets.flatten()


@pytest.mark.parametrize("overlap", [0, 8, 20])
def test_every_in_place_add_writes_each_canvas_pixel_at_most_once(overlap, monkeypatch):
    """Tiles added in one strided operation must not overlap: an in-place add through a view that holds a pixel
    twice reads values another part of the same operation is writing (right on one CPU thread by luck, a race on
    several threads and on a GPU). Checked on the views themselves, whatever the result on this machine."""
    views = []

    def recording(self, canvas, batch, block, *classes):
        view, part = original(self, canvas, batch, block, *classes)
        views.append(view)
        return view, part

    original = tiling.TileIndex._views
    monkeypatch.setattr(tiling.TileIndex, "_views", recording)
    tiles = tiling.grid(100, 100, 32, overlap)
    tiling.TileIndex(tiles).scatter_add(torch.zeros(100, 100), torch.rand(len(tiles), 32, 32))
    assert views and all(len(set(element_offsets(v).tolist())) == v.numel() for v in views)
    covered = torch.cat([element_offsets(v) for v in views])
    assert covered.numel() == len(tiles) * 32 * 32, "every tile's pixels are added exactly once"


def test_a_shifted_grid_is_shifted_along_both_axes():
    tiles = tiling.grid(70, 100, 32, 8, shifted=True)
    assert sorted({t.y for t in tiles}) == tiling.positions(70, 32, 8, shifted=True) == [0, 12, 36, 38]
    assert sorted({t.x for t in tiles}) == tiling.positions(100, 32, 8, shifted=True) == [0, 12, 36, 60, 68]


def test_rows_below_the_first_merge_into_one_block_and_sums_go_into_the_buffer_given():
    """A block may start below the first row (background skipped above it): rows 1-2 of the grid, y = 24 and 48,
    are one block; and `weight_sum` fills the buffer it is given (a pipeline's kept buffer), zeroing it first."""
    tiles = [t for t in tiling.grid(100, 100, 32, 8) if t.row in (1, 2)]
    index = tiling.TileIndex(tiles)
    assert [b[:3] for b in index.blocks] == [(24, 24, 2), (24, 24, 2)]
    buffer = torch.full((100, 100), 5.0)
    total = index.weight_sum(torch.ones(32, 32), (100, 100), out=buffer)
    assert total is buffer and total.max() == 4 and total[0].max() == 0
